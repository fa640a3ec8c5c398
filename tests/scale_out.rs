//! Several `serve` instances on one PostgreSQL database (issue 15), behind
//! Debian's nginx as a TCP load balancer (its stream module: TLS passes
//! through to the instances, which share DIR and so the certificate, and
//! agents keep presenting their client certificates). Devices deploy one
//! package through it; one instance is SIGKILLed in the middle; every
//! device still ends at SUCCESS and every report is recorded exactly once.
//!
//! Runs where the suite runs on PostgreSQL (`OUTPOST_TEST_POSTGRES`, set by
//! `scripts/test` after `scripts/postgres start`); on SQLite there is one
//! instance per database, and it says it is skipped.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use outpost_tests::{Server, TempDir, agent, free_port, random_bytes, run, targz, text, tune_agent, wait_for_port};

const DEVICES: usize = 16;

/// Debian's stream module for nginx, installed when missing.
fn stream_module() -> PathBuf {
    let module = PathBuf::from("/usr/lib/nginx/modules/ngx_stream_module.so");
    if !module.exists() {
        let o = run(Command::new("sh").args([
            "-c",
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libnginx-mod-stream",
        ]));
        assert!(o.status.success(), "could not install libnginx-mod-stream: {}", text(&o));
    }
    module
}

/// nginx balancing `public` → `backends` for the HTTPS and the HTTP port,
/// each connection to a backend at random (an agent opens two connections
/// a run, so round robin would send every poll to one instance), moving to
/// the next backend when one refuses connections (max_fails=0:
/// a probe that closes early marks no backend down; a dead one refuses at
/// once on loopback, and the next one is tried).
fn balancer(dir: &Path, public: (u16, u16), backends: &[(u16, u16)]) -> Child {
    fs::create_dir_all(dir).unwrap();
    let p = dir.display();
    let upstream = |name: &str, pick: fn(&(u16, u16)) -> u16| {
        let servers: String =
            backends.iter().map(|b| format!("    server 127.0.0.1:{} max_fails=0;\n", pick(b))).collect();
        format!("  upstream {name} {{\n    random;\n{servers}  }}\n")
    };
    let conf = dir.join("nginx.conf");
    fs::write(
        &conf,
        format!(
            "load_module {};\ndaemon off;\nmaster_process off;\nworker_processes 1;\npid {p}/nginx.pid;\n\
             error_log {p}/error.log info;\nevents {{ worker_connections 1024; }}\nstream {{\n{}{}\
             \x20 server {{ listen 127.0.0.1:{}; proxy_pass tls_up; proxy_connect_timeout 1s; }}\n\
             \x20 server {{ listen 127.0.0.1:{}; proxy_pass plain_up; proxy_connect_timeout 1s; }}\n}}\n",
            stream_module().display(),
            upstream("tls_up", |b| b.0),
            upstream("plain_up", |b| b.1),
            public.0,
            public.1
        ),
    )
    .unwrap();
    outpost_tests::spawn_nginx(dir, &conf, public.0)
}

/// Children killed when the test ends, passed or not.
struct Reap(Vec<Child>);

impl Drop for Reap {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `serve` on `dir`, listening on its own ports, in `reap` before it is
/// waited for.
fn instance(reap: &mut Reap, dir: &Path, (https, http): (u16, u16), log: &str) {
    reap.0.push(outpost_tests::spawn_serve(dir, Some((https, http)), log));
    wait_for_port(https);
    wait_for_port(http);
}

#[test]
#[allow(clippy::disallowed_methods)] // real processes: bounded real-time waits
fn two_instances_behind_nginx_one_killed_mid_deployment_every_report_recorded_once() {
    if !outpost_tests::backend_is_postgres() {
        eprintln!(
            "skipped: needs the PostgreSQL backend (OUTPOST_TEST_POSTGRES); SQLite has one instance per database"
        );
        return;
    }
    let t = TempDir::new("scale-out");
    let srv = Server::init(t.join("srv"), &[]);
    let dir = srv.dir.clone();
    // Agents get 1 MB/s each (the server says so), so a 2 MiB package takes
    // a while, and the devices start one after the other: the kill falls
    // in the middle of the deployment.
    let toml = fs::read_to_string(dir.join("server.toml")).unwrap();
    fs::write(dir.join("server.toml"), toml.replace("max_bandwidth = 0", "max_bandwidth = 1000000")).unwrap();
    let payload = random_bytes(2 << 20, 15);
    fs::write(t.join("pkg.tar.gz"), targz(&[outpost_tests::Member::File("payload.bin", &payload, 0o644)])).unwrap();
    // Each installation appends the payload's digest to one file: a
    // package installed twice would show there.
    let sums = t.join("sums");
    let ids: Vec<String> = (0..DEVICES).map(|i| format!("dev{i:02}")).collect();
    let cfgs: Vec<PathBuf> = ids.iter().map(|id| srv.device_add(id, t.path())).collect();
    let command = format!("sha256sum payload.bin >> {}", sums.display());
    let file = t.join("pkg.tar.gz");
    let pkg = srv.package_add(&["--file", file.to_str().unwrap(), "--action", "execute", "--command", &command]);
    let o = srv.cmd(&["assign", "--package", &pkg.to_string(), "--all"]);
    assert!(o.status.success(), "{}", text(&o));
    for cfg in &cfgs {
        tune_agent(cfg, "fragment_tries = 10");
    }

    let backends = [(free_port(), free_port()), (free_port(), free_port())];
    let mut one = Reap(Vec::new());
    instance(&mut one, &dir, backends[0], "serve-1.log");
    let mut others = Reap(Vec::new());
    instance(&mut others, &dir, backends[1], "serve-2.log");
    others.0.push(balancer(&t.join("nginx"), (srv.https_port, srv.http_port), &backends));

    // Each device runs its agent until its package is installed, the next
    // one starting 150 ms after the previous.
    let workers: Vec<_> = cfgs
        .iter()
        .enumerate()
        .map(|(i, cfg)| {
            let cfg = cfg.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(150 * i as u64));
                let deadline = Instant::now() + Duration::from_secs(120);
                let mut runs = 0;
                while Instant::now() < deadline {
                    runs += 1;
                    let o = agent(&cfg, &["run", "--once"], &[]);
                    if o.status.success() && text(&o).contains("every status reported") {
                        return runs;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                panic!("{} never finished", cfg.display());
            })
        })
        .collect();

