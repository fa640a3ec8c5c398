//! End-to-end tests with real processes on 127.0.0.1: outpost-server
//! (init, package add, device add, assign, serve, status) and outpost-agent
//! (run --once, status).

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use outpost_tests::{Member, Server, TempDir, agent, hex_comment, targz, text, tune_agent, zip};

const SCRIPT: &[u8] = b"#!/bin/sh\necho \"ran with $*\" >> \"$OUTPOST_MARK\"\n";

fn write(path: &Path, bytes: &[u8]) -> String {
    fs::write(path, bytes).unwrap();
    path.to_str().unwrap().to_string()
}

fn count_lines(p: &Path) -> usize {
    fs::read_to_string(p).map(|s| s.lines().count()).unwrap_or(0)
}

#[test]
fn deploys_launch_execute_store_and_reports_each_status() {
    let t = TempDir::new("e2e");
    let mut srv = Server::init(t.join("srv"), &[]);
    let mark = t.join("mark");
    let store_dest = t.join("stored/deep/dir");

    // LAUNCH a hyphenated file, split into several fragments.
    let mut big = SCRIPT.to_vec();
    big.extend(std::iter::repeat_n(b'#', 50_000));
    big.push(b'\n');
    let launch_arc = write(&t.join("launch.tar.gz"), &targz(&[Member::File("my-setup.sh", &big, 0o644)]));
    let launch = srv.package_add(&[
        "--file",
        &launch_arc,
        "--action",
        "launch",
        "--command",
        "my-setup.sh --quiet",
        "--frag-size",
        "4K",
    ]);
    // EXECUTE a shell line from a zip.
    let exec_arc = write(&t.join("exec.zip"), &zip(&[("tool.sh", SCRIPT, 0o644)]));
    let exec = srv.package_add(&[
        "--file",
        &exec_arc,
        "--action",
        "execute",
        "--command",
        "sh tool.sh exec && echo ok > done.txt",
    ]);
    // STORE a tree (with a dot file) to a path that does not exist yet.
    let store_arc = write(
        &t.join("store.tar.gz"),
        &targz(&[Member::File("conf/app.ini", b"[app]\nx=1\n", 0o640), Member::File(".hidden", b"h", 0o600)]),
    );
    let store = srv.package_add(&[
        "--file",
        &store_arc,
        "--action",
        "store",
        "--path",
        store_dest.to_str().unwrap(),
        "--priority",
        "0",
    ]);
    // EXECUTE without a file, exiting 3.
    let exit3 = srv.package_add(&["--action", "execute", "--command", "exit 3", "--priority", "9"]);

    let cfg = srv.device_add("pc-1", t.path());
    let mode = fs::metadata(&cfg).unwrap().permissions();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600, "agent config is private");
    for p in [launch, exec, store] {
        srv.assign(p, "pc-1", &[]);
    }
    let o = srv.cmd(&["assign", "--package", &exit3.to_string(), "--all"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(srv.statuses().iter().all(|(_, _, s)| s == "WAITING NOTIFICATION"));

    srv.start();
    let env = [("OUTPOST_MARK", mark.to_str().unwrap())];
    let o = agent(&cfg, &["run", "--once"], &env);
    assert!(o.status.success(), "agent run: {}", text(&o));

    // Effects on disk.
    let marks = fs::read_to_string(&mark).unwrap();
    assert!(marks.contains("ran with --quiet"), "launch ran: {marks}");
    assert!(marks.contains("ran with exec"), "execute ran: {marks}");
    assert_eq!(fs::read(store_dest.join("conf/app.ini")).unwrap(), b"[app]\nx=1\n");
    assert_eq!(fs::read(store_dest.join(".hidden")).unwrap(), b"h");

    // Statuses on the server, exactly as reported.
    assert_eq!(srv.status_of(launch, "pc-1"), "SUCCESS");
    assert_eq!(srv.status_of(exec, "pc-1"), "SUCCESS");
    assert_eq!(srv.status_of(store, "pc-1"), "SUCCESS");
    assert_eq!(srv.status_of(exit3, "pc-1"), "EXIT_CODE_3");

    // The agent's own view.
    let o = agent(&cfg, &["status"], &[]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && out.contains(&launch.to_string()) && out.contains("EXIT_CODE_3"), "{}", text(&o));

    // Nothing new: a second run does nothing and succeeds.
    let o = agent(&cfg, &["run", "--once"], &env);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(count_lines(&mark), 2);

    // Re-assigned without force: already installed, not run again.
    srv.assign(launch, "pc-1", &[]);
    let o = agent(&cfg, &["run", "--once"], &env);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(srv.status_of(launch, "pc-1"), "SUCCESS_ALREADY_SETUP");
    assert_eq!(count_lines(&mark), 2, "an installed package is not run again");

    // Forced: it runs again.
    srv.assign(launch, "pc-1", &["--force"]);
    let o = agent(&cfg, &["run", "--once"], &env);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(srv.status_of(launch, "pc-1"), "SUCCESS");
    assert_eq!(count_lines(&mark), 3, "a forced package runs again");

    // A device added later gets the --all package.
    let cfg2 = srv.device_add("pc-2", t.path());
    assert_eq!(srv.status_of(exit3, "pc-2"), "WAITING NOTIFICATION");
    let o = agent(&cfg2, &["run", "--once"], &env);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(srv.status_of(exit3, "pc-2"), "EXIT_CODE_3");

    assert!(srv.stop(), "serve exits 0 on SIGTERM");
}

#[test]
fn info_file_matches_ocsreports_byte_for_byte() {
    let t = TempDir::new("fixture");
    let srv = Server::init(t.join("srv"), &[]);
    let arc = write(&t.join("bash.tar.gz"), &targz(&[Member::File("bashscript.sh", b"echo hi\n", 0o644)]));
    let id = srv.package_add(&["--file", &arc, "--action", "execute", "--command", "sh bashscript.sh --verbose"]);
    let ours = fs::read_to_string(srv.dir.join(format!("download/{id}/info"))).unwrap();
    let fixture = include_str!("fixtures/ocsreports-2.8.1-execute.info");
    let digest = format!("{:x}", md5_of(&fs::read(&arc).unwrap()));
    assert!(ours.contains(&format!("DIGEST=\"{digest}\"")), "MD5 hex of the whole archive: {ours}");
    let normalised = ours
        .replace(&format!("ID=\"{id}\""), "ID=\"1795457331\"")
        .replace(&format!("DIGEST=\"{digest}\""), "DIGEST=\"4b3b03dc24a8dee176b41fe694fd38c3\"");
    assert_eq!(normalised, fixture);
    // Fragments and manifest sit beside it, in the OCS layout.
    assert!(srv.dir.join(format!("download/{id}/{id}-1")).is_file());
    assert!(srv.dir.join(format!("download/{id}/manifest")).is_file());
}

fn md5_of(data: &[u8]) -> u128 {
    use outpost_agent::engine::digest::hex;
    let mut h = outpost_agent::engine::digest::ArchiveHasher::new(outpost_agent::engine::info::DigestAlgo::Md5);
    h.update(data);
    u128::from_str_radix(&hex(&h.finish().1), 16).unwrap()
}

#[test]
fn package_add_rejects_bad_input_clearly() {
    let t = TempDir::new("reject");
    let srv = Server::init(t.join("srv"), &[]);
    let plain = write(&t.join("notes.txt"), b"just text");
    let arc = write(&t.join("a.tar.gz"), &targz(&[Member::File("setup.sh", b"x", 0o755)]));
    let cases: &[(&[&str], &str)] = &[
        (&["--file", &plain, "--action", "execute", "--command", "true"], "neither a zip nor a tar.gz"),
        (&["--file", &arc, "--action", "launch", "--command", "other.sh"], "not a file in"),
        (&["--file", &arc, "--action", "store"], "--path"),
        (&["--action", "launch", "--command", "setup.sh"], "--file"),
        (&["--action", "store", "--path", "/opt/x"], "--file"),
    ];
    for (args, msg) in cases {
        let mut a = vec!["package", "add"];
        a.extend_from_slice(args);
        let o = srv.cmd(&a);
        assert!(!o.status.success(), "{args:?} must fail");
        assert!(String::from_utf8_lossy(&o.stderr).contains(msg), "{args:?}: {}", text(&o));
    }
    assert!(fs::read_dir(srv.dir.join("download")).unwrap().next().is_none(), "nothing published");
    // init refuses to overwrite an existing server's keys.
    let o = outpost_tests::run(std::process::Command::new(outpost_tests::bin("outpost-server")).args([
        "init",
        "--dir",
        srv.dir.to_str().unwrap(),
        "--https",
        "127.0.0.1:1",
        "--http",
        "127.0.0.1:2",
    ]));
    assert!(
        !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("refusing to overwrite"),
        "{}",
        text(&o)
    );
}

#[test]
fn wrong_ca_or_wrong_name_downloads_nothing() {
    let t = TempDir::new("ca");
    let mut srv = Server::init(t.join("srv"), &[]);
    let other = Server::init(t.join("other"), &[]);
    let arc = write(&t.join("a.tar.gz"), &targz(&[Member::File("setup.sh", SCRIPT, 0o755)]));
    let id = srv.package_add(&["--file", &arc, "--action", "launch", "--command", "setup.sh"]);
    let cfg = srv.device_add("pc-1", t.path());
    srv.assign(id, "pc-1", &[]);
    srv.start();

    // Another server's CA in the agent's configuration.
    let good = fs::read_to_string(&cfg).unwrap();
    let our_ca = fs::read_to_string(srv.dir.join("tls/ca-cert.pem")).unwrap();
    let their_ca = fs::read_to_string(other.dir.join("tls/ca-cert.pem")).unwrap();
    fs::write(&cfg, good.replace(our_ca.trim_end(), their_ca.trim_end())).unwrap();
    let o = agent(&cfg, &["run", "--once"], &[]);
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        err.matches("neither signed by nor one of the certificates in server.ca_cert").count(),
        1,
        "one clear line: {err}"
    );
    let state = t.join("pc-1-state/packages");
    assert_eq!(fs::read_dir(&state).map(|d| d.count()).unwrap_or(0), 0, "nothing downloaded");
    assert_eq!(srv.status_of(id, "pc-1"), "WAITING NOTIFICATION");

    // The right CA but a certificate for another name.
    let mut named = Server::init(t.join("named"), &["--san", "outpost.invalid"]);
    let cfg_n = named.device_add("pc-n", t.path());
    let text_n = fs::read_to_string(&cfg_n).unwrap();
    let url = format!("https://outpost.invalid:{}", named.https_port);
    fs::write(&cfg_n, text_n.replace(&url, &format!("https://127.0.0.1:{}", named.https_port))).unwrap();
    named.start();
    let o = agent(&cfg_n, &["run", "--once"], &[]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not valid for the name \"127.0.0.1\""), "{}", text(&o));
}

