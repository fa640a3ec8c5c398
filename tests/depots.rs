//! Depots (`outpost-server depot add`): more locations of the fragments,
//! here two real nginx instances on 127.0.0.1, each in front of a copy of
//! `DIR/download` made by `depot sync`. One is killed mid-fragment; the
//! agent goes on from the other at the same byte. And a device is told only
//! of the depots whose networks hold its address.

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use outpost_tests::{Member, Server, TempDir, free_port, https_from, random_bytes, targz, text};

/// nginx in the foreground on 127.0.0.1:`port`, serving `root` at
/// `/outpost/`, its files under `dir`.
fn nginx(dir: &Path, port: u16, root: &Path) -> Child {
    fs::create_dir_all(dir.join("tmp")).unwrap();
    let p = dir.display();
    let conf = dir.join("nginx.conf");
    fs::write(
        &conf,
        format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {p}/nginx.pid;\nerror_log {p}/error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log {p}/access.log;\n  client_body_temp_path {p}/tmp;\n  proxy_temp_path {p}/tmp;\n\
             \x20 fastcgi_temp_path {p}/tmp;\n  uwsgi_temp_path {p}/tmp;\n  scgi_temp_path {p}/tmp;\n\
             \x20 server {{\n    listen 127.0.0.1:{port};\n    location /outpost/ {{ alias {}/; }}\n  }}\n}}\n",
            root.display()
        ),
    )
    .unwrap();
    outpost_tests::spawn_nginx(dir, &conf, port)
}

/// What a relay in front of one nginx counts, and when it kills it.
struct Meter {
    /// Response bytes it passed to the agent (heads included).
    served: AtomicU64,
    /// The nginx behind it.
    pid: u32,
}

/// A relay on 127.0.0.1 in front of nginx at `upstream`, counting what it
/// passes to the agent. The first relay (of those sharing `killed`) whose
/// count reaches `kill_at` SIGKILLs its nginx at that byte and drops the
/// connection: what nginx had written beyond it never arrives, as when a
/// depot dies mid-fragment. Returns its port.
fn relay(upstream: u16, meter: Arc<Meter>, kill_at: u64, killed: Arc<AtomicBool>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in l.incoming() {
            let Ok(mut client) = client else { continue };
            let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)) else { continue };
            let (mut c2, mut u2) = (client.try_clone().unwrap(), up.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c2, &mut u2);
                let _ = u2.shutdown(Shutdown::Write);
            });
            let (meter, killed) = (meter.clone(), killed.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 16 * 1024];
                loop {
                    let n = match up.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let before = meter.served.load(Ordering::SeqCst);
                    let armed = !killed.load(Ordering::SeqCst) && before < kill_at;
                    let n = if armed { n.min((kill_at - before) as usize) } else { n };
                    if client.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    let now = meter.served.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
                    if armed && now >= kill_at && !killed.swap(true, Ordering::SeqCst) {
                        // The nginx this test started, and no other process.
                        let _ = std::process::Command::new("kill").args(["-KILL", &meter.pid.to_string()]).status();
                        break;
                    }
                }
                let _ = client.shutdown(Shutdown::Both);
            });
        }
    });
    port
}

