//! The agent configuration `outpost-server device add` writes is read back by
//! the agent's own checks (`Config::parse`) into the values the server meant.

use outpost_agent::rt::config::{Config, DEFAULT_FRAGMENT_TRIES, Protocol};
use outpost_server::agent_config::{for_device, render};

const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIBgDCCASagAwIBAgIU\n-----END CERTIFICATE-----\n";

#[test]
fn the_file_device_add_writes_parses_back_to_the_same_config() {
    let key = "bf417a951913764c14f70b5fb38b5ca77360895dadc193ab011a92224ace1e96";
    let secret = "6205d3df52dff5d5350b04ffbd61e68bf1cae22bc209be682d72dd755c18d620";
    let written = for_device("https://[::1]:8443", "pc-1.lab_2", secret, key, PEM, "/var/lib/outpost \"agent\"");
    let text = render(&written).unwrap();
    let read = Config::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(read, written);
    assert_eq!(read.server.protocol, Protocol::Outpost);
    assert_eq!(read.server.ca_cert, PEM);
    assert_eq!(read.agent.state_dir, "/var/lib/outpost \"agent\"");
    assert_eq!(read.agent.execution_timeout, 7200);
    assert_eq!(read.agent.fragment_tries.unwrap_or(DEFAULT_FRAGMENT_TRIES), 5);
    assert_eq!(read.signing_key().unwrap()[0], 0xbf);
}

#[test]
fn settings_away_from_their_defaults_are_written_and_read_back() {
    let key = "00".repeat(32);
    let mut written = for_device("https://h:1", "d", "s", &key, PEM, "/s");
    written.agent.execution_timeout = 60;
    written.agent.fragment_tries = Some(3);
    written.agent.reboot_dry_run = Some("/tmp/reboots".into());
    written.download.max_bandwidth = 1000;
    written.download.full_speed_windows = vec!["18:00-07:00".into()];
    let text = render(&written).unwrap();
    assert!(text.contains("[download]"), "{text}");
    assert_eq!(Config::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}")), written);
}
