//! The certificate reader of the agent's pin check (`engine::x509`, used by
//! `rt::http::pin`): a server's certificate is read by it before anything
//! about it is trusted. Arbitrary DER never panics, and what it reads (the
//! common name, the subjectAltNames) lies within its input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outpost_agent::engine::x509::Tbs;

fn within(data: &[u8], part: &[u8]) -> bool {
    let (start, end) = (data.as_ptr() as usize, data.as_ptr() as usize + data.len());
    let at = part.as_ptr() as usize;
    part.is_empty() || (at >= start && at + part.len() <= end)
}

fuzz_target!(|data: &[u8]| {
    if let Some(tbs) = Tbs::parse(data) {
        if let Some(cn) = tbs.common_name {
            assert!(within(data, cn), "the common name is a slice of the input");
        }
        for _ in tbs.alt_names().take(1024) {}
    }
});
