//! The few fields of an X.509 certificate Outpost reads itself (RFC 5280
//! 4.1): validity, common name, subjectAltName. A small DER walker, no
//! allocation: the agent pins certificates with it (`rt/http/pin.rs`), the
//! server reads its CAs' expiry and its certificate's names with it when it
//! rolls its CA over. Signatures and chains are webpki's job, not this one's.

use super::civil;

/// What the pin checks read from a certificate's TBSCertificate (RFC 5280
/// 4.1): the validity period in Unix seconds, the subject's last common
/// name, whether a subjectAltName extension is present.
#[derive(Debug, PartialEq)]
pub struct Tbs<'a> {
    /// Start of the validity period, Unix seconds (0 before 1970).
    pub not_before: u64,
    /// End of the validity period, Unix seconds.
    pub not_after: u64,
    /// The subject's last common name, as its string's bytes.
    pub common_name: Option<&'a [u8]>,
    /// Whether a subjectAltName extension is present.
    pub has_san: bool,
    /// The subjectAltName's GeneralNames (contents of its SEQUENCE; empty
    /// without one): see [`Tbs::alt_names`].
    alt_names: &'a [u8],
}

/// One subjectAltName entry of the kinds a server certificate uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AltName<'a> {
    /// A dNSName.
    Dns(&'a str),
    /// An iPAddress: 4 or 16 bytes.
    Ip(&'a [u8]),
}

/// DER tags met on the way.
const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const VERSION: u8 = 0xa0;
const EXTENSIONS: u8 = 0xa3;
const BOOLEAN: u8 = 0x01;
const OCTET_STRING: u8 = 0x04;
/// GeneralName's `[2] dNSName` and `[7] iPAddress` (implicit, primitive).
const DNS_NAME: u8 = 0x82;
const IP_ADDRESS: u8 = 0x87;
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
    /// Read a DER certificate; `None` when it is not one this reader follows.
    pub fn parse(der: &'a [u8]) -> Option<Self> {
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
        let (mut has_san, mut alt_names) = (false, &[][..]);
        while let Some((tag, contents, rest)) = tlv(b) {
            b = rest;
            if tag != EXTENSIONS {
                continue;
            }
            let (mut exts, _) = expect(contents, SEQUENCE)?;
            while !exts.is_empty() {
                let (ext, rest) = expect(exts, SEQUENCE)?;
                exts = rest;
                let (oid, mut value) = expect(ext, OID)?;
                if oid == SAN {
                    has_san = true;
                    if let Some((_critical, rest)) = expect(value, BOOLEAN) {
                        value = rest;
                    }
                    let (octets, _) = expect(value, OCTET_STRING)?;
                    alt_names = expect(octets, SEQUENCE)?.0;
                }
            }
        }
        Some(Self { not_before, not_after, common_name, has_san, alt_names })
    }

    /// The subjectAltName's DNS names and IP addresses, in order; other
    /// kinds of name are skipped, and so is an entry this reader cannot
    /// follow (the rest with it).
    pub fn alt_names(&self) -> impl Iterator<Item = AltName<'a>> + 'a {
        let mut b = self.alt_names;
        core::iter::from_fn(move || {
            loop {
                let (tag, contents, rest) = tlv(b)?;
                b = rest;
                match tag {
                    DNS_NAME => return core::str::from_utf8(contents).ok().map(AltName::Dns),
                    IP_ADDRESS if matches!(contents.len(), 4 | 16) => return Some(AltName::Ip(contents)),
                    _ => {}
                }
            }
        })
    }
}
