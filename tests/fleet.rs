//! Managing a fleet with real processes on 127.0.0.1: facts sent by
//! outpost-agent, `device list --where`, static and dynamic groups,
//! rollouts in waves that halt, `package delete` and `package check`.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use outpost_tests::{Server, TempDir, agent, free_port, run, text, tune_agent};

#[path = "admin/client.rs"]
mod client;

fn ok(o: &std::process::Output) -> String {
    assert!(o.status.success(), "{}", text(o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn run_once(cfg: &Path) {
    // Its exit status aside: what the server recorded is what is checked.
    let _ = agent(cfg, &["run", "--once"], &[]);
}

/// Set `[agent] tags` of a config (replacing the line a former call wrote).
fn set_tags(cfg: &Path, tags: &str) {
    let c = fs::read_to_string(cfg).unwrap();
    let kept: String = c.lines().filter(|l| !l.starts_with("tags = ")).map(|l| format!("{l}\n")).collect();
    fs::write(cfg, kept).unwrap();
    tune_agent(cfg, &format!("tags = {tags}"));
}

fn devices(srv: &Server, filter: &str) -> Vec<serde_json::Value> {
    let out = ok(&srv.cmd(&["device", "list", "--where", filter, "--json"]));
    serde_json::from_str::<serde_json::Value>(&out).unwrap().as_array().unwrap().clone()
}

fn ids(v: &[serde_json::Value]) -> Vec<String> {
    v.iter().map(|d| d["id"].as_str().unwrap().to_string()).collect()
}

#[test]
fn facts_filters_and_groups_static_and_dynamic() {
    let t = TempDir::new("fleet-groups");
    let mut srv = Server::init(t.join("srv"), &[]);
    let a = srv.device_add("pc-a", t.path());
    let b = srv.device_add("pc-b", t.path());
    set_tags(&a, r#"["site:lyon", "kiosk"]"#);
    let p1 = srv.package_add(&["--action", "execute", "--command", "true"]).to_string();
    let p2 = srv.package_add(&["--action", "execute", "--command", "true"]).to_string();
    let p3 = srv.package_add(&["--action", "execute", "--command", "true"]).to_string();
    ok(&srv.cmd(&["group", "add", "--name", "lyon", "--where", r#"tag = "site:lyon""#]));
    ok(&srv.cmd(&["assign", "--package", &p1, "--group", "lyon"]));
    srv.start();
    run_once(&a);
    run_once(&b);

    // Facts from the poll.
    let all = devices(&srv, r#"os = "linux""#);
    assert_eq!(ids(&all), ["pc-a", "pc-b"]);
    let pa = &all[0];
    assert_eq!(pa["arch"], std::env::consts::ARCH);
    assert_eq!(pa["agent_version"], env!("CARGO_PKG_VERSION"));
    assert!(!pa["host"].as_str().unwrap().is_empty() && !pa["os_version"].as_str().unwrap().is_empty(), "{pa}");
    assert!(pa["free"].as_u64().unwrap() > 0, "{pa}");
    assert_eq!(pa["tags"], serde_json::json!(["site:lyon", "kiosk"]));
    assert_eq!(pa["address"], "127.0.0.1");
    assert_eq!(ids(&devices(&srv, r#"tag = "kiosk" and last_contact < 1h"#)), ["pc-a"]);
    assert_eq!(ids(&devices(&srv, r#"agent_version < "0.0.1" or last_contact > 7d"#)), Vec::<String>::new());
    let bad = srv.cmd(&["device", "list", "--where", r#"os = "linux" and"#]);
    assert!(!bad.status.success());
    assert!(text(&bad).contains("at byte 16: expected a field"), "{}", text(&bad));

    // The dynamic group: pc-a got p1; pc-b joins when it gains the tag, and gets it.
    let p1n: u64 = p1.parse().unwrap();
    assert_eq!(srv.status_of(p1n, "pc-a"), "SUCCESS");
    assert_eq!(srv.status_of(p1n, "pc-b"), "", "not a member");
    set_tags(&b, r#"["site:lyon"]"#);
    run_once(&b);
    assert_eq!(srv.status_of(p1n, "pc-b"), "SUCCESS", "joined the group at its poll");

    // A static group: p2 goes to its member only; p3 to a device removed before it polled.
    ok(&srv.cmd(&["group", "add", "--name", "pilot"]));
    ok(&srv.cmd(&["group", "add-device", "--name", "pilot", "--device", "pc-b"]));
    ok(&srv.cmd(&["assign", "--package", &p2, "--group", "pilot"]));
    ok(&srv.cmd(&["assign", "--package", &p3, "--group", "pilot"]));
    ok(&srv.cmd(&["group", "remove-device", "--name", "pilot", "--device", "pc-b"]));
    ok(&srv.cmd(&["group", "add-device", "--name", "pilot", "--device", "pc-a"]));
    run_once(&a);
    run_once(&b);
    let (p2n, p3n): (u64, u64) = (p2.parse().unwrap(), p3.parse().unwrap());
    assert_eq!(srv.status_of(p2n, "pc-a"), "SUCCESS", "a later member gets the package");
    assert_eq!(srv.status_of(p2n, "pc-b"), "", "left before it was notified: not sent");
    assert_eq!(srv.status_of(p3n, "pc-b"), "");
    let status = ok(&srv.cmd(&["status"]));
    assert!(status.contains("lyon") && status.contains(r#"tag = "site:lyon""#), "{status}");
    assert!(status.contains("pilot"), "{status}");
}

#[test]
fn a_rollout_halts_when_its_first_wave_fails_too_often() {
    let t = TempDir::new("fleet-rollout");
    let mut srv = Server::init(t.join("srv"), &[]);
    let cfgs: Vec<PathBuf> = (0..4).map(|i| srv.device_add(&format!("pc-{i}"), t.path())).collect();
    ok(&srv.cmd(&["group", "add", "--name", "all-pcs"]));
    for i in 0..4 {
        ok(&srv.cmd(&["group", "add-device", "--name", "all-pcs", "--device", &format!("pc-{i}")]));
    }
    let p = srv.package_add(&["--action", "execute", "--command", "exit 3"]);
    let ps = p.to_string();
    let a = ["assign", "--package", &ps, "--group", "all-pcs", "--waves", "50%,100%", "--halt-above", "10%"];
    ok(&srv.cmd(&a));
    srv.start();
    for _ in 0..2 {
        for c in &cfgs {
            run_once(c);
        }
    }
    let got: Vec<(String, String)> = srv.statuses().into_iter().filter(|r| r.0 == p).map(|(_, d, s)| (d, s)).collect();
    assert_eq!(got.len(), 2, "the second wave was never sent: {got:?}");
    assert!(got.iter().all(|(_, s)| s == "EXIT_CODE_3"), "{got:?}");
    let status = ok(&srv.cmd(&["status"]));
    assert!(status.contains("halted"), "{status}");
    assert!(status.contains("wave 1 of 2: 2 of 2 devices failed (100%), above --halt-above 10%"), "{status}");
    let wave1 = status.lines().find(|l| l.trim_start().starts_with("1 ") && l.contains("50%")).unwrap();
    assert!(wave1.trim_end().ends_with("100%"), "wave 1's error rate: {wave1}");
    // The status page and its JSON say the same.
    let password = ok(&srv.cmd(&["admin", "add", "--user", "root"])).trim().to_string();
    let (port, ca) = (srv.https_port, srv.dir.join("tls/ca-cert.pem"));
    let req = |method: &str, path: &str, headers: &[&str], body: &[u8]| {
        client::request("127.0.0.1", port, &ca, method, path, headers, body)
    };
    let login = req(
        "POST",
        "/admin/login",
        &["Content-Type: application/x-www-form-urlencoded"],
        format!("user=root&password={password}").as_bytes(),
    );
    let session = login.header("set-cookie").expect("a session").split(';').next().unwrap().to_string();
    let cookie = format!("Cookie: {session}");
    let page = req("GET", "/admin/fleet", &[&cookie], b"");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("data-k=\"members\" data-l=\"Members\">4<"), "{}", page.body);
    assert!(page.body.contains("data-k=\"state\">halted<"), "{}", page.body);
    assert!(page.body.contains("data-k=\"error-rate\" data-l=\"Error rate\">100 %<"), "{}", page.body);
    let api: serde_json::Value = serde_json::from_str(&req("GET", "/admin/api/fleet", &[&cookie], b"").body).unwrap();
    assert_eq!(api["rollouts"][0]["waves"][0]["error_rate"], 100.0, "{api}");
    assert_eq!(api["rollouts"][0]["state"], "halted", "{api}");

    // Resumed, the second wave gets it.
    ok(&srv.cmd(&["rollout", "resume", "1"]));
    for c in &cfgs {
        run_once(c);
    }
    let n = srv.statuses().into_iter().filter(|r| r.0 == p && r.2 == "EXIT_CODE_3").count();
    assert_eq!(n, 4);
    assert!(ok(&srv.cmd(&["status"])).contains("done"));
}

/// A static HTTP server of `root` (GET only, one request per connection):
/// a mirror in `fragment_loc`.
fn mirror(root: PathBuf) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut r = BufReader::new(s);
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            let path = line.split(' ').nth(1).unwrap_or("/").trim_start_matches('/').to_string();
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
            }
            let mut s = r.into_inner();
            let _ = match fs::read(root.join(&path)) {
                Ok(b) if !path.contains("..") => {
                    let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", b.len());
                    s.write_all(&b)
                }
                _ => s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
            };
        }
    });
    port
}

#[test]
fn check_finds_a_corrupted_fragment_on_a_mirror_and_delete_keeps_the_history() {
    let t = TempDir::new("fleet-catalog");
    let mirror_root = t.join("mirror");
    let port = mirror(mirror_root.clone());
    let loc = format!("127.0.0.1:{port}/m");
    let mut srv = Server::init_with_http(t.join("srv"), free_port(), &["--fragment-loc", &loc]);
    let data = outpost_tests::random_bytes(40_000, 7);
    let arc = t.join("a.tar.gz");
    fs::write(&arc, outpost_tests::targz(&[outpost_tests::Member::File("blob", &data, 0o644)])).unwrap();
    let p = srv.store_package(arc.to_str().unwrap(), t.join("out").to_str().unwrap(), &["--frag-size", "8K"]);
    let ps = p.to_string();
    let pkg_dir = srv.dir.join("download").join(&ps);
    let copy = mirror_root.join("m").join(&ps);
    fs::create_dir_all(&copy).unwrap();
    for e in fs::read_dir(&pkg_dir).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), copy.join(e.file_name())).unwrap();
    }
    srv.start();
    let good = ok(&srv.cmd(&["package", "check", &ps]));
    assert!(good.contains("every file verified at every location"), "{good}");
    assert!(good.contains("ok    fragment_loc"), "{good}");

    let frag = copy.join(format!("{ps}-2"));
    let mut b = fs::read(&frag).unwrap();
    b[100] ^= 0x40;
    fs::write(&frag, b).unwrap();
    let o = srv.cmd(&["package", "check", &ps]);
    assert!(!o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let bad: Vec<&str> = out.lines().filter(|l| l.starts_with("BAD")).collect();
    assert_eq!(bad.len(), 1, "{out}");
    assert!(bad[0].contains("fragment_loc") && bad[0].contains(&format!("/m/{ps}/{ps}-2: SHA-256")), "{out}");
    assert!(out.lines().any(|l| l.starts_with("ok    server ") && l.ends_with(&format!("{ps}-2"))), "{out}");
    fs::copy(pkg_dir.join(format!("{ps}-2")), &frag).unwrap();

    // A depot is one more location devices are told to use: checked too.
    let depot = format!("127.0.0.1:{port}/d");
    ok(&srv.cmd(&["depot", "add", "--loc", &depot]));
    ok(&srv.cmd(&["depot", "sync", "--to", mirror_root.join("d").to_str().unwrap()]));
    let dfrag = mirror_root.join("d").join(&ps).join(format!("{ps}-3"));
    let mut b = fs::read(&dfrag).unwrap();
    b[10] ^= 0x01;
    fs::write(&dfrag, b).unwrap();
    let o = srv.cmd(&["package", "check", &ps]);
    assert!(!o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let bad: Vec<&str> = out.lines().filter(|l| l.starts_with("BAD")).collect();
    assert_eq!(bad.len(), 1, "{out}");
    assert!(bad[0].contains(&format!("depot {depot}")) && bad[0].contains(&format!("{ps}-3")), "{out}");
    ok(&srv.cmd(&["depot", "remove", "--loc", &depot]));

    // delete: refused while assigned, --force withdraws the pending one and keeps the history.
    let a = srv.device_add("pc-a", t.path());
    srv.device_add("pc-b", t.path());
    srv.assign(p, "pc-a", &[]);
    run_once(&a);
    assert_eq!(srv.status_of(p, "pc-a"), "SUCCESS");
    srv.assign(p, "pc-b", &[]);
    let refused = srv.cmd(&["package", "delete", &ps]);
    assert!(!refused.status.success() && text(&refused).contains("is assigned"), "{}", text(&refused));
    ok(&srv.cmd(&["package", "delete", &ps, "--force"]));
    assert!(!pkg_dir.exists(), "files removed");
    assert_eq!(srv.status_of(p, "pc-a"), "SUCCESS", "the history stays");
    assert_eq!(srv.status_of(p, "pc-b"), "", "the pending assignment went");
    let list: serde_json::Value = serde_json::from_str(&ok(&srv.cmd(&["package", "list", "--json"]))).unwrap();
    assert!(list[0]["deleted"].is_string(), "{list}");
    assert!(!srv.cmd(&["assign", "--package", &ps, "--device", "pc-b"]).status.success());
    let show = ok(&srv.cmd(&["package", "show", &ps]));
    assert!(show.contains("deleted") && show.contains("pc-a"), "{show}");
}

/// The real OCS Unix agent's INVENTORY gives the server its facts and its `--tag`.
#[test]
fn an_ocs_agents_inventory_gives_its_facts_and_tag() {
    let t = TempDir::new("fleet-ocs");
    let mut srv = Server::init(t.join("srv"), &[]);
    let toml = srv.dir.join("server.toml");
    let c = fs::read_to_string(&toml).unwrap().replace("request_inventory = false", "request_inventory = true");
    fs::write(&toml, c).unwrap();
    srv.start();
    let var = t.join("ocs-var");
    fs::create_dir_all(&var).unwrap();
    let server = format!("http://127.0.0.1:{}/ocsinventory", srv.http_port);
    let o = run(std::process::Command::new("ocsinventory-agent")
        .args(["--server", &server, "--nolocal", "--nosoftware", "--tag=site:lyon"])
        .arg(format!("--basevardir={}", var.display()))
        .arg(format!("--logfile={}", t.join("ocs.log").display())));
    assert!(o.status.success(), "{}", text(&o));
    let d = devices(&srv, r#"kind = "ocs" and tag = "site:lyon""#);
    assert_eq!(d.len(), 1, "{:?}", ok(&srv.cmd(&["device", "list", "--json"])));
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(d[0]["host"], host.trim(), "{}", d[0]);
    assert!(!d[0]["os"].as_str().unwrap().is_empty(), "{}", d[0]);
    assert!(d[0]["agent_version"].as_str().unwrap().contains("unix_agent"), "{}", d[0]);
    assert_eq!(d[0]["arch"], std::env::consts::ARCH, "{}", d[0]);
    assert_eq!(d[0]["address"], "127.0.0.1");
}

/// A poll that changes nothing but the time and free space waits for the
/// next second's write (`outpost_server::contacts`), and is written at the
/// latest when the server stops; fails if waiting contacts are never written.
#[test]
fn a_contact_that_waits_is_recorded_by_the_time_serve_stops() {
    let t = TempDir::new("fleet-contacts");
    let mut srv = Server::init(t.join("srv"), &[]);
    let a = srv.device_add("pc-a", t.path());
    srv.start();
    run_once(&a);
    let first = srv.sql_value("SELECT last_seen FROM devices WHERE id = 'pc-a'");
    assert!(first.ends_with('Z'), "the first contact is written at once: {first}");
    srv.sql_execute("UPDATE device_facts SET last_contact = 0, free = 1 WHERE device = 'pc-a'");
    run_once(&a);
    assert!(srv.stop(), "serve exits 0 on SIGTERM");
    // Written to `device_facts` only (`devices.last_seen` is a contact
    // written at once; readers take the later, `db::console` tests).
    let row = &srv
        .sql_rows("SELECT CAST(last_contact AS TEXT), CAST(free AS TEXT) FROM device_facts WHERE device = 'pc-a'")[0];
    assert!(row[0].parse::<u64>().unwrap() > 0 && row[1].parse::<u64>().unwrap() > 1, "{row:?}");
}
