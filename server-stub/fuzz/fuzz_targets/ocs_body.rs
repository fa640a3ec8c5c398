//! The body of a POST /ocsinventory from an OCS agent, before anything about
//! it is known: zlib, gzip or plain XML, inflated within its bound, then read
//! as a request. Never a panic, never more than the bound in memory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outpost_agent::engine::ocs::Request;
use outpost_server::ocs::{decode, encode};

fuzz_target!(|data: &[u8]| {
    if let Some((xml, enc)) = decode(data) {
        assert!(xml.len() <= 8 * 1024 * 1024, "inflated past the bound");
        let _ = Request::parse(&xml);
        // What the server answers in kind decodes back to the same text.
        let again = decode(&encode(&xml, enc));
        assert_eq!(again.map(|(x, _)| x).as_deref(), Some(xml.as_str()), "{enc:?} round trip");
    }
});
