//! TLS on the gRPC port, as Envoy Gateway wires it (its `ratelimit_cluster` presents a client
//! certificate, trusts `ca.crt`, sends no SNI and matches no SAN):
//!
//! - [`ServerTls`] names the files (certificate chain, private key, optional client CA and
//!   client SAN); [`LiveTls::load`] reads and validates them all at start, with errors naming
//!   the file and what is wrong with it ([`TlsError`]). Parsing is in [`load`].
//! - Keys: RSA PKCS#1 (`RSA PRIVATE KEY`, what Envoy Gateway's certgen writes), PKCS#8
//!   (`PRIVATE KEY`) and EC SEC1 (`EC PRIVATE KEY`); TLS 1.2 and 1.3; ALPN `h2`.
//! - Client certificates are required and verified when a client CA is given, and must carry
//!   the configured SAN when one is ([`san`]).
//! - Reload: the files are polled (metadata only) on the blocking pool; on a change everything
//!   is re-read and a new rustls `ServerConfig` replaces the old one in an `ArcSwap` that every
//!   handshake reads, so the certificate and the CA change together and open connections are
//!   untouched. A bad new file is logged and counted; the last good configuration stays.
//! - Handshakes run in their own tasks with the first-request deadline, inside the
//!   connection's `max_connections` slot ([`accept`]); the accept loop never waits for one.
//!
//! Why no custom `ResolvesServerCert`: a resolver could swap the certificate but not the
//! client verifier, and swapping the certificate and the CA separately would let a handshake
//! see one new and one old. One `ArcSwap<ServerConfig>` read once per handshake swaps both.

pub mod accept;
pub mod load;
pub mod san;

use crate::meter::Meter;
use crate::rules::reload::{watch, Outcome};
use arc_swap::ArcSwap;
use rustls::ServerConfig;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use accept::{tls_incoming, TlsConn};

/// The files the gRPC port's TLS is made of (what the settings name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// PEM certificate chain, leaf first (`GRPC_SERVER_TLS_CERT`, Envoy Gateway's
    /// `/certs/tls.crt`).
    pub cert: PathBuf,
    /// PEM private key of the leaf (`GRPC_SERVER_TLS_KEY`, `/certs/tls.key`).
    pub key: PathBuf,
    /// PEM CA certificates client certificates must chain to; `None` asks for no client
    /// certificate (`GRPC_CLIENT_TLS_CACERT` or Envoy Gateway's `GRPC_SERVER_TLS_CA_CERT`).
    pub client_ca: Option<PathBuf>,
    /// A name (DNS, IP address or URI) the client certificate must carry as a
    /// subjectAltName (`GRPC_CLIENT_TLS_SAN`); needs `client_ca`.
    pub client_san: Option<String>,
}

/// Which file of a [`ServerTls`] an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The certificate chain.
    Cert,
    /// The private key.
    Key,
    /// The client CA.
    ClientCa,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Cert => "TLS certificate",
            Role::Key => "TLS private key",
            Role::ClientCa => "TLS client CA",
        })
    }
}

/// What is wrong with one file.
#[derive(Debug, thiserror::Error)]
pub enum FileProblem {
    /// The operating system failed (missing, permission denied, EMFILE): retried at the next
    /// poll when reloading.
    #[error("cannot read it: {0}")]
    Unreadable(std::io::Error),
    /// A FIFO, socket, device or directory.
    #[error("not a regular file (a {0})")]
    NotRegular(&'static str),
    /// Bigger than [`load::MAX_PEM_BYTES`].
    #[error("larger than {cap} bytes; not a PEM certificate or key file")]
    TooLarge {
        /// The cap.
        cap: u64,
    },
    /// Not text, or a PEM block that does not decode.
    #[error("not valid PEM: {0}")]
    BadPem(String),
    /// No `CERTIFICATE` block.
    #[error("no CERTIFICATE block found{0}")]
    NoCertificate(String),
    /// A certificate that does not parse as X.509.
    #[error("certificate #{index} is not a valid X.509 certificate: {reason}")]
    BadCertificate {
        /// 1-based position in the file.
        index: usize,
        /// What the parser said.
        reason: String,
    },
    /// No private key block of a supported encoding.
    #[error("no private key found (expected RSA PRIVATE KEY, PRIVATE KEY or EC PRIVATE KEY){0}")]
    NoKey(String),
    /// An encrypted key (needs a passphrase nobody can give).
    #[error("the private key is encrypted; give it unencrypted (as Envoy Gateway writes it)")]
    EncryptedKey,
    /// A key ring cannot sign with (DSA, RSA under 2048 bits, an unsupported curve).
    #[error("unsupported private key (RSA 2048–8192 bits, ECDSA P-256/P-384 and Ed25519 are supported): {0}")]
    UnsupportedKey(String),
}

/// Why the gRPC port's TLS could not be set up (at start) or reloaded (logged, old kept).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// One file is unusable.
    #[error("{role} {path}: {problem}")]
    File {
        /// Which file.
        role: Role,
        /// Its path.
        path: PathBuf,
        /// What is wrong.
        problem: FileProblem,
    },
    /// The key is valid but is not the certificate's.
    #[error(
        "TLS private key {key} does not match the certificate {cert} (its public key differs)"
    )]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// A client SAN without a client CA: no client certificate would be asked for.
    #[error("a TLS client SAN ({0:?}) needs a client CA: without one no client certificate is requested")]
    SanWithoutCa(String),
    /// The client SAN is not a DNS name, IP address or URI.
    #[error("TLS client SAN {0:?} is not a DNS name, an IP address or a URI")]
    BadSan(String),
    /// rustls refused the configuration, or loading was cut short (should not happen).
    #[error("TLS configuration refused: {0}")]
    Config(String),
}

