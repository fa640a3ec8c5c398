//! outpost-server speaking the OCS Inventory NG protocol: with the real
//! Debian `ocsinventory-agent` (installed when missing), and at the wire
//! level for what the real agent does not exercise.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;
use std::time::{Duration, Instant};

use outpost_agent::rt::http::{Client, Url};
use outpost_tests::{Member, Server, TempDir, hex_comment, run, targz, text};

/// The real OCS Unix agent, installed from Debian when missing.
fn ocs_agent() -> PathBuf {
    static INSTALL: Once = Once::new();
    let find = || {
        ["/usr/bin/ocsinventory-agent", "/usr/sbin/ocsinventory-agent"].iter().map(PathBuf::from).find(|p| p.exists())
    };
    INSTALL.call_once(|| {
        if find().is_none() {
            let o = run(Command::new("sh").args([
                "-c",
                "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ocsinventory-agent",
            ]));
            assert!(o.status.success(), "could not install Debian's ocsinventory-agent: {}", text(&o));
        }
    });
    find().expect("ocsinventory-agent is installed")
}

/// Run the real agent once against `srv`'s HTTP listener and wait for its
/// download child to finish. Returns the agent's log.
#[allow(clippy::disallowed_methods)] // real processes: bounded waits
fn run_ocs_agent(srv: &Server, var: &Path, extra: &[&str]) -> (bool, String) {
    let log = var.with_extension("log");
    let server = format!("http://127.0.0.1:{}/ocsinventory", srv.http_port);
    let mut cmd = Command::new(ocs_agent());
    cmd.args(["--server", &server, "--nolocal", "--debug", "--nosoftware"])
        .arg(format!("--basevardir={}", var.display()))
        .arg(format!("--ca={}", srv.dir.join("tls/ca-cert.pem").display()))
        .arg(format!("--logfile={}", log.display()))
        .args(extra);
    let o = run(&mut cmd);
    // The download work runs in a forked child: wait until its lock is released.
    let start = Instant::now();
    loop {
        let text = fs::read_to_string(&log).unwrap_or_default();
        let pid = text.lines().rev().filter_map(|l| l.split("I am ").nth(1)).find_map(|p| p.trim().parse::<u32>().ok());
        let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            return (o.status.success(), text);
        }
        assert!(start.elapsed() < Duration::from_secs(60), "OCS agent child still running: {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ocs_devices(srv: &Server) -> Vec<String> {
    let mut d: Vec<String> = srv.statuses().into_iter().map(|(_, d, _)| d).collect();
    d.dedup();
    d
}

#[test]
fn real_ocs_agent_deploys_a_fragmented_package_from_outpost_server() {
    let t = TempDir::new("ocs-real");
    let mut srv = Server::init(t.join("srv"), &[]);
    let mark = t.join("mark");
    let script = format!("echo \"ran in $(pwd)\" >> {}\n", mark.display());
    let mut data = script.into_bytes();
    data.extend(hex_comment(40_000));
    let arc = t.join("pkg.tar.gz");
    fs::write(&arc, targz(&[Member::File("setup.sh", &data, 0o755)])).unwrap();
    let id = srv.package_add(&[
        "--file",
        arc.to_str().unwrap(),
        "--action",
        "execute",
        "--command",
        "sh setup.sh",
        "--frag-size",
        "8K",
    ]);
    let frags = fs::read_dir(srv.dir.join(format!("download/{id}"))).unwrap().count() - 2;
    assert!(frags >= 3, "fragmented: {frags} fragments");
    // The device does not exist yet: --all covers devices that appear through OCS.
    let o = srv.cmd(&["assign", "--package", &id.to_string(), "--all"]);
    assert!(o.status.success(), "{}", text(&o));
    srv.start();

    let (ok, log) = run_ocs_agent(&srv, &t.join("var"), &[]);
    assert!(ok, "{log}");
    let devices = ocs_devices(&srv);
    assert_eq!(devices.len(), 1, "registered by its DEVICEID: {devices:?}");
    let dev = &devices[0];
    assert_eq!(srv.status_of(id, dev), "SUCCESS", "{log}");
    assert_eq!(fs::read_to_string(&mark).unwrap().lines().count(), 1);
    let serve_log = fs::read_to_string(srv.dir.join("serve.log")).unwrap();
    assert!(serve_log.contains(&format!("Https GET /download/{id}/info -> 200")), "info over HTTPS: {serve_log}");
    assert!(serve_log.contains(&format!("Http GET /download/{id}/{id}-{frags} -> 200")), "fragments over HTTP");

    // Sent again: the agent's history answers SUCCESS_ALREADY_SETUP and nothing runs.
    srv.assign(id, dev, &[]);
    let (ok, log) = run_ocs_agent(&srv, &t.join("var"), &[]);
    assert!(ok, "{log}");
    assert_eq!(srv.status_of(id, dev), "SUCCESS_ALREADY_SETUP", "{log}");
    assert_eq!(fs::read_to_string(&mark).unwrap().lines().count(), 1, "not run again");
}

#[test]
fn real_ocs_agent_is_served_only_from_allowed_networks_and_with_credentials() {
    let t = TempDir::new("ocs-guard");
    let mut srv = Server::init(t.join("srv"), &[]);
    let id = srv.package_add(&["--action", "execute", "--command", "true"]);
    assert!(srv.cmd(&["assign", "--package", &id.to_string(), "--all"]).status.success());
    let conf = srv.dir.join("server.toml");
    let original = fs::read_to_string(&conf).unwrap();

    // Not from an allowed network: refused, nothing recorded.
    fs::write(&conf, original.replace("allow = [\"127.0.0.0/8\", \"::1/128\"]", "allow = [\"198.18.0.0/15\"]"))
        .unwrap();
    srv.start();
    let (ok, log) = run_ocs_agent(&srv, &t.join("var1"), &[]);
    assert!(!ok, "refused: {log}");
    assert!(srv.statuses().is_empty(), "no device registered");
    assert!(srv.stop());

    // Basic auth: without credentials refused; with them (base64, as the agent takes them) served.
    let auth = "\n[ocs.basic_auth]\nuser = \"ocs\"\npassword = \"s3cret pw\"\nrealm = \"Outpost OCS\"\n";
    fs::write(&conf, format!("{original}{auth}")).unwrap();
    srv.start();
    let (ok, log) = run_ocs_agent(&srv, &t.join("var2"), &[]);
    assert!(!ok && srv.statuses().is_empty(), "no credentials, nothing recorded: {log}");
    let b64 = |s: &str| outpost_agent::engine::digest::base64_unpadded(s.as_bytes()) + ["", "==", "="][s.len() % 3];
    let creds =
        [format!("--user={}", b64("ocs")), format!("--password={}", b64("s3cret pw")), "--realm=Outpost OCS".into()];
    let (ok, log) = run_ocs_agent(&srv, &t.join("var3"), &creds.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "{log}");
    let devices = ocs_devices(&srv);
    assert_eq!(devices.len(), 1, "{log}");
    assert_eq!(srv.status_of(id, &devices[0]), "SUCCESS", "{log}");
}

/// POST an OCS message in `enc` ("zlib", "gzip", "plain"); returns status and inflated reply.
fn post(srv: &Server, https: bool, xml: &str, enc: &str) -> (u16, String) {
    let ca = fs::read_to_string(srv.dir.join("tls/ca-cert.pem")).unwrap();
    let c = Client::new(&ca, Duration::from_secs(5), Duration::from_secs(5)).unwrap();
    let url = if https {
        format!("https://127.0.0.1:{}/ocsinventory", srv.https_port)
    } else {
        format!("http://127.0.0.1:{}/ocsinventory", srv.http_port)
    };
    let body = match enc {
        "zlib" => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(xml.as_bytes()).unwrap();
            e.finish().unwrap()
        }
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(xml.as_bytes()).unwrap();
            e.finish().unwrap()
        }
        _ => xml.as_bytes().to_vec(),
    };
    let mut r =
        c.request("POST", &Url::parse(&url).unwrap(), &[("Content-Type", "application/x-compress")], &body).unwrap();
    let raw = r.read_to_vec(1 << 20).unwrap();
    let mut out = String::new();
    match enc {
        _ if raw.is_empty() || r.status != 200 => out = String::from_utf8_lossy(&raw).into_owned(),
        "zlib" => {
            flate2::read::ZlibDecoder::new(&raw[..]).read_to_string(&mut out).expect("zlib reply to a zlib request");
        }
        "gzip" => {
            flate2::read::GzDecoder::new(&raw[..]).read_to_string(&mut out).expect("gzip reply to a gzip request");
        }
        _ => out = String::from_utf8(raw).unwrap(),
    }
    (r.status, out)
}

