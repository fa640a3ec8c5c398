//! The status page, its JSON API and `/metrics` against a running server
//! with real devices and agents (issue "A status page and an admin API").
//!
//! The browser test drives Debian's `chromium` headless over the DevTools
//! pipe (`admin/cdp.rs`): it logs in through the form (a wrong password
//! first), checks the DOM for the OCS console's counts, a download's
//! progress and a device's history, and keeps screenshots in
//! `target/artifacts/`. Chromium accepts the server's certificate by its
//! public key: `--ignore-certificate-errors-spki-list` with the SHA-256 of
//! the certificate's SPKI (computed with `openssl`), nothing else relaxed.

#[path = "admin/cdp.rs"]
mod cdp;
#[path = "admin/client.rs"]
mod client;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use outpost_tests::{Member, Server, TempDir, agent, random_bytes, targz, text};

/// A server with three devices, three packages and real agent runs:
/// `firefox` (exit 0) on pc-1, pc-2, pc-3 (pc-3 never polls), a package
/// named with markup (exit 3) on pc-1, and `maps` (6 fragments, one missing
/// on the server) on pc-2, whose download stops part way.
struct Scene {
    srv: Server,
    password: String,
    firefox: u64,
    evil: u64,
    maps: u64,
}

const EVIL_NAME: &str = "Fix <script>alert(1)</script>";

fn scene(t: &TempDir) -> Scene {
    let mut srv = Server::init(t.join("srv"), &[]);
    let firefox = srv.package_add(&[
        "--action",
        "execute",
        "--command",
        "exit 0",
        "--name",
        "firefox",
        "--version",
        "128.0.1",
        "--priority",
        "3",
    ]);
    let evil = srv.package_add(&["--action", "execute", "--command", "exit 3", "--name", EVIL_NAME]);
    let arc = t.join("maps.tar.gz");
    fs::write(&arc, targz(&[Member::File("maps.bin", &random_bytes(24 * 1024, 7), 0o644)])).unwrap();
    let dest = t.join("maps-dest");
    let maps =
        srv.store_package(arc.to_str().unwrap(), dest.to_str().unwrap(), &["--frag-size", "4K", "--name", "maps"]);
    let frags: Vec<_> = fs::read_dir(srv.dir.join(format!("download/{maps}"))).unwrap().flatten().collect();
    assert!(frags.len() >= 6, "{} files", frags.len());
    // The third fragment is missing: the download stops after two.
    fs::remove_file(srv.dir.join(format!("download/{maps}/{maps}-3"))).unwrap();
    let cfgs: Vec<PathBuf> = ["pc-1", "pc-2", "pc-3"].iter().map(|d| srv.device_add(d, t.path())).collect();
    for d in ["pc-1", "pc-2", "pc-3"] {
        srv.assign(firefox, d, &[]);
    }
    srv.assign(evil, "pc-1", &[]);
    srv.assign(maps, "pc-2", &[]);
    let o = srv.cmd(&["admin", "add", "--user", "root"]);
    assert!(o.status.success(), "{}", text(&o));
    let password = String::from_utf8_lossy(&o.stdout).trim().to_string();
    srv.start();
    agent(&cfgs[0], &["run", "--once"], &[]);
    // pc-2 twice: the second poll carries the progress of the first run.
    agent(&cfgs[1], &["run", "--once"], &[]);
    agent(&cfgs[1], &["run", "--once"], &[]);
    Scene { srv, password, firefox, evil, maps }
}

fn artifacts() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"), PathBuf::from);
    target.join("artifacts")
}