#[test]
fn tampered_fragment_is_caught_before_anything_is_unpacked() {
    let t = TempDir::new("tamper");
    let mut srv = Server::init(t.join("srv"), &[]);
    let mark = t.join("mark");
    let mut body = SCRIPT.to_vec();
    body.extend(hex_comment(20_000));
    let arc = write(&t.join("a.tar.gz"), &targz(&[Member::File("setup.sh", &body, 0o755)]));
    let id = srv.package_add(&["--file", &arc, "--action", "launch", "--command", "setup.sh", "--frag-size", "1K"]);
    // Flip one byte of fragment 2 on the server.
    let frag = srv.dir.join(format!("download/{id}/{id}-2"));
    let good = fs::read(&frag).unwrap();
    let mut bytes = good.clone();
    bytes[100] ^= 0x55;
    fs::write(&frag, bytes).unwrap();
    let cfg = srv.device_add("pc-1", t.path());
    tune_agent(&cfg, "fragment_tries = 2");
    srv.assign(id, "pc-1", &[]);
    srv.start();
    let o = agent(&cfg, &["run", "--once"], &[("OUTPOST_MARK", mark.to_str().unwrap())]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("fragment 2 failed its digest"), "{}", text(&o));
    // A digest mismatch is transient (issue 10, item 10): not final after a burst.
    assert_ne!(srv.status_of(id, "pc-1"), "ERR_BAD_DIGEST", "{}", text(&o));
    assert!(!mark.exists(), "nothing ran");
    assert!(!t.path().join(format!("pc-1-state/packages/{id}/unpack")).exists(), "nothing unpacked");
    // The fragment path heals: the next run installs it.
    fs::write(&frag, good).unwrap();
    let o = agent(&cfg, &["run", "--once"], &[("OUTPOST_MARK", mark.to_str().unwrap())]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(srv.status_of(id, "pc-1"), "SUCCESS", "{}", text(&o));
}

#[test]
fn zip_slip_and_tar_symlink_escape_give_err_build_and_write_nothing_outside() {
    let t = TempDir::new("slip");
    let outside = t.join("outside");
    fs::create_dir_all(&outside).unwrap();
    let mut srv = Server::init(t.join("srv"), &[]);
    let zip_slip =
        write(&t.join("slip.zip"), &zip(&[("ok.txt", b"fine", 0o644), ("../../../../evil-zip", b"pwned", 0o644)]));
    let tar_abs = write(
        &t.join("abs.tar.gz"),
        &targz(&[Member::Symlink("link", outside.to_str().unwrap()), Member::File("link/evil-abs", b"pwned", 0o644)]),
    );
    let tar_rel = write(
        &t.join("rel.tar.gz"),
        &targz(&[Member::Symlink("up", "../../../../../../.."), Member::File("up/evil-rel", b"pwned", 0o644)]),
    );
    let tar_dotdot = write(&t.join("dotdot.tar.gz"), &targz(&[Member::File("../../evil-dotdot", b"pwned", 0o644)]));
    // Each link looks inside on its own; `x` through `d/up` is the package's parent.
    let tar_chain =
        write(&t.join("chain.tar.gz"), &targz(&[Member::Symlink("d/up", ".."), Member::Symlink("x", "d/up/..")]));
    let cfg = srv.device_add("pc-1", t.path());
    let mut ids = Vec::new();
    for arc in [&zip_slip, &tar_abs, &tar_rel, &tar_dotdot, &tar_chain] {
        let id = srv.package_add(&["--file", arc, "--action", "execute", "--command", "touch ran"]);
        srv.assign(id, "pc-1", &[]);
        ids.push(id);
    }
    srv.start();
    let o = agent(&cfg, &["run", "--once"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let log = String::from_utf8_lossy(&o.stderr);
    for id in &ids {
        assert_eq!(srv.status_of(*id, "pc-1"), "ERR_BUILD", "package {id}: {}", text(&o));
        assert!(log.contains(&format!("package {id}: refused archive member")), "refused by the member checks: {log}");
    }
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0, "nothing written through the link");
    let leaked: Vec<_> = walk(t.path()).into_iter().filter(|p| p.to_string_lossy().contains("evil")).collect();
    assert!(leaked.is_empty(), "files escaped: {leaked:?}");
    for p in ["/evil-zip", "/evil-rel", "/tmp/evil-zip", "/tmp/evil-dotdot"] {
        assert!(!Path::new(p).exists(), "{p} written");
    }
}

fn walk(p: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(p) {
        for e in rd.flatten() {
            let path = e.path();
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                out.extend(walk(&path));
            }
            out.push(path);
        }
    }
    out
}

/// A proxy that cuts the first fragment response after `cut` body bytes,
/// and relays the others whole. Records every request head.
fn truncating_proxy(upstream: u16, cut: usize) -> (u16, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    let count = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for client in l.incoming() {
            let Ok(mut client) = client else { continue };
            let n = count.fetch_add(1, Ordering::SeqCst);
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read(&mut b).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                seen.lock().unwrap().push(String::from_utf8_lossy(&head).into_owned());
                let mut up = TcpStream::connect(("127.0.0.1", upstream)).unwrap();
                up.write_all(&outpost_tests::with_connection_close(&head)).unwrap();
                let mut resp = Vec::new();
                up.read_to_end(&mut resp).unwrap();
                let body_at = resp.windows(4).position(|w| w == b"\r\n\r\n").map_or(0, |i| i + 4);
                let end = if n == 0 { (body_at + cut).min(resp.len()) } else { resp.len() };
                let _ = client.write_all(&resp[..end]);
                let _ = client.shutdown(Shutdown::Both);
            });
        }
    });
    (port, heads)
}

