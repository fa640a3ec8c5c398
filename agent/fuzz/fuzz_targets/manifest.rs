//! The signed manifest. As it arrives, it is refused or accepted without a
//! panic. Signed with the test key, the same bytes reach the body decoder
//! behind the signature check (what a buggy or compromised server would
//! send): a manifest it accepts is consistent and encodes back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outpost_agent::engine::manifest::Manifest;
use ring::signature::{Ed25519KeyPair, KeyPair};

fuzz_target!(|data: &[u8]| {
    let key = Ed25519KeyPair::from_seed_unchecked(&[7; 32]).expect("a fixed seed makes a key");
    let public: [u8; 32] = key.public_key().as_ref().try_into().expect("ed25519 keys are 32 bytes");
    let _ = Manifest::decode_unverified_size(data);
    let _ = Manifest::decode_verified(data, &public);

    let mut signed = b"OPM1".to_vec();
    signed.extend_from_slice(&(data.len() as u32).to_le_bytes());
    signed.extend_from_slice(data);
    let sig = key.sign(&signed);
    signed.extend_from_slice(sig.as_ref());
    if let Ok(m) = Manifest::decode_verified(&signed, &public) {
        assert_eq!(m.fragments.iter().map(|f| f.size).sum::<u64>(), m.archive_size);
        for i in 0..=m.fragments.len() + 1 {
            assert!(m.fragment_offset(i) <= m.archive_size);
        }
        let again = m.encode_signed(|b| key.sign(b).as_ref().try_into().expect("64-byte signature"));
        assert_eq!(Manifest::decode_verified(&again, &public).as_ref(), Ok(&m), "encoded and decoded again");
    }
});
