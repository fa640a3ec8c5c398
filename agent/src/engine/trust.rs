//! The trust bundle: which CAs and package-signing keys the server stands
//! behind now, so that agents follow a CA or key rollover without a manual
//! step (`docs/rollover.md`).
//!
//! ```text
//!  "OPT1" | body length (u32 LE) | body (postcard Bundle) | n (u8) | n × (public key 32 B | Ed25519 signature 64 B)
//!  └──────────────── signed bytes ──────────────────────┘
//! ```
//!
//! The server signs the body with every signing key it still stands behind:
//! after `keys rotate`, the old key and the new one. An agent adopts a
//! bundle ([`Trust::verify`]) only when
//! - it came over the control channel, verified with a CA the agent already
//!   trusts (the runtime fetches it nowhere else: opsi's rule);
//! - one of its signatures is by a key the agent trusts now: the old key
//!   vouches for the new one, never the new key for itself;
//! - its version is above the one held: an older bundle (a replay) is
//!   refused, so a retired key or CA cannot come back.
//!
//! What the agent trusts then ([`Trust::keys`], [`Trust::cas`]): exactly
//! the keys of the bundle held, each until its end (the configured key only
//! while no bundle is held, so a key retired and later dropped from the
//! list never comes back); the configured
//! CA, and every CA of the bundle until its end (the certificate's own).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use ring::signature::{ED25519, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

use super::limits::{MAX_TRUST_CAS, MAX_TRUST_KEYS, MAX_TRUST_LEN};
use super::manifest::SIGNATURE_LEN;

/// Magic bytes that open every bundle.
pub const MAGIC: &[u8; 4] = b"OPT1";

/// A CA certificate the server stands behind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedCa {
    /// The certificate, PEM (what `server.ca_cert` holds).
    pub pem: String,
    /// Seconds since 1970 UTC from which it is no longer trusted (its notAfter).
    pub until: u64,
}

/// A package-signing public key the server stands behind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedKey {
    /// The Ed25519 public key.
    pub public: [u8; 32],
    /// Seconds since 1970 UTC from which it is no longer trusted; `None`:
    /// until a later bundle says otherwise.
    pub until: Option<u64>,
}

/// The signed body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bundle {
    /// Increases with every bundle the server publishes; never below 1.
    pub version: u64,
    /// When it was made, seconds since 1970 UTC.
    pub issued: u64,
    /// The CAs (at most [`MAX_TRUST_CAS`]).
    pub cas: Vec<TrustedCa>,
    /// The keys (1 to [`MAX_TRUST_KEYS`]).
    pub keys: Vec<TrustedKey>,
}

/// One signature: the key that made it and the signature.
pub type Signature = ([u8; 32], [u8; SIGNATURE_LEN]);

/// Why a bundle was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustError {
    /// Larger than [`MAX_TRUST_LEN`], or more CAs, keys or signatures than allowed.
    TooLarge,
    /// Not a bundle (magic, lengths or encoding wrong, no key, version 0).
    Malformed,
    /// No signature by a key the agent trusts now verifies.
    Untrusted,
    /// Not newer than the bundle held (`held`): a replay or a rollback.
    NotNewer {
        /// The version offered.
        offered: u64,
        /// The version held.
        held: u64,
    },
}

impl fmt::Display for TrustError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge => f.write_str("trust bundle too large"),
            Self::Malformed => f.write_str("malformed trust bundle"),
            Self::Untrusted => f.write_str("trust bundle not signed by a key this agent trusts"),
            Self::NotNewer { offered, held } => {
                write!(f, "trust bundle version {offered} is not newer than the one held ({held})")
            }
        }
    }
}

impl core::error::Error for TrustError {}

