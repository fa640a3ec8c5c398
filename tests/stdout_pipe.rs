//! `outpost-server status` into a pipe whose reader has gone (`status
//! --json | head -1`, `| grep -q`): the command ends cleanly, exit 0, no
//! panic, as shell pipelines under `set -o pipefail` need.

use std::process::{Command, Stdio};

use outpost_tests::{Server, TempDir, bin, text};

#[test]
fn status_into_a_closed_pipe_exits_cleanly() {
    let t = TempDir::new("stdout-pipe");
    let srv = Server::init(t.join("srv"), &[]);
    srv.device_add("d1", t.path());
    for args in [&["status", "--json"][..], &["status"], &["status", "--blocked"]] {
        // The reader is closed before the command writes a byte: its first
        // write fails with EPIPE (Rust ignores SIGPIPE), every time.
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let o = Command::new(bin("outpost-server"))
            .args(args)
            .arg("--dir")
            .arg(&srv.dir)
            .stdin(Stdio::null())
            .stdout(writer)
            .output()
            .expect("run outpost-server");
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {}", text(&o));
        assert!(o.status.success(), "{args:?}: {}", text(&o));
    }
}
