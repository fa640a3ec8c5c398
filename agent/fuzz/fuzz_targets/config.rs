//! The agent's TOML configuration (`Config::parse`, what `Config::load`
//! runs on a file's text): parsing never panics, and a config it accepts
//! holds what the agent relies on (a usable URL for its protocol, a device
//! id and key when it speaks Outpost, bandwidth windows that parse, tries
//! and timeouts above zero).
#![no_main]

use libfuzzer_sys::fuzz_target;
use outpost_agent::engine::proto::valid_device_id;
use outpost_agent::rt::config::{Config, Protocol};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(c) = Config::parse(text) else { return };
    assert!(c.pace().is_ok(), "the bandwidth settings were checked");
    assert!(c.agent.execution_timeout > 0 && c.agent.fragment_tries != Some(0));
    match c.server.protocol {
        Protocol::Outpost => {
            assert!(c.server.url.starts_with("https://"));
            assert!(valid_device_id(&c.server.device_id));
            assert!(!c.server.secret.is_empty());
            assert!(c.signing_key().is_ok());
        }
        Protocol::Ocs => assert!(c.server.url.starts_with("http://") || c.server.url.starts_with("https://")),
    }
});
