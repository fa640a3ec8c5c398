//! Item 2, resource exhaustion, the connection part: a flood of idle
//! connections, a download its client stopped reading, a kept-alive
//! connection left idle, and the descriptor limit.
#![allow(clippy::disallowed_methods)] // real processes: bounded waits and timings

use std::fs;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use outpost_agent::rt::http::{Client, Url};
use outpost_tests::{Server, TempDir, bin, run, text, wait_for_port};

use crate::http_hygiene::{connect, exchange, read_reply};

/// A plain request whose response closes the connection.
const GET: &[u8] = b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

/// Set `key = value` in the `[limits]` table of a server's configuration
/// (`init` writes the table with its defaults).
fn set_limit(srv: &Server, key: &str, value: u64) {
    let path = srv.dir.join("server.toml");
    let mut text = fs::read_to_string(&path).unwrap();
    let prefix = format!("{key} = ");
    let line = text.lines().find(|l| l.starts_with(&prefix)).map(str::to_string);
    match line {
        Some(line) => text = text.replace(&line, &format!("{prefix}{value}")),
        None if text.contains("[limits]\n") => {
            text = text.replacen("[limits]\n", &format!("[limits]\n{prefix}{value}\n"), 1);
        }
        None => text.push_str(&format!("\n[limits]\n{prefix}{value}\n")),
    }
    fs::write(&path, text).unwrap();
}

/// The pid of the `serve` process for `dir`.
fn serve_pid(dir: &Path) -> u32 {
    let want = dir.to_str().unwrap();
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmd.split(|&b| b == 0).collect();
            args.contains(&&b"serve"[..]) && args.contains(&want.as_bytes())
        })
        .expect("the serve process")
}

/// CPU time (user and system) process `pid` has used, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // After "pid (comm) " come state (field 3) … utime (14), stime (15).
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Clock ticks a second (`getconf CLK_TCK`).
fn ticks_per_second() -> u64 {
    let o = run(Command::new("getconf").arg("CLK_TCK"));
    String::from_utf8_lossy(&o.stdout).trim().parse().expect("CLK_TCK")
}

/// A request is answered (404) within `limit`.
fn answered_within(port: u16, limit: Duration) {
    let start = Instant::now();
    loop {
        if exchange(port, GET).is_ok_and(|r| r.status == 404) {
            return;
        }
        assert!(start.elapsed() < limit, "no answer within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_connection_flood_from_one_address_is_capped() {
    let t = TempDir::new("sec-flood");
    let mut srv = Server::init(t.join("srv"), &[]);
    srv.start();
    // Idle connections from one address, more than its cap (256).
    let mut flood: Vec<TcpStream> =
        (0..300).map(|_| TcpStream::connect(("127.0.0.1", srv.http_port)).expect("connect")).collect();
    // The server takes them in order: the last ones are turned away at once.
    for s in &mut flood[280..] {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let r = read_reply(s).expect("a connection over the cap is answered at once");
        assert_eq!(r.status, 503, "{}", r.head);
        assert!(r.header("retry-after").is_some());
    }
    drop(flood);
    answered_within(srv.http_port, Duration::from_secs(2));
}

#[test]
fn a_stalled_download_reader_is_dropped() {
    let t = TempDir::new("sec-stall");
    let mut srv = Server::init(t.join("srv"), &[]);
    set_limit(&srv, "write_timeout", 1);
    // One connection per address: while the stalled one is held, any other
    // from 127.0.0.1 gets 503, so its place coming free shows it was dropped.
    set_limit(&srv, "max_connections_per_address", 1);
    // A fragment far larger than what the socket buffers hold.
    let id = 1_700_000_000u64;
    let frag = srv.dir.join(format!("download/{id}/{id}-1"));
    fs::create_dir_all(frag.parent().unwrap()).unwrap();
    let len = 64 * 1024 * 1024;
    fs::File::create(&frag).unwrap().set_len(len).unwrap();
    srv.start();
    // A reader with a small receive buffer takes the one place (once the
    // probes before it have let go of it) and reads the status line only.
    let mut s = admitted_download(&format!("/download/{id}/{id}-1"), || {
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        sock.connect(&std::net::SocketAddr::from(([127, 0, 0, 1], srv.http_port)).into()).unwrap();
        let s: TcpStream = sock.into();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    });
    // Read nothing more; wait for the server to drop the connection (a 404 to
    // another request instead of a 503), for up to 15 s.
    answered_within(srv.http_port, Duration::from_secs(15));
    let mut got = 12u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got += n as u64,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the stalled connection was not closed: {e} after {got} bytes"),
        }
    }
    assert!(got < len, "the whole download came ({got} bytes): the stalled reader was held");
}

#[test]
fn an_idle_keep_alive_connection_is_closed() {
    let t = TempDir::new("sec-idle");
    let mut srv = Server::init(t.join("srv"), &[]);
    set_limit(&srv, "idle_timeout", 1);
    srv.start();
    let mut s = connect(srv.http_port);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_reply(&mut s).unwrap().status, 404);
    let start = Instant::now();
    let mut b = [0u8; 1];
    let end = s.read(&mut b);
    assert!(matches!(end, Ok(0)), "the idle connection was held: {end:?} after {:?}", start.elapsed());
}

