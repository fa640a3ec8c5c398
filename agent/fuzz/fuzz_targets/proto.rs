//! The control protocol (`outpost 1`), both directions: decoders never panic,
//! and a poll reply (reports, a poll's progress lines) that decodes survives
//! being encoded and decoded again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outpost_agent::engine::proto::{self, PollReply};

fuzz_target!(|data: &[u8]| {
    if let Ok(reply) = PollReply::decode(data) {
        let again = PollReply::decode(reply.encode().as_bytes());
        assert_eq!(again.as_ref(), Ok(&reply), "encoded and decoded again");
    }
    if let Ok(reports) = proto::decode_reports(data) {
        assert_eq!(proto::decode_reports(proto::encode_reports(&reports).as_bytes()), Ok(reports));
    }
    let _ = proto::decode_acks(data);
    if let Ok(progress) = proto::decode_progress(data) {
        assert_eq!(proto::decode_progress(proto::encode_poll("0", &progress).as_bytes()), Ok(progress));
    }
    if let Ok(s) = core::str::from_utf8(data) {
        let _ = proto::parse_auth_header(s);
    }
});
