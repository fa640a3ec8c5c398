//! The server's `server.toml` (what `ServerConfig::load` reads: TOML, then
//! `validate`): parsing and checking never panic, and a config that passes
//! is written out (`to_toml`, as `init` does) into text that parses and
//! passes again, unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outpost_server::config::ServerConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(cfg) = toml::from_str::<ServerConfig>(text) else { return };
    if cfg.validate().is_err() {
        return;
    }
    let out = cfg.to_toml();
    let again: ServerConfig =
        toml::from_str(&out).unwrap_or_else(|e| panic!("written out, it does not parse: {e}\n{out}"));
    assert!(again.validate().is_ok(), "written out, it fails its checks:\n{out}");
    assert_eq!(again.to_toml(), out, "written and read again");
});