impl TlsError {
    /// An operating-system failure (retry at the next poll) rather than bad content.
    pub fn is_io(&self) -> bool {
        matches!(
            self,
            TlsError::File {
                problem: FileProblem::Unreadable(_),
                ..
            }
        )
    }
}

/// The gRPC port's TLS as handshakes see it: the current configuration, replaced whole when
/// the files change.
pub struct LiveTls {
    /// The files.
    spec: ServerTls,
    /// What the next handshake uses; swapped on a good reload (open connections keep theirs).
    current: ArcSwap<ServerConfig>,
    /// Where reload outcomes are counted (`sluice_tls_reloads_total`).
    meter: Meter,
    /// The files' [`LiveTls::fingerprint`] taken just before they were first read: the
    /// reload task starts from it, so a change between start-up and the task is not missed.
    loaded: u64,
}

impl std::fmt::Debug for LiveTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveTls").field("spec", &self.spec).finish()
    }
}

impl LiveTls {
    /// Reads and validates every file of `spec`. Blocking: call it on the blocking pool (or
    /// use [`LiveTls::load_async`]).
    pub fn load(spec: ServerTls) -> Result<LiveTls, TlsError> {
        let loaded = fingerprint(&spec);
        let config = load::server_config(&spec)?;
        Ok(LiveTls {
            spec,
            current: ArcSwap::from_pointee(config),
            meter: Meter::default(),
            loaded,
        })
    }

    /// [`LiveTls::load`] on the blocking pool.
    pub async fn load_async(spec: ServerTls) -> Result<LiveTls, TlsError> {
        tokio::task::spawn_blocking(move || LiveTls::load(spec))
            .await
            .map_err(|e| TlsError::Config(format!("loading the files failed: {e}")))?
    }

    /// Counts reloads in `meter`.
    pub fn with_meter(mut self, meter: &Meter) -> LiveTls {
        self.meter = meter.clone();
        self
    }

    /// The files.
    pub fn spec(&self) -> &ServerTls {
        &self.spec
    }

    /// The configuration for the next handshake.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.current.load_full()
    }

    /// Re-reads every file; swaps the configuration if all are good, else keeps the old one.
    /// Blocking.
    pub fn reload(&self) -> Outcome {
        let (outcome, label) = match load::server_config(&self.spec) {
            Ok(config) => {
                self.current.store(Arc::new(config));
                tracing::info!(cert = %self.spec.cert.display(), "gRPC TLS certificates reloaded");
                (Outcome::Applied, "applied")
            }
            Err(e) if e.is_io() => {
                tracing::warn!(error = %e, "cannot read the gRPC TLS files; keeping the current ones, retrying at the next poll");
                (Outcome::Retry, "io_error")
            }
            Err(e) => {
                tracing::error!(error = %e, "invalid gRPC TLS files; keeping the last good ones");
                (Outcome::Rejected, "rejected")
            }
        };
        self.meter.record(|| {
            metrics::counter!("sluice_tls_reloads_total", "outcome" => label).increment(1)
        });
        outcome
    }

    /// Metadata of every file (where links point, inode, size, times): a Kubernetes Secret
    /// update swaps the `..data` link, so the followed files change inode. Blocking.
    pub fn fingerprint(&self) -> u64 {
        fingerprint(&self.spec)
    }

    /// Polls the files every `every` (and reloads on SIGHUP) until the task is aborted. The
    /// first poll compares with the files as they were loaded.
    pub fn spawn_reload(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let probe = Arc::clone(self);
        let live = Arc::clone(self);
        // `watch` takes its starting point from the first call.
        let first = AtomicBool::new(true);
        watch(
            every,
            move || {
                Some(if first.swap(false, Ordering::Relaxed) {
                    probe.loaded
                } else {
                    probe.fingerprint()
                })
            },
            move || live.reload(),
        )
    }
}

/// See [`LiveTls::fingerprint`].
fn fingerprint(spec: &ServerTls) -> u64 {
    let mut h = DefaultHasher::new();
    let files = [Some(&spec.cert), Some(&spec.key)]
        .into_iter()
        .chain([spec.client_ca.as_ref()])
        .flatten();
    for path in files {
        path.hash(&mut h);
        crate::rules::read::stamp(path, &mut h);
    }
    h.finish()
}
