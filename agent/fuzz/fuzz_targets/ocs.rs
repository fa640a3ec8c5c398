//! OCS XML: a PROLOG reply from an OCS server (agent side) and a request from
//! an OCS agent (server side). Parsing never panics; what parses survives
//! being written and parsed again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outpost_agent::engine::ocs::{PrologReply, Request};

fuzz_target!(|data: &[u8]| {
    let Ok(xml) = core::str::from_utf8(data) else { return };
    if let Ok(reply) = PrologReply::parse(xml) {
        let again = PrologReply::parse(&reply.to_xml());
        assert_eq!(again.as_ref(), Ok(&reply), "written and parsed again");
    }
    if let Ok(request) = Request::parse(xml) {
        let again = Request::parse(&request.to_xml());
        assert_eq!(again.as_ref(), Ok(&request), "written and parsed again");
    }
});
