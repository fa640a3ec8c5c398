//! Helpers for Outpost's integration tests: temporary directories, real
//! `outpost-server` / `outpost-agent` processes on 127.0.0.1, archives.
//!
//! The binaries come from the workspace's target directory; `scripts/test`
//! builds them before running the tests (`cargo build --workspace --bins`).

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

mod db;
pub use db::{NULL, POSTGRES_ENV, TestDatabase, Value, backend_is_postgres, database_url, test_database};

/// Path of a workspace binary (debug profile), built beforehand.
pub fn bin(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let p = target.join("debug").join(name);
    assert!(p.exists(), "{} is missing: run `cargo build --workspace --bins` first (scripts/test does)", p.display());
    p
}

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh, empty directory named after `tag`.
    pub fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "outpost-it-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        Self(p)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// A path inside it.
    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A TCP port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// A request head (ending in an empty line) that asks the server to close
/// the connection after its response: what a test proxy relaying one
/// request per connection forwards, so that it can read the response to EOF.
pub fn with_connection_close(head: &[u8]) -> Vec<u8> {
    let mut h = head.strip_suffix(b"\r\n").unwrap_or(head).to_vec();
    h.extend_from_slice(b"Connection: close\r\n\r\n");
    h
}

/// Wait until something accepts on 127.0.0.1:port (a real process starting):
/// the one real-time wait of these tests, bounded to 20 s.
#[allow(clippy::disallowed_methods)]
pub fn wait_for_port(port: u16) {
    #[allow(clippy::disallowed_methods)]
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(20), "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Run Debian's `openssl` in `dir` with `args` (installed when missing, as
/// `scripts/test` does), returning its output; panics unless it succeeds.
/// The tests' certificates are made with it, as administrators make theirs.
pub fn openssl(dir: &Path, args: &[&str]) -> Output {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        if Command::new("openssl").arg("version").output().is_err() {
            let o = run(Command::new("sh")
                .args(["-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl"]));
            assert!(o.status.success(), "could not install Debian's openssl: {}", text(&o));
        }
    });
    let o = run(Command::new("openssl").current_dir(dir).args(args));
    assert!(o.status.success(), "openssl {args:?}: {}", text(&o));
    o
}

/// A certificate and its private key, PEM files made by [`openssl`].
pub struct Made {
    /// The certificate.
    pub cert: PathBuf,
    /// Its key (PKCS#8).
    pub key: PathBuf,
}

impl Made {
    /// The certificate's PEM text.
    pub fn pem(&self) -> String {
        std::fs::read_to_string(&self.cert).expect("certificate")
    }
}

/// `dir/name.crt` for subject `subj` (`/CN=…`) with the extensions `ext`
/// (an openssl extension file's lines), signed by `issuer` for two years,
/// and its new P-256 key `dir/name.key` (`openssl req -new`, `openssl x509 -req`).
pub fn openssl_signed(dir: &Path, name: &str, subj: &str, ext: &str, issuer: &Made) -> Made {
    let file = |ext: &str| dir.join(format!("{name}.{ext}"));
    let (cert, key, csr, extfile) = (file("crt"), file("key"), file("csr"), file("ext"));
    std::fs::write(&extfile, ext).expect("extension file");
    let (k, c, r, e) =
        (key.to_str().unwrap(), cert.to_str().unwrap(), csr.to_str().unwrap(), extfile.to_str().unwrap());
    let curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];
    openssl(dir, &[&["req", "-new"][..], &curve, &["-nodes", "-subj", subj, "-keyout", k, "-out", r]].concat());
    let (ic, ik) = (issuer.cert.to_str().unwrap(), issuer.key.to_str().unwrap());
    openssl(dir, &["x509", "-req", "-in", r, "-CA", ic, "-CAkey", ik, "-days", "730", "-extfile", e, "-out", c]);
    Made { cert, key }
}

/// Run a command, returning its output; panics if it cannot start.
pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("spawn")
}

/// Output as text, for messages.
pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// An outpost-server directory, and the `serve` process once started.
pub struct Server {
    /// The server directory.
    pub dir: PathBuf,
    /// HTTPS port.
    pub https_port: u16,
    /// HTTP port.
    pub http_port: u16,
    child: Option<Child>,
    /// The PostgreSQL database made for it (dropped with it), on that backend.
    database: Option<TestDatabase>,
}

impl Server {
    /// `outpost-server init` in `dir` with fresh ports and extra init args.
    pub fn init(dir: PathBuf, extra: &[&str]) -> Self {
        Self::init_with_http(dir, free_port(), extra)
    }

