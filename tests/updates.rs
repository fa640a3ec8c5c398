//! Updates by content objects with real processes on 127.0.0.1: a server
//! publishing two versions of a package, an agent installing both, and a
//! counting proxy in front of the fragment location measuring what the
//! second version costs on the wire.

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use outpost_tests::{Member, Server, TempDir, agent, random_bytes, targz, text, tune_agent};

/// A proxy to `upstream` counting the bytes of every answer and keeping
/// every request head. With `cut`, the first answer for an object is cut
/// after that many body bytes; with `paced`, answers go at 1 MiB/s.
struct Proxy {
    port: u16,
    bytes: Arc<AtomicU64>,
    lines: Arc<Mutex<Vec<String>>>,
}

#[allow(clippy::disallowed_methods)] // a real link: it paces in real time
fn proxy(upstream: u16, cut: Option<usize>, paced: bool) -> Proxy {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (bytes, lines) = (Arc::new(AtomicU64::new(0)), Arc::new(Mutex::new(Vec::new())));
    let (b, seen) = (bytes.clone(), lines.clone());
    let objects = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for client in l.incoming() {
            let Ok(mut client) = client else { continue };
            let (b, seen, objects) = (b.clone(), seen.clone(), objects.clone());
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut one = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read(&mut one).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(one[0]);
                }
                let line = String::from_utf8_lossy(&head).lines().next().unwrap_or("").to_string();
                let first_object = line.contains("/objects/") && objects.fetch_add(1, Ordering::SeqCst) == 0;
                seen.lock().unwrap().push(String::from_utf8_lossy(&head).into_owned());
                let mut up = TcpStream::connect(("127.0.0.1", upstream)).unwrap();
                up.write_all(&outpost_tests::with_connection_close(&head)).unwrap();
                let mut resp = Vec::new();
                up.read_to_end(&mut resp).unwrap();
                let body_at = resp.windows(4).position(|w| w == b"\r\n\r\n").map_or(0, |i| i + 4);
                let end = match cut {
                    Some(n) if first_object => (body_at + n).min(resp.len()),
                    _ => resp.len(),
                };
                let _ = socket2::SockRef::from(&client).set_send_buffer_size(32 * 1024);
                let start = std::time::Instant::now();
                let mut sent = 0;
                for piece in resp[..end].chunks(16 * 1024) {
                    if client.write_all(piece).is_err() {
                        return; // the agent was killed
                    }
                    sent += piece.len() as u64;
                    b.fetch_add(piece.len() as u64, Ordering::SeqCst);
                    let due = std::time::Duration::from_secs_f64(sent as f64 / (1 << 20) as f64);
                    if let Some(wait) = due.checked_sub(start.elapsed()).filter(|_| paced) {
                        std::thread::sleep(wait);
                    }
                }
                let _ = client.shutdown(Shutdown::Both);
            });
        }
    });
    Proxy { port, bytes, lines }
}

/// A server whose fragment location is a proxy, with a device `pc-1`.
struct Setup {
    t: TempDir,
    srv: Server,
    cfg: std::path::PathBuf,
    proxy: Proxy,
    dest: std::path::PathBuf,
}

fn setup(tag: &str, cut: Option<usize>) -> Setup {
    setup_paced(tag, cut, false)
}

fn setup_paced(tag: &str, cut: Option<usize>, paced: bool) -> Setup {
    let t = TempDir::new(tag);
    let http_port = outpost_tests::free_port();
    let proxy = proxy(http_port, cut, paced);
    let loc = format!("127.0.0.1:{}/download", proxy.port);
    let mut srv = Server::init_with_http(t.join("srv"), http_port, &["--fragment-loc", &loc]);
    let cfg = srv.device_add("pc-1", t.path());
    srv.start();
    let dest = t.join("dest");
    Setup { t, srv, cfg, proxy, dest }
}