#[test]
fn truncated_response_is_resumed_with_range() {
    let t = TempDir::new("trunc");
    let http_port = outpost_tests::free_port();
    let (proxy, heads) = truncating_proxy(http_port, 3000);
    let loc = format!("127.0.0.1:{proxy}/download");
    let mut srv = Server::init_with_http(t.join("srv"), http_port, &["--fragment-loc", &loc]);
    let mark = t.join("mark");
    let mut body = SCRIPT.to_vec();
    body.extend(hex_comment(30_000));
    let arc = write(&t.join("a.tar.gz"), &targz(&[Member::File("setup.sh", &body, 0o755)]));
    let id = srv.package_add(&["--file", &arc, "--action", "launch", "--command", "setup.sh"]);
    let cfg = srv.device_add("pc-1", t.path());
    srv.assign(id, "pc-1", &[]);
    srv.start();
    let o = agent(&cfg, &["run", "--once"], &[("OUTPOST_MARK", mark.to_str().unwrap())]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(srv.status_of(id, "pc-1"), "SUCCESS");
    let heads = heads.lock().unwrap();
    assert!(heads.len() >= 2, "retried: {heads:?}");
    assert!(!heads[0].to_ascii_lowercase().contains("range:"), "first request is a plain GET");
    assert!(heads[1].contains("Range: bytes=3000-"), "resumed from the byte it had: {:?}", heads[1]);
}

#[test]
fn unknown_device_or_wrong_secret_gets_401_and_nothing_is_recorded() {
    use outpost_agent::rt::http::{Client, Url};
    let t = TempDir::new("auth");
    let mut srv = Server::init(t.join("srv"), &[]);
    let id = srv.package_add(&["--action", "execute", "--command", "true"]);
    let cfg = srv.device_add("pc-1", t.path());
    srv.assign(id, "pc-1", &[]);
    srv.start();
    let good = fs::read_to_string(&cfg).unwrap();
    let secret_line = good.lines().find(|l| l.starts_with("secret")).unwrap().to_string();

    let wrong = t.join("wrong.toml");
    fs::write(&wrong, good.replace(&secret_line, "secret = \"00112233\"")).unwrap();
    let o = agent(&wrong, &["run", "--once"], &[]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("(401)"), "{}", text(&o));

    let ghost = t.join("ghost.toml");
    fs::write(&ghost, good.replace("device_id = \"pc-1\"", "device_id = \"ghost\"")).unwrap();
    let o = agent(&ghost, &["run", "--once"], &[]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("(401)"), "{}", text(&o));

    // A forged report straight at the API.
    let ca = fs::read_to_string(srv.dir.join("tls/ca-cert.pem")).unwrap();
    let client = Client::new(&ca, std::time::Duration::from_secs(5), std::time::Duration::from_secs(5)).unwrap();
    let url = Url::parse(&format!("https://127.0.0.1:{}/api/v1/report", srv.https_port)).unwrap();
    let body = format!("outpost 1\nreport id=00000000000000ff package={id} status=SUCCESS\n");
    for auth in ["Outpost pc-1 wrongsecret", "Outpost ghost x", "Basic cGMtMTp4", ""] {
        let mut r = client.request("POST", &url, &[("Authorization", auth)], body.as_bytes()).unwrap();
        assert_eq!(r.status, 401, "{auth:?}");
        let _ = r.read_to_vec(1024);
    }
    assert_eq!(srv.statuses(), vec![(id, "pc-1".to_string(), "WAITING NOTIFICATION".to_string())], "nothing recorded");
    // The real device still works afterwards.
    let o = agent(&cfg, &["run", "--once"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(srv.status_of(id, "pc-1"), "SUCCESS");
}

#[test]
fn action_past_its_timeout_is_killed_and_reported() {
    let t = TempDir::new("timeout");
    let mut srv = Server::init(t.join("srv"), &[]);
    let id = srv.package_add(&["--action", "execute", "--command", "sleep 60"]);
    let cfg = srv.device_add("pc-1", t.path());
    tune_agent(&cfg, "execution_timeout = 1");
    srv.assign(id, "pc-1", &[]);
    srv.start();
    let o = agent(&cfg, &["run", "--once"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(srv.status_of(id, "pc-1"), "ERR_EXECUTE_TIMEOUT");
}

#[test]
fn https_fragments_come_from_the_https_listener() {
    let t = TempDir::new("https-frags");
    let mut srv = Server::init(t.join("srv"), &[]);
    let mark = t.join("mark");
    let mut body = SCRIPT.to_vec();
    body.extend(hex_comment(10_000));
    let arc = write(&t.join("a.tar.gz"), &targz(&[Member::File("setup.sh", &body, 0o755)]));
    let id = srv.package_add(&[
        "--file",
        &arc,
        "--action",
        "launch",
        "--command",
        "setup.sh",
        "--proto",
        "https",
        "--frag-size",
        "2K",
    ]);
    assert!(fs::read_to_string(srv.dir.join(format!("download/{id}/info"))).unwrap().contains("PROTO=\"HTTPS\""));
    let cfg = srv.device_add("pc-1", t.path());
    srv.assign(id, "pc-1", &[]);
    srv.start();
    let o = agent(&cfg, &["run", "--once"], &[("OUTPOST_MARK", mark.to_str().unwrap())]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(srv.status_of(id, "pc-1"), "SUCCESS");
    let log = fs::read_to_string(srv.dir.join("serve.log")).unwrap();
    assert!(log.contains(&format!("Https GET /download/{id}/{id}-1 -> 200")), "{log}");
    assert!(!log.contains("Http GET"), "no fragment over plain HTTP: {log}");
}

#[test]
fn fragment_serving_honours_head_range_and_416() {
    use outpost_agent::rt::http::{Client, Url};
    let t = TempDir::new("serving");
    let mut srv = Server::init(t.join("srv"), &[]);
    let arc = write(&t.join("a.tar.gz"), &targz(&[Member::File("f", &hex_comment(5_000), 0o644)]));
    let id = srv.package_add(&["--file", &arc, "--action", "execute", "--command", "true"]);
    let frag = fs::read(srv.dir.join(format!("download/{id}/{id}-1"))).unwrap();
    let len = frag.len();
    srv.start();
    let ca = fs::read_to_string(srv.dir.join("tls/ca-cert.pem")).unwrap();
    let c = Client::new(&ca, std::time::Duration::from_secs(5), std::time::Duration::from_secs(5)).unwrap();
    let http = |path: &str| Url::parse(&format!("http://127.0.0.1:{}{path}", srv.http_port)).unwrap();
    let https = |path: &str| Url::parse(&format!("https://127.0.0.1:{}{path}", srv.https_port)).unwrap();
    let frag_path = format!("/download/{id}/{id}-1");

    let mut r = c.request("HEAD", &http(&frag_path), &[], &[]).unwrap();
    assert_eq!((r.status, r.header("content-length")), (200, Some(len.to_string().as_str())));
    assert!(r.read_to_vec(10).unwrap().is_empty(), "HEAD has no body");

    let mut r = c.request("GET", &http(&frag_path), &[("Range", "bytes=100-")], &[]).unwrap();
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some(format!("bytes 100-{}/{len}", len - 1).as_str()));
    assert_eq!(r.read_to_vec(1 << 20).unwrap(), &frag[100..]);

    let mut r = c.request("GET", &http(&frag_path), &[("Range", &format!("bytes={len}-"))], &[]).unwrap();
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some(format!("bytes */{len}").as_str()));
    let _ = r.read_to_vec(1024);

    for (url, want) in [
        (http(&format!("/download/{id}/info")), 404), // metadata only over HTTPS
        (https(&format!("/download/{id}/info")), 200),
        (https(&format!("/download/{id}/manifest")), 200),
        (http(&format!("/download/{id}/../../server.toml")), 404),
        (http("/download/..%2f..%2fserver.toml/x"), 404),
        (http(&format!("/download/{id}/{id}-99")), 404),
        (http("/api/v1/poll"), 404), // control API only over HTTPS
    ] {
        let mut r = c.request("GET", &url, &[], &[]).unwrap();
        assert_eq!(r.status, want, "{url}");
        let _ = r.read_to_vec(1 << 20);
    }
    let mut r = c.request("GET", &https("/api/v1/poll"), &[], &[]).unwrap();
    assert_eq!(r.status, 405);
    let _ = r.read_to_vec(1024);
}

/// Real time is the point here: the agent's loop must poll again by itself.
#[test]
#[allow(clippy::disallowed_methods)]
fn agent_without_once_keeps_polling_at_the_server_interval() {
    let t = TempDir::new("loop");
    let mut srv = Server::init(t.join("srv"), &[]);
    let conf = fs::read_to_string(srv.dir.join("server.toml")).unwrap();
    fs::write(srv.dir.join("server.toml"), conf.replace("poll_interval = 3600", "poll_interval = 1")).unwrap();
    let cfg = srv.device_add("pc-1", t.path());
    srv.start();
    let mut child = std::process::Command::new(outpost_tests::bin("outpost-agent"))
        .arg("--config")
        .arg(&cfg)
        .arg("run")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Assigned after the agent's first poll: only a later poll can see it.
    let id = srv.package_add(&["--action", "execute", "--command", "true"]);
    srv.assign(id, "pc-1", &[]);
    let start = std::time::Instant::now();
    while srv.status_of(id, "pc-1") != "SUCCESS" {
        assert!(start.elapsed() < std::time::Duration::from_secs(20), "the agent never polled again");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn the_notify_command_can_delay_abort_and_is_told_when_done() {
    let t = TempDir::new("notify");
    let mut srv = Server::init(t.join("srv"), &[]);
    let mark = t.join("mark");
    let answer = t.join("answer");
    let asked = t.join("asked");
    let arc = write(&t.join("a.tar.gz"), &targz(&[Member::File("tool.sh", SCRIPT, 0o644)]));
    let ask = |srv: &Server, extra: &[&str]| {
        let mut a = vec!["--file", &arc, "--action", "execute", "--command", "sh tool.sh", "--notify-user"];
        a.extend_from_slice(&["--notify-text", "Install the tool?", "--notify-countdown", "0"]);
        a.extend_from_slice(extra);
        srv.package_add(&a)
    };
    let delayed = ask(
        &srv,
        &["--notify-can-delay", "--notify-can-abort", "--need-done-action", "--need-done-action-text", "All set"],
    );
    let cfg = srv.device_add("pc-1", t.path());
    let hook = format!(
        "echo \"$OUTPOST_NOTIFY_KIND $OUTPOST_NOTIFY_PACKAGE $OUTPOST_NOTIFY_TEXT\" >> {}; cat {}",
        asked.display(),
        answer.display()
    );
    tune_agent(&cfg, &format!("notify_command = '{hook}'"));
    srv.assign(delayed, "pc-1", &[]);
    srv.start();
    let env = [("OUTPOST_MARK", mark.to_str().unwrap())];

    fs::write(&answer, "delay\n").unwrap();
    let o = agent(&cfg, &["run", "--once"], &env);
    assert!(!o.status.success(), "a delayed package is not finished: {}", text(&o));
    assert_eq!(srv.status_of(delayed, "pc-1"), "NOTIFIED");
    assert!(!mark.exists());

    fs::write(&answer, "proceed\n").unwrap();
    let o = agent(&cfg, &["run", "--once"], &env);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(srv.status_of(delayed, "pc-1"), "SUCCESS");
    assert_eq!(count_lines(&mark), 1);

    // Abort where the package allows it, and where it does not.
    let abortable = ask(&srv, &["--notify-can-abort"]);
    let not_abortable = ask(&srv, &[]);
    srv.assign(abortable, "pc-1", &[]);
    srv.assign(not_abortable, "pc-1", &[]);
    fs::write(&answer, "abort\n").unwrap();
    let o = agent(&cfg, &["run", "--once"], &env);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(srv.status_of(abortable, "pc-1"), "ERR_ABORTED");
    assert_eq!(srv.status_of(not_abortable, "pc-1"), "SUCCESS", "abort is not offered, so it proceeds");
    assert_eq!(count_lines(&mark), 2);
    let log = fs::read_to_string(&asked).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(
        lines,
        [
            format!("before {delayed} Install the tool?"),
            format!("before {delayed} Install the tool?"),
            format!("done {delayed} All set"),
            format!("before {abortable} Install the tool?"),
            format!("before {not_abortable} Install the tool?"),
        ]
    );
}

#[test]
fn bandwidth_limits_reach_the_agent_and_show_in_its_status() {
    let t = TempDir::new("pace");
    let mut srv = Server::init(t.join("srv"), &[]);
    let conf = fs::read_to_string(srv.dir.join("server.toml")).unwrap();
    fs::write(srv.dir.join("server.toml"), conf.replacen("max_bandwidth = 0", "max_bandwidth = 4000000", 1)).unwrap();
    let arc = write(&t.join("a.tar.gz"), &targz(&[Member::File("f", &hex_comment(200_000), 0o644)]));
    let add = |srv: &Server| srv.package_add(&["--file", &arc, "--action", "execute", "--command", "true"]);
    let (p1, p2, p3) = (add(&srv), add(&srv), add(&srv));
    // A local cap stricter than the server's.
    let capped = srv.device_add("capped", t.path());
    fs::write(&capped, fs::read_to_string(&capped).unwrap() + "\n[download]\nmax_bandwidth = 3000000\n").unwrap();
    // No local cap: the server's applies.
    let plain = srv.device_add("plain", t.path());
    // A looser local cap cannot loosen the server's; dynamic mode on.
    let dynamic = srv.device_add("dynamic", t.path());
    fs::write(
        &dynamic,
        fs::read_to_string(&dynamic).unwrap() + "\n[download]\nmax_bandwidth = 9000000\ndynamic_bandwidth = true\n",
    )
    .unwrap();
    srv.assign(p1, "capped", &[]);
    srv.assign(p2, "plain", &[]);
    srv.assign(p3, "dynamic", &[]);
    srv.start();
    for (cfg, id, dev, want) in [(&capped, p1, "capped", "3000000 B/s"), (&plain, p2, "plain", "4000000 B/s")] {
        let o = agent(cfg, &["run", "--once"], &[]);
        assert!(o.status.success(), "{}", text(&o));
        assert_eq!(srv.status_of(id, dev), "SUCCESS");
        let st = agent(cfg, &["status"], &[]);
        let first = String::from_utf8_lossy(&st.stdout).lines().next().unwrap_or("").to_string();
        assert!(first.contains(want) && first.contains("limited by cap"), "{dev}: {first}");
    }
    let o = agent(&dynamic, &["-v", "run", "--once"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(srv.status_of(p3, "dynamic"), "SUCCESS");
    let st = String::from_utf8_lossy(&agent(&dynamic, &["status"], &[]).stdout).to_string();
    assert!(st.starts_with("download rate: "), "{st}");
    assert!(!st.contains("9000000"), "the server's 4 MB/s is stricter than the local 9 MB/s: {st}");
}