    /// `init` with a chosen HTTP port. On the PostgreSQL backend
    /// ([`backend_is_postgres`]) the server gets a database of its own
    /// (`--database`), unless `extra` names one.
    pub fn init_with_http(dir: PathBuf, http_port: u16, extra: &[&str]) -> Self {
        let https_port = free_port();
        let https = format!("127.0.0.1:{https_port}");
        let http = format!("127.0.0.1:{http_port}");
        let mut args = vec!["init", "--dir", dir.to_str().unwrap(), "--https", &https, "--http", &http];
        args.extend_from_slice(extra);
        let database = if extra.contains(&"--database") { None } else { test_database() };
        if let Some(db) = &database {
            args.extend_from_slice(&["--database", db.url()]);
        }
        let o = run(Command::new(bin("outpost-server")).args(&args));
        assert!(o.status.success(), "init failed: {}", text(&o));
        Self { dir, https_port, http_port, child: None, database }
    }

    /// `init` on SQLite whatever the backend of the run (what `migrate`
    /// starts from).
    pub fn init_sqlite(dir: PathBuf) -> Self {
        let (https_port, http_port) = (free_port(), free_port());
        let https = format!("127.0.0.1:{https_port}");
        let http = format!("127.0.0.1:{http_port}");
        let o = run(Command::new(bin("outpost-server")).args([
            "init",
            "--dir",
            dir.to_str().unwrap(),
            "--https",
            &https,
            "--http",
            &http,
        ]));
        assert!(o.status.success(), "init failed: {}", text(&o));
        Self { dir, https_port, http_port, child: None, database: None }
    }

    /// Another server directory on `like`'s ports (a copy of it, say), not
    /// started: what stands in its place while `like` is stopped.
    pub fn at(dir: PathBuf, like: &Server) -> Self {
        Self { dir, https_port: like.https_port, http_port: like.http_port, child: None, database: None }
    }

    /// A copy of this (stopped) server at `dir`, on the same ports, not
    /// started: its directory (`cp -a`) and its state, `state.db` with the
    /// directory or, on PostgreSQL, a new database copied from its own, which
    /// the copy's `server.toml` names. The two share nothing afterwards.
    pub fn copy_to(&self, dir: PathBuf) -> Self {
        assert!(self.child.is_none(), "stop the server before copying it");
        let o = run(Command::new("cp").arg("-a").arg(&self.dir).arg(&dir));
        assert!(o.status.success(), "cp -a: {}", text(&o));
        let database = self.database.as_ref().map(|db| {
            let copy = db.copy();
            let toml = dir.join("server.toml");
            let old = std::fs::read_to_string(&toml).expect("server.toml");
            assert_eq!(old.matches(db.url()).count(), 1, "server.toml names {} once: {old}", db.url());
            std::fs::write(&toml, old.replace(db.url(), copy.url())).expect("write server.toml");
            copy
        });
        Self { dir, https_port: self.https_port, http_port: self.http_port, child: None, database }
    }

    /// Run `outpost-server <args…> --dir DIR`.
    pub fn cmd(&self, args: &[&str]) -> Output {
        run(Command::new(bin("outpost-server")).args(args).arg("--dir").arg(&self.dir))
    }

