//! The server's control API behind authentication, through the whole
//! server: `serve::run` on a temporary directory with one registered device
//! and one package assigned to it, and arbitrary requests from that device
//! (its right secret on every one, so no lockout) sent over TLS by the
//! agent's own client: poll and report bodies, info, manifest and fragment
//! GETs with any Range, any other path. Every request gets an answer (the
//! server neither dies nor hangs), no answer is a 500, a poll answer is a
//! reply the agent decodes, and a report is acknowledged exactly as the
//! agent's decoder reads it, or refused with 400.
#![no_main]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use outpost_agent::engine::manifest::sha256;
use outpost_agent::engine::proto::{self, PollReply};
use outpost_agent::rt::http::{Client, Url};
use outpost_server::config::{Agents, Listen, Public, ServerConfig};
use outpost_server::db::{Db, NewPackage};
use outpost_server::{pki, serve};

const DEVICE: &str = "fuzz-pc-1";
const SECRET: &str = "0123456789abcdef0123456789abcdef";
/// Bodies are cut here, under the server's 256 KiB bound (a 413 closes the
/// connection before the body is read, which the client would see as a
/// failed write).
const MAX_BODY: usize = 16 * 1024;

struct Fixture {
    client: Client,
    base: String,
    auth: String,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// The server, started once per fuzzing process.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let tmp = std::env::var_os("TMPDIR").map_or_else(std::env::temp_dir, PathBuf::from);
        let dir = tmp.join(format!("outpost-fuzz-control-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("download/1")).expect("server dir");
        for (name, data) in [("info", &b"<DOWNLOAD ID=\"1\" />"[..]), ("manifest", b"m"), ("1-1", b"fragment one")] {
            std::fs::write(dir.join("download/1").join(name), data).expect("download file");
        }
        pki::create_tls(&dir, &["127.0.0.1".to_string()]).expect("TLS");
        pki::create_signing_key(&dir).expect("signing key");
        let mut db = Db::open(&dir.join("state.db")).expect("state.db");
        db.add_device(DEVICE, &sha256(SECRET.as_bytes())).expect("device");
        let p = NewPackage { id: 1, name: "p", action: "EXECUTE", priority: 5, frags: 1, size: 12, https: false };
        db.add_package(&p).expect("package");
        db.assign(1, Some(DEVICE), false).expect("assign");
        drop(db);
        let (https, http) = (free_port(), free_port());
        let cfg = ServerConfig {
            listen: Listen { https: format!("127.0.0.1:{https}"), http: format!("127.0.0.1:{http}") },
            public: Public {
                server_url: format!("https://127.0.0.1:{https}"),
                info_loc: format!("127.0.0.1:{https}/download"),
                fragment_loc: format!("127.0.0.1:{http}/download"),
            },
            agents: Agents::default(),
            ocs: Default::default(),
            security: Default::default(),
            limits: Default::default(),
            server: Default::default(),
            database: Default::default(),
        };
        pki::write_private(&dir.join("server.toml"), cfg.to_toml().as_bytes()).expect("server.toml");
        let run_dir = dir.clone();
        std::thread::spawn(move || {
            let r = serve::run(&run_dir);
            panic!("the server stopped: {r:?}");
        });
        let mut tries = 0;
        while TcpStream::connect(("127.0.0.1", https)).is_err() {
            tries += 1;
            assert!(tries < 1000, "the server never listened");
            #[allow(clippy::disallowed_methods)] // a real server starting
            std::thread::sleep(Duration::from_millis(10));
        }
        let ca = std::fs::read_to_string(dir.join("tls/ca-cert.pem")).expect("CA");
        Fixture {
            client: Client::new(&ca, Duration::from_secs(5), Duration::from_secs(10)).expect("client"),
            base: format!("https://127.0.0.1:{https}"),
            auth: proto::auth_header(DEVICE, SECRET),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let [route, range, rest @ ..] = data else { return };
    let f = fixture();
    let body = &rest[..rest.len().min(MAX_BODY)];
    let text = String::from_utf8_lossy(body);
    let (method, path) = match route % 7 {
        0 => ("POST", "/api/v1/poll".to_string()),
        1 | 2 => ("POST", "/api/v1/report".to_string()),
        3 => ("GET", "/download/1/info".to_string()),
        4 => ("HEAD", "/download/1/manifest".to_string()),
        5 => ("GET", "/download/1/1-1".to_string()),
        // Any path: only printable ASCII without spaces reaches a Url.
        _ => ("POST", format!("/{}", text.chars().filter(|c| c.is_ascii_graphic()).take(200).collect::<String>())),
    };
    let Ok(url) = Url::parse(&format!("{}{path}", f.base)) else { return };
    let range_value = format!("bytes={}-{}", range / 16, range % 16);
    let mut headers = vec![("Authorization", f.auth.as_str())];
    if method != "POST" && range & 1 == 1 {
        headers.push(("Range", range_value.as_str()));
    }
    let sent: &[u8] = if method == "POST" { body } else { &[] };
    let mut r = f
        .client
        .request(method, &url, &headers, sent)
        .unwrap_or_else(|e| panic!("{method} {path}: no answer from the server: {e}"));
    let got = r.read_to_vec(1 << 20).unwrap_or_else(|e| panic!("{method} {path}: answer cut: {e}"));
    let status = r.status;
    r.release();
    assert_ne!(status, 500, "{method} {path}: {}", String::from_utf8_lossy(&got));
    match route % 7 {
        0 => {
            assert_eq!(status, 200, "an authenticated poll is answered");
            let reply = PollReply::decode(&got).expect("a poll reply the agent reads");
            assert!(reply.offers.iter().all(|o| o.id == 1), "only the assigned package: {reply:?}");
        }
        1 | 2 => match proto::decode_reports(body) {
            Ok(reports) => {
                assert_eq!(status, 200, "reports the agent's decoder reads are taken");
                let acks = proto::decode_acks(&got).expect("acks the agent reads");
                assert_eq!(acks, reports.iter().map(|r| r.id).collect::<Vec<_>>(), "each report acknowledged");
            }
            Err(_) => assert_eq!(status, 400, "a report the decoder refuses is refused"),
        },
        3..=5 => assert!(matches!(status, 200 | 206 | 404 | 416), "{method} {path}: {status}"),
        _ => {}
    }
});
