//! The trust bundle (`engine::trust`). As it arrives, it is refused or
//! accepted without a panic. Signed with the trusted test key, the same
//! bytes reach the body decoder behind the signature check (what a buggy or
//! compromised server would send): a bundle it accepts is within its bounds,
//! encodes back to itself, and what it makes trusted is computed without a
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outpost_agent::engine::limits::{MAX_TRUST_CAS, MAX_TRUST_KEYS};
use outpost_agent::engine::trust::{Bundle, Trust};
use ring::signature::{Ed25519KeyPair, KeyPair};

fuzz_target!(|data: &[u8]| {
    let key = Ed25519KeyPair::from_seed_unchecked(&[7; 32]).expect("a fixed seed makes a key");
    let public: [u8; 32] = key.public_key().as_ref().try_into().expect("ed25519 keys are 32 bytes");
    let trust = Trust::new(public, None);
    let _ = Bundle::peek_version(data);
    let _ = Bundle::decode(data);
    let _ = trust.verify(data, 1_800_000_000);

    let mut signed = b"OPT1".to_vec();
    signed.extend_from_slice(&(data.len() as u32).to_le_bytes());
    signed.extend_from_slice(data);
    let sig: [u8; 64] = key.sign(&signed).as_ref().try_into().expect("64-byte signature");
    signed.push(1);
    signed.extend_from_slice(&public);
    signed.extend_from_slice(&sig);
    if let Ok(b) = trust.verify(&signed, 1_800_000_000) {
        assert!(b.version > 0 && !b.keys.is_empty() && b.keys.len() <= MAX_TRUST_KEYS && b.cas.len() <= MAX_TRUST_CAS);
        assert_eq!(Bundle::peek_version(&signed), Some(b.version));
        let body = b.signed_bytes();
        let again = b.encode(&[(public, key.sign(&body).as_ref().try_into().expect("64-byte signature"))]);
        assert_eq!(trust.verify(&again, 1_800_000_000).as_ref(), Ok(&b), "encoded and decoded again");
        let mut next = trust.clone();
        next.adopt(b);
        let _ = (next.keys(0).len(), next.cas(0).count(), next.keys(u64::MAX).len(), next.cas(u64::MAX).count());
    }
});
