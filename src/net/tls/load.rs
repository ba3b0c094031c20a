//! Reading a [`ServerTls`]'s files into a rustls `ServerConfig`: bounded reads of regular
//! files only, PEM decoding, a check that the key is the certificate's, the client verifier.
//! Blocking (file I/O): callers run it on the blocking pool.

use super::san::RequireSan;
use super::{FileProblem, Role, ServerTls, TlsError};
use crate::rules::read::{read_capped, ReadError};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{Error as RustlsError, InconsistentKeys, RootCertStore, ServerConfig};
use std::path::Path;
use std::sync::Arc;

/// The largest certificate, key or CA file read (1 MiB): real ones are a few KiB.
pub const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// The ALPN protocols offered: HTTP/2 only (gRPC). A client offering none is served too.
const ALPN: &[&[u8]] = &[b"h2"];

/// Builds the configuration `spec` describes, or says which file is wrong and how.
pub fn server_config(spec: &ServerTls) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = client_verifier(spec, &provider)?;
    let chain = read_certs(Role::Cert, &spec.cert)?;
    let key = read_key(&spec.key)?;
    let signer = provider.key_provider.load_private_key(key).map_err(|e| {
        file_error(
            Role::Key,
            &spec.key,
            FileProblem::UnsupportedKey(e.to_string()),
        )
    })?;
    let certified = CertifiedKey::new(chain, signer);
    match certified.keys_match() {
        // `Unknown`: the key cannot report its public key; the handshake will tell.
        Ok(()) | Err(RustlsError::InconsistentKeys(InconsistentKeys::Unknown)) => {}
        Err(RustlsError::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            return Err(TlsError::KeyMismatch {
                cert: spec.cert.clone(),
                key: spec.key.clone(),
            })
        }
        Err(e) => {
            return Err(file_error(
                Role::Cert,
                &spec.cert,
                FileProblem::BadCertificate {
                    index: 1,
                    reason: e.to_string(),
                },
            ))
        }
    }
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// No client authentication, or client certificates chaining to the CA file (and carrying
/// the SAN, when one is set).
fn client_verifier(
    spec: &ServerTls,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let Some(ca) = &spec.client_ca else {
        if let Some(san) = &spec.client_san {
            return Err(TlsError::SanWithoutCa(san.clone()));
        }
        return Ok(WebPkiClientVerifier::no_client_auth());
    };
    // Checked before any file: a typo in a setting is reported as such.
    let san = spec
        .client_san
        .as_deref()
        .map(RequireSan::parse)
        .transpose()?;
    let mut roots = RootCertStore::empty();
    for (i, cert) in read_certs(Role::ClientCa, ca)?.into_iter().enumerate() {
        roots.add(cert).map_err(|e| {
            file_error(
                Role::ClientCa,
                ca,
                FileProblem::BadCertificate {
                    index: i + 1,
                    reason: e.to_string(),
                },
            )
        })?;
    }
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(match san {
        Some(san) => Arc::new(san.wrap(verifier)),
        None => verifier,
    })
}

/// Every `CERTIFICATE` block of `path`, in order; at least one, the first a valid X.509
/// certificate.
fn read_certs(role: Role, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let text = read_pem(role, path)?;
    let certs = CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(role, path, FileProblem::BadPem(e.to_string())))?;
    let Some(first) = certs.first() else {
        return Err(file_error(
            role,
            path,
            FileProblem::NoCertificate(found_labels(&text)),
        ));
    };
    if let Err(e) = webpki::EndEntityCert::try_from(first) {
        return Err(file_error(
            role,
            path,
            FileProblem::BadCertificate {
                index: 1,
                reason: format!("{e:?}"),
            },
        ));
    }
    Ok(certs)
}

/// The first private key of `path`: PKCS#1 RSA, PKCS#8, or SEC1 EC.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let text = read_pem(Role::Key, path)?;
    if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || text.contains("Proc-Type: 4,ENCRYPTED")
    {
        return Err(file_error(Role::Key, path, FileProblem::EncryptedKey));
    }
    PrivateKeyDer::from_pem_slice(text.as_bytes()).map_err(|e| {
        let problem = match e {
            rustls::pki_types::pem::Error::NoItemsFound => FileProblem::NoKey(found_labels(&text)),
            other => FileProblem::BadPem(other.to_string()),
        };
        file_error(Role::Key, path, problem)
    })
}

/// The file as text, at most [`MAX_PEM_BYTES`], regular files only, never blocking on a FIFO.
fn read_pem(role: Role, path: &Path) -> Result<String, TlsError> {
    read_capped(path, MAX_PEM_BYTES).map_err(|e| {
        let problem = match e {
            ReadError::Io(e) => FileProblem::Unreadable(e),
            ReadError::NotRegular(kind) => FileProblem::NotRegular(kind),
            ReadError::TooLarge { cap } => FileProblem::TooLarge { cap },
            ReadError::NotUtf8 => FileProblem::BadPem("the file is not text".into()),
        };
        file_error(role, path, problem)
    })
}

/// `"; the file has: X, Y"` naming up to four PEM block labels present (to point at a
/// swapped certificate and key), or `"; the file has no PEM block"`.
fn found_labels(text: &str) -> String {
    let labels: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("-----BEGIN "))
        .filter_map(|l| l.strip_suffix("-----"))
        .take(4)
        .collect();
    if labels.is_empty() {
        "; the file has no PEM block".into()
    } else {
        format!("; the file has: {}", labels.join(", "))
    }
}

fn file_error(role: Role, path: &Path, problem: FileProblem) -> TlsError {
    TlsError::File {
        role,
        path: path.to_path_buf(),
        problem,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_point_at_what_the_file_holds() {
        let text = "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        assert_eq!(found_labels(text), "; the file has: RSA PRIVATE KEY");
        assert_eq!(found_labels("hello"), "; the file has no PEM block");
    }

    #[test]
    fn missing_files_are_io_errors_naming_the_file() {
        let spec = ServerTls {
            cert: "/nonexistent/tls.crt".into(),
            key: "/nonexistent/tls.key".into(),
            client_ca: None,
            client_san: None,
        };
        let e = server_config(&spec).expect_err("missing files");
        assert!(e.is_io(), "{e}");
        assert!(e.to_string().contains("/nonexistent/tls.crt"), "{e}");
    }

    #[test]
    fn a_san_without_a_ca_is_refused_before_reading_anything() {
        let spec = ServerTls {
            cert: "/nonexistent/tls.crt".into(),
            key: "/nonexistent/tls.key".into(),
            client_ca: None,
            client_san: Some("envoy".into()),
        };
        let e = server_config(&spec).expect_err("san without ca");
        assert!(matches!(e, TlsError::SanWithoutCa(_)), "{e}");
    }
}