impl Setup {
    /// Publish `files` as version `version` of `app` (store to `dest`),
    /// assign it, run the agent once; the bytes the proxy carried, the
    /// package id and the agent's output.
    fn install(&self, version: &str, files: &[(&str, &[u8])]) -> (u64, u64, String) {
        let members: Vec<Member<'_>> = files.iter().map(|(n, d)| Member::File(n, d, 0o644)).collect();
        let arc = self.t.join(&format!("v{version}.tar.gz"));
        fs::write(&arc, targz(&members)).unwrap();
        let id = self.srv.store_package(
            arc.to_str().unwrap(),
            self.dest.to_str().unwrap(),
            &["--name", "app", "--version", version],
        );
        self.srv.assign(id, "pc-1", &[]);
        let before = self.proxy.bytes.load(Ordering::SeqCst);
        let o = agent(&self.cfg, &["run", "--once"], &[]);
        (self.proxy.bytes.load(Ordering::SeqCst) - before, id, text(&o))
    }
}

const KIB: usize = 1024;

#[test]
fn a_new_version_fetches_about_only_the_changed_file_and_the_tree_is_rebuilt() {
    let s = setup("upd-changed", None);
    let (a, b1, b2) = (random_bytes(900 * KIB, 1), random_bytes(600 * KIB, 3), random_bytes(600 * KIB, 5));
    let (first, id1, out) = s.install("1.0", &[("bin/a.bin", &a), ("b.bin", &b1), ("etc/c.txt", b"c")]);
    assert_eq!(s.srv.status_of(id1, "pc-1"), "SUCCESS", "{out}");
    assert!(first >= (1500 * KIB) as u64, "v1 fetched whole: {first}");
    let (second, id2, out) = s.install("1.1", &[("bin/a.bin", &a), ("b.bin", &b2), ("etc/c.txt", b"c2")]);
    assert_eq!(s.srv.status_of(id2, "pc-1"), "SUCCESS", "{out}");
    assert_eq!(fs::read(s.dest.join("b.bin")).unwrap(), b2);
    assert_eq!(fs::read(s.dest.join("bin/a.bin")).unwrap(), a);
    assert_eq!(fs::read(s.dest.join("etc/c.txt")).unwrap(), b"c2");
    // The changed file and the small one, their headers, nothing of a.bin.
    let changed = (600 * KIB + 2) as u64;
    assert!(second >= changed && second <= changed * 105 / 100, "v2 carried {second} bytes for {changed} changed");
    let lines = s.proxy.lines.lock().unwrap();
    assert!(lines.iter().any(|l| l.contains("/download/objects/")), "objects were fetched");
    assert!(!lines.iter().any(|l| l.contains(&format!("/{id2}-1 "))), "no fragment of v2");
}

#[test]
fn a_cut_object_answer_resumes_at_the_byte_it_had() {
    let s = setup("upd-cut", Some(100_000));
    let a = random_bytes(700 * KIB, 7);
    let (_, id, out) = s.install("1", &[("a.bin", &a)]);
    assert_eq!(s.srv.status_of(id, "pc-1"), "SUCCESS", "{out}");
    assert_eq!(fs::read(s.dest.join("a.bin")).unwrap(), a);
    let lines = s.proxy.lines.lock().unwrap();
    let objects: Vec<_> = lines.iter().filter(|l| l.contains("/objects/")).collect();
    assert!(objects[1].contains("Range: bytes=100000-"), "resumed: {:?}", objects[1]);
}

