//! The offline bundle's head (`engine::bundle`), as read from a file on a
//! stick: refused or decoded without a panic; a head it decodes is within
//! its bounds, lies inside the bytes read, and encodes back to exactly
//! those bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outpost_agent::engine::bundle::{MAX_PAYLOAD, decode_head, encode_head};
use outpost_agent::engine::limits::{MAX_INFO_LEN, MAX_MANIFEST_LEN};

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = decode_head(data) {
        assert!(h.len <= data.len());
        assert!(h.info.len() <= MAX_INFO_LEN && h.manifest.len() <= MAX_MANIFEST_LEN && h.payload_len <= MAX_PAYLOAD);
        let again = encode_head(h.package, h.info, h.manifest, h.payload_len).expect("a decoded head encodes");
        assert_eq!(again, &data[..h.len], "encoded back to its bytes");
    }
});
