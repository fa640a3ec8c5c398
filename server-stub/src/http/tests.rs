//! Tests of the request reader and the response writer.
use super::*;

#[test]
fn ranges() {
    assert_eq!(range(None, 10), RangeAnswer::Full);
    assert_eq!(range(Some("bytes=2-5"), 10), RangeAnswer::Partial(2, 5));
    assert_eq!(range(Some("bytes=2-"), 10), RangeAnswer::Partial(2, 9));
    assert_eq!(range(Some("bytes=2-100"), 10), RangeAnswer::Partial(2, 9));
    assert_eq!(range(Some("bytes=-3"), 10), RangeAnswer::Partial(7, 9));
    assert_eq!(range(Some("bytes=10-"), 10), RangeAnswer::Unsatisfiable);
    assert_eq!(range(Some("bytes=0-1,4-5"), 10), RangeAnswer::Full);
    assert_eq!(range(Some("bytes=5-2"), 10), RangeAnswer::Full);
    assert_eq!(range(Some("items=1-2"), 10), RangeAnswer::Full);
}

#[test]
fn requests_are_bounded() {
    smol::block_on(async {
        let ok = b"POST /x?y HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc".to_vec();
        let r = read_request(&mut BufReader::new(&ok[..])).await.unwrap();
        assert_eq!((r.method.as_str(), r.path.as_str(), &r.body[..]), ("POST", "/x", &b"abc"[..]));
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert!(matches!(read_request(&mut BufReader::new(big.as_bytes())).await, Err(ReadError::Reject(431, _))));
        let huge = format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", MAX_BODY + 1);
        assert!(matches!(read_request(&mut BufReader::new(huge.as_bytes())).await, Err(ReadError::Reject(413, _))));
        let chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        assert!(matches!(read_request(&mut BufReader::new(&chunked[..])).await, Err(ReadError::Reject(411, _))));
        let garbage = b"\x00\x01 nonsense\r\n\r\n".to_vec();
        assert!(matches!(read_request(&mut BufReader::new(&garbage[..])).await, Err(ReadError::Reject(400, _))));
        assert!(matches!(read_request(&mut BufReader::new(&b""[..])).await, Err(ReadError::Closed)));
    });
}

/// Hands out `data`, then end of stream; notes the largest read asked for.
struct Recorder {
    data: Vec<u8>,
    largest: std::rc::Rc<std::cell::Cell<usize>>,
}

impl AsyncRead for Recorder {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.largest.set(self.largest.get().max(buf.len()));
        let n = buf.len().min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data.drain(..n);
        std::task::Poll::Ready(Ok(n))
    }
}

#[test]
fn a_body_buffer_grows_with_what_arrives_not_with_what_is_announced() {
    let largest = std::rc::Rc::new(std::cell::Cell::new(0));
    let head = format!("POST /ocsinventory HTTP/1.1\r\nContent-Length: {MAX_BODY}\r\n\r\nabc");
    let r = Recorder { data: head.into_bytes(), largest: largest.clone() };
    let got = smol::block_on(read_request(&mut BufReader::new(r)));
    assert!(matches!(got, Err(ReadError::Reject(400, "truncated body"))));
    assert!(largest.get() <= 16 * 1024, "a {} byte buffer for 3 bytes of body", largest.get());
    let body = vec![7u8; MAX_BODY];
    let mut raw = format!("POST / HTTP/1.1\r\nContent-Length: {MAX_BODY}\r\n\r\n").into_bytes();
    raw.extend_from_slice(&body);
    let r = smol::block_on(read_request(&mut BufReader::new(&raw[..]))).unwrap();
    assert_eq!((r.body.len(), r.body.capacity()), (MAX_BODY, MAX_BODY), "never past its length");
    assert_eq!(r.body, body);
}

fn read(raw: &str) -> Result<Request, ReadError> {
    smol::block_on(read_request(&mut BufReader::new(raw.as_bytes())))
}

