//! Item 3: OCS clients prove nothing but their DEVICEID, so no OCS query may
//! write to a device of the Outpost kind (which authenticates with a
//! secret): not a status (DOWNLOAD), not a history (INVENTORY). An empty or
//! malformed ERR is refused, not stored. Also the shared helpers of the OCS
//! security tests (`ocs_flood`, `lockout`).

use std::io::{Read, Write};
use std::time::Duration;

use outpost_agent::engine::ocs::Request;
use outpost_agent::rt::http::{Client, Url};
use outpost_tests::{Server, TempDir, text};

/// An Outpost device id that also has the OCS DEVICEID shape.
const OUTPOST_DEV: &str = "branch-pc-2026-11-23-18-03-38";

/// POST `xml` zlib-compressed to `/ocsinventory` on the HTTP listener, with
/// `authorization` if given. Returns the status, the inflated body (or the
/// raw text of an error) and the `Retry-After` header.
pub(crate) fn ocs_post(srv: &Server, xml: &str, authorization: Option<&str>) -> (u16, String, Option<String>) {
    let ca = std::fs::read_to_string(srv.dir.join("tls/ca-cert.pem")).expect("CA");
    let c = Client::new(&ca, Duration::from_secs(5), Duration::from_secs(5)).expect("client");
    let url = Url::parse(&format!("http://127.0.0.1:{}/ocsinventory", srv.http_port)).expect("url");
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(xml.as_bytes()).expect("zlib");
    let body = e.finish().expect("zlib");
    let mut headers = vec![("Content-Type", "application/x-compress")];
    if let Some(a) = authorization {
        headers.push(("Authorization", a));
    }
    let mut r = c.request("POST", &url, &headers, &body).expect("OCS request");
    let retry = r.header("retry-after").map(str::to_string);
    let raw = r.read_to_vec(1 << 20).expect("OCS reply");
    let mut out = String::new();
    if r.status == 200 && !raw.is_empty() {
        flate2::read::ZlibDecoder::new(&raw[..]).read_to_string(&mut out).expect("zlib reply");
    } else {
        out = String::from_utf8_lossy(&raw).into_owned();
    }
    (r.status, out, retry)
}

/// A PROLOG for `device`.
pub(crate) fn prolog(device: &str) -> String {
    format!("<REQUEST><DEVICEID>{device}</DEVICEID><QUERY>PROLOG</QUERY></REQUEST>")
}

/// A DOWNLOAD report as the Unix agent writes it.
pub(crate) fn report(device: &str, package: u64, err: &str) -> String {
    format!("<REQUEST DEVICEID=\"{device}\" ERR=\"{err}\" ID=\"{package}\" QUERY=\"DOWNLOAD\" />\n")
}

/// Replace `from` by `to` in DIR/server.toml (before `start`).
pub(crate) fn edit_config(srv: &Server, from: &str, to: &str) {
    let p = srv.dir.join("server.toml");
    let t = std::fs::read_to_string(&p).expect("server.toml");
    assert!(t.contains(from), "server.toml has no {from:?}:\n{t}");
    std::fs::write(&p, t.replacen(from, to, 1)).expect("write server.toml");
}

/// A server with one package assigned to the Outpost device [`OUTPOST_DEV`].
fn server_with_outpost_device(t: &TempDir) -> (Server, u64) {
    let mut srv = Server::init(t.join("srv"), &[]);
    let id = srv.package_add(&["--action", "execute", "--command", "true"]);
    srv.device_add(OUTPOST_DEV, t.path());
    srv.assign(id, OUTPOST_DEV, &[]);
    srv.start();
    (srv, id)
}

#[test]
fn an_ocs_download_query_cannot_mark_an_outpost_device_success() {
    let t = TempDir::new("sec-ocs-kind-dl");
    let (srv, id) = server_with_outpost_device(&t);
    for _ in 0..3 {
        let (status, body, _) = ocs_post(&srv, &report(OUTPOST_DEV, id, "SUCCESS"), None);
        assert_eq!(status, 403, "refused: {body}");
    }
    assert_eq!(srv.status_of(id, OUTPOST_DEV), "WAITING NOTIFICATION", "the security patch is still pending");
    let log = std::fs::read_to_string(srv.dir.join("serve.log")).unwrap_or_default();
    assert_eq!(log.matches("reported for the Outpost device").count(), 1, "logged once: {log}");
}

#[test]
fn an_ocs_inventory_cannot_plant_a_history_on_an_outpost_device() {
    let t = TempDir::new("sec-ocs-kind-inv");
    let (srv, id) = server_with_outpost_device(&t);
    let inv = Request::Inventory { device_id: OUTPOST_DEV.into(), history: vec![id] }.to_xml();
    let (status, body, _) = ocs_post(&srv, &inv, None);
    assert_eq!(status, 403, "refused: {body}");
    // The device polls: the package must still be offered, not hidden as
    // SUCCESS_ALREADY_IN_HISTORY by a planted history.
    let cfg = std::fs::read_to_string(t.join(&format!("{OUTPOST_DEV}.toml"))).expect("agent config");
    let secret = cfg.lines().find_map(|l| l.strip_prefix("secret = ")).expect("secret").trim_matches('"');
    let ca = std::fs::read_to_string(srv.dir.join("tls/ca-cert.pem")).expect("CA");
    let c = Client::new(&ca, Duration::from_secs(5), Duration::from_secs(5)).expect("client");
    let url = Url::parse(&format!("https://127.0.0.1:{}/api/v1/poll", srv.https_port)).expect("url");
    let auth = format!("Outpost {OUTPOST_DEV} {secret}");
    let mut r = c.request("POST", &url, &[("Authorization", &auth)], b"outpost 1\n").expect("poll");
    let reply = String::from_utf8(r.read_to_vec(1 << 16).expect("poll reply")).expect("text");
    assert_eq!(r.status, 200, "{reply}");
    assert!(reply.contains(&format!("package id={id} ")), "still offered: {reply}");
    assert_eq!(srv.status_of(id, OUTPOST_DEV), "NOTIFIED");
}

#[test]
fn an_empty_or_malformed_ocs_err_is_refused_not_stored() {
    let t = TempDir::new("sec-ocs-kind-err");
    let mut srv = Server::init(t.join("srv"), &[]);
    let id = srv.package_add(&["--action", "execute", "--command", "true"]);
    let o = srv.cmd(&["assign", "--package", &id.to_string(), "--all"]);
    assert!(o.status.success(), "{}", text(&o));
    srv.start();
    let dev = "ocs-pc-2026-11-23-18-03-38";
    assert_eq!(ocs_post(&srv, &prolog(dev), None).0, 200);
    assert_eq!(srv.status_of(id, dev), "NOTIFIED");
    for bad in ["", "NOTIFIED", "bogus", "WAITING"] {
        let (status, body, _) = ocs_post(&srv, &report(dev, id, bad), None);
        assert_eq!(status, 400, "ERR {bad:?}: {body}");
        assert_eq!(srv.status_of(id, dev), "NOTIFIED", "ERR {bad:?} not stored");
    }
    // The real agent's codes, including its retried `SUCCESS_`, still go through.
    assert_eq!(ocs_post(&srv, &report(dev, id, "SUCCESS_"), None).0, 200);
    assert_eq!(srv.status_of(id, dev), "SUCCESS_");
}
