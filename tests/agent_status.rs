//! `outpost-agent status` on a download killed half-way: bytes held of the
//! total, percent, and (from the previous `status`'s sample) rate and time
//! left, as a table and as `--json`.

use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use outpost_tests::{Member, Server, TempDir, random_bytes, targz, text, tune_agent};

fn status_json(cfg: &std::path::Path) -> serde_json::Value {
    let o = outpost_tests::agent(cfg, &["status", "--json"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)))
}

#[test]
#[allow(clippy::disallowed_methods)] // real processes: a bounded wait for progress; the sample's wall time
fn status_shows_progress_of_a_half_done_download() {
    let t = TempDir::new("agent-status");
    let mut srv = Server::init(t.join("srv"), &[]);
    let arc = t.join("pkg.tar.gz");
    fs::write(&arc, targz(&[Member::File("payload.bin", &random_bytes(2_000_000, 3), 0o644)])).unwrap();
    let dest = t.join("installed");
    let id = srv.store_package(arc.to_str().unwrap(), dest.to_str().unwrap(), &["--frag-size", "4M"]);
    let cfg = srv.device_add("d1", t.path());
    srv.assign(id, "d1", &[]);
    srv.start();
    tune_agent(&cfg, "checkpoint_bytes = 65536");
    fs::write(&cfg, fs::read_to_string(&cfg).unwrap() + "\n[download]\nmax_bandwidth = 200000\n").unwrap();
    let mut child = Command::new(outpost_tests::bin("outpost-agent"))
        .arg("--config")
        .arg(&cfg)
        .args(["run", "--once"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let archive = t.join(&format!("d1-state/packages/{id}/archive"));
    while fs::metadata(&archive).map_or(0, |m| m.len()) < 300 * 1024 {
        assert!(child.try_wait().unwrap().is_none(), "the agent ended before it was killed");
        assert!(start.elapsed() < Duration::from_secs(30), "no progress");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    // First status: no previous sample, so no rate.
    let v = status_json(&cfg);
    assert!(v["download_rate"].as_str().unwrap().starts_with("download rate: "), "{v}");
    let p = &v["packages"][0];
    let (held, total) = (p["held"].as_u64().unwrap(), p["total"].as_u64().unwrap());
    assert_eq!((p["id"].as_u64(), p["state"].as_str()), (Some(id), Some("downloading")), "{v}");
    assert!(held >= 65_536 && held < total, "{v}");
    let pct = p["percent"].as_f64().unwrap();
    assert!((pct - (held * 100) as f64 / total as f64).abs() < 0.1, "{v}");
    assert!(p["rate"].is_null() && p["seconds_left"].is_null() && p["status"].is_null(), "{v}");

    // A previous sample 2 s ago with 100000 bytes fewer (written as a
    // status then would have): the rate is measured against it.
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let sample = t.join("d1-state/status-sample");
    fs::write(&sample, format!("{id} {} {}\n", held - 100_000, now_ms - 2_000)).unwrap();
    let v = status_json(&cfg);
    let p = &v["packages"][0];
    let rate = p["rate"].as_u64().unwrap_or_else(|| panic!("no rate: {v}"));
    assert!(rate > 40_000 && rate <= 50_000, "100000 bytes in a little over 2 s: {v}");
    assert_eq!(p["seconds_left"].as_u64(), Some((total - held).div_ceil(rate)), "{v}");
    let kept = fs::read_to_string(&sample).unwrap();
    assert!(kept.starts_with(&format!("{id} {held} ")), "this status's sample replaces it: {kept}");

    let o = outpost_tests::agent(&cfg, &["status"], &[]);
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out.lines().find(|l| l.starts_with(&id.to_string())).unwrap_or_else(|| panic!("{out}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols[2], format!("{held}/{total}"), "{out}");
    assert_eq!(cols[3], format!("{:.1}", pct), "{out}");
    assert_eq!(cols[4..6], ["-", "-"], "a sample of no time ago: no rate\n{out}");
}
