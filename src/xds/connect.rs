//! Dialing the control plane: the endpoint from `server_url`, and TLS from files read again at
//! every dial, so a rotated Kubernetes Secret is picked up at the next reconnect.
//!
//! TLS is used when [`XdsTls`] is given or the URL says `https://`. The server is verified
//! against the CA file (or the system roots without one) under the name `san` if set, else the
//! URL's host — upstream's `CONFIG_GRPC_XDS_SERVER_TLS_SAN` semantics. The client presents
//! its certificate when both cert and key are set; RSA keys may be PKCS#1 (Envoy Gateway's
//! certgen), PKCS#8 or SEC1 EC. ALPN is `h2` and TLS 1.3 is offered, as Envoy Gateway's
//! server requires.

use crate::rules::read;
use crate::xds::{XdsError, XdsTls};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// Certificate and key files larger than this are refused (a PEM chain is a few KiB).
const MAX_PEM_BYTES: u64 = 1024 * 1024;
/// A dial (TCP, then TLS) that takes longer fails and is retried with backoff.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// TCP keepalive probes, so a control plane that vanished without closing the connection (a
/// node lost) is noticed and the client reconnects. Not HTTP/2 PINGs: grpc-go servers (Envoy
/// Gateway's) allow one PING per 5 minutes by default and close a connection that pings more
/// often ("too_many_pings"), which would make the client reconnect every few minutes.
const TCP_KEEPALIVE: Duration = Duration::from_secs(30);

/// Where and how to dial, validated once.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// `http://host:port` or `https://host:port`.
    uri: String,
    /// TLS files, when TLS is on (`Some(default)` for `https://` without files).
    tls: Option<XdsTls>,
}

/// Why one dial failed (retried with backoff; the old rules stay).
#[derive(Debug, thiserror::Error)]
pub(crate) enum DialError {
    /// A certificate, key or CA file is unreadable or holds no usable PEM.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// TCP, TLS or HTTP/2 failed.
    #[error("{0}")]
    Connect(String),
}

impl Target {
    /// Validates `server_url` (`host:port`, `http://host:port` or `https://host:port`).
    pub(crate) fn new(server_url: &str, tls: Option<&XdsTls>) -> Result<Target, XdsError> {
        let bad = |reason: &str| XdsError::Url {
            url: server_url.to_owned(),
            reason: reason.to_owned(),
        };
        let (https, rest) = if let Some(rest) = server_url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = server_url.strip_prefix("http://") {
            (false, rest)
        } else {
            (false, server_url)
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() || rest.contains('/') {
            return Err(bad("must be host:port, without a path"));
        }
        let tls = match (tls, https) {
            (Some(t), _) => Some(t.clone()),
            (None, true) => Some(XdsTls::default()),
            (None, false) => None,
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let uri = format!("{scheme}://{rest}");
        let endpoint =
            Endpoint::from_shared(uri.clone()).map_err(|_| bad("not a valid host:port"))?;
        if endpoint.uri().port_u16().is_none() {
            return Err(bad("a port is required (host:port)"));
        }
        if let Some(t) = &tls {
            if t.cert.is_some() != t.key.is_some() {
                return Err(XdsError::Tls(
                    "a client certificate needs both the cert and the key file".into(),
                ));
            }
        }
        Ok(Target { uri, tls })
    }

    /// Opens a connection (TCP, TLS, HTTP/2), reading the TLS files now.
    pub(crate) async fn dial(&self) -> Result<Channel, DialError> {
        let mut endpoint = Endpoint::from_shared(self.uri.clone())
            .map_err(|e| DialError::Connect(chain(&e)))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .tcp_keepalive(Some(TCP_KEEPALIVE));
        if let Some(tls) = &self.tls {
            endpoint = endpoint
                .tls_config(tls_config(tls).await?)
                .map_err(|e| DialError::Connect(chain(&e)))?;
        }
        endpoint
            .connect()
            .await
            .map_err(|e| DialError::Connect(chain(&e)))
    }
}

/// The client TLS configuration from the files, each checked to hold what it should.
async fn tls_config(tls: &XdsTls) -> Result<ClientTlsConfig, DialError> {
    let mut config = ClientTlsConfig::new();
    config = match &tls.ca {
        Some(ca) => {
            let pem = read_pem(ca).await?;
            let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
                .filter_map(Result::ok)
                .count();
            if certs == 0 {
                return Err(file_err(ca, "no PEM certificate found"));
            }
            config.ca_certificate(Certificate::from_pem(pem))
        }
        None => config.with_native_roots(),
    };
    if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
        let cert_pem = read_pem(cert).await?;
        if CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .next()
            .is_none_or(|c| c.is_err())
        {
            return Err(file_err(cert, "no PEM certificate found"));
        }
        let key_pem = read_pem(key).await?;
        if PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).is_err() {
            return Err(file_err(
                key,
                "no PEM private key found (PKCS#1, PKCS#8 or SEC1)",
            ));
        }
        config = config.identity(Identity::from_pem(cert_pem, key_pem));
    }
    if let Some(san) = &tls.san {
        config = config.domain_name(san.clone());
    }
    Ok(config)
}

/// Reads a PEM file on the blocking pool, capped and refusing FIFOs and devices.
async fn read_pem(path: &Path) -> Result<String, DialError> {
    let owned = path.to_path_buf();
    tokio::task::spawn_blocking(move || read::read_capped(&owned, MAX_PEM_BYTES))
        .await
        .map_err(|e| file_err(path, &e.to_string()))?
        .map_err(|e| file_err(path, &e.to_string()))
}

fn file_err(path: &Path, reason: &str) -> DialError {
    DialError::File {
        path: path.to_path_buf(),
        reason: reason.to_owned(),
    }
}

/// An error and its sources, `outer: inner: …` (tonic's transport error alone says little).
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = Target::new("envoy-gateway:18001", None).expect("host:port");
        assert_eq!(t.uri, "http://envoy-gateway:18001");
        let t = Target::new("envoy-gateway:18001", Some(&XdsTls::default())).expect("tls");
        assert_eq!(t.uri, "https://envoy-gateway:18001");
        let t = Target::new("https://127.0.0.1:5/", None).expect("https");
        assert_eq!(t.uri, "https://127.0.0.1:5");
        assert!(t.tls.is_some());
        for bad in ["", "host", "http://host", "host:1/path", "ho st:1"] {
            assert!(Target::new(bad, None).is_err(), "{bad}");
        }
        let half = XdsTls {
            cert: Some("c".into()),
            ..Default::default()
        };
        assert!(matches!(
            Target::new("h:1", Some(&half)),
            Err(XdsError::Tls(_))
        ));
    }
}