#[test]
fn content_length_is_digits_only_and_unambiguous() {
    let post = |lengths: &[&str]| {
        let h: String = lengths.iter().map(|l| format!("Content-Length: {l}\r\n")).collect();
        read(&format!("POST / HTTP/1.1\r\n{h}\r\nabcde"))
    };
    assert_eq!(post(&["3"]).unwrap().body, b"abc");
    assert_eq!(post(&["3", "3"]).unwrap().body, b"abc", "identical duplicates are one length");
    assert_eq!(post(&["3, 3"]).unwrap().body, b"abc");
    assert_eq!(post(&["0005"]).unwrap().body, b"abcde");
    for bad in [&["3", "5"][..], &["3, 5"], &["+0"], &["-1"], &["0x3"], &["3a"], &[""], &["1 2"], &["3", "+3"]] {
        assert!(matches!(post(bad), Err(ReadError::Reject(400, _))), "{bad:?}");
    }
    assert!(matches!(post(&["99999999999999999999"]), Err(ReadError::Reject(400, _))), "20 digits");
    assert!(matches!(post(&["9999999999999999999"]), Err(ReadError::Reject(413, _))));
}

#[test]
fn connection_persistence_follows_version_and_header() {
    let conn = |v: &str, h: &str| read(&format!("GET / HTTP/{v}\r\n{h}\r\n")).unwrap().connection;
    assert_eq!(conn("1.1", ""), Connection::Persistent);
    assert_eq!(conn("1.1", "Connection: Close\r\n"), Connection::Close);
    assert_eq!(conn("1.1", "Connection: keep-alive, close\r\n"), Connection::Close);
    assert_eq!(conn("1.0", ""), Connection::Close);
    assert_eq!(conn("1.0", "Connection: Keep-Alive\r\n"), Connection::KeepAlive);
    assert_eq!(conn("1.0", "Connection: upgrade\r\nConnection: keep-alive\r\n"), Connection::KeepAlive);
    assert_eq!(conn("1.0", "Connection: keep-alive-ish\r\n"), Connection::Close);
}

/// Records each write it is given.
#[derive(Default)]
struct Writes(Vec<Vec<u8>>);

impl AsyncWrite for Writes {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.0.push(buf.to_vec());
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

impl Transport for Writes {}

#[test]
fn head_and_small_body_go_out_in_one_write() {
    smol::block_on(async {
        let mut w = Writes::default();
        write_response(&mut w, Response::text(404, "not found"), false, Connection::KeepAlive).await.unwrap();
        assert_eq!(w.0.len(), 1);
        let text = String::from_utf8(w.0.concat()).unwrap();
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n"), "{text}");
        assert!(text.ends_with("Connection: keep-alive\r\n\r\nnot found"), "{text}");

        let path = std::env::temp_dir().join(format!("outpost-http-{}", std::process::id()));
        std::fs::write(&path, vec![7u8; FILE_CHUNK + 10]).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let resp =
            Response { status: 200, headers: vec![], body: Body::File { file, offset: 5, len: FILE_CHUNK as u64 + 5 } };
        let mut w = Writes::default();
        write_response(&mut w, resp, false, Connection::Persistent).await.unwrap();
        assert_eq!(w.0.len(), 2, "head with the first chunk, then the rest");
        assert!(w.0[0].starts_with(b"HTTP/1.1 200 OK\r\n") && w.0[0].ends_with(&[7u8; 16]));
        let all = w.0.concat();
        let head_len = all.windows(4).position(|x| x == b"\r\n\r\n").unwrap() + 4;
        assert_eq!(all.len() - head_len, FILE_CHUNK + 5);
    });
}

/// A file of `len` patterned bytes (its name removed at once), and the bytes.
fn patterned_file(name: &str, len: usize) -> (std::fs::File, Vec<u8>) {
    let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let path = std::env::temp_dir().join(format!("outpost-http-{name}-{}", std::process::id()));
    std::fs::write(&path, &bytes).unwrap();
    let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    (file, bytes)
}

/// A loopback connection: the client's end, and the server's end as
/// `serve` holds it (plain TCP under its write limits).
fn plain_pair() -> (std::net::TcpStream, crate::stall::StallLimit<smol::net::TcpStream>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let server = smol::net::TcpStream::try_from(l.accept().unwrap().0).unwrap();
    (client, crate::stall::StallLimit::new(server, Duration::from_secs(10), 0))
}

/// Read one response's head; its text and `Content-Length`.
fn read_head(c: &mut impl std::io::Read) -> (String, usize) {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        c.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let len = head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).unwrap().parse().unwrap();
    (head, len)
}