#[test]
fn ocs_wire_protocol_encodings_history_and_reports() {
    let t = TempDir::new("ocs-wire");
    let mut srv = Server::init(t.join("srv"), &[]);
    let a = srv.package_add(&["--action", "execute", "--command", "true", "--priority", "3"]);
    let b = srv.package_add(&["--action", "execute", "--command", "true", "--priority", "0"]);
    for p in [a, b] {
        assert!(srv.cmd(&["assign", "--package", &p.to_string(), "--all"]).status.success());
    }
    srv.start();
    let dev = "branch-pc-2026-11-23-18-03-38";
    let prolog = format!("<REQUEST><DEVICEID>{dev}</DEVICEID><QUERY>PROLOG</QUERY></REQUEST>");

    // Every encoding, on both listeners; the reply comes back the same way.
    for (https, enc) in [(false, "zlib"), (true, "zlib"), (false, "gzip"), (false, "plain")] {
        let (status, reply) = post(&srv, https, &prolog, enc);
        assert_eq!(status, 200, "{enc}");
        let r = outpost_agent::engine::ocs::PrologReply::parse(&reply).unwrap();
        let conf = r.conf.expect("DOWNLOAD option with a CONF");
        assert!(conf.on && conf.timeout > 0, "ON and TIMEOUT always sent");
        let ids: Vec<u64> = r.packs.iter().map(|p| p.id).collect();
        assert!(ids.contains(&a) && ids.contains(&b), "sent again until a final status: {ids:?}");
        assert!(r.packs.iter().all(|p| !p.info_loc.contains("://") && !p.pack_loc.contains("://")), "no scheme");
    }
    assert_eq!(srv.status_of(a, dev), "NOTIFIED");

    // A report as the agent writes it (attributes), code recorded exactly.
    let report = format!("<REQUEST DEVICEID=\"{dev}\" ERR=\"SUCCESS_3\" ID=\"{a}\" QUERY=\"DOWNLOAD\" />\n");
    let (status, body) = post(&srv, false, &report, "zlib");
    assert_eq!((status, body.as_str()), (200, ""), "empty 200, as the real server");
    assert_eq!(srv.status_of(a, dev), "SUCCESS_3");

    // An inventory's history stops re-notification of what the device has.
    let inv = outpost_agent::engine::ocs::Request::Inventory { device_id: dev.into(), history: vec![b] }.to_xml();
    let (status, body) = post(&srv, false, &inv, "zlib");
    assert_eq!(status, 200);
    assert!(body.contains("NO_ACCOUNT_UPDATE"), "{body}");
    let (_, reply) = post(&srv, false, &prolog, "zlib");
    assert!(outpost_agent::engine::ocs::PrologReply::parse(&reply).unwrap().packs.is_empty(), "{reply}");
    assert_eq!(srv.status_of(b, dev), "SUCCESS_ALREADY_IN_HISTORY");

    // Bad input: a clear 4xx, nothing recorded.
    for (bad, enc) in [
        ("<REQUEST><DEVICEID>no-date</DEVICEID><QUERY>PROLOG</QUERY></REQUEST>", "zlib"),
        ("not xml at all", "plain"),
        ("<REQUEST><QUERY>PROLOG", "zlib"),
    ] {
        assert_eq!(post(&srv, false, bad, enc).0, 400, "{bad}");
    }
    assert_eq!(srv.statuses().iter().filter(|(_, d, _)| d.contains("no-date")).count(), 0);

    // The console's counts and the OCS housekeeping commands.
    let o = srv.cmd(&["status"]);
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.contains("WAITING") && table.contains("ERRORS"), "{table}");
    assert!(srv.cmd(&["validate", "--package", &a.to_string()]).status.success());
    assert!(srv.statuses().iter().all(|(p, _, _)| *p != a), "successful device cleared");
    let late = srv.package_add(&["--action", "execute", "--command", "true"]);
    srv.assign(late, dev, &[]);
    let o = srv.cmd(&["unaffect", "--package", &late.to_string(), "--not-notified"]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("removed from 1"), "{}", text(&o));
}