/// The base64 SHA-256 of the server certificate's SubjectPublicKeyInfo.
fn spki_hash(dir: &Path) -> String {
    let cert = dir.join("tls/server-cert.pem");
    let o = Command::new("sh")
        .arg("-c")
        .arg(
            "openssl x509 -in \"$0\" -pubkey -noout | openssl pkey -pubin -outform der \
              | openssl dgst -sha256 -binary | openssl enc -base64 -A",
        )
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn login_js(user: &str, password: &str) -> String {
    format!(
        "document.querySelector('input[name=user]').value = {};\
         document.querySelector('input[name=password]').value = {};\
         document.querySelector('main form button').click();",
        serde_json::json!(user),
        serde_json::json!(password)
    )
}

#[test]
fn the_status_page_in_chromium_shows_counts_progress_and_history() {
    if !cdp::available() {
        eprintln!("SKIPPED: Debian's chromium is not installed (apt-get install chromium; scripts/test does)");
        return;
    }
    let t = TempDir::new("admin-chromium");
    let s = scene(&t);
    let base = format!("https://127.0.0.1:{}", s.srv.https_port);
    let mut b = cdp::Browser::start(&t.join("profile"), &t.join("chromium.log"), &spki_hash(&s.srv.dir), 1100, 800);
    b.viewport(1100, 800, false);

    // No session: the login form.
    b.goto(&format!("{base}/admin/"));
    assert_eq!(b.eval("location.pathname"), "/admin/login");
    b.act_and_wait(&login_js("root", "not-the-password"));
    assert_eq!(b.eval("location.pathname"), "/admin/login", "a wrong password does not log in");
    assert!(b.text("#msg").contains("Wrong name or password"), "{}", b.text("main"));
    b.goto(&format!("{base}/admin/"));
    assert_eq!(b.eval("location.pathname"), "/admin/login", "still no session");
    b.act_and_wait(&login_js("root", &s.password));
    assert_eq!(b.eval("location.pathname"), "/admin/", "the right password logs in");

    // The OCS console's counts per package.
    let count = |b: &mut cdp::Browser, p: u64, k: &str| b.text(&format!("#pkg-{p} [data-k={k}]"));
    assert_eq!(count(&mut b, s.firefox, "success"), "2");
    assert_eq!(count(&mut b, s.firefox, "waiting"), "1", "pc-3 never polled");
    assert_eq!(count(&mut b, s.firefox, "errors"), "0");
    assert_eq!(count(&mut b, s.evil, "errors"), "1", "exit 3");
    let maps_row = format!(
        "{}/{}/{}/{}",
        count(&mut b, s.maps, "waiting"),
        count(&mut b, s.maps, "notified"),
        count(&mut b, s.maps, "success"),
        count(&mut b, s.maps, "errors")
    );
    assert_eq!(maps_row, "0/1/0/0", "maps is under way on pc-2");
    assert!(b.text(&format!("#pkg-{}", s.firefox)).contains("128.0.1"), "the version");
    // Markup in a name is text, not markup.
    assert_eq!(count(&mut b, s.evil, "name"), EVIL_NAME);
    assert_eq!(b.eval("document.scripts.length"), 0);
    b.screenshot(&artifacts().join("admin-packages.png"));

    // One package's devices: status, progress, last contact.
    b.goto(&format!("{base}/admin/packages/{}", s.maps));
    let held: u64 =
        b.eval("document.querySelector('#dev-pc-2 [data-k=progress]').dataset.held").as_str().unwrap().parse().unwrap();
    let total: u64 = b
        .eval("document.querySelector('#dev-pc-2 [data-k=progress]').dataset.total")
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(held >= 8 * 1024 && held < total, "held {held} of {total}");
    assert_eq!(b.text("#dev-pc-2 [data-k=status]"), "NOTIFIED");
    assert_ne!(b.text("#dev-pc-2 [data-k=seen]"), "never");
    b.screenshot(&artifacts().join("admin-package.png"));

    // One device's history.
    b.goto(&format!("{base}/admin/devices/pc-1"));
    let history = b.text("#history");
    for status in ["WAITING NOTIFICATION", "NOTIFIED", "SUCCESS", "EXIT_CODE_3"] {
        assert!(history.contains(status), "{status} in {history}");
    }
    b.screenshot(&artifacts().join("admin-device.png"));

    // On a phone: nothing wider than the screen but the tables' own scroll boxes.
    b.viewport(390, 844, true);
    b.goto(&format!("{base}/admin/"));
    let width = b.eval("document.documentElement.scrollWidth").as_u64().unwrap();
    assert!(width <= 390, "page {width} px wide on a 390 px screen");
    b.screenshot(&artifacts().join("admin-phone.png"));

    // Logging out ends the session.
    b.viewport(1100, 800, false);
    b.act_and_wait("document.querySelector('header form button').click()");
    b.goto(&format!("{base}/admin/"));
    assert_eq!(b.eval("location.pathname"), "/admin/login");
}

/// `name value` samples of a Prometheus text exposition, checked line by
/// line: every sample line has a name, optional labels and a number, and
/// every name has its `# TYPE`.
fn parse_metrics(text: &str) -> Vec<(String, f64)> {
    let mut typed = Vec::new();
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(["counter", "gauge"].contains(&kind), "{line}");
            typed.push(name.to_string());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample: series value");
        let name = series.split('{').next().unwrap();
        assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'), "{line}");
        assert!(series.contains('{') == series.ends_with('}'), "{line}");
        assert!(typed.iter().any(|t| t == name), "{name} has no # TYPE");
        out.push((series.to_string(), value.parse().unwrap_or_else(|_| panic!("not a number: {line}"))));
    }
    out
}

