//! Item 8: a fragment server is plain HTTP and untrusted by design, so
//! nothing it sends may grow the agent without bound or hold it forever.
//! Each test runs a hostile server on 127.0.0.1 that pours an endless answer
//! (a header line with no newline, header lines with no end, a chunk-size
//! line with no end, a body past its bound) or trickles one, and checks that
//! the agent stops at the bound with a typed error. What the reader consumed
//! is measured by what the hostile server managed to write before the agent
//! hung up (its send buffer is small and the client's window clamped, so
//! that is the bytes read plus a few KiB in flight), and for the real agent
//! process by its peak resident set (`VmHWM`).
//! A server answering one byte per connection checks that the agent does
//! not reconnect once per byte: under 64 KiB of progress is a failed try.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use outpost_agent::rt::http::{Client, Error, MAX_CHUNK_LINE, MAX_HEAD, MAX_HEADERS, Url};
use outpost_tests::{Member, Server, TempDir, bin, random_bytes, targz, tune_agent};

/// What a hostile server gives up after, if the reader never stops: far past
/// every bound, so a reader without one is plainly seen reading it all.
const CAP: u64 = 64 << 20;

/// What one connection of a hostile server saw.
#[derive(Debug, Clone, Copy)]
struct Poured {
    /// Bytes written to the socket (request excluded).
    written: u64,
    /// The reader hung up before [`CAP`].
    hung_up: bool,
}

/// Read a request head (to its empty line, at most 64 KiB).
fn read_request(s: &mut TcpStream) -> Vec<u8> {
    let mut req = Vec::new();
    let mut b = [0u8; 1024];
    while !req.ends_with(b"\r\n\r\n") && req.len() < 1 << 16 {
        match s.read(&mut b) {
            Ok(0) | Err(_) => break,
            Ok(n) => req.extend_from_slice(&b[..n]),
        }
    }
    req
}

/// Write `prefix`, then `filler` over and over, until the reader hangs up
/// or [`CAP`] bytes are out. The send buffer is made small first.
fn pour(s: &mut TcpStream, prefix: &[u8], filler: &[u8]) -> Poured {
    let _ = socket2::SockRef::from(&*s).set_send_buffer_size(4096);
    let mut written = 0u64;
    let mut next: &[u8] = prefix;
    while written < CAP {
        match s.write(next) {
            Ok(0) | Err(_) => return Poured { written, hung_up: true },
            Ok(n) => {
                written += n as u64;
                next = if n < next.len() { &next[n..] } else { filler };
            }
        }
    }
    Poured { written, hung_up: false }
}

/// A hostile server for one request through [`Client`]: `answer` gets the
/// connection once the request is read.
fn hostile<T: Send + 'static>(answer: impl FnOnce(&mut TcpStream) -> T + Send + 'static) -> (Url, JoinHandle<T>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = Url::parse(&format!("http://{}/1/1-1", l.local_addr().expect("addr"))).expect("url");
    let h = std::thread::spawn(move || {
        let (mut s, _) = l.accept().expect("accept");
        read_request(&mut s);
        answer(&mut s)
    });
    (url, h)
}

/// The agent's client, its window clamped to 16 KiB so that little more
/// than what it reads can be in flight towards it.
fn client(io_timeout: Duration) -> Client {
    Client::new(include_str!("../../agent/src/rt/testdata/ca-cert.pem"), Duration::from_secs(5), io_timeout)
        .expect("client")
}

const WINDOW: Option<u32> = Some(16 * 1024);

/// At most what a bounded reader lets through: the bound, its 64 KiB read
/// buffer, the clamped window and the server's send buffer, with room.
fn assert_stopped(p: Poured, bound: usize, what: &str) {
    assert!(p.hung_up, "{what}: the reader never hung up ({} bytes read)", p.written);
    let most = bound as u64 + 256 * 1024;
    assert!(p.written < most, "{what}: {} bytes consumed, more than {most}", p.written);
}

#[test]
fn an_endless_header_line_stops_the_client_at_the_head_bound() {
    let (url, server) = hostile(|s| pour(s, b"HTTP/1.1 200 OK\r\nX-Fill: ", &[b'a'; 4096]));
    let e = client(Duration::from_secs(10)).request_with_window("GET", &url, &[], &[], WINDOW).unwrap_err();
    assert!(matches!(e, Error::TooLarge { what: "head", limit } if limit == MAX_HEAD as u64), "{e}");
    assert!(e.to_string().contains("head larger than 16384"), "a clear message: {e}");
    assert_stopped(server.join().expect("server"), MAX_HEAD, "endless header line");
}