#[test]
#[allow(clippy::disallowed_methods)] // a real agent on a real link: it is killed in real time
fn a_kill_mid_object_resumes_and_fetches_little_again() {
    let s = setup_paced("upd-kill", None, true);
    let a = random_bytes(3 * 1024 * KIB, 21);
    let members = [Member::File("a.bin", &a, 0o644)];
    let arc = s.t.join("v1.tar.gz");
    fs::write(&arc, targz(&members)).unwrap();
    let dest = s.dest.to_str().unwrap();
    let id = s.srv.store_package(arc.to_str().unwrap(), dest, &["--name", "app", "--version", "1"]);
    s.srv.assign(id, "pc-1", &[]);
    let mut child = std::process::Command::new(outpost_tests::bin("outpost-agent"))
        .arg("--config")
        .arg(&s.cfg)
        .args(["run", "--once"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while s.proxy.bytes.load(Ordering::SeqCst) < 2 * 1024 * KIB as u64 {
        assert!(start.elapsed() < std::time::Duration::from_secs(60), "no progress");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL, in the middle of the objects
    child.wait().unwrap();
    let o = agent(&s.cfg, &["run", "--once"], &[]);
    assert_eq!(s.srv.status_of(id, "pc-1"), "SUCCESS", "{}", text(&o));
    assert_eq!(fs::read(s.dest.join("a.bin")).unwrap(), a);
    // What was durable before the kill is not fetched again: at most one
    // checkpoint interval and the socket buffers (the whole 2 MiB sent
    // before the kill would be, if the journal did not hold).
    let sent = s.proxy.bytes.load(Ordering::SeqCst);
    assert!(sent <= (a.len() + 1024 * KIB) as u64, "{sent} bytes sent for {}", a.len());
}

#[test]
fn a_corrupt_object_is_refused_and_the_installed_version_stays() {
    let s = setup("upd-corrupt", None);
    let (a, b1, b2) = (random_bytes(300 * KIB, 9), random_bytes(300 * KIB, 11), random_bytes(300 * KIB, 13));
    let (_, id1, out) = s.install("1", &[("a.bin", &a), ("b.bin", &b1)]);
    assert_eq!(s.srv.status_of(id1, "pc-1"), "SUCCESS", "{out}");
    // Version 2 is published, then every object it adds is damaged on the server.
    let objects = s.srv.dir.join("download/objects");
    let before: Vec<_> = walk(&objects);
    tune_agent(&s.cfg, "fragment_tries = 2");
    let members = [Member::File("a.bin", &a, 0o644), Member::File("b.bin", &b2, 0o644)];
    fs::write(s.t.join("v2.tar.gz"), targz(&members)).unwrap();
    let v2 = s.t.join("v2.tar.gz");
    let dest = s.dest.to_str().unwrap();
    let id2 = s.srv.store_package(v2.to_str().unwrap(), dest, &["--name", "app", "--version", "2"]);
    let added: Vec<_> = walk(&objects).into_iter().filter(|p| !before.contains(p)).collect();
    assert!(!added.is_empty());
    for p in &added {
        let mut bytes = fs::read(p).unwrap();
        bytes[10] ^= 0x55;
        fs::write(p, bytes).unwrap();
    }
    s.srv.assign(id2, "pc-1", &[]);
    let o = agent(&s.cfg, &["run", "--once"], &[]);
    assert!(text(&o).contains("failed its digest"), "{}", text(&o));
    assert_ne!(s.srv.status_of(id2, "pc-1"), "SUCCESS");
    assert_eq!(fs::read(s.dest.join("b.bin")).unwrap(), b1, "version 1 stays");
}

#[test]
fn without_objects_on_the_server_the_fragments_are_fetched() {
    let s = setup("upd-fallback", None);
    let a = random_bytes(200 * KIB, 15);
    let (_, id1, out) = s.install("1", &[("a.bin", &a)]);
    assert_eq!(s.srv.status_of(id1, "pc-1"), "SUCCESS", "{out}");
    // Objects gone (a mirror that copies fragments only): version 2 still installs.
    fs::remove_dir_all(s.srv.dir.join("download/objects")).unwrap();
    let b = random_bytes(200 * KIB, 17);
    let members = [Member::File("a.bin", &b, 0o644)];
    let v2 = s.t.join("v2.tar.gz");
    fs::write(&v2, targz(&members)).unwrap();
    let dest = s.dest.to_str().unwrap();
    let id2 = s.srv.store_package(v2.to_str().unwrap(), dest, &["--name", "app", "--version", "2"]);
    fs::remove_dir_all(s.srv.dir.join("download/objects")).unwrap();
    s.srv.assign(id2, "pc-1", &[]);
    let o = agent(&s.cfg, &["run", "--once"], &[]);
    assert_eq!(s.srv.status_of(id2, "pc-1"), "SUCCESS", "{}", text(&o));
    assert!(text(&o).contains("fetching its fragments"), "{}", text(&o));
    assert_eq!(fs::read(s.dest.join("a.bin")).unwrap(), b);
}

#[test]
fn a_signed_tree_with_a_parent_path_is_refused_and_writes_nothing() {
    use outpost_agent::engine::manifest::Manifest;
    use ring::signature::{Ed25519KeyPair, KeyPair};
    let s = setup("upd-evil", None);
    let a = random_bytes(100 * KIB, 19);
    let members = [Member::File("a.bin", &a, 0o644)];
    let v1 = s.t.join("v1.tar.gz");
    fs::write(&v1, targz(&members)).unwrap();
    let dest = s.dest.to_str().unwrap();
    let id = s.srv.store_package(v1.to_str().unwrap(), dest, &["--name", "app", "--version", "1"]);
    // Re-sign the manifest with the server's own key, with a path leaving the tree.
    let key = Ed25519KeyPair::from_pkcs8(&fs::read(s.srv.dir.join("keys/signing.pk8")).unwrap()).unwrap();
    let path = s.srv.dir.join(format!("download/{id}/manifest"));
    let pk: [u8; 32] = key.public_key().as_ref().try_into().unwrap();
    let mut m = Manifest::decode_verified(&fs::read(&path).unwrap(), &pk).unwrap();
    m.tree.as_mut().unwrap().entries[0].path = "../../escaped.bin".into();
    fs::write(&path, m.encode_signed(|b| key.sign(b).as_ref().try_into().unwrap())).unwrap();
    s.srv.assign(id, "pc-1", &[]);
    let o = agent(&s.cfg, &["run", "--once"], &[]);
    assert_ne!(s.srv.status_of(id, "pc-1"), "SUCCESS", "{}", text(&o));
    assert!(text(&o).contains("malformed manifest"), "the manifest itself is refused: {}", text(&o));
    assert!(!s.dest.exists(), "nothing stored");
    let escaped = walk(s.t.path()).into_iter().filter(|p| p.ends_with("escaped.bin")).count();
    assert_eq!(escaped, 0);
}

fn walk(p: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(p) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn objects_of_an_https_package_come_from_the_tls_listener_only() {
    let t = TempDir::new("upd-https");
    let mut srv = Server::init(t.join("srv"), &[]);
    let cfg = srv.device_add("pc-1", t.path());
    srv.start();
    let a = random_bytes(150 * KIB, 23);
    let arc = t.join("v1.tar.gz");
    fs::write(&arc, targz(&[Member::File("a.bin", &a, 0o644)])).unwrap();
    let dest = t.join("dest");
    let id = srv.store_package(
        arc.to_str().unwrap(),
        dest.to_str().unwrap(),
        &["--proto", "https", "--name", "app", "--version", "1"],
    );
    srv.assign(id, "pc-1", &[]);
    let o = agent(&cfg, &["run", "--once"], &[]);
    assert_eq!(srv.status_of(id, "pc-1"), "SUCCESS", "{}", text(&o));
    assert_eq!(fs::read(dest.join("a.bin")).unwrap(), a);
    let log = fs::read_to_string(srv.dir.join("serve.log")).unwrap();
    assert!(log.contains("Https GET /download/objects-tls/"), "{log}");
    // Not one object over plain HTTP, even asked for by name.
    let objects = walk(&srv.dir.join("download/objects-tls"));
    assert!(!objects.is_empty() && !srv.dir.join("download/objects").exists());
    let name = objects[0].file_name().unwrap().to_string_lossy().into_owned();
    for path in
        [format!("/download/objects-tls/{}/{name}", &name[..2]), format!("/download/objects/{}/{name}", &name[..2])]
    {
        let mut c = TcpStream::connect(("127.0.0.1", srv.http_port)).unwrap();
        write!(c, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut answer = String::new();
        let _ = c.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 404"), "{path}: {answer}");
    }
}
