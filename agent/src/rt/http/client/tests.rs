//! The client against real sockets on 127.0.0.1: the socket options the
//! pacer moves, connection reuse, and the bounds a hostile server meets.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;

use super::super::{Error, MAX_HEAD, Url};
use super::{Client, Response};

/// The client's TLS configuration (for the connection's own tests).
pub(crate) fn tls_config() -> Arc<ClientConfig> {
    client().tls.read().unwrap().clone()
}

fn client() -> Client {
    Client::new(TEST_CA, Duration::from_secs(5), Duration::from_secs(5)).unwrap()
}

/// A server that answers one connection with `answer` after reading the
/// request, then keeps reading until the client goes.
fn one_answer(answer: Vec<u8>) -> Url {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = Url::parse(&format!("http://{}/x", l.local_addr().unwrap())).unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut req = [0u8; 1024];
        let _ = s.read(&mut req);
        let _ = s.write_all(&answer);
        let _ = s.read(&mut req);
    });
    url
}

#[test]
fn heads_bodies_and_ranges_past_their_bounds_are_typed_errors() {
    let c = client();
    let endless = [b"HTTP/1.1 200 OK\r\nX: ".as_slice(), &[b'a'; 4 * MAX_HEAD]].concat();
    let e = c.request("GET", &one_answer(endless), &[], &[]).unwrap_err();
    assert!(matches!(e, Error::TooLarge { what: "head", .. }), "{e}");

    let long = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n".to_vec();
    let mut r = c.request("GET", &one_answer(long), &[], &[]).unwrap();
    assert!(matches!(r.read_to_vec(10), Err(Error::TooLarge { what: "body", limit: 10 })));

    let closed = [b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".as_slice(), &[b'x'; 100_000]].concat();
    let mut r = c.request("GET", &one_answer(closed), &[], &[]).unwrap();
    assert!(matches!(r.read_to_vec(1000), Err(Error::TooLarge { what: "body", limit: 1000 })));

    let wide = b"HTTP/1.1 206 P\r\nContent-Range: bytes 0-99/100\r\nContent-Length: 100\r\n\r\n".to_vec();
    let e = c.request("GET", &one_answer(wide), &[("Range", "bytes=0-9")], &[]).unwrap_err();
    assert!(matches!(e, Error::Protocol(m) if m.contains("range")), "{e}");
}

#[test]
fn a_kept_connection_is_retried_only_when_it_was_closed() {
    // A server that answers a second request on the kept connection with a
    // head too large must not be asked again on a fresh one.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let listener = l.try_clone().unwrap();
    let server = std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut s = s;
        for answer in [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(), vec![b'h'; 2 * MAX_HEAD]] {
            let mut line = String::new();
            while r.read_line(&mut line).unwrap() > 0 && !line.ends_with("\r\n\r\n") {}
            s.write_all(&answer).unwrap();
        }
    });
    let c = client();
    let url = Url::parse(&format!("http://127.0.0.1:{port}/x")).unwrap();
    let mut r = c.request("GET", &url, &[], &[]).unwrap();
    assert_eq!(r.read_to_vec(10).unwrap(), b"ok");
    r.release();
    assert!(matches!(c.request("GET", &url, &[], &[]), Err(Error::TooLarge { what: "head", .. })));
    server.join().unwrap();
    // A retry would have connected (into the listen queue) before the
    // request returned: nothing may be waiting there now.
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err(), "no second connection");
}

fn window_clamp(r: &Response) -> i32 {
    outpost_hal::linux::window_clamp(r.tcp()).unwrap() as i32
}

#[test]
fn the_window_clamp_is_set_at_connect_and_moves_during_the_transfer() {
    // The delay detector's only lever: if this stops reaching the socket,
    // dynamic mode silently stops bounding the queue.
    let url = one_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".to_vec());
    let mut r = client().request_with_window("GET", &url, &[], &[], Some(40_000)).unwrap();
    assert_eq!(window_clamp(&r), 40_000);
    r.set_window(100_000).unwrap();
    assert_eq!(window_clamp(&r), 100_000);
    r.set_window(20_000).unwrap();
    assert_eq!(window_clamp(&r), 20_000);
    assert_eq!(r.read_to_vec(100).unwrap(), b"hello");
}