    /// `package add`; returns the id.
    pub fn package_add(&self, args: &[&str]) -> u64 {
        let mut a = vec!["package", "add"];
        a.extend_from_slice(args);
        let o = self.cmd(&a);
        assert!(o.status.success(), "package add failed: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).trim().parse().expect("package id on stdout")
    }

    /// `package add --file FILE --action store --path DEST` with `extra`
    /// arguments; returns the package id.
    pub fn store_package(&self, file: &str, dest: &str, extra: &[&str]) -> u64 {
        let mut a = vec!["--file", file, "--action", "store", "--path", dest];
        a.extend_from_slice(extra);
        self.package_add(&a)
    }

    /// `device add`; returns the agent config path (state dir beside it).
    pub fn device_add(&self, id: &str, at: &Path) -> PathBuf {
        let cfg = at.join(format!("{id}.toml"));
        let state = at.join(format!("{id}-state"));
        let o = self.cmd(&[
            "device",
            "add",
            "--id",
            id,
            "--agent-config",
            cfg.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "device add failed: {}", text(&o));
        cfg
    }

    /// `assign --package P --device D` (plus extra args).
    pub fn assign(&self, package: u64, device: &str, extra: &[&str]) {
        let p = package.to_string();
        let mut a = vec!["assign", "--package", &p, "--device", device];
        a.extend_from_slice(extra);
        let o = self.cmd(&a);
        assert!(o.status.success(), "assign failed: {}", text(&o));
    }

    /// `status --json` as (package, device) → status.
    pub fn statuses(&self) -> Vec<(u64, String, String)> {
        let o = self.cmd(&["status", "--json"]);
        assert!(o.status.success(), "status failed: {}", text(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("status --json is JSON");
        v.as_array()
            .expect("array")
            .iter()
            .map(|r| {
                assert!(
                    r["updated"].as_str().is_some_and(|u| u.ends_with('Z') && u.len() == 20),
                    "RFC 3339 updated: {r}"
                );
                (
                    r["package"].as_u64().unwrap(),
                    r["device"].as_str().unwrap().to_string(),
                    r["status"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// The status of one package on one device.
    pub fn status_of(&self, package: u64, device: &str) -> String {
        self.statuses()
            .into_iter()
            .find(|(p, d, _)| *p == package && d == device)
            .map(|(_, _, s)| s)
            .unwrap_or_default()
    }

    /// Start `serve` and wait until both ports accept.
    pub fn start(&mut self) {
        self.child = Some(spawn_serve(&self.dir, None, "serve.log"));
        wait_for_port(self.https_port);
        wait_for_port(self.http_port);
    }

    /// Stop `serve` with SIGTERM and wait for it; returns whether it exited 0.
    pub fn stop(&mut self) -> bool {
        let Some(mut c) = self.child.take() else { return true };
        let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        c.wait().map(|s| s.success()).unwrap_or(false)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `outpost-server serve --dir DIR` (on `listen`'s HTTPS and HTTP ports
/// instead of `[listen]`, if given), its log at debug level in `DIR/log`.
/// The caller waits for the ports.
pub fn spawn_serve(dir: &Path, listen: Option<(u16, u16)>, log: &str) -> Child {
    let log = std::fs::File::create(dir.join(log)).expect("log file");
    let mut c = Command::new(bin("outpost-server"));
    c.args(["serve", "--dir"]).arg(dir);
    if let Some((https, http)) = listen {
        c.args(["--https", &format!("127.0.0.1:{https}"), "--http", &format!("127.0.0.1:{http}")]);
    }
    c.env("OUTPOST_LOG", "debug").stdin(Stdio::null()).stdout(Stdio::null()).stderr(log).spawn().expect("spawn serve")
}

/// Run `outpost-agent --config CFG <args…>` with extra environment.
pub fn agent(cfg: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(bin("outpost-agent"));
    c.arg("--config").arg(cfg).args(args).env("OUTPOST_LOG", "info");
    for (k, v) in env {
        c.env(k, v);
    }
    run(&mut c)
}

/// Start `outpost-agent --config CFG run --once` and SIGKILL it as soon as
/// the file `mark` holds a whole line (what the action under test writes
/// first): an agent killed during a package's action. Bounded to 20 s.
#[allow(clippy::disallowed_methods)] // a real process: a bounded wait
pub fn kill_agent_during_action(cfg: &Path, mark: &Path) {
    let mut child = Command::new(bin("outpost-agent"))
        .arg("--config")
        .arg(cfg)
        .args(["run", "--once"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the agent");
    let start = Instant::now();
    while !std::fs::read_to_string(mark).is_ok_and(|s| s.ends_with('\n')) {
        assert!(start.elapsed() < Duration::from_secs(20), "the action never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().expect("SIGKILL the agent");
    child.wait().expect("reap the agent");
}

/// Append `key = value` lines to the `[agent]` table of a config (it is the
/// last table `device add` writes).
pub fn tune_agent(cfg: &Path, lines: &str) {
    let mut f = std::fs::OpenOptions::new().append(true).open(cfg).expect("open config");
    writeln!(f, "{lines}").expect("append");
}

/// One archive member.
pub enum Member<'a> {
    /// A regular file with its mode.
    File(&'a str, &'a [u8], u32),
    /// A symbolic link.
    Symlink(&'a str, &'a str),
}

/// A tar.gz of `members`. Names are written raw, so hostile names (`..`,
/// absolute) can be made for tests.
pub fn targz(members: &[Member<'_>]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut b = tar::Builder::new(gz);
    for m in members {
        let mut h = tar::Header::new_gnu();
        let (name, data): (&str, &[u8]) = match m {
            Member::File(n, d, mode) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(d.len() as u64);
                (n, d)
            }
            Member::Symlink(n, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                h.set_link_name(target).expect("link name");
                (n, &[])
            }
        };
        let raw = &mut h.as_old_mut().name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        b.append(&h, data).expect("append");
    }
    b.into_inner().and_then(|gz| gz.finish()).expect("finish tar.gz")
}

/// A zip of regular files `(name, data, mode)`; names are written as given.
pub fn zip(files: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut w = ::zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data, mode) in files {
        let opts = ::zip::write::SimpleFileOptions::default().unix_permissions(*mode);
        w.start_file(*name, opts).expect("zip entry");
        w.write_all(data).expect("zip data");
    }
    w.finish().expect("finish zip").into_inner()
}

/// `n` pseudo-random bytes (xorshift from `seed`): incompressible test data.
pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A shell comment line of `n` pseudo-random hex digits: hard to compress,
/// harmless in a script.
pub fn hex_comment(n: usize) -> Vec<u8> {
    let mut v = b"# ".to_vec();
    v.extend(random_bytes(n, 0x2545_f491_4f6c_dd1d).into_iter().map(|b| b"0123456789abcdef"[(b & 15) as usize]));
    v.push(b'\n');
    v
}

/// An unsigned manifest for `data` cut into fragments of `frag` bytes
/// (package 7, format 1, no flags): what the engine-level tests download.
pub fn manifest_of(data: &[u8], frag: usize) -> outpost_agent::engine::manifest::Manifest {
    use outpost_agent::engine::manifest::{FORMAT, FragmentEntry, Manifest, sha256};
    Manifest {
        format: FORMAT,
        package_id: 7,
        version: 1,
        created: 0,
        info_sha256: [0; 32],
        archive_size: data.len() as u64,
        archive_sha256: sha256(data),
        fragments: data
            .chunks(frag.max(1))
            .map(|c| FragmentEntry { size: c.len() as u64, sha256: sha256(c) })
            .collect(),
        flags: 0,
        reboot_exit_codes: Vec::new(),
        unpacked: None,
        expires: None,
        release: None,
        tree: None,
    }
}

/// A TCP connection to 127.0.0.1:`port` from the loopback address `src`
/// (`127.0.0.5`, say: all of 127.0.0.0/8 is this host), so that a test can
/// be several clients with their own addresses.
pub fn connect_from(src: &str, port: u16) -> std::io::Result<TcpStream> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    let from: std::net::SocketAddr = format!("{src}:0").parse().map_err(std::io::Error::other)?;
    s.bind(&from.into())?;
    s.connect(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into())?;
    Ok(s.into())
}

/// One request over TLS (the server's CA `ca`, name 127.0.0.1) to
/// 127.0.0.1:`port` from `src`: `method path` with `headers` (whole lines
/// without CRLF) and `body`, `Connection: close`. Returns the status and body.
pub fn https_from(
    src: &str,
    port: u16,
    ca: &Path,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    use rustls::pki_types::pem::PemObject;
    use std::io::Read;
    let ca = rustls::pki_types::CertificateDer::from_pem_file(ca).map_err(std::io::Error::other)?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).map_err(std::io::Error::other)?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").map_err(std::io::Error::other)?;
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(cfg), name).map_err(std::io::Error::other)?;
    let tcp = connect_from(src, port)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    tls.write_all(head.as_bytes())?;
    tls.write_all(body)?;
    let mut raw = Vec::new();
    // A server that closes without close_notify (nginx may) is still an answer.
    if let Err(e) = tls.read_to_end(&mut raw)
        && (raw.is_empty() || e.kind() != std::io::ErrorKind::UnexpectedEof)
    {
        return Err(e);
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status =
        text.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| std::io::Error::other(text.clone()))?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    Ok((status, body))
}

/// Debian's nginx, installed (`apt-get install nginx`) when missing; the
/// tests that run it (`nginx.rs`, `proxy.rs`) need it, and `scripts/test`
/// installs it beforehand.
/// Start Debian's nginx with prefix `dir` and config `conf` (errors to
/// `dir/error.log`), wait until it listens on `port`, and check it is still
/// running.
pub fn spawn_nginx(dir: &Path, conf: &Path, port: u16) -> Child {
    let mut child = Command::new(nginx_bin())
        .args(["-e", &format!("{}/error.log", dir.display()), "-p"])
        .arg(dir)
        .arg("-c")
        .arg(conf)
        .stdin(Stdio::null())
        .spawn()
        .expect("start nginx");
    wait_for_port(port);
    let error_log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
    assert!(child.try_wait().unwrap().is_none(), "nginx stopped: {error_log}");
    child
}

pub fn nginx_bin() -> PathBuf {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    let find = || ["/usr/sbin/nginx", "/usr/bin/nginx"].iter().map(PathBuf::from).find(|p| p.exists());
    INSTALL.call_once(|| {
        if find().is_none() {
            let o = run(Command::new("sh")
                .args(["-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx"]));
            assert!(o.status.success(), "could not install Debian's nginx: {}", text(&o));
        }
    });
    find().expect("nginx is installed")
}

/// One scripted misbehaviour of a simulated fragment server (or its link),
/// used once, in order: the faults `tests/sim_download.rs` (the download
/// engine) and `tests/outpost_mode.rs` (the production agent loop) inject.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// Answer this status with no body.
    Status(u16),
    /// Ignore Range: 200 with the whole fragment.
    IgnoreRange,
    /// 206 with a Content-Range that starts 10 bytes after what was asked.
    WrongContentRange,
    /// Send only this many body bytes, then end the response cleanly (short body).
    Truncate(usize),
    /// The link goes down after this many body bytes (transfer error).
    LinkDown(usize),
    /// Flip one byte at this offset of the body.
    Corrupt(usize),
}