impl Bundle {
    /// The bytes to sign: magic, length, postcard body.
    pub fn signed_bytes(&self) -> Vec<u8> {
        // Serialising plain data into a Vec cannot fail.
        let body = postcard::to_allocvec(self).unwrap_or_default();
        let mut out = Vec::with_capacity(8 + body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// The bundle with `sigs` (each made over [`Bundle::signed_bytes`]).
    pub fn encode(&self, sigs: &[Signature]) -> Vec<u8> {
        let mut out = self.signed_bytes();
        out.push(sigs.len().min(usize::from(u8::MAX)) as u8);
        for (public, sig) in sigs.iter().take(usize::from(u8::MAX)) {
            out.extend_from_slice(public);
            out.extend_from_slice(sig);
        }
        out
    }

    /// Decode a bundle, signatures unchecked: `(bundle, signed bytes,
    /// signatures)`. For the agent's own copy in its state directory and the
    /// server's own file; what comes from the network goes through
    /// [`Trust::verify`].
    pub fn decode(bytes: &[u8]) -> Result<(Self, &[u8], Vec<Signature>), TrustError> {
        if bytes.len() > MAX_TRUST_LEN {
            return Err(TrustError::TooLarge);
        }
        if bytes.len() < 9 || &bytes[..4] != MAGIC {
            return Err(TrustError::Malformed);
        }
        let body_len = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
        let (signed, rest) = bytes.split_at_checked(8 + body_len).ok_or(TrustError::Malformed)?;
        let (&n, mut rest) = rest.split_first().ok_or(TrustError::Malformed)?;
        if usize::from(n) > MAX_TRUST_KEYS {
            return Err(TrustError::TooLarge);
        }
        let mut sigs = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            let (public, after) = rest.split_first_chunk::<32>().ok_or(TrustError::Malformed)?;
            let (sig, after) = after.split_first_chunk::<SIGNATURE_LEN>().ok_or(TrustError::Malformed)?;
            sigs.push((*public, *sig));
            rest = after;
        }
        if !rest.is_empty() {
            return Err(TrustError::Malformed);
        }
        let (b, _later): (Self, _) = postcard::take_from_bytes(&signed[8..]).map_err(|_| TrustError::Malformed)?;
        if b.cas.len() > MAX_TRUST_CAS || b.keys.len() > MAX_TRUST_KEYS {
            return Err(TrustError::TooLarge);
        }
        if b.version == 0 || b.keys.is_empty() {
            return Err(TrustError::Malformed);
        }
        Ok((b, signed, sigs))
    }

    /// The version of an encoded bundle, nothing else checked: what the
    /// server announces in its poll replies.
    pub fn peek_version(bytes: &[u8]) -> Option<u64> {
        let body = bytes.get(8..)?;
        (bytes.get(..4)? == MAGIC).then_some(())?;
        postcard::take_from_bytes::<u64>(body).ok().map(|(v, _)| v)
    }
}

/// What an agent trusts: its configured key, and the bundle it holds.
#[derive(Debug, Clone)]
pub struct Trust {
    config_key: [u8; 32],
    held: Option<Bundle>,
}

impl Trust {
    /// Trust from the configuration's key and the bundle held (`None`:
    /// none learned yet).
    pub fn new(config_key: [u8; 32], held: Option<Bundle>) -> Self {
        Self { config_key, held }
    }

    /// The version of the bundle held (0: none).
    pub fn version(&self) -> u64 {
        self.held.as_ref().map_or(0, |b| b.version)
    }

    /// The signing keys trusted at `now` (seconds since 1970 UTC).
    ///
    /// The configured key only while no bundle is held; once one is, the
    /// bundle says it all (every server bundle lists the key it signs
    /// packages with): a key it retired, or dropped from its list after
    /// retiring it, is never trusted again.
    pub fn keys(&self, now: u64) -> Vec<[u8; 32]> {
        let Some(held) = &self.held else { return alloc::vec![self.config_key] };
        let live = |k: &&TrustedKey| k.until.is_none_or(|u| now < u);
        held.keys.iter().filter(live).map(|k| k.public).collect()
    }

    /// The PEM of the learned CAs still trusted at `now` (the configured CA
    /// is trusted besides them).
    pub fn cas(&self, now: u64) -> impl Iterator<Item = &str> {
        let listed = self.held.as_ref().map_or(&[][..], |b| &b.cas[..]);
        listed.iter().filter(move |c| now < c.until).map(|c| c.pem.as_str())
    }

    /// Check a bundle from the server (see the module doc): signed by a key
    /// trusted at `now`, newer than the one held. The caller stores it, then
    /// [`Trust::adopt`]s it.
    pub fn verify(&self, bytes: &[u8], now: u64) -> Result<Bundle, TrustError> {
        let (bundle, signed, sigs) = Bundle::decode(bytes)?;
        let trusted = self.keys(now);
        let vouched = sigs.iter().any(|(public, sig)| {
            trusted.contains(public) && UnparsedPublicKey::new(&ED25519, public).verify(signed, sig).is_ok()
        });
        if !vouched {
            return Err(TrustError::Untrusted);
        }
        if bundle.version <= self.version() {
            return Err(TrustError::NotNewer { offered: bundle.version, held: self.version() });
        }
        Ok(bundle)
    }

