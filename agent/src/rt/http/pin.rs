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

use crate::engine::civil;

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

/// What the pin checks read from a certificate's TBSCertificate (RFC 5280
/// 4.1): the validity period in Unix seconds, the subject's last common
/// name, whether a subjectAltName extension is present.
#[derive(Debug, PartialEq)]
struct Tbs<'a> {
    not_before: u64,
    not_after: u64,
    common_name: Option<&'a [u8]>,
    has_san: bool,
}

/// What the pin checks read of a certificate in DER: its validity period
/// (Unix seconds), whether it has a subjectAltName, and its (last) common
/// name; `None` when it cannot be read. Public for the `pin_cert` fuzz
/// target (`agent/fuzz`): a server's certificate is read by this code
/// before anything about it is trusted.
#[doc(hidden)]
pub fn read_certificate(der: &[u8]) -> Option<(u64, u64, bool, Option<&[u8]>)> {
    Tbs::parse(der).map(|t| (t.not_before, t.not_after, t.has_san, t.common_name))
}

/// DER tags met on the way.
const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const VERSION: u8 = 0xa0;
const EXTENSIONS: u8 = 0xa3;
/// id-at-commonName, id-ce-subjectAltName (contents of the OIDs).
const CN: &[u8] = &[0x55, 0x04, 0x03];
const SAN: &[u8] = &[0x55, 0x1d, 0x11];

/// Split one DER TLV off `b`: `(tag, contents, rest)`. Low tag numbers and
/// definite lengths of at most four bytes only (all a certificate uses).
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, b) = b.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, mut b) = b.split_first()?;
    let len = match first {
        0..=0x7f => usize::from(first),
        0x81..=0x84 => {
            let n = usize::from(first & 0x7f);
            let (bytes, rest) = b.split_at_checked(n)?;
            b = rest;
            bytes.iter().fold(0usize, |a, &x| (a << 8) | usize::from(x))
        }
        _ => return None,
    };
    let (contents, rest) = b.split_at_checked(len)?;
    Some((tag, contents, rest))
}

/// Split a TLV with tag `want` off `b`: `(contents, rest)`.
fn expect(b: &[u8], want: u8) -> Option<(&[u8], &[u8])> {
    let (tag, contents, rest) = tlv(b)?;
    (tag == want).then_some((contents, rest))
}

/// A UTCTime (`YYMMDDHHMMSSZ`, years 1950 to 2049) or GeneralizedTime
/// (`YYYYMMDDHHMMSSZ`) as Unix seconds (0 for a time before 1970).
fn time(b: &[u8]) -> Option<(u64, &[u8])> {
    let (tag, t, rest) = tlv(b)?;
    let (digits, century) = match (tag, t.len()) {
        (UTC_TIME, 13) => (&t[..12], None),
        (GENERALIZED_TIME, 15) => (&t[..14], Some(())),
        _ => return None,
    };
    if t.last() != Some(&b'Z') || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = |i: usize| u32::from(digits[i] - b'0') * 10 + u32::from(digits[i + 1] - b'0');
    let (year, at) = match century {
        None if n(0) >= 50 => (1900 + n(0), 2),
        None => (2000 + n(0), 2),
        Some(()) => (n(0) * 100 + n(2), 4),
    };
    if year < 1970 {
        return Some((0, rest));
    }
    let secs = civil::unix([year, n(at), n(at + 2), n(at + 4), n(at + 6), n(at + 8)])?;
    Some((secs, rest))
}

impl<'a> Tbs<'a> {
    fn parse(der: &'a [u8]) -> Option<Self> {
        let (cert, _) = expect(der, SEQUENCE)?;
        let (tbs, _) = expect(cert, SEQUENCE)?;
        let mut b = tbs;
        if let Some((_, rest)) = expect(b, VERSION) {
            b = rest;
        }
        let (_serial, b) = expect(b, 0x02)?;
        let (_signature, b) = expect(b, SEQUENCE)?;
        let (_issuer, b) = expect(b, SEQUENCE)?;
        let (validity, b) = expect(b, SEQUENCE)?;
        let (not_before, v) = time(validity)?;
        let (not_after, _) = time(v)?;
        let (subject, b) = expect(b, SEQUENCE)?;
        let (_spki, mut b) = expect(b, SEQUENCE)?;

        let mut common_name = None;
        let mut rdns = subject;
        while !rdns.is_empty() {
            let (set, rest) = expect(rdns, SET)?;
            rdns = rest;
            let mut atvs = set;
            while !atvs.is_empty() {
                let (atv, rest) = expect(atvs, SEQUENCE)?;
                atvs = rest;
                let (oid, value) = expect(atv, OID)?;
                if oid == CN {
                    common_name = Some(tlv(value)?.1);
                }
            }
        }

        // Unique identifiers ([1], [2]) may come before the extensions ([3]).
        let mut has_san = false;
        while let Some((tag, contents, rest)) = tlv(b) {
            b = rest;
            if tag != EXTENSIONS {
                continue;
            }
            let (mut exts, _) = expect(contents, SEQUENCE)?;
            while !exts.is_empty() {
                let (ext, rest) = expect(exts, SEQUENCE)?;
                exts = rest;
                has_san |= expect(ext, OID)?.0 == SAN;
            }
        }
        Some(Self { not_before, not_after, common_name, has_san })
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
        let cn = der(CN_ONLY);
        let t = Tbs::parse(&cn).unwrap();
        assert_eq!((t.not_before, t.not_after), (1_796_219_826, 1_859_291_826));
        assert_eq!((t.common_name, t.has_san), (Some(&b"ocs.example.org"[..]), false));
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