#[test]
fn outpost_agent_in_ocs_mode_deploys_from_outpost_servers_ocs_endpoint() {
    let t = TempDir::new("ocs-ours");
    let mut srv = Server::init(t.join("srv"), &[]);
    let mark = t.join("mark");
    let mut data = format!("echo ours >> {}\n", mark.display()).into_bytes();
    data.extend(hex_comment(20_000));
    let arc = t.join("pkg.tar.gz");
    fs::write(&arc, targz(&[Member::File("setup.sh", &data, 0o755)])).unwrap();
    let id = srv.package_add(&[
        "--file",
        arc.to_str().unwrap(),
        "--action",
        "launch",
        "--command",
        "setup.sh",
        "--frag-size",
        "4K",
    ]);
    assert!(srv.cmd(&["assign", "--package", &id.to_string(), "--all"]).status.success());
    srv.start();
    let ca = fs::read_to_string(srv.dir.join("tls/ca-cert.pem")).unwrap();
    let cfg = t.join("ocs-agent.toml");
    fs::write(
        &cfg,
        format!(
            "[server]\nprotocol = \"ocs\"\nurl = \"http://127.0.0.1:{}/ocsinventory\"\nca_cert = '''\n{ca}'''\n\n[agent]\nstate_dir = \"{}\"\n\n[download]\nmax_bandwidth = 4000000\n",
            srv.http_port,
            t.join("state").display()
        ),
    )
    .unwrap();
    let o = outpost_tests::agent(&cfg, &["run", "--once"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("without a signed manifest") && err.contains("verified TLS"), "says how it checked: {err}");
    // OCS downloads go through the same pacer as outpost ones.
    let st = outpost_tests::agent(&cfg, &["status"], &[]);
    assert!(
        String::from_utf8_lossy(&st.stdout).contains("download rate: 4000000 B/s, limited by cap"),
        "the cap applies in OCS mode: {}",
        text(&st)
    );
    let devices = ocs_devices(&srv);
    assert_eq!(devices.len(), 1);
    assert!(outpost_agent::engine::ocs::valid_device_id(&devices[0]));
    assert_eq!(srv.status_of(id, &devices[0]), "SUCCESS");
    assert_eq!(fs::read_to_string(&mark).unwrap(), "ours\n");
    // The DEVICEID is kept across runs.
    let o = outpost_tests::agent(&cfg, &["run", "--once"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(ocs_devices(&srv), devices);
}