/// An `outpost-server serve` started by a test, killed when dropped.
struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_descriptor_limit_is_raised_to_the_hard_one_at_start() {
    let t = TempDir::new("sec-nofile");
    let srv = Server::init(t.join("srv"), &[]);
    // A soft limit of 256 under the inherited hard one.
    let child = Command::new("sh")
        .args(["-c", "ulimit -S -n 256 && exec \"$0\" serve --dir \"$1\""])
        .arg(bin("outpost-server"))
        .arg(&srv.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let serving = Serving(child);
    wait_for_port(srv.http_port);
    let limits = fs::read_to_string(format!("/proc/{}/limits", serving.0.id())).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let v: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(v[3], v[4], "soft and hard descriptor limits: {line}");
}

#[test]
fn the_accept_loop_does_not_spin_at_the_descriptor_limit() {
    let t = TempDir::new("sec-emfile");
    let mut srv = Server::init(t.join("srv"), &[]);
    srv.start();
    let pid = serve_pid(&srv.dir);
    // Lower the running server's descriptor limit under what it holds once
    // the flood is in (its caps were set for the higher limit it started
    // with): accept fails with EMFILE while connections wait in the queue.
    let o = run(Command::new("prlimit").args(["--pid", &pid.to_string(), "--nofile=64:64"]));
    assert!(o.status.success(), "prlimit: {}", text(&o));
    let flood: Vec<TcpStream> =
        (0..200).map(|_| TcpStream::connect(("127.0.0.1", srv.http_port)).expect("connect")).collect();
    std::thread::sleep(Duration::from_millis(500));
    let (before, start) = (cpu_ticks(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(1));
    let used = (cpu_ticks(pid) - before) as f64 / ticks_per_second() as f64;
    let window = start.elapsed().as_secs_f64();
    assert!(used < 0.25 * window, "the server used {used:.2} s of CPU in {window:.2} s at the descriptor limit");
    drop(flood);
    answered_within(srv.http_port, Duration::from_secs(5));
}

/// An HTTPS request (`GET /x`) is answered (404).
fn https_answered(srv: &Server) -> Result<u16, String> {
    let ca = fs::read_to_string(srv.dir.join("tls/ca-cert.pem")).expect("CA");
    let c = Client::new(&ca, Duration::from_secs(5), Duration::from_secs(5)).map_err(|e| e.to_string())?;
    let url = Url::parse(&format!("https://127.0.0.1:{}/x", srv.https_port)).expect("url");
    let mut r = c.request("GET", &url, &[], b"").map_err(|e| e.to_string())?;
    let _ = r.read_to_vec(1 << 16);
    Ok(r.status)
}

#[test]
fn plain_http_filled_to_its_share_leaves_https_served() {
    let t = TempDir::new("sec-share");
    let mut srv = Server::init(t.join("srv"), &[]);
    set_limit(&srv, "max_connections", 8);
    set_limit(&srv, "max_connections_per_address", 100);
    srv.start();
    // Let the connections that probed for the server's start go first.
    answered_within(srv.http_port, Duration::from_secs(2));
    std::thread::sleep(Duration::from_millis(500));
    // Idle plain connections (slow readers, say), twice the total cap: plain
    // HTTP takes all it may hold (6 of 8), the rest are turned away at once.
    let mut plain: Vec<TcpStream> =
        (0..16).map(|_| TcpStream::connect(("127.0.0.1", srv.http_port)).expect("connect")).collect();
    for s in &mut plain[8..] {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let r = read_reply(s).expect("a plain connection over the caps is answered at once");
        assert_eq!(r.status, 503, "{}", r.head);
    }
    // The control API is still served (retried for 3 s, as a TLS client
    // may be refused while a probe above is being let go).
    let start = Instant::now();
    let answered = loop {
        match https_answered(&srv) {
            Ok(status) => break Ok(status),
            Err(e) if start.elapsed() > Duration::from_secs(3) => break Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    assert_eq!(answered, Ok(404), "an HTTPS request while plain HTTP holds its share");
    drop(plain);
}

#[test]
fn a_client_reading_slower_than_the_minimum_rate_is_dropped() {
    let t = TempDir::new("sec-rate");
    let mut srv = Server::init(t.join("srv"), &[]);
    // A window of 3 s instead of 60, and 64 KiB/s instead of 1 KiB/s.
    set_limit(&srv, "write_timeout", 3);
    set_limit(&srv, "min_send_rate", 64 * 1024);
    set_limit(&srv, "max_connections_per_address", 1);
    let id = 1_700_000_000u64;
    let frag = srv.dir.join(format!("download/{id}/{id}-1"));
    fs::create_dir_all(frag.parent().unwrap()).unwrap();
    fs::File::create(&frag).unwrap().set_len(1 << 30).unwrap();
    srv.start();
    let mut s = admitted_download(&format!("/download/{id}/{id}-1"), || connect(srv.http_port));
    // Always some progress, never a stall of `write_timeout`: 32 KiB every
    // second, half the minimum rate.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reading = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 32 * 1024];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if s.read_exact(&mut buf).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    // Its place comes free (a 404 to another request instead of a 503).
    let held = std::panic::catch_unwind(|| answered_within(srv.http_port, Duration::from_secs(20)));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = reading.join();
    assert!(held.is_ok(), "the slow reader was held for 20 s");
}

/// A GET of `path` on a fresh connection from `connect`, retried until the
/// server admits it (`200`; a `503` while an earlier connection still holds
/// the address's place); the stream is left after the status line.
fn admitted_download(path: &str, connect: impl Fn() -> TcpStream) -> TcpStream {
    for _ in 0..100 {
        let mut s = connect();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).unwrap();
        let mut status_line = [0u8; 12];
        s.read_exact(&mut status_line).unwrap();
        if &status_line == b"HTTP/1.1 200" {
            return s;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the download is never admitted, though the place is free");
}
