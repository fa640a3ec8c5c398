//! Which server certificates `server.ca_cert` makes the agent accept.
//!
//! Every certificate in the file plays two parts:
//! - a **trust anchor**: a server certificate that chains to it (through the
//!   intermediates the server sends, or directly) is checked by webpki as
//!   usual: chain, validity, name, extended key usage. A root, a sub-CA or
//!   both (a chain file, sub-CA first as FusionInventory's docs write it)
//!   all work, since each is an anchor of its own;
//! - a **pin**: a server whose end-entity certificate is byte for byte one of
//!   them is accepted without a chain, if the certificate is valid now and
//!   for the name the agent connected to. This is what OCS and
//!   FusionInventory admins do: `openssl req -x509` makes a self-signed
//!   certificate marked CA:TRUE, which webpki refuses as an end entity
//!   ("CaUsedAsEndEntity"), and they give that very file to agents.
//!
//! ```text
//! presented leaf ──► webpki chain check ──ok──► accepted
//!                         │ error
//!                         ▼
//!            leaf == a certificate in the file? ──no──► refused (webpki's error)
//!                         │ yes
//!                         ▼
//!            valid now? for the name? ──no──► refused
//!                         │ yes
//!                         ▼
//!                      accepted
//! ```
//!
//! The name of a pinned certificate is its subjectAltName (DNS or IP), as
//! webpki reads it; only a pinned certificate with no subjectAltName at all
//! (what the docs' `openssl req -x509 -subj /CN=host` makes) is matched on
//! its last common name, a DNS name compared without case and without
//! wildcards. Either way the handshake's signature is checked with the
//! presented certificate's key, that is the pinned one's, so a pin helps
//! only whoever holds its private key.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::engine::x509::Tbs;

/// The agent's server certificate verifier: webpki's, then the pins. (What
/// rustls's `WebPkiServerVerifier` does, without its revocation lists: its
/// builder would link CRL parsing the agent never uses.)
pub(super) struct Verifier {
    roots: RootCertStore,
    algs: WebPkiSupportedAlgorithms,
    pins: Vec<CertificateDer<'static>>,
}

/// Without the certificates' bytes (and without the code to print them).
impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Verifier {{ {} certificates }}", self.pins.len())
    }
}