#[test]
fn metrics_are_scraped_and_parsed() {
    let t = TempDir::new("admin-metrics");
    let s = scene(&t);
    let ca = s.srv.dir.join("tls/ca-cert.pem");
    // A device with a wrong secret: an authentication failure.
    let bad = client::request(
        "127.0.0.1",
        s.srv.https_port,
        &ca,
        "POST",
        "/api/v1/poll",
        &["Authorization: Outpost pc-1 wrong"],
        b"outpost 1\n",
    );
    assert_eq!(bad.status, 401);
    let a = client::request("127.0.0.1", s.srv.https_port, &ca, "GET", "/metrics", &[], b"");
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.header("content-type").is_some_and(|c| c.starts_with("text/plain; version=0.0.4")));
    let m = parse_metrics(&a.body);
    let get =
        |k: &str| m.iter().find(|(s, _)| s == k).map(|(_, v)| *v).unwrap_or_else(|| panic!("{k} missing:\n{}", a.body));
    assert!(get("outpost_polls_total{protocol=\"outpost\"}") >= 3.0, "pc-1 once, pc-2 twice");
    assert_eq!(get("outpost_polls_total{protocol=\"ocs\"}"), 0.0);
    assert_eq!(get("outpost_reports_total{status=\"SUCCESS\"}"), 2.0);
    assert_eq!(get("outpost_reports_total{status=\"EXIT_CODE\"}"), 1.0);
    assert!(get("outpost_bytes_served_total{listener=\"http\"}") >= 8.0 * 1024.0, "maps fragments");
    assert!(get("outpost_connections_total{listener=\"https\"}") >= 3.0);
    assert!(get("outpost_connections_open") >= 1.0, "this scrape");
    assert_eq!(get("outpost_auth_failures_total"), 1.0);
    assert_eq!(get("outpost_lockouts_total"), 0.0);
    assert_eq!(get("outpost_devices"), 3.0);
    assert_eq!(get("outpost_assignments{state=\"waiting\"}"), 1.0);
    assert_eq!(get("outpost_assignments{state=\"errors\"}"), 1.0);
}

fn form(user: &str, password: &str) -> Vec<u8> {
    format!("user={user}&password={password}").into_bytes()
}

