//! Unusable TLS files are refused at start with an error naming the file and what is wrong
//! with it: missing, not a regular file, too big, not PEM, a key where the certificate goes
//! (and the reverse), a key of another certificate, an encrypted or unsupported key, a client
//! SAN that is no name or one without a client CA.

mod support;

use sluice::net::tls::{LiveTls, ServerTls, TlsError};
use std::path::{Path, PathBuf};
use support::certs::{envoy_gateway_certs, openssl, KeyKind};

fn load(cert: &Path, key: &Path) -> Result<LiveTls, TlsError> {
    LiveTls::load(ServerTls {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        client_ca: None,
        client_san: None,
    })
}

/// The error's message, which must contain every one of `parts`.
fn refused(result: Result<LiveTls, TlsError>, parts: &[&str]) -> TlsError {
    let e = match result {
        Ok(_) => panic!("loaded; expected an error with {parts:?}"),
        Err(e) => e,
    };
    let text = e.to_string();
    for part in parts {
        assert!(text.contains(part), "{text:?} lacks {part:?}");
    }
    e
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

#[test]
fn bad_files_are_named_with_what_is_wrong() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (ca, leaf) = envoy_gateway_certs(d);
    let other = ca.leaf("other", "*", &["DNS:localhost"], KeyKind::RsaPkcs1);
    assert!(load(&leaf.cert, &leaf.key).is_ok(), "the good pair loads");

    let missing = d.join("missing.crt");
    let e = refused(
        load(&missing, &leaf.key),
        &["TLS certificate", "missing.crt", "cannot read"],
    );
    assert!(e.is_io(), "a missing file is retried on reload");
    refused(load(d, &leaf.key), &["not a regular file (a directory)"]);
    let huge = write(d, "huge.crt", &"A".repeat(2 * 1024 * 1024));
    refused(
        load(&huge, &leaf.key),
        &["huge.crt", "larger than 1048576 bytes"],
    );
    let empty = write(d, "empty.crt", "");
    refused(
        load(&empty, &leaf.key),
        &["no CERTIFICATE block found; the file has no PEM block"],
    );
    let garbage = write(
        d,
        "garbage.crt",
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    );
    refused(load(&garbage, &leaf.key), &["garbage.crt", "not valid PEM"]);
    let not_x509 = write(
        d,
        "notx509.crt",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    refused(
        load(&not_x509, &leaf.key),
        &["certificate #1 is not a valid X.509"],
    );

    // Swapped paths: the message says what the file holds instead.
    refused(
        load(&leaf.key, &leaf.cert),
        &[
            "TLS certificate",
            "tls.key",
            "the file has: RSA PRIVATE KEY",
        ],
    );
    refused(
        load(&leaf.cert, &leaf.cert),
        &[
            "TLS private key",
            "no private key found",
            "the file has: CERTIFICATE",
        ],
    );
    refused(
        load(&leaf.cert, &other.key),
        &["other.key", "does not match", "tls.crt"],
    );

    let encrypted = d.join("enc.key");
    openssl(
        d,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-aes256",
            "-pass",
            "pass:secret",
            "-out",
            &encrypted.to_string_lossy(),
        ],
    );
    refused(load(&leaf.cert, &encrypted), &["enc.key", "encrypted"]);

    // RSA-1024: valid PEM, valid certificate, but no TLS signer accepts it.
    let weak_key = d.join("weak.key");
    let weak_cert = d.join("weak.crt");
    openssl(
        d,
        &[
            "genrsa",
            "-traditional",
            "-out",
            &weak_key.to_string_lossy(),
            "1024",
        ],
    );
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            &weak_key.to_string_lossy(),
            "-out",
            &weak_cert.to_string_lossy(),
            "-days",
            "2",
            "-subj",
            "/CN=weak",
        ],
    );
    refused(
        load(&weak_cert, &weak_key),
        &["weak.key", "unsupported private key"],
    );
}

#[test]
fn client_settings_are_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, leaf) = envoy_gateway_certs(dir.path());
    let with = |client_ca: Option<PathBuf>, san: Option<&str>| {
        LiveTls::load(ServerTls {
            cert: leaf.cert.clone(),
            key: leaf.key.clone(),
            client_ca,
            client_san: san.map(str::to_owned),
        })
    };
    assert!(with(Some(ca.cert.clone()), Some("envoy")).is_ok());
    refused(with(None, Some("envoy")), &["needs a client CA"]);
    refused(
        with(Some(ca.cert.clone()), Some("not a name")),
        &["\"not a name\"", "not a DNS name"],
    );
    refused(
        with(Some(leaf.key.clone()), None),
        &["TLS client CA", "no CERTIFICATE block found"],
    );
}
