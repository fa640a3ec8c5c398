//! Fragments served by a real nginx (Debian's, installed when missing), set
//! up the way the README tells users: `public.fragment_loc` pointing at an
//! nginx `location` that aliases `DIR/download`. nginx's log shows the
//! agent keeping one connection across fragments.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use outpost_tests::{Member, Server, TempDir, free_port, random_bytes, targz, text, tune_agent};

/// nginx in the foreground on 127.0.0.1:`port`, serving `download` at
/// `/outpost/`; its access log is `t/access.log`. Killed on drop.
struct Nginx(Child);

impl Nginx {
    fn start(t: &TempDir, port: u16, download: &Path) -> Self {
        let p = t.path().display();
        let conf = t.join("nginx.conf");
        fs::create_dir_all(t.join("tmp")).unwrap();
        fs::write(
            &conf,
            format!(
                "daemon off;\nmaster_process off;\nworker_processes 1;\npid {p}/nginx.pid;\nerror_log {p}/error.log;\n\
                 events {{ worker_connections 64; }}\n\
                 http {{\n  log_format conn '$remote_addr - - [$time_local] \"$request\" $status $body_bytes_sent \
                 conn=$connection reqs=$connection_requests';\n  access_log {p}/access.log conn;\n  client_body_temp_path {p}/tmp;\n  proxy_temp_path {p}/tmp;\n\
                 \x20 fastcgi_temp_path {p}/tmp;\n  uwsgi_temp_path {p}/tmp;\n  scgi_temp_path {p}/tmp;\n\
                 \x20 server {{\n    listen 127.0.0.1:{port};\n    location /outpost/ {{ alias {}/; }}\n  }}\n}}\n",
                download.display()
            ),
        )
        .unwrap();
        let child = outpost_tests::spawn_nginx(t.path(), &conf, port);
        Self(child)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A server whose fragments nginx serves, one package of `frags` fragments
/// of `frag_size` assigned to device `d1`. Returns the server, nginx, the
/// package id and the agent's config.
fn setup(t: &TempDir, payload: usize, frag_size: &str) -> (Server, Nginx, u64, PathBuf) {
    // nginx first: the server's free ports are picked while nginx holds its own.
    let port = free_port();
    let nginx = Nginx::start(t, port, &t.join("srv/download"));
    let loc = format!("127.0.0.1:{port}/outpost");
    let mut srv = Server::init(t.join("srv"), &["--fragment-loc", &loc]);
    let data = random_bytes(payload, 7);
    let arc = t.join("pkg.tar.gz");
    fs::write(&arc, targz(&[Member::File("payload.bin", &data, 0o644)])).unwrap();
    let arc = arc.to_str().unwrap().to_string();
    let dest = t.join("installed");
    let id = srv.package_add(&[
        "--file",
        &arc,
        "--action",
        "store",
        "--path",
        dest.to_str().unwrap(),
        "--frag-size",
        frag_size,
    ]);
    let cfg = srv.device_add("d1", t.path());
    srv.assign(id, "d1", &[]);
    srv.start();
    (srv, nginx, id, cfg)
}

#[test]
fn agent_installs_from_fragments_served_by_nginx() {
    let t = TempDir::new("nginx");
    let (srv, _nginx, id, cfg) = setup(&t, 300_000, "64K");
    let o = outpost_tests::agent(&cfg, &["run", "--once"], &[]);
    let nginx_log = || fs::read_to_string(t.join("error.log")).unwrap_or_default();
    assert!(o.status.success(), "{}\nnginx: {}", text(&o), nginx_log());
    assert_eq!(srv.status_of(id, "d1"), "SUCCESS");
    let log = fs::read_to_string(t.join("access.log")).unwrap();
    let gets =
        log.lines().filter(|l| l.contains(&format!("\"GET /outpost/{id}/{id}-")) && l.contains("\" 200 ")).count();
    let frags = fs::read_dir(srv.dir.join(format!("download/{id}")))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with(&format!("{id}-")))
        .count();
    assert!(gets >= 5 && gets == frags, "every fragment came from nginx once ({gets} GETs, {frags} files):\n{log}");
    // One connection for all of them: the agent keeps it between fragments.
    let conns: std::collections::HashSet<&str> =
        log.lines().filter_map(|l| l.split_whitespace().find(|w| w.starts_with("conn="))).collect();
    assert_eq!(conns.len(), 1, "fragments share a kept-alive connection:\n{log}");
}

#[test]
#[allow(clippy::disallowed_methods)] // real processes: a bounded wait for progress
fn a_killed_download_resumes_from_nginx_with_a_range_request() {
    let t = TempDir::new("nginx-resume");
    let (srv, _nginx, id, cfg) = setup(&t, 2_000_000, "4M");
    // Slow and with frequent checkpoints, so that it is killed mid-fragment.
    let slow = t.join("slow.toml");
    fs::copy(&cfg, &slow).unwrap();
    tune_agent(&slow, "checkpoint_bytes = 65536");
    fs::write(&slow, fs::read_to_string(&slow).unwrap() + "\n[download]\nmax_bandwidth = 200000\n").unwrap();
    let mut child = Command::new(outpost_tests::bin("outpost-agent"))
        .args(["--config"])
        .arg(&slow)
        .args(["run", "--once"])
        .stdin(Stdio::null())
        .stderr(fs::File::create(t.join("slow.log")).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let archive = t.join(&format!("d1-state/packages/{id}/archive"));
    let cached = || fs::metadata(&archive).map_or(0, |m| m.len());
    while cached() < 256 * 1024 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the agent ended before it was killed: {}",
            fs::read_to_string(t.join("slow.log")).unwrap_or_default()
        );
        assert!(start.elapsed() < Duration::from_secs(30), "no progress");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL to the agent alone
    child.wait().unwrap();
    let o = outpost_tests::agent(&cfg, &["run", "--once"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("resuming at byte"), "{}", text(&o));
    assert_eq!(srv.status_of(id, "d1"), "SUCCESS");
    let log = fs::read_to_string(t.join("access.log")).unwrap();
    assert!(
        log.lines().any(|l| l.contains(&format!("\"GET /outpost/{id}/{id}-1")) && l.contains("\" 206 ")),
        "nginx answered the resumed request with 206:\n{log}"
    );
}

/// nginx with a master process: stopped with SIGTERM, on which the master
/// stops its workers (a SIGKILL would leave them running).
struct MasterNginx(Child);

impl Drop for MasterNginx {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

/// `GET path` on 127.0.0.1:`port`; the status code.
fn get_status(port: u16, path: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    String::from_utf8_lossy(&head[9..12]).parse().unwrap()
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Debian's nginx as packaged: a root master, workers as `www-data`. The
/// README's recipe with `init --download-dir`: nginx serves the download
/// directory, outside DIR, which stays 0700. The same nginx answers 403
/// for a server's default `DIR/download` (what users of the old recipe
/// hit) and for a `PROTO=HTTPS` package (not for static servers). Needs
/// root, for nginx's `user` directive.
#[test]
fn nginx_running_as_www_data_serves_a_download_dir_outside_dir() {
    if !Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n")) {
        eprintln!("skipped: nginx switches to www-data only when started as root");
        return;
    }
    let t = TempDir::new("nginx-www-data");
    let public = t.join("public");
    let port = free_port();
    let p = t.path().display();
    let conf = t.join("nginx.conf");
    fs::create_dir_all(t.join("tmp")).unwrap();
    fs::write(
        &conf,
        format!(
            "daemon off;\nuser www-data;\nworker_processes 1;\npid {p}/nginx.pid;\nerror_log {p}/error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log {p}/access.log;\n  client_body_temp_path {p}/tmp;\n  proxy_temp_path {p}/tmp;\n\
             \x20 fastcgi_temp_path {p}/tmp;\n  uwsgi_temp_path {p}/tmp;\n  scgi_temp_path {p}/tmp;\n\
             \x20 server {{\n    listen 127.0.0.1:{port};\n\
             \x20   location /outpost/ {{ alias {}/; }}\n\
             \x20   location /indir/ {{ alias {p}/old/download/; }}\n  }}\n}}\n",
            public.display()
        ),
    )
    .unwrap();
    let _nginx = MasterNginx(outpost_tests::spawn_nginx(t.path(), &conf, port));

    let loc = format!("127.0.0.1:{port}/outpost");
    let mut srv = Server::init(t.join("srv"), &["--fragment-loc", &loc, "--download-dir", public.to_str().unwrap()]);
    assert_eq!((mode(&srv.dir), mode(&public)), (0o700, 0o755), "DIR private, the download directory public");
    let arc = t.join("pkg.tar.gz");
    fs::write(&arc, targz(&[Member::File("payload.bin", &random_bytes(200_000, 9), 0o600)])).unwrap();
    let dest = t.join("installed");
    let add = |proto: &str| {
        srv.package_add(&[
            "--file",
            arc.to_str().unwrap(),
            "--action",
            "store",
            "--path",
            dest.to_str().unwrap(),
            "--frag-size",
            "64K",
            "--proto",
            proto,
        ])
    };
    let (id, https) = (add("http"), add("https"));
    assert!(!srv.dir.join(format!("download/{id}")).exists(), "nothing published under DIR");
    let cfg = srv.device_add("d1", t.path());
    srv.assign(id, "d1", &[]);
    // The commands that read published packages find them there too.
    let o = srv.cmd(&["package", "resign", "--id", &id.to_string(), "--valid-days", "30"]);
    assert!(o.status.success(), "{}", text(&o));
    srv.start();
    assert_eq!(get_status(srv.http_port, &format!("/download/{id}/{id}-1")), 200, "serve's plain route");

    let o = outpost_tests::agent(&cfg, &["run", "--once"], &[]);
    let error_log = || fs::read_to_string(t.join("error.log")).unwrap_or_default();
    assert!(o.status.success(), "{}\nnginx: {}", text(&o), error_log());
    assert_eq!(srv.status_of(id, "d1"), "SUCCESS");
    let log = fs::read_to_string(t.join("access.log")).unwrap();
    let gets =
        log.lines().filter(|l| l.contains(&format!("\"GET /outpost/{id}/{id}-")) && l.contains("\" 200 ")).count();
    assert!(gets >= 3, "the fragments came from nginx:\n{log}");

    assert_eq!(get_status(port, &format!("/outpost/{https}/{https}-1")), 403, "PROTO=HTTPS: not for nginx");
    let old = Server::init(t.join("old"), &[]);
    let in_dir = old.package_add(&["--file", arc.to_str().unwrap(), "--action", "store", "--path", "/x"]);
    assert_eq!(
        get_status(port, &format!("/indir/{in_dir}/{in_dir}-1")),
        403,
        "DIR/download inside the 0700 DIR: www-data cannot read it\n{}",
        error_log()
    );
}
