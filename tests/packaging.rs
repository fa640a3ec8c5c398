//! The systemd units of the Debian packages (`packaging/deb`) agree with
//! the code they start: the descriptor limit fits the default connection
//! cap, the server's writable path is the directory it serves, and the
//! agent's state directory is the one `device add` writes by default.
//! (`scripts/test-deb` installs and runs them.)

use outpost_server::limits::{FDS_PER_CONNECTION, Limits, RESERVED_FDS};

fn unit(name: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/deb").join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn key<'a>(unit: &'a str, key: &str) -> &'a str {
    let prefix = format!("{key}=");
    unit.lines().rev().find_map(|l| l.strip_prefix(&prefix)).unwrap_or_else(|| panic!("no {key}= in\n{unit}"))
}

#[test]
fn the_server_unit_holds_the_default_connection_cap_in_its_own_directory() {
    let u = unit("server/outpost-server.service");
    let nofile: u64 = key(&u, "LimitNOFILE").parse().unwrap();
    let max = Limits::default().max_connections;
    assert_eq!(Limits::default().connection_cap(nofile), max, "LimitNOFILE={nofile} lowers the cap");
    assert_eq!(nofile, max as u64 * FDS_PER_CONNECTION + RESERVED_FDS, "no more descriptors than the cap needs");
    let dir = key(&u, "ReadWritePaths");
    assert_eq!(key(&u, "ExecStart"), format!("/usr/bin/outpost-server serve --dir {dir}"));
    assert!(key(&u, "ConditionPathExists").starts_with(&format!("{dir}/")));
    for (k, v) in [("User", "outpost-server"), ("ProtectSystem", "strict"), ("NoNewPrivileges", "yes")] {
        assert_eq!(key(&u, k), v);
    }
    assert!(unit("server/postinst").contains(&format!("DIR={dir}\n")), "postinst makes the unit's directory");
}

#[test]
fn the_agent_unit_uses_the_default_state_dir_of_device_add() {
    let u = unit("agent/outpost-agent.service");
    let state = format!("/var/lib/{}", key(&u, "StateDirectory"));
    let o = std::process::Command::new(outpost_tests::bin("outpost-server")).args(["device", "add", "--help"]).output();
    let help = String::from_utf8_lossy(&o.unwrap().stdout).to_string();
    assert!(help.contains(&format!("[default: {state}]")), "device add --state-dir defaults to {state}:\n{help}");
    let example = unit("agent/agent.toml.example");
    assert!(example.contains(&format!("state_dir = \"{state}\"")), "{example}");
    assert!(key(&u, "ExecStart").contains("--config /etc/outpost/agent.toml run"));
    assert_eq!(key(&u, "ProtectHome"), "read-only");
}
