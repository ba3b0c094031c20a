//! The client SAN check (`GRPC_CLIENT_TLS_SAN`): after the CA check passes, the client's
//! leaf certificate must carry the configured name among its subjectAltNames, or the
//! handshake is refused.
//!
//! The name's form decides what it is compared with: an IP address with IP SANs, a string
//! with `:` (`spiffe://…`, `https://…`) with URI SANs (exactly), anything else with DNS SANs
//! as a TLS client would compare a host name (case-insensitive; a `*.ns` wildcard SAN covers
//! `x.ns`).

use super::TlsError;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use std::net::IpAddr;
use std::sync::Arc;

/// The longest SAN accepted in the settings (DNS names stop at 253; URIs get some room).
const MAX_SAN_BYTES: usize = 1024;

/// The name a client certificate must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequireSan {
    /// A DNS name (compared like a host name).
    Dns(ServerName<'static>),
    /// An IP address (compared with IP SANs).
    Ip(ServerName<'static>),
    /// A URI (compared exactly with URI SANs).
    Uri(String),
}

impl RequireSan {
    /// Parses the setting: an IP address, a URI (has a `:` and is not an address), or a DNS
    /// name.
    pub fn parse(san: &str) -> Result<RequireSan, TlsError> {
        let bad = || TlsError::BadSan(san.chars().take(MAX_SAN_BYTES).collect());
        if san.is_empty() || san.len() > MAX_SAN_BYTES || san.chars().any(char::is_control) {
            return Err(bad());
        }
        if let Ok(ip) = san.parse::<IpAddr>() {
            return Ok(RequireSan::Ip(ServerName::IpAddress(ip.into())));
        }
        if san.contains(':') {
            return Ok(RequireSan::Uri(san.to_owned()));
        }
        ServerName::try_from(san.to_owned())
            .map(RequireSan::Dns)
            .map_err(|_| bad())
    }

    /// Whether the leaf certificate `der` carries the name.
    pub fn matches(&self, der: &CertificateDer<'_>) -> bool {
        let Ok(cert) = webpki::EndEntityCert::try_from(der) else {
            return false;
        };
        match self {
            RequireSan::Dns(name) | RequireSan::Ip(name) => {
                cert.verify_is_valid_for_subject_name(name).is_ok()
            }
            RequireSan::Uri(uri) => cert.valid_uri_names().any(|u| u == uri),
        }
    }

    /// `inner` (the CA check) followed by this SAN check.
    pub fn wrap(self, inner: Arc<dyn ClientCertVerifier>) -> SanVerifier {
        SanVerifier { inner, san: self }
    }
}

/// A client verifier that demands a SAN on top of another verifier's checks.
#[derive(Debug)]
pub struct SanVerifier {
    /// The chain check against the client CA (and signatures).
    inner: Arc<dyn ClientCertVerifier>,
    /// The name the leaf must carry.
    san: RequireSan,
}

impl ClientCertVerifier for SanVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        if self.san.matches(end_entity) {
            Ok(verified)
        } else {
            Err(Error::InvalidCertificate(CertificateError::NotValidForName))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_of_the_name_decides_the_kind() {
        assert!(matches!(
            RequireSan::parse("127.0.0.1"),
            Ok(RequireSan::Ip(_))
        ));
        assert!(matches!(RequireSan::parse("::1"), Ok(RequireSan::Ip(_))));
        assert!(matches!(
            RequireSan::parse("spiffe://cluster.local/ns/eg/sa/envoy"),
            Ok(RequireSan::Uri(_))
        ));
        assert!(matches!(
            RequireSan::parse("envoy.envoy-gateway-system"),
            Ok(RequireSan::Dns(_))
        ));
    }

    #[test]
    fn empty_or_garbage_names_are_refused() {
        for bad in ["", "a b", "line\nbreak", &"x".repeat(MAX_SAN_BYTES + 1)] {
            assert!(RequireSan::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn garbage_certificates_never_match() {
        let san = RequireSan::parse("envoy").expect("valid");
        assert!(!san.matches(&CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00])));
    }
}
