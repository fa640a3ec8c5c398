//! The certificate reader of the agent's pin check (`rt::http::pin`): a
//! server's certificate is read by it before anything about it is trusted.
//! Arbitrary DER never panics, and what it reads lies within its input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outpost_agent::rt::http::read_certificate;

fuzz_target!(|data: &[u8]| {
    if let Some((_not_before, _not_after, _has_san, common_name)) = read_certificate(data) {
        if let Some(cn) = common_name {
            let (start, end) = (data.as_ptr() as usize, data.as_ptr() as usize + data.len());
            let at = cn.as_ptr() as usize;
            assert!(at >= start && at + cn.len() <= end, "the common name is a slice of the input");
        }
    }
});
