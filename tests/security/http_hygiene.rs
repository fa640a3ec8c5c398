//! Item 5, HTTP hygiene: request framing a second parser could read another
//! way (request smuggling), HTTP/1.0 keep-alive, TLS close_notify, and
//! small responses held back by Nagle's algorithm against delayed ACKs.
//!
//! Also the raw HTTP/1.1 client the other server modules of this suite use:
//! attacks need bytes no well-behaved client library would send.
#![allow(clippy::disallowed_methods)] // real sockets: bounded read timeouts

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use outpost_tests::{Server, TempDir};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// A response as read off the wire.
#[derive(Debug)]
pub(crate) struct Reply {
    /// Status code.
    pub status: u16,
    /// The head, status line and headers, as text.
    pub head: String,
    /// The body (`Content-Length` bytes).
    pub body: Vec<u8>,
}

impl Reply {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Read one response from `r`: the head up to its empty line, then
/// `Content-Length` bytes of body.
pub(crate) fn read_reply(r: &mut impl Read) -> io::Result<Reply> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if r.read(&mut byte)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed before a whole head"));
        }
        head.push(byte[0]);
        if head.len() > 64 * 1024 {
            return Err(io::Error::other("head too large"));
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| io::Error::other(head.clone()))?;
    let mut reply = Reply { status, head, body: Vec::new() };
    let len: usize = reply.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    reply.body = vec![0; len];
    r.read_exact(&mut reply.body)?;
    Ok(reply)
}

/// A connection to 127.0.0.1:`port` that gives up reading after 10 s.
pub(crate) fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
    s.set_nodelay(true).expect("nodelay");
    s
}

/// Send `raw` on a new connection and read one response.
pub(crate) fn exchange(port: u16, raw: &[u8]) -> io::Result<Reply> {
    let mut s = connect(port);
    s.write_all(raw)?;
    read_reply(&mut s)
}

/// Whether the peer has closed `s` (EOF or reset) within its read timeout,
/// with nothing more sent.
fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() == io::ErrorKind::ConnectionReset,
    }
}

fn started(t: &TempDir) -> Server {
    let mut srv = Server::init(t.join("srv"), &[]);
    srv.start();
    srv
}

#[test]
fn a_smuggling_pair_of_content_lengths_is_refused() {
    let t = TempDir::new("sec-cl-pair");
    let srv = started(&t);
    // A front end that takes the second length forwards one request; a back
    // end that took the first would answer the hidden GET as a second one.
    let hidden = "GET /download/1/1-1 HTTP/1.1\r\nHost: x\r\n\r\n";
    let raw =
        format!("POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: {}\r\n\r\n{hidden}", hidden.len());
    let mut s = connect(srv.http_port);
    s.write_all(raw.as_bytes()).unwrap();
    let r = read_reply(&mut s).unwrap();
    assert_eq!(r.status, 400, "differing Content-Length values: {}", r.head);
    assert!(closed(&mut s), "nothing after the 400, the hidden request least of all");
    // Identical duplicates name one length: accepted.
    let same = "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\nConnection: close\r\n\r\nab";
    assert_eq!(exchange(srv.http_port, same.as_bytes()).unwrap().status, 404);
}

#[test]
fn a_signed_content_length_is_refused() {
    let t = TempDir::new("sec-cl-sign");
    let srv = started(&t);
    for len in ["+0", "+2", "-1", "0x2", "2 2"] {
        let raw = format!("POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\nConnection: close\r\n\r\nab");
        let r = exchange(srv.http_port, raw.as_bytes()).unwrap();
        assert_eq!(r.status, 400, "Content-Length: {len}: {}", r.head);
    }
}

#[test]
fn an_http10_keep_alive_client_is_told_the_connection_stays_open() {
    let t = TempDir::new("sec-http10");
    let srv = started(&t);
    let mut s = connect(srv.http_port);
    for _ in 0..2 {
        s.write_all(b"GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
        let r = read_reply(&mut s).expect("an answer on the kept connection");
        assert_eq!(r.status, 404);
        assert_eq!(r.header("connection"), Some("keep-alive"), "{}", r.head);
    }
    // Without keep-alive, HTTP/1.0 closes after the response.
    let mut s = connect(srv.http_port);
    s.write_all(b"GET /x HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(read_reply(&mut s).unwrap().header("connection"), Some("close"));
    assert!(closed(&mut s));
}

#[test]
fn tls_connections_end_with_close_notify() {
    let t = TempDir::new("sec-close-notify");
    let srv = started(&t);
    let ca = CertificateDer::from_pem_file(srv.dir.join("tls/ca-cert.pem")).expect("CA certificate");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, connect(srv.https_port));
    tls.write_all(b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let r = read_reply(&mut tls).unwrap();
    assert_eq!(r.status, 404);
    // rustls reports a close without close_notify as UnexpectedEof (a
    // truncation attack cannot be told from a clean end).
    let mut rest = Vec::new();
    let end = tls.read_to_end(&mut rest);
    assert!(end.is_ok(), "the server closed without close_notify: {end:?}");
    assert!(rest.is_empty());
}

#[test]
fn a_small_response_arrives_whole_in_one_segment() {
    let t = TempDir::new("sec-nodelay");
    let srv = started(&t);
    let mut s = connect(srv.http_port);
    // A response written as head, then body, waits with Nagle's algorithm
    // for the client's delayed ACK of the head before its body goes out: 40 ms
    // a request on a kept-alive connection. Written in one go, head and body
    // are one segment on loopback, so the first read returns both.
    let mut buf = vec![0u8; 64 * 1024];
    for i in 0..20 {
        s.write_all(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let n = s.read(&mut buf).unwrap();
        let got = &buf[..n];
        let head_len = got.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
        let head = String::from_utf8_lossy(&got[..head_len.unwrap_or(n)]).into_owned();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("request {i}: no whole head in the first read: {head:?}"));
        assert!(head.starts_with("HTTP/1.1 404 "), "{head}");
        assert_eq!(n, head_len.unwrap_or(n) + len, "request {i}: the first read held {n} bytes of {head:?}");
    }
}