#[test]
fn the_json_api_wants_a_session_from_a_form_login() {
    let t = TempDir::new("admin-api");
    let s = scene(&t);
    let (port, ca) = (s.srv.https_port, s.srv.dir.join("tls/ca-cert.pem"));
    let req = |method: &str, path: &str, headers: &[&str], body: &[u8]| {
        client::request("127.0.0.1", port, &ca, method, path, headers, body)
    };
    assert_eq!(req("GET", "/admin/api/packages", &[], b"").status, 401);
    assert_eq!(req("GET", "/admin/", &[], b"").header("location"), Some("/admin/login"));
    let ct = "Content-Type: application/x-www-form-urlencoded";
    assert_eq!(req("POST", "/admin/login", &[ct], &form("root", "wrong")).status, 401);
    assert_eq!(req("POST", "/admin/login", &[ct], &form("nobody", &s.password)).status, 401);
    let evil_origin = "Origin: https://evil.example";
    assert_eq!(
        req("POST", "/admin/login", &[ct, evil_origin], &form("root", &s.password)).status,
        403,
        "cross-site form"
    );
    let ok =
        req("POST", "/admin/login", &[ct, &format!("Origin: https://127.0.0.1:{port}")], &form("root", &s.password));
    assert_eq!((ok.status, ok.header("location")), (303, Some("/admin/")));
    let cookie = ok.header("set-cookie").expect("a session cookie").to_string();
    for attr in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/admin"] {
        assert!(cookie.split("; ").any(|a| a == attr), "{attr} in {cookie}");
    }
    let session = cookie.split(';').next().unwrap();
    assert_eq!(session.len(), "outpost_admin=".len() + 64);
    let id = &session["outpost_admin=".len()..];
    let stored = s.srv.sql_value("SELECT id_sha256 FROM admin_sessions");
    assert_ne!(stored, id, "the id itself is not stored");
    let sha256 = outpost_agent::engine::manifest::sha256(id.as_bytes());
    assert_eq!(stored, outpost_agent::engine::digest::hex(&sha256), "its SHA-256 is");

    let with = format!("Cookie: {session}");
    let list = req("GET", "/admin/api/packages", &[&with], b"");
    assert_eq!(list.status, 200, "{}", list.body);
    let v: serde_json::Value = serde_json::from_str(&list.body).unwrap();
    let firefox = v.as_array().unwrap().iter().find(|p| p["id"] == s.firefox).unwrap();
    assert_eq!((firefox["success"].as_u64(), firefox["waiting"].as_u64()), (Some(2), Some(1)));
    assert_eq!(firefox["version"], "128.0.1");
    let maps: serde_json::Value =
        serde_json::from_str(&req("GET", &format!("/admin/api/packages/{}", s.maps), &[&with], b"").body).unwrap();
    let p = &maps["devices"][0]["progress"];
    assert!(p["held"].as_u64().unwrap() > 0 && p["held"].as_u64() < p["total"].as_u64(), "{maps}");
    let dev: serde_json::Value =
        serde_json::from_str(&req("GET", "/admin/api/devices/pc-1", &[&with], b"").body).unwrap();
    assert!(dev["history"].as_array().unwrap().len() >= 4, "{dev}");
    assert!(dev["last_seen"].as_str().is_some_and(|t| t.ends_with('Z')), "{dev}");
    let never: serde_json::Value =
        serde_json::from_str(&req("GET", "/admin/api/devices/pc-3", &[&with], b"").body).unwrap();
    assert!(never["last_seen"].is_null() && never["packages"][0]["status"] == "WAITING NOTIFICATION", "{never}");
    assert_eq!(req("GET", "/admin/api/devices/nope", &[&with], b"").status, 404);
    let evil_page = req("GET", &format!("/admin/packages/{}", s.evil), &[&with], b"");
    assert!(!evil_page.body.contains("<script>") && evil_page.body.contains("&lt;script&gt;"));

    // admin remove ends the session at once.
    let o = s.srv.cmd(&["admin", "remove", "--user", "root"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(req("GET", "/admin/api/packages", &[&with], b"").status, 401);
}

#[test]
fn admin_logins_are_locked_out_like_devices() {
    let t = TempDir::new("admin-lockout");
    let mut srv = Server::init(t.join("srv"), &[]);
    let toml = srv.dir.join("server.toml");
    let cfg = fs::read_to_string(&toml).unwrap();
    fs::write(&toml, cfg.replace("max_auth_failures = 10", "max_auth_failures = 3")).unwrap();
    let add =
        |user: &str| String::from_utf8_lossy(&srv.cmd(&["admin", "add", "--user", user]).stdout).trim().to_string();
    let (root, bob) = (add("root"), add("bob"));
    srv.start();
    let ca = srv.dir.join("tls/ca-cert.pem");
    let req = |method: &str, path: &str, headers: &[&str], body: &[u8]| {
        client::request("127.0.0.1", srv.https_port, &ca, method, path, headers, body)
    };
    let login = |user: &str, p: &str| req("POST", "/admin/login", &[], &form(user, p));
    let bob_in = login("bob", &bob);
    assert_eq!(bob_in.status, 303);
    let bob_cookie = format!("Cookie: {}", bob_in.header("set-cookie").unwrap().split(';').next().unwrap());
    assert_eq!([login("root", "a").status, login("root", "b").status, login("root", "c").status], [401, 401, 401]);
    assert_eq!(login("root", &root).status, 429, "blocked: the right password is not even checked");
    let o = srv.cmd(&["status", "--blocked", "--json"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"admin\""), "{}", text(&o));
    // Another administrator sees the block on the page and lifts it with its button.
    let page = req("GET", "/admin/blocked", &[&bob_cookie], b"");
    assert!(page.body.contains("<td>127.0.0.1</td>") && page.body.contains(">root<"), "{}", page.body);
    let lifted = req("POST", "/admin/unblock", &[&bob_cookie], b"address=127.0.0.1");
    assert_eq!((lifted.status, lifted.header("location")), (303, Some("/admin/blocked")));
    assert_eq!(login("root", &root).status, 303);
}

#[test]
fn outside_admin_networks_nothing_administrative_answers() {
    let t = TempDir::new("admin-nets");
    let mut srv = Server::init(t.join("srv"), &[]);
    let toml = srv.dir.join("server.toml");
    let cfg = fs::read_to_string(&toml).unwrap();
    fs::write(
        &toml,
        cfg.replace("admin_networks = [\"127.0.0.0/8\", \"::1/128\"]", "admin_networks = [\"127.0.0.1/32\"]"),
    )
    .unwrap();
    srv.start();
    let ca = srv.dir.join("tls/ca-cert.pem");
    for path in ["/metrics", "/admin/login", "/admin/api/packages"] {
        let a = client::request("127.0.0.2", srv.https_port, &ca, "GET", path, &[], b"");
        assert_eq!(a.status, 403, "{path} from 127.0.0.2");
        let a = client::request("127.0.0.1", srv.https_port, &ca, "GET", path, &[], b"");
        assert_ne!(a.status, 403, "{path} from 127.0.0.1");
    }
}