impl Verifier {
    /// Trust `certs` both as anchors and as pins (at least one).
    pub(super) fn new(certs: Vec<CertificateDer<'static>>, provider: &CryptoProvider) -> Result<Self, String> {
        let mut roots = RootCertStore::empty();
        for c in &certs {
            roots.add(c.clone()).map_err(|e| format!("server.ca_cert holds an unusable certificate: {e}"))?;
        }
        if roots.is_empty() {
            return Err("server.ca_cert holds no certificate".into());
        }
        Ok(Self { roots, algs: provider.signature_verification_algorithms, pins: certs })
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8], // not asked for
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        let err = match verify_server_cert_signed_by_trust_anchor(&cert, &self.roots, intermediates, now, self.algs.all)
            .and_then(|()| verify_server_name(&cert, server_name))
        {
            Ok(()) => return Ok(ServerCertVerified::assertion()),
            Err(e) => e,
        };
        if !self.pins.iter().any(|p| p.as_ref() == end_entity.as_ref()) {
            return Err(err);
        }
        check_pinned(end_entity, &cert, server_name, now)?;
        log::debug!(target: "outpost", "{server_name:?}: the server's certificate is pinned in server.ca_cert");
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// A pinned certificate's own checks (`der`, parsed as `cert`): valid at
/// `now`, and for `name`.
fn check_pinned(
    der: &CertificateDer<'_>,
    cert: &ParsedCertificate<'_>,
    name: &ServerName<'_>,
    now: UnixTime,
) -> Result<(), rustls::Error> {
    let tbs = Tbs::parse(der).ok_or(CertificateError::BadEncoding)?;
    let time = now.as_secs();
    if time < tbs.not_before {
        let not_before = UnixTime::since_unix_epoch(std::time::Duration::from_secs(tbs.not_before));
        return Err(CertificateError::NotValidYetContext { time: now, not_before }.into());
    }
    if time > tbs.not_after {
        let not_after = UnixTime::since_unix_epoch(std::time::Duration::from_secs(tbs.not_after));
        return Err(CertificateError::ExpiredContext { time: now, not_after }.into());
    }
    match verify_server_name(cert, name) {
        Ok(()) => Ok(()),
        Err(e) if tbs.has_san => Err(e),
        Err(e) => match (name, tbs.common_name) {
            (ServerName::DnsName(d), Some(cn)) if cn.eq_ignore_ascii_case(d.as_ref().as_bytes()) => Ok(()),
            _ => Err(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    /// `openssl req -x509 -newkey ec -days 36500 -subj /CN=127.0.0.1
    /// -addext subjectAltName=IP:127.0.0.1` (CA:TRUE), and another like it.
    const IP: &str = include_str!("../testdata/pin-ip.pem");
    const OTHER: &str = include_str!("../testdata/pin-other.pem");
    /// Their private keys (test keys, nothing else uses them).
    const IP_KEY: &str = include_str!("../testdata/pin-ip.key");
    const OTHER_KEY: &str = include_str!("../testdata/pin-other.key");
    /// The docs' recipe: `openssl req -x509 -days 730 -subj
    /// /CN=ocs.example.org`, no subjectAltName (CA:TRUE).
    const CN_ONLY: &str = include_str!("../testdata/pin-cn.pem");
    /// `-subj /CN=ocs.example.org -addext subjectAltName=DNS:other.example.org`.
    const SAN_AND_CN: &str = include_str!("../testdata/pin-san-cn.pem");
    /// The Outpost server CA of the client's tests.
    const CA: &str = include_str!("../testdata/ca-cert.pem");
    /// Inside both fixtures' validity periods.
    const NOW: u64 = 1_800_000_000;

    fn der(pem: &str) -> CertificateDer<'static> {
        rustls_pemfile::certs(&mut pem.as_bytes()).next().unwrap().unwrap()
    }

    fn verifier(pems: &[&str]) -> Verifier {
        let provider = rustls::crypto::ring::default_provider();
        Verifier::new(pems.iter().map(|p| der(p)).collect(), &provider).unwrap()
    }

    fn verify(v: &Verifier, pem: &str, name: &str, now: u64) -> Result<(), rustls::Error> {
        let name = ServerName::try_from(name.to_string()).unwrap();
        let now = UnixTime::since_unix_epoch(Duration::from_secs(now));
        v.verify_server_cert(&der(pem), &[], &name, &[], now).map(|_| ())
    }

    #[test]
    fn the_validity_names_and_san_of_openssl_certificates_are_read() {
        let ip = der(IP);
        let t = Tbs::parse(&ip).unwrap();
        // notBefore=Dec 2 13:57:05 2026 GMT (UTCTime), notAfter=Nov 8 13:57:05 2126 GMT (GeneralizedTime).
        assert_eq!((t.not_before, t.not_after), (1_796_219_825, 4_949_819_825));
        assert_eq!((t.common_name, t.has_san), (Some(&b"127.0.0.1"[..]), true));
        assert_eq!(t.alt_names().collect::<Vec<_>>(), [crate::engine::x509::AltName::Ip(&[127, 0, 0, 1])]);
        let cn = der(CN_ONLY);
        let t = Tbs::parse(&cn).unwrap();
        assert_eq!((t.not_before, t.not_after), (1_796_219_826, 1_859_291_826));
        assert_eq!((t.common_name, t.has_san), (Some(&b"ocs.example.org"[..]), false));
        assert_eq!(t.alt_names().count(), 0);
        let san = der(SAN_AND_CN);
        let t = Tbs::parse(&san).map(|t| t.alt_names().collect::<Vec<_>>());
        assert_eq!(t, Some(vec![crate::engine::x509::AltName::Dns("other.example.org")]));
        for cut in [0, 1, 10, ip.len() / 2, ip.len() - 1] {
            assert_eq!(Tbs::parse(&ip[..cut]), None, "cut at {cut}");
        }
        // Any byte changed: an answer, never a panic.
        for i in 0..ip.len() {
            for x in [0x01, 0x80, 0xff] {
                let mut b = ip.to_vec();
                b[i] ^= x;
                let _ = Tbs::parse(&b);
            }
        }
    }

    #[test]
    fn a_pinned_self_signed_ca_true_certificate_is_accepted_for_its_name_while_valid() {
        let v = verifier(&[CA, IP]);
        verify(&v, IP, "127.0.0.1", NOW).unwrap();
        let e = verify(&v, IP, "127.0.0.2", NOW).unwrap_err();
        assert!(matches!(e, rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. })), "{e}");
        let e = verify(&v, IP, "localhost", NOW).unwrap_err();
        assert!(matches!(e, rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. })), "{e}");
        let e = verify(&v, IP, "127.0.0.1", 4_949_819_826).unwrap_err();
        assert!(matches!(e, rustls::Error::InvalidCertificate(CertificateError::ExpiredContext { .. })), "{e}");
        let e = verify(&v, IP, "127.0.0.1", 1_796_219_824).unwrap_err();
        assert!(matches!(e, rustls::Error::InvalidCertificate(CertificateError::NotValidYetContext { .. })), "{e}");
    }

    #[test]
    fn a_certificate_that_is_not_pinned_is_refused() {
        let v = verifier(&[IP]);
        assert!(verify(&v, OTHER, "127.0.0.1", NOW).is_err());
        assert!(verify(&verifier(&[CA]), IP, "127.0.0.1", NOW).is_err());
    }

    #[test]
    fn without_a_subject_alt_name_the_common_name_is_the_name() {
        let v = verifier(&[CN_ONLY]);
        verify(&v, CN_ONLY, "ocs.example.org", NOW).unwrap();
        verify(&v, CN_ONLY, "OCS.Example.ORG", NOW).unwrap();
        assert!(verify(&v, CN_ONLY, "other.example.org", NOW).is_err());
        assert!(verify(&v, CN_ONLY, "example.org", NOW).is_err());
        assert!(verify(&v, CN_ONLY, "127.0.0.1", NOW).is_err());
        // A certificate with a subjectAltName is never matched on its CN.
        let v = verifier(&[SAN_AND_CN]);
        verify(&v, SAN_AND_CN, "other.example.org", NOW).unwrap();
        assert!(verify(&v, SAN_AND_CN, "ocs.example.org", NOW).is_err());
    }

    /// A handshake in memory between a client with the agent's verifier
    /// pinning `IP` and a server showing `IP` but signing with `key`.
    fn handshake(key: &str, version: &'static rustls::SupportedProtocolVersion) -> Result<(), rustls::Error> {
        use rustls::server::{ClientHello, ResolvesServerCert};
        use rustls::sign::CertifiedKey;
        #[derive(Debug)]
        struct Shows(Arc<CertifiedKey>);
        impl ResolvesServerCert for Shows {
            fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
                Some(self.0.clone())
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = rustls_pemfile::private_key(&mut key.as_bytes()).unwrap().unwrap();
        let signer = provider.key_provider.load_private_key(key).unwrap();
        let shown = Shows(Arc::new(CertifiedKey::new(vec![der(IP)], signer)));
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[version])
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(shown));
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[version])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier(&[IP])))
            .with_no_client_auth();
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let mut c = rustls::ClientConnection::new(Arc::new(client), name).unwrap();
        let mut s = rustls::ServerConnection::new(Arc::new(server)).unwrap();
        for _ in 0..10 {
            let mut buf = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut buf).unwrap();
            }
            if !buf.is_empty() {
                s.read_tls(&mut buf.as_slice()).unwrap();
                s.process_new_packets()?;
            }
            let mut buf = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut buf).unwrap();
            }
            if !buf.is_empty() {
                c.read_tls(&mut buf.as_slice()).unwrap();
                c.process_new_packets()?;
            }
            if !c.is_handshaking() && !s.is_handshaking() {
                return Ok(());
            }
        }
        panic!("the handshake did not end");
    }

    #[test]
    fn the_handshake_is_checked_with_the_pinned_certificates_key() {
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            handshake(IP_KEY, version).unwrap();
            let e = handshake(OTHER_KEY, version).unwrap_err();
            assert!(matches!(e, rustls::Error::InvalidCertificate(CertificateError::BadSignature)), "{e}");
        }
    }
}
