//! A request from anyone on the network: the head and body reader never
//! panics and keeps its bounds, and any `Range` header gets an answer that
//! lies inside the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outpost_server::http::{RangeAnswer, range, read_request};
use smol::io::BufReader;

fuzz_target!(|data: &[u8]| {
    smol::block_on(async {
        let mut r = BufReader::new(data);
        // Keep-alive: read requests until the stream ends or one is refused.
        for _ in 0..8 {
            let Ok(req) = read_request(&mut r).await else { break };
            assert!(req.body.len() <= data.len(), "a body is never larger than what came");
            assert!(!req.path.contains('?'), "the query is cut off");
            let len = data.len() as u64 * 7919 % 100_000;
            match range(req.header("range"), len) {
                RangeAnswer::Partial(first, last) => {
                    assert!(first <= last && last < len, "bytes={first}-{last} of {len}");
                }
                RangeAnswer::Full | RangeAnswer::Unsatisfiable => {}
            }
        }
    });
    if let Ok(s) = core::str::from_utf8(data) {
        for len in [0, 1, 10, u64::MAX] {
            if let RangeAnswer::Partial(first, last) = range(Some(s), len) {
                assert!(first <= last && last < len, "{s:?}: bytes={first}-{last} of {len}");
            }
        }
    }
});