    /// Hold `bundle` from now on (after [`Trust::verify`]).
    pub fn adopt(&mut self, bundle: Bundle) {
        self.held = Some(bundle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    fn key(seed: u8) -> Ed25519KeyPair {
        Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap()
    }

    fn public(seed: u8) -> [u8; 32] {
        key(seed).public_key().as_ref().try_into().unwrap()
    }

    fn bundle(version: u64, keys: &[(u8, Option<u64>)]) -> Bundle {
        Bundle {
            version,
            issued: 1_700_000_000,
            cas: alloc::vec![
                TrustedCa { pem: "old".to_string(), until: 2_000 },
                TrustedCa { pem: "new".to_string(), until: 3_000 },
            ],
            keys: keys.iter().map(|&(s, until)| TrustedKey { public: public(s), until }).collect(),
        }
    }

    fn signed_by(b: &Bundle, seeds: &[u8]) -> Vec<u8> {
        let body = b.signed_bytes();
        let sigs: Vec<Signature> =
            seeds.iter().map(|&s| (public(s), key(s).sign(&body).as_ref().try_into().unwrap())).collect();
        b.encode(&sigs)
    }

    #[test]
    fn the_old_key_vouches_for_the_new_one_and_both_are_trusted_in_the_overlap() {
        let mut t = Trust::new(public(1), None);
        assert_eq!((t.version(), t.keys(0)), (0, alloc::vec![public(1)]));
        // keys rotate: key 2 is new, key 1 retires at 1_000; signed by both.
        let b = bundle(1, &[(1, Some(1_000)), (2, None)]);
        let got = t.verify(&signed_by(&b, &[1, 2]), 500).unwrap();
        assert_eq!(got, b);
        assert_eq!(Bundle::peek_version(&signed_by(&b, &[1])), Some(1));
        t.adopt(got);
        assert_eq!(t.keys(500), alloc::vec![public(1), public(2)], "the overlap");
        assert_eq!(t.keys(1_000), alloc::vec![public(2)], "the old key retired");
        assert_eq!(t.cas(1_999).collect::<Vec<_>>(), ["old", "new"]);
        assert_eq!(t.cas(2_000).collect::<Vec<_>>(), ["new"], "a CA is dropped at its end");
        // The next bundle, signed by the new key only, after the overlap.
        let next = bundle(2, &[(2, None)]);
        assert!(t.verify(&signed_by(&next, &[2]), 1_500).is_ok());
    }

    #[test]
    fn a_key_that_only_vouches_for_itself_is_refused() {
        let t = Trust::new(public(1), None);
        let rogue = bundle(5, &[(9, None)]);
        assert_eq!(t.verify(&signed_by(&rogue, &[9]), 0), Err(TrustError::Untrusted));
        // A signature that claims a trusted key but was made by another.
        let body = rogue.signed_bytes();
        let forged = rogue.encode(&[(public(1), key(9).sign(&body).as_ref().try_into().unwrap())]);
        assert_eq!(t.verify(&forged, 0), Err(TrustError::Untrusted));
        assert_eq!(t.verify(&rogue.encode(&[]), 0), Err(TrustError::Untrusted), "no signature");
        // Once retired, the old key vouches for nothing more.
        let mut t = Trust::new(public(1), None);
        t.adopt(bundle(1, &[(1, Some(1_000)), (2, None)]));
        let late = bundle(2, &[(1, None), (3, None)]);
        assert_eq!(t.verify(&signed_by(&late, &[1]), 1_000), Err(TrustError::Untrusted));
    }

    #[test]
    fn an_older_or_equal_version_is_refused_even_when_signed() {
        let mut t = Trust::new(public(1), None);
        t.adopt(bundle(3, &[(1, None)]));
        for v in [1, 3] {
            let old = bundle(v, &[(1, None)]);
            assert_eq!(t.verify(&signed_by(&old, &[1]), 0), Err(TrustError::NotNewer { offered: v, held: 3 }));
        }
        assert!(t.verify(&signed_by(&bundle(4, &[(1, None)]), &[1]), 0).is_ok());
    }

    #[test]
    fn the_configured_key_is_trusted_until_a_bundle_says_otherwise_and_never_again_once_dropped() {
        let mut t = Trust::new(public(1), None);
        t.adopt(bundle(1, &[(1, None), (2, None)]));
        assert_eq!(t.keys(0), alloc::vec![public(1), public(2)]);
        t.adopt(bundle(2, &[(1, Some(10)), (2, None)]));
        assert_eq!(t.keys(10), alloc::vec![public(2)], "retired at its end");
        // A later bundle no longer lists the retired key (the server's
        // list is bounded): it does not come back as the configured key.
        t.adopt(bundle(3, &[(2, None), (3, None)]));
        assert_eq!(t.keys(10), alloc::vec![public(2), public(3)]);
        let rogue = signed_by(&bundle(4, &[(1, None)]), &[1]);
        assert!(t.verify(&rogue, 10).is_err(), "the dropped key vouches for nothing");
    }

    #[test]
    fn any_flipped_bit_cut_or_oversized_bundle_is_refused() {
        let t = Trust::new(public(1), None);
        let bytes = signed_by(&bundle(1, &[(1, None)]), &[1]);
        assert!(t.verify(&bytes, 0).is_ok());
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            assert!(t.verify(&b, 0).is_err(), "byte {i}");
            assert!(t.verify(&bytes[..i], 0).is_err(), "cut at {i}");
        }
        let mut big = bundle(1, &[(1, None)]);
        big.cas = (0..=MAX_TRUST_CAS).map(|_| TrustedCa { pem: "x".to_string(), until: 1 }).collect();
        assert_eq!(t.verify(&signed_by(&big, &[1]), 0), Err(TrustError::TooLarge));
        assert_eq!(t.verify(&alloc::vec![0; MAX_TRUST_LEN + 1], 0), Err(TrustError::TooLarge));
        let none = bundle(1, &[]);
        assert_eq!(t.verify(&signed_by(&none, &[1]), 0), Err(TrustError::Malformed), "no key at all");
    }
}