#[test]
fn gets_reuse_the_connection_and_survive_a_server_that_closed_it() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        // The first connection serves two requests, then closes without
        // saying so; the second serves one.
        for requests in [2, 1] {
            let (s, _) = l.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut s = s;
            for _ in 0..requests {
                let mut line = String::new();
                while r.read_line(&mut line).unwrap() > 0 && !line.ends_with("\r\n\r\n") {}
                assert!(!line.contains("Connection: close"), "a GET asks to keep the connection: {line}");
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").unwrap();
            }
        }
    });
    let c = Client::new(TEST_CA, Duration::from_secs(5), Duration::from_secs(5)).unwrap();
    let url = Url::parse(&format!("http://127.0.0.1:{port}/x")).unwrap();
    for _ in 0..3 {
        let mut r = c.request("GET", &url, &[], &[]).unwrap();
        assert_eq!(r.read_to_vec(10).unwrap(), b"ok");
        r.release();
    }
    server.join().unwrap(); // two connections for three requests, or the third times out
}

#[test]
fn the_receivers_rtt_comes_from_the_timestamps_the_server_echoes() {
    // Dynamic mode's delay signal: if TCP_INFO stops giving it, the agent
    // must notice (no timestamps) and time connects instead.
    let answer = [b"HTTP/1.1 200 OK\r\nContent-Length: 4000000\r\n\r\n".as_slice(), &vec![7u8; 4_000_000]].concat();
    let mut r = client().request("GET", &one_answer(answer), &[], &[]).unwrap();
    assert_eq!(r.read_to_vec(4_000_000).unwrap().len(), 4_000_000);
    let p = r.path_info().unwrap();
    let stamped = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_timestamps").map_or(true, |v| v.trim() != "0");
    assert_eq!(p.timestamps, stamped, "{p:?}");
    if stamped {
        let rtt = p.rcv_rtt.expect("4 MB over loopback with timestamps gives receiver RTT samples");
        assert!(rtt < Duration::from_secs(1), "{p:?}");
    } else {
        assert_eq!(p.rcv_rtt, None);
    }
}

#[test]
fn a_set_buffer_stays_with_the_kept_connection_until_it_is_unlocked() {
    // A buffer that was set stops the kernel's autotuning for good: it
    // goes back to the idle slot with the connection, and once the
    // pacer lets go of it the connection is not kept.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = accepted.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { return };
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut s = s;
                loop {
                    let mut line = String::new();
                    while r.read_line(&mut line).unwrap_or(0) > 0 && !line.ends_with("\r\n\r\n") {}
                    if line.is_empty() || s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").is_err() {
                        return;
                    }
                }
            });
        }
    });
    let c = Client::new(TEST_CA, Duration::from_secs(5), Duration::from_secs(5)).unwrap();
    let url = Url::parse(&format!("http://127.0.0.1:{port}/x")).unwrap();
    let mut r = c.request("GET", &url, &[], &[]).unwrap();
    r.set_recv_buffer(32 * 1024).unwrap();
    assert_eq!(r.read_to_vec(10).unwrap(), b"ok");
    r.release();
    let mut r = c.request("GET", &url, &[], &[]).unwrap();
    assert_eq!(r.rcvbuf, Some(32 * 1024), "the kept connection remembers its buffer");
    r.unlock_recv_buffer();
    assert_eq!(r.read_to_vec(10).unwrap(), b"ok");
    r.release();
    let mut r = c.request("GET", &url, &[], &[]).unwrap();
    assert_eq!(r.rcvbuf, None);
    assert_eq!(r.read_to_vec(10).unwrap(), b"ok");
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2, "a new connection after the unlock");
}

/// A CA made by `outpost-server init`; plain HTTP never uses it.
const TEST_CA: &str = include_str!("../../testdata/ca-cert.pem");

#[test]
fn a_client_certificate_the_agent_cannot_use_is_refused_before_it_is_set() {
    let c = client();
    assert!(c.check_identity(b"", b"").is_ok(), "none: nothing to present");
    let e = c.check_identity(b"not a certificate", b"not a key").unwrap_err();
    assert!(e.to_string().contains("client certificate or its key cannot be used"), "{e}");
    // An ECDSA key that is not the certificate's.
    let cert = rustls_pemfile::certs(&mut TEST_CA.as_bytes()).next().unwrap().unwrap();
    let alg = &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING;
    let key = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &ring::rand::SystemRandom::new()).unwrap();
    assert!(c.check_identity(&cert, key.as_ref()).is_err(), "a key that does not match the certificate");
    assert!(c.set_identity(&cert, key.as_ref()).is_err());
}