fn file_response(status: u16, file: &std::fs::File, offset: u64, len: u64) -> Response {
    Response { status, headers: vec![], body: Body::File { file: file.try_clone().unwrap(), offset, len } }
}

#[test]
fn a_file_body_on_a_plain_socket_is_sent_whole_by_range_and_not_for_head() {
    use std::io::Read;
    let (file, bytes) = patterned_file("sendfile", 3 << 20);
    let (mut client, mut w) = plain_pair();
    assert!(Transport::file_sink(&mut w).is_some(), "plain TCP goes by sendfile");
    let server = std::thread::spawn(move || {
        smol::block_on(async {
            write_response(&mut w, file_response(200, &file, 0, 3 << 20), false, Connection::Persistent).await?;
            write_response(&mut w, file_response(206, &file, 1000, 500_000), false, Connection::Persistent).await?;
            write_response(&mut w, file_response(200, &file, 0, 3 << 20), true, Connection::Persistent).await?;
            write_response(&mut w, Response::text(404, "not found"), false, Connection::Close).await
        })
    });
    let (head, len) = read_head(&mut client);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && len == 3 << 20, "{head}");
    let mut body = vec![0u8; len];
    client.read_exact(&mut body).unwrap();
    assert!(body == bytes, "the whole file");
    let (head, len) = read_head(&mut client);
    assert!(head.starts_with("HTTP/1.1 206 ") && len == 500_000, "{head}");
    let mut body = vec![0u8; len];
    client.read_exact(&mut body).unwrap();
    assert!(body == bytes[1000..501_000], "bytes 1000..=500999");
    let (head, len) = read_head(&mut client);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && len == 3 << 20, "HEAD: {head}");
    let (head, len) = read_head(&mut client);
    assert!(head.starts_with("HTTP/1.1 404 ") && len == 9, "no body after the HEAD's head: {head}");
    server.join().unwrap().unwrap();
}

#[test]
fn a_file_that_shrinks_while_it_is_sent_ends_the_connection_short() {
    use std::io::Read;
    // Far more than the loopback socket buffers hold, so that the server
    // is still sending when the file is cut to 1 MiB (the client reads
    // nothing but the head until then).
    let len = 48 << 20;
    let (file, bytes) = patterned_file("shrink", len);
    let (mut client, mut w) = plain_pair();
    let cut = file.try_clone().unwrap();
    let server = std::thread::spawn(move || {
        smol::block_on(write_response(&mut w, file_response(200, &file, 0, len as u64), false, Connection::Persistent))
    });
    let (head, announced) = read_head(&mut client);
    assert_eq!(announced, len, "{head}");
    cut.set_len(1 << 20).unwrap();
    let mut body = Vec::new();
    client.read_to_end(&mut body).unwrap();
    let e = server.join().unwrap().unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
    assert!(body.len() < len, "a body of {} bytes, its whole Content-Length", body.len());
    assert!(body.len() >= 1 << 20, "what the file still holds was sent ({} bytes)", body.len());
    assert!(body[..1 << 20] == bytes[..1 << 20], "the bytes the file still holds, unchanged");
}

#[test]
fn a_copied_file_that_ends_early_is_an_error_after_what_it_had() {
    let (file, bytes) = patterned_file("copy-short", 10);
    let mut w = Writes::default();
    let resp = file_response(200, &file, 2, 20);
    let e = smol::block_on(write_response(&mut w, resp, false, Connection::Persistent)).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
    let all = w.0.concat();
    assert!(all.starts_with(b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n"));
    assert!(all.ends_with(&bytes[2..]), "the 8 bytes the file had, then nothing");
}