    let success = |srv: &Server| srv.statuses().iter().filter(|(p, _, s)| *p == pkg && s == "SUCCESS").count();
    let deadline = Instant::now() + Duration::from_secs(60);
    let at_kill = loop {
        let n = success(&srv);
        if n >= DEVICES / 4 || Instant::now() > deadline {
            break n;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    one.0[0].kill().unwrap();
    one.0[0].wait().unwrap();
    assert!(at_kill < DEVICES, "the instance was killed after the deployment ended ({at_kill} of {DEVICES})");

    let runs: Vec<usize> = workers.into_iter().map(|w| w.join().expect("every device finishes")).collect();
    let statuses = srv.statuses();
    for id in &ids {
        assert!(statuses.iter().any(|(p, d, s)| *p == pkg && d == id && s == "SUCCESS"), "{id}: {statuses:?}");
    }
    let installed = fs::read_to_string(&sums).unwrap();
    let lines: Vec<&str> = installed.lines().collect();
    assert_eq!(lines.len(), DEVICES, "one installation per device: {installed}");
    assert!(lines.iter().all(|l| *l == lines[0]), "every device installed the same payload: {installed}");
    // Exactly once: the instances together applied one SUCCESS per device
    // (a report is logged where it changed something; a retry of it that
    // reached the other instance changed nothing), and the tables agree.
    let applied: usize = ["serve-1.log", "serve-2.log"]
        .iter()
        .map(|l| fs::read_to_string(dir.join(l)).unwrap().matches(&format!("package {pkg} -> SUCCESS")).count())
        .sum();
    assert_eq!(applied, DEVICES, "reports applied, over both instances");
    let reports = srv.sql_rows("SELECT device, COUNT(*) FROM reports GROUP BY device ORDER BY device");
    assert_eq!(reports.len(), DEVICES, "{reports:?}");
    assert!(reports.iter().all(|r| r[1] == "1"), "a device reported twice: {reports:?}");
    let history = srv.sql_rows(&format!(
        "SELECT device, COUNT(*) FROM status_history WHERE package = {pkg} AND status = 'SUCCESS' GROUP BY device"
    ));
    assert!(history.len() == DEVICES && history.iter().all(|r| r[1] == "1"), "{history:?}");
    // Both instances answered devices (nginx spread them), and the one that
    // lived took reports.
    let log1 = fs::read_to_string(dir.join("serve-1.log")).unwrap();
    let log2 = fs::read_to_string(dir.join("serve-2.log")).unwrap();
    let balanced = fs::read_to_string(t.join("nginx").join("error.log")).unwrap_or_default();
    let polled = "POST /api/v1/poll -> 200";
    assert!(log1.contains(polled), "instance 1 answered no poll: {log1}\n--- nginx:\n{balanced}");
    assert!(log2.contains(polled) && log2.contains("-> SUCCESS"), "instance 2 took no poll or report: {log2}");
    eprintln!("{at_kill} of {DEVICES} had reported when instance 1 was killed; agent runs per device: {runs:?}");
}

#[test]
#[allow(clippy::disallowed_methods)] // real processes: bounded real-time waits
fn a_second_serve_on_one_sqlite_directory_is_refused() {
    if outpost_tests::backend_is_postgres() {
        eprintln!("skipped: on PostgreSQL several instances share a directory (the test above)");
        return;
    }
    // Two servers on one SQLite file would each keep answers and lockout
    // counters in memory and miss the other's changes.
    let t = TempDir::new("scale-out-sqlite");
    let mut srv = Server::init(t.join("srv"), &[]);
    srv.start();
    let ports = (free_port(), free_port());
    let mut second = Reap(vec![outpost_tests::spawn_serve(&srv.dir, Some(ports), "serve-2.log")]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = second.0[0].try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = fs::read_to_string(srv.dir.join("serve-2.log")).unwrap_or_default();
    assert!(status.is_some_and(|s| !s.success()), "the second serve runs: {log}");
    assert!(log.contains("another outpost-server serve runs on"), "{log}");
    second.0.clear();
    // The lock goes with the first server.
    assert!(srv.stop());
    srv.start();
}
