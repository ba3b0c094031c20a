//! Test certificates made with the `openssl` command (scripts/test installs it), shaped like
//! Envoy Gateway's: a self-signed CA with CN `envoy-gateway`, leaf certificates without
//! ExtKeyUsage, RSA-2048 keys in PKCS#1 PEM (`RSA PRIVATE KEY`) unless asked otherwise.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// How a leaf's private key is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA-2048, `-----BEGIN RSA PRIVATE KEY-----` (what Envoy Gateway's certgen writes).
    RsaPkcs1,
    /// RSA-2048, `-----BEGIN PRIVATE KEY-----`.
    RsaPkcs8,
    /// P-256, `-----BEGIN EC PRIVATE KEY-----` (SEC1).
    EcSec1,
}

/// A certificate and its key on disk.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// PEM certificate.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// A CA able to sign leaves, in a directory of its own.
pub struct Ca {
    /// Where everything is written.
    pub dir: PathBuf,
    /// The CA certificate (what clients and servers trust).
    pub cert: PathBuf,
    /// The CA key.
    key: PathBuf,
}

/// Runs openssl in `dir`; panics with its stderr on failure.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("openssl must be installed (scripts/test installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Ca {
    /// A fresh CA (CN `cn`) in `dir`, files `<name>.crt` / `<name>.key`.
    pub fn new(dir: &Path, name: &str, cn: &str) -> Ca {
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &key.to_string_lossy(),
                "-out",
                &cert.to_string_lossy(),
                "-days",
                "2",
                "-subj",
                &format!("/CN={cn}"),
            ],
        );
        Ca {
            dir: dir.to_path_buf(),
            cert,
            key,
        }
    }

    /// A leaf signed by this CA, written as `<name>.crt` / `<name>.key`, with CN `cn` and the
    /// subjectAltNames `sans` (e.g. `["DNS:localhost", "IP:127.0.0.1"]`; may be empty).
    pub fn leaf(&self, name: &str, cn: &str, sans: &[&str], kind: KeyKind) -> Leaf {
        let dir = &self.dir;
        let key = dir.join(format!("{name}.key"));
        let cert = dir.join(format!("{name}.crt"));
        let csr = dir.join(format!("{name}.csr"));
        let key_s = key.to_string_lossy().to_string();
        match kind {
            KeyKind::RsaPkcs1 => openssl(dir, &["genrsa", "-traditional", "-out", &key_s, "2048"]),
            KeyKind::RsaPkcs8 => openssl(
                dir,
                &[
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:2048",
                    "-out",
                    &key_s,
                ],
            ),
            KeyKind::EcSec1 => openssl(
                dir,
                &[
                    "ecparam",
                    "-name",
                    "prime256v1",
                    "-genkey",
                    "-noout",
                    "-out",
                    &key_s,
                ],
            ),
        }
        openssl(
            dir,
            &[
                "req",
                "-new",
                "-key",
                &key_s,
                "-out",
                &csr.to_string_lossy(),
                "-subj",
                &format!("/CN={cn}"),
            ],
        );
        let ext = dir.join(format!("{name}.ext"));
        let text = if sans.is_empty() {
            "basicConstraints=CA:FALSE\n".to_owned()
        } else {
            format!(
                "basicConstraints=CA:FALSE\nsubjectAltName={}\n",
                sans.join(",")
            )
        };
        std::fs::write(&ext, text).expect("write ext file");
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr.to_string_lossy(),
                "-CA",
                &self.cert.to_string_lossy(),
                "-CAkey",
                &self.key.to_string_lossy(),
                "-CAcreateserial",
                "-out",
                &cert.to_string_lossy(),
                "-days",
                "2",
                "-extfile",
                &ext.to_string_lossy(),
            ],
        );
        let pem = std::fs::read_to_string(&key).expect("read key");
        let want = match kind {
            KeyKind::RsaPkcs1 => "BEGIN RSA PRIVATE KEY",
            KeyKind::RsaPkcs8 => "BEGIN PRIVATE KEY",
            KeyKind::EcSec1 => "BEGIN EC PRIVATE KEY",
        };
        assert!(pem.contains(want), "{name}.key is not {kind:?}");
        Leaf { cert, key }
    }
}

/// Envoy Gateway's `/certs` Secret: `ca.crt`, `tls.crt`, `tls.key` (CN `*`, PKCS#1) in `dir`,
/// with SANs for loopback added so that clients here can verify it by name or address.
pub fn envoy_gateway_certs(dir: &Path) -> (Ca, Leaf) {
    let ca = Ca::new(dir, "ca", "envoy-gateway");
    let leaf = ca.leaf(
        "tls",
        "*",
        &[
            "DNS:*.envoy-gateway-system",
            "DNS:envoy-gateway",
            "DNS:localhost",
            "IP:127.0.0.1",
        ],
        KeyKind::RsaPkcs1,
    );
    (ca, leaf)
}