#[test]
fn a_depot_killed_mid_fragment_is_left_for_the_other_without_fetching_twice() {
    let t = TempDir::new("depots");
    // The central server's own fragment location is down: only the depots serve.
    let dead = free_port();
    let mut srv = Server::init(t.join("srv"), &["--fragment-loc", &format!("127.0.0.1:{dead}/outpost")]);
    let data = random_bytes(6_000_000, 11);
    let arc = t.join("pkg.tar.gz");
    fs::write(&arc, targz(&[Member::File("payload.bin", &data, 0o644)])).unwrap();
    let dest = t.join("installed");
    let id = srv.store_package(arc.to_str().unwrap(), dest.to_str().unwrap(), &["--frag-size", "1M"]);
    let archive_len: u64 = fs::read_dir(srv.dir.join(format!("download/{id}")))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&format!("{id}-")))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(archive_len > 5_000_000);
    // Fragments for TLS only never reach a plain-HTTP depot.
    let private = srv.package_add(&["--action", "execute", "--command", "true", "--proto", "https"]);

    let killed = Arc::new(AtomicBool::new(false));
    let mut depots = Vec::new();
    for name in ["a", "b"] {
        let root = t.join(&format!("depot-{name}"));
        let o = srv.cmd(&["depot", "sync", "--to", root.to_str().unwrap()]);
        assert!(o.status.success(), "{}", text(&o));
        assert!(root.join(id.to_string()).is_dir() && !root.join(private.to_string()).exists());
        let port = free_port();
        let child = nginx(&t.join(&format!("nginx-{name}")), port, &root);
        let meter = Arc::new(Meter { served: AtomicU64::new(0), pid: child.id() });
        // Killed 2.5 MiB in: mid-fragment, after each depot served one to be measured.
        let relay_port = relay(port, meter.clone(), 5 << 19, killed.clone());
        let loc = format!("127.0.0.1:{relay_port}/outpost");
        let o = srv.cmd(&["depot", "add", "--loc", &loc, "--networks", "127.0.0.0/8"]);
        assert!(o.status.success(), "{}", text(&o));
        depots.push((child, meter));
    }
    let cfg = srv.device_add("d1", t.path());
    srv.assign(id, "d1", &[]);
    srv.start();

    let o = outpost_tests::agent(&cfg, &["run", "--once"], &[]);
    let log = text(&o);
    for (c, _) in &mut depots {
        let _ = c.kill();
        let _ = c.wait();
    }
    assert!(o.status.success(), "{log}");
    assert!(killed.load(Ordering::SeqCst), "a depot was killed mid-download:\n{log}");
    assert!(log.contains("; going on from 127.0.0.1:"), "{log}");
    assert_eq!(srv.status_of(id, "d1"), "SUCCESS");
    assert_eq!(fs::read(dest.join("payload.bin")).unwrap(), data);
    let served: Vec<u64> = depots.iter().map(|(_, m)| m.served.load(Ordering::SeqCst)).collect();
    assert!(served.iter().all(|s| *s > 1 << 20), "both depots served: {served:?}");
    let twice = served.iter().sum::<u64>().saturating_sub(archive_len);
    assert!(twice <= 256 * 1024, "{twice} bytes fetched twice (served {served:?} for {archive_len}):\n{log}");
    let serve_log = fs::read_to_string(srv.dir.join("serve.log")).unwrap();
    let reported = serve_log.matches(&format!("package {id} -> SUCCESS")).count();
    assert_eq!(reported, 1, "SUCCESS reported once:\n{serve_log}");
}

#[test]
fn a_device_is_told_only_of_the_depots_of_its_networks() {
    let t = TempDir::new("depot-networks");
    let mut srv = Server::init(t.join("srv"), &[]);
    for (loc, nets) in [
        ("branch5.example/outpost", Some("127.0.0.5/32,10.5.0.0/16")),
        ("branch10.example/outpost", Some("10.10.0.0/16")),
        ("cdn.example/outpost", None),
    ] {
        let mut args = vec!["depot", "add", "--loc", loc];
        args.extend(nets.iter().flat_map(|n| ["--networks", *n]));
        let o = srv.cmd(&args);
        assert!(o.status.success(), "{}", text(&o));
    }
    let cfg = fs::read_to_string(srv.device_add("d1", t.path())).unwrap();
    let secret = cfg.lines().find_map(|l| l.strip_prefix("secret = ")).unwrap().trim_matches('"').to_string();
    srv.start();
    let ca = srv.dir.join("tls/ca-cert.pem");
    let auth = format!("Authorization: Outpost d1 {secret}");
    let poll = |src: &str| {
        let (status, body) =
            https_from(src, srv.https_port, &ca, "POST", "/api/v1/poll", &[&auth], b"outpost 1\n").unwrap();
        assert_eq!(status, 200, "{body}");
        body.lines().filter_map(|l| l.strip_prefix("depot loc=")).map(str::to_string).collect::<Vec<_>>()
    };
    assert_eq!(poll("127.0.0.5"), ["branch5.example/outpost", "cdn.example/outpost"]);
    assert_eq!(poll("127.0.0.9"), ["cdn.example/outpost"]);
    let o = srv.cmd(&["depot", "remove", "--loc", "cdn.example/outpost"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(poll("127.0.0.9").is_empty(), "a removed depot is no longer sent");
}