#[test]
fn endless_header_lines_stop_the_client_at_the_head_bound() {
    let (url, server) = hostile(|s| pour(s, b"HTTP/1.1 200 OK\r\n", b"X-Fill: y\r\n"));
    let e = client(Duration::from_secs(10)).request_with_window("GET", &url, &[], &[], WINDOW).unwrap_err();
    assert!(matches!(e, Error::TooLarge { what: "head", .. }), "{e}");
    assert_stopped(server.join().expect("server"), MAX_HEAD, "endless header lines");
}

#[test]
fn more_header_fields_than_the_bound_are_refused() {
    // 65 fields in 350 bytes: far under the head's bound, one over the count's.
    let many = format!("HTTP/1.1 200 OK\r\n{}Content-Length: 0\r\n\r\n", "X: y\r\n".repeat(64));
    let (url, server) = hostile(move |s| s.write_all(many.as_bytes()));
    let e = client(Duration::from_secs(10)).request("GET", &url, &[], &[]).unwrap_err();
    assert!(matches!(e, Error::TooLarge { what: "header count", limit: 64 }), "{e}");
    assert_eq!(MAX_HEADERS, 64);
    let _ = server.join();
}

#[test]
fn an_endless_chunk_size_line_stops_the_client_at_its_bound() {
    let (url, server) = hostile(|s| pour(s, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", &[b'0'; 4096]));
    let mut r = client(Duration::from_secs(10)).request_with_window("GET", &url, &[], &[], WINDOW).expect("head");
    let e = r.read_to_vec(1 << 20).unwrap_err();
    assert!(matches!(e, Error::TooLarge { what: "chunk-size line", limit } if limit == MAX_CHUNK_LINE as u64), "{e}");
    drop(r);
    assert_stopped(server.join().expect("server"), MAX_CHUNK_LINE, "endless chunk-size line");
}

#[test]
fn endless_chunks_stop_at_what_the_caller_accepts() {
    let (url, server) = hostile(|s| {
        let chunk = [b"1000\r\n".as_slice(), &[b'c'; 0x1000], b"\r\n"].concat();
        pour(s, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", &chunk)
    });
    let mut r = client(Duration::from_secs(10)).request_with_window("GET", &url, &[], &[], WINDOW).expect("head");
    let e = r.read_to_vec(100_000).unwrap_err();
    assert!(matches!(e, Error::TooLarge { what: "body", limit: 100_000 }), "{e}");
    drop(r);
    assert_stopped(server.join().expect("server"), 100_000, "endless chunks");
}

#[test]
fn a_body_until_close_stops_at_what_the_caller_accepts() {
    let (url, server) = hostile(|s| pour(s, b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", &[b'b'; 4096]));
    let mut r = client(Duration::from_secs(10)).request_with_window("GET", &url, &[], &[], WINDOW).expect("head");
    let e = r.read_to_vec(100_000).unwrap_err();
    assert!(matches!(e, Error::TooLarge { what: "body", limit: 100_000 }), "{e}");
    drop(r);
    assert_stopped(server.join().expect("server"), 100_000, "endless body");
}

#[test]
fn a_body_announced_longer_than_the_caller_accepts_is_refused_before_reading() {
    let (url, server) =
        hostile(|s| pour(s, b"HTTP/1.1 200 OK\r\nContent-Length: 1099511627776\r\n\r\n", &[b'b'; 4096]));
    let mut r = client(Duration::from_secs(10)).request_with_window("GET", &url, &[], &[], WINDOW).expect("head");
    let e = r.read_to_vec(100_000).unwrap_err();
    assert!(matches!(e, Error::TooLarge { what: "body", limit: 100_000 }), "{e}");
    drop(r);
    assert_stopped(server.join().expect("server"), 0, "announced body");
}

#[test]
fn a_206_body_past_its_content_range_stops_at_the_range() {
    // No Content-Length: the body would run to the close but for the range.
    let head = b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-9999/10000\r\nConnection: close\r\n\r\n";
    let (url, server) = hostile(|s| pour(s, head, &[b'r'; 4096]));
    let c = client(Duration::from_secs(10));
    let mut r = c.request_with_window("GET", &url, &[("Range", "bytes=0-9999")], &[], WINDOW).expect("head");
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0u64;
    let e = loop {
        match r.read(&mut buf) {
            Ok(0) => panic!("the body ended by itself after {got} bytes"),
            Ok(n) => got += n as u64,
            Err(e) => break Error::from(e),
        }
    };
    assert!(matches!(e, Error::TooLarge { what: "body", limit: 10_000 }), "{e}");
    assert_eq!(got, 10_000, "the range and not a byte more");
    drop(r);
    assert_stopped(server.join().expect("server"), 10_000, "206 past its range");
}

/// Write `bytes` one at a time, `gap` apart, then close: a server trickling
/// under every read timeout.
#[allow(clippy::disallowed_methods)] // a real server's pace
fn trickle(s: &mut TcpStream, bytes: &[u8], gap: Duration) -> usize {
    for (i, b) in bytes.iter().enumerate() {
        if s.write_all(&[*b]).is_err() {
            return i;
        }
        std::thread::sleep(gap);
    }
    bytes.len()
}

#[test]
fn a_trickled_head_stops_at_the_io_timeout() {
    // One byte every 100 ms beats a 1 s read timeout forever; the head as a
    // whole must still come within it. The server gives up after 60 bytes.
    let (url, server) = hostile(|s| trickle(s, &[b'x'; 60], Duration::from_millis(100)));
    let e = client(Duration::from_secs(1)).request("GET", &url, &[], &[]).unwrap_err();
    assert!(matches!(e, Error::Stalled { what: "head", .. }), "{e}");
    assert!(server.join().expect("server") < 40, "stopped well before the server gave up");
}

#[test]
fn a_trickled_tls_handshake_stops_at_the_io_timeout() {
    // A TLS record header announcing a ServerHello, then its body a byte at
    // a time: rustls waits for the whole record; the handshake deadline
    // must not.
    let mut bytes = vec![0x16, 0x03, 0x03, 0x00, 0x40, 0x02, 0x00, 0x00, 0x3c];
    bytes.extend_from_slice(&[0u8; 51]);
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = Url::parse(&format!("https://localhost:{}/", l.local_addr().expect("addr").port())).expect("url");
    let server = std::thread::spawn(move || {
        let (mut s, _) = l.accept().expect("accept");
        let mut hello = [0u8; 4096];
        let _ = s.read(&mut hello);
        trickle(&mut s, &bytes, Duration::from_millis(100))
    });
    let e = client(Duration::from_secs(1)).request("GET", &url, &[], &[]).unwrap_err();
    assert!(matches!(e, Error::Stalled { what: "TLS handshake", .. }), "{e}");
    assert!(server.join().expect("server") < 40, "stopped well before the server gave up");
}

#[test]
fn a_trickled_body_is_a_stall() {
    // 10 bytes a second of a 1000-byte body: each read is well within the
    // 1 s read timeout, the rate far under the floor.
    let (url, server) = hostile(|s| {
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n").expect("head");
        trickle(s, &[b'z'; 60], Duration::from_millis(100))
    });
    let mut r = client(Duration::from_secs(1)).request("GET", &url, &[], &[]).expect("head");
    let e = r.read_to_vec(1000).unwrap_err();
    assert!(matches!(e, Error::Stalled { what: "body", .. }), "{e}");
    drop(r);
    assert!(server.join().expect("server") < 40, "stopped well before the server gave up");
}

/// The peak resident set of process `pid` in KiB (`VmHWM`), if it runs.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.trim().trim_end_matches("kB").trim().parse().ok()
}

/// A real server whose package's fragments are "served" by a hostile one
/// that answers every connection with `prefix` then `filler` forever; the
/// real agent runs once against it. Returns the agent's stderr, what each
/// fragment connection saw, and the agent's peak RSS in KiB.
fn attack_agent(tag: &str, prefix: &'static [u8], filler: &'static [u8]) -> (String, Vec<Poured>, u64) {
    attack_agent_with(tag, Box::new(move |_req, s| pour(s, prefix, filler)))
}

/// How a hostile fragment server answers one connection, given the request.
type Answer = Box<dyn Fn(&[u8], &mut TcpStream) -> Poured + Send + Sync>;

/// [`attack_agent`] with any answer.
#[allow(clippy::disallowed_methods)] // real processes: bounded polling
fn attack_agent_with(tag: &str, answer: Answer) -> (String, Vec<Poured>, u64) {
    let answer = Arc::new(answer);
    let t = TempDir::new(tag);
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    l.set_nonblocking(true).expect("nonblocking");
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let fragments = {
        let (stop, seen) = (stop.clone(), seen.clone());
        std::thread::spawn(move || {
            let mut conns = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((mut s, _)) => {
                        let (seen, answer) = (seen.clone(), answer.clone());
                        conns.push(std::thread::spawn(move || {
                            s.set_nonblocking(false).expect("blocking");
                            let req = read_request(&mut s);
                            let p = answer(&req, &mut s);
                            seen.lock().expect("lock").push(p);
                        }));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            for c in conns {
                let _ = c.join();
            }
        })
    };
    let mut srv = Server::init(t.join("srv"), &["--fragment-loc", &format!("127.0.0.1:{port}/download")]);
    let arc: PathBuf = t.join("pkg.tar.gz");
    std::fs::write(&arc, targz(&[Member::File("payload.bin", &random_bytes(200_000, 8), 0o644)])).expect("archive");
    let dest = t.join("installed");
    let id = srv.package_add(&[
        "--file",
        arc.to_str().expect("utf-8"),
        "--action",
        "store",
        "--path",
        dest.to_str().expect("utf-8"),
    ]);
    let cfg = srv.device_add("pc-1", t.path());
    tune_agent(&cfg, "fragment_tries = 2\nio_timeout = 20");
    srv.assign(id, "pc-1", &[]);
    srv.start();

    let mut child = Command::new(bin("outpost-agent"))
        .arg("--config")
        .arg(&cfg)
        .args(["run", "--once"])
        .env("OUTPOST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn agent");
    let pid = child.id();
    let mut stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let (mut peak, mut polls) = (0, 0u32);
    while child.try_wait().expect("wait").is_none() {
        peak = peak.max(vm_hwm_kib(pid).unwrap_or(0));
        polls += 1;
        assert!(polls < 12_000, "the agent is still running after a minute");
        std::thread::sleep(Duration::from_millis(5));
    }
    let status = child.wait().expect("wait");
    let err = reader.join().expect("stderr");
    stop.store(true, Ordering::SeqCst);
    fragments.join().expect("fragment server");
    assert!(!status.success(), "the package cannot be installed:\n{err}");
    assert!(!dest.exists(), "nothing installed");
    let seen = seen.lock().expect("lock").clone();
    (err, seen, peak)
}

/// The real agent's peak RSS stays this small (its budget is ~3.5 MiB in
/// release; a debug build is larger) under a server pouring 64 MiB.
const AGENT_PEAK_KIB: u64 = 24 * 1024;

fn assert_agent_stopped(err: &str, seen: &[Poured], peak: u64, what: &str) {
    // fragment_tries = 2 fails after two connections that get nowhere; one
    // that brought part of a fragment resumes at once, so a few more.
    assert!((2..=16).contains(&seen.len()), "{what}: {} connections: {seen:?}\n{err}", seen.len());
    for p in seen {
        assert!(p.hung_up, "{what}: the agent read all {} bytes the server had (peak RSS {peak} KiB)", p.written);
        // The agent's socket buffer is not clamped here (autotuning): allow
        // a few MiB in flight, far under CAP.
        assert!(p.written < 8 << 20, "{what}: {} bytes consumed (peak RSS {peak} KiB)\n{err}", p.written);
    }
    assert!(peak > 0 && peak < AGENT_PEAK_KIB, "{what}: the agent's peak RSS was {peak} KiB\n{err}");
}

/// The HTTP error itself (not "server answered 0") is in the log at warn,
/// once for each of the `tries` fragment tries.
fn assert_warned(err: &str, what: &str, tries: usize) {
    let warned = err.lines().filter(|l| l.starts_with("WARN") && l.contains(what)).count();
    assert_eq!(warned, tries, "{what:?} at warn once per try:\n{err}");
}

#[test]
fn the_agent_refuses_a_fragment_server_whose_header_line_never_ends() {
    let (err, seen, peak) = attack_agent("sec-endless-line", b"HTTP/1.1 200 OK\r\nX-Fill: ", &[b'a'; 4096]);
    assert_agent_stopped(&err, &seen, peak, "endless header line");
    assert!(err.contains("head larger than 16384"), "a clear error in the log:\n{err}");
    assert_warned(&err, "head larger than 16384", 2);
    eprintln!("endless header line: agent peak RSS {peak} KiB, server wrote {seen:?}");
}

#[test]
fn the_agent_refuses_a_fragment_server_whose_headers_never_end() {
    let (err, seen, peak) = attack_agent("sec-endless-headers", b"HTTP/1.1 200 OK\r\n", b"X-Fill: y\r\n");
    assert_agent_stopped(&err, &seen, peak, "endless headers");
    assert!(err.contains("head larger than 16384"), "a clear error in the log:\n{err}");
    assert_warned(&err, "head larger than 16384", 2);
    eprintln!("endless headers: agent peak RSS {peak} KiB, server wrote {seen:?}");
}

#[test]
fn the_agent_refuses_a_fragment_server_whose_chunk_size_line_never_ends() {
    let prefix = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    let (err, seen, peak) = attack_agent("sec-endless-chunk", prefix, &[b'0'; 4096]);
    assert_agent_stopped(&err, &seen, peak, "endless chunk-size line");
    assert!(err.contains("chunk-size line larger than 1024"), "a clear error in the log:\n{err}");
    eprintln!("endless chunk-size line: agent peak RSS {peak} KiB, server wrote {seen:?}");
}

#[test]
fn the_agent_stops_a_fragment_body_at_the_fragment_size() {
    // No length, no end: the signed fragment size is the bound.
    let prefix = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n";
    let (err, seen, peak) = attack_agent("sec-endless-body", prefix, &[b'b'; 4096]);
    assert_agent_stopped(&err, &seen, peak, "endless body");
    assert!(err.contains("body longer than the fragment"), "a clear error in the log:\n{err}");
    eprintln!("endless body: agent peak RSS {peak} KiB, server wrote {seen:?}");
}

/// Answer with one byte of what was asked, then close: a `206` echoing the
/// request's range (no length), or a `200` when none was asked. After
/// [`MAX_ONE_BYTE_CONNECTIONS`], close at once (so that an agent that
/// reconnects per byte ends its run, and the test, quickly).
fn one_byte(req: &[u8], s: &mut TcpStream, count: &std::sync::atomic::AtomicUsize) -> Poured {
    if count.fetch_add(1, Ordering::SeqCst) >= MAX_ONE_BYTE_CONNECTIONS {
        return Poured { written: 0, hung_up: true };
    }
    let req = String::from_utf8_lossy(req).to_ascii_lowercase();
    let range = req.lines().find_map(|l| l.strip_prefix("range: bytes=")).and_then(|r| r.trim().split_once('-'));
    let head = match range {
        Some((a, b)) => {
            let b = if b.is_empty() { a } else { b };
            format!("HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {a}-{b}/*\r\nConnection: close\r\n\r\nx")
        }
        None => "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nx".to_string(),
    };
    let written = s.write_all(head.as_bytes()).map_or(0, |()| head.len() as u64);
    Poured { written, hung_up: true }
}

/// Where [`one_byte`] stops answering: far more connections than any bound.
const MAX_ONE_BYTE_CONNECTIONS: usize = 300;

#[test]
fn a_fragment_server_sending_one_byte_per_connection_gets_a_bounded_number_of_connections() {
    // The review's attack: `206`, no length, one byte, close. Any progress
    // used to resume at once, so the agent connected once per byte of the
    // fragment (200,000 here), without backoff. Now less than 64 KiB of
    // progress is a failed try: fragment_tries = 2 connections, then a later run.
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = count.clone();
    let (err, seen, _) = attack_agent_with("sec-one-byte", Box::new(move |req, s| one_byte(req, s, &c)));
    let n = count.load(Ordering::SeqCst);
    assert!(n <= 2 + 2, "{n} connections for one run with fragment_tries = 2 ({} answered)\n{err}", seen.len());
    let resumes = err.lines().filter(|l| l.contains("resuming at byte")).count();
    assert!(resumes <= 1, "{resumes} resumption lines\n{err}");
}

#[test]
fn vm_hwm_is_read_from_proc() {
    // The memory checks above mean nothing if this reads nothing.
    assert!(vm_hwm_kib(std::process::id()).is_some_and(|k| k > 0));
}
