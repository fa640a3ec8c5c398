//! The OCS info file, as it comes from an OCS server or `outpost-server`:
//! parsing never panics, and what parses survives being written and read again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outpost_agent::engine::info::Info;

fuzz_target!(|data: &[u8]| {
    if let Ok(info) = Info::parse(data) {
        let again = Info::parse(info.to_ocs_xml().as_bytes());
        assert_eq!(again.as_ref(), Ok(&info), "written and read again");
    }
});
