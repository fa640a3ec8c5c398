//! outpost-agent in OCS mode, driven in virtual time against an in-process
//! server that answers as the real OCS server 2.8 does: zlib bodies, random
//! attribute and element order, PARAMs as attributes, info files as
//! ocsreports writes them (values not escaped), an empty 200 for reports.

use std::io::{Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::Duration;

use outpost_agent::engine::digest::{ArchiveHasher, base64_unpadded, hex};
use outpost_agent::engine::info::DigestAlgo;
use outpost_agent::engine::ocs::Request;
use outpost_agent::rt::config::Config;
use outpost_agent::rt::env::{BodySink, Env, GetError};
use outpost_agent::rt::http::Url;
use outpost_agent::rt::ocs_mode::OcsAgent;
use outpost_hal::notify::{Answer, Notice};
use outpost_tests::{Member, TempDir, targz};

#[path = "ocs_mode/endless.rs"]
mod endless;

struct Pkg {
    id: u64,
    info: String,
    frags: Vec<Vec<u8>>,
}

/// The OCS server, the network and the clock, all in one.
struct Sim {
    now: u64,
    conf: Vec<(&'static str, String)>,
    packs: Vec<Pkg>,
    listed: Vec<u64>,
    /// What the server saw, in order: "GET id-n", "REPORT id CODE".
    events: Vec<(u64, String)>,
    rng: u64,
    /// Panic at the n-th sleep (the agent dies there).
    die_at_sleep: Option<usize>,
    sleeps: usize,
    /// The user's answers, in turn (then proceed), and what was asked.
    answers: std::collections::VecDeque<Answer>,
    asked: Vec<String>,
    /// A hostile fragment server: every fragment answer is an endless body
    /// (until the agent refuses a chunk, or this many bytes), and `poured`
    /// counts the bytes the agent took.
    pour: u64,
    poured: u64,
    /// Fragment body bytes sent (not poured).
    served: u64,
}

impl Sim {
    fn rand(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.rand() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }

    fn param(&mut self, mut attrs: Vec<(&'static str, String)>) -> String {
        self.shuffle(&mut attrs);
        let a: Vec<String> = attrs.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        format!("<PARAM {} />", a.join(" "))
    }

    /// A PROLOG reply as XML::Simple writes it with NoSort: random order.
    fn prolog_reply(&mut self) -> String {
        let mut params = vec![self.param(self.conf.clone())];
        for id in self.listed.clone() {
            params.push(self.param(vec![
                ("TYPE", "PACK".into()),
                ("ID", id.to_string()),
                ("INFO_LOC", "ocs.test/download".into()),
                ("PACK_LOC", "ocs.test/download".into()),
                ("CERT_PATH", "INSTALL_PATH".into()),
                ("CERT_FILE", "INSTALL_PATH/cacert.pem".into()),
                ("FORCE", "0".into()),
                ("SCHEDULE", String::new()),
                ("POSTCMD", String::new()),
            ]));
        }
        let option = format!("<OPTION>{}<NAME>DOWNLOAD</NAME></OPTION>", params.join(""));
        let mut elems = vec![
            option,
            "<RESPONSE>STOP</RESPONSE>".to_string(),
            "<PROLOG_FREQ>12</PROLOG_FREQ>".to_string(),
            "<INVENTORY_ON_STARTUP>0</INVENTORY_ON_STARTUP>".to_string(),
            "<OPTION><NAME>REGISTRY</NAME><PARAM NAME=\"x\" /></OPTION>".to_string(),
        ];
        self.shuffle(&mut elems);
        format!("<?xml version='1.0' encoding='UTF-8'?>\n<REPLY>{}</REPLY>\n", elems.join(""))
    }
}

fn zlib(s: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(s).unwrap();
    e.finish().unwrap()
}

impl Env for Sim {
    fn unix_time(&self) -> u64 {
        self.now
    }

    fn sleep(&mut self, d: Duration) {
        self.sleeps += 1;
        if self.die_at_sleep == Some(self.sleeps) {
            panic!("simulated crash of the agent");
        }
        self.now += d.as_secs();
    }

    fn random_u64(&mut self) -> u64 {
        self.rand()
    }

    fn post(&mut self, _url: &Url, _: &[(&str, &str)], body: &[u8], _: usize) -> Result<(u16, Vec<u8>), GetError> {
        let mut xml = String::new();
        flate2::read::ZlibDecoder::new(body).read_to_string(&mut xml).expect("the agent sends zlib");
        match Request::parse(&xml).expect("the agent's request parses") {
            Request::Prolog { .. } => {
                let r = self.prolog_reply();
                Ok((200, zlib(r.as_bytes())))
            }
            Request::Download { id, err, .. } => {
                self.events.push((self.now, format!("REPORT {id} {err}")));
                // As the real server: sent again on every PROLOG until a status arrives.
                self.listed.retain(|l| *l != id);
                Ok((200, Vec::new()))
            }
            _ => Ok((200, zlib(b"<REPLY><RESPONSE>NO_ACCOUNT_UPDATE</RESPONSE></REPLY>"))),
        }
    }

    fn get(&mut self, url: &Url, range: Option<&str>, sink: &mut dyn BodySink) -> Result<(), GetError> {
        let parts: Vec<&str> = url.path.split('/').collect();
        let id: u64 = parts[2].parse().unwrap();
        if parts[3] != "info" && self.pour > 0 {
            return self.pour_into(parts[3], range, sink);
        }
        let pkg = self.packs.iter().find(|p| p.id == id).expect("known package");
        if parts[3] != "info" && pkg.frags.is_empty() {
            // A fragment that is not there: 404, every time.
            self.events.push((self.now, format!("GET {} 404", parts[3])));
            return sink.head(404, None).map_err(GetError::Refused);
        }
        let body = if parts[3] == "info" {
            assert!(url.tls, "info files only over HTTPS");
            pkg.info.clone().into_bytes()
        } else {
            let n: usize = parts[3].rsplit('-').next().unwrap().parse().unwrap();
            let data = pkg.frags[n - 1].clone();
            self.events.push((self.now, format!("GET {id}-{n}")));
            data
        };
        let start: usize =
            range.and_then(|r| r.strip_prefix("bytes=")?.trim_end_matches('-').parse().ok()).unwrap_or(0);
        if start > 0 {
            let cr = format!("bytes {start}-{}/{}", body.len() - 1, body.len());
            sink.head(206, Some(&cr)).map_err(GetError::Refused)?;
        } else {
            sink.head(200, None).map_err(GetError::Refused)?;
        }
        if parts[3] != "info" {
            self.served += (body.len() - start) as u64;
        }
        sink.data(&body[start..]).map_err(|e| GetError::Broken(e.to_string()))
    }

    fn ask(&mut self, n: &Notice<'_>) -> Answer {
        self.asked.push(format!("{:?} {} {}", n.kind, n.package, n.text));
        self.now += u64::from(n.countdown); // the countdown passes in virtual time
        self.answers.pop_front().unwrap_or(Answer::Proceed)
    }
}

/// An info file exactly as ocsreports writes it: attribute order fixed,
/// values *not* escaped.
#[allow(clippy::too_many_arguments)] // one argument per attribute of the file
fn info(id: u64, pri: u8, act: &str, digest: &str, frags: usize, target: &str, algo: &str, enc: &str) -> String {
    let attr = match act {
        "STORE" => "PATH",
        "LAUNCH" => "NAME",
        _ => "COMMAND",
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DOWNLOAD ID=\"{id}\" PRI=\"{pri}\" ACT=\"{act}\" DIGEST=\"{digest}\" PROTO=\"HTTP\" FRAGS=\"{frags}\" DIGEST_ALGO=\"{algo}\" DIGEST_ENCODE=\"{enc}\" {attr}=\"{target}\" NOTIFY_USER=\"0\" NOTIFY_TEXT=\"\" NOTIFY_COUNTDOWN=\"\" NOTIFY_CAN_ABORT=\"0\" NOTIFY_CAN_DELAY=\"0\" NEED_DONE_ACTION=\"0\" NEED_DONE_ACTION_TEXT=\"\" GARDEFOU=\"rien\" />\n"
    )
}

fn digest(algo: DigestAlgo, data: &[u8]) -> Vec<u8> {
    let mut h = ArchiveHasher::new(algo);
    h.update(data);
    h.finish().1
}

fn split(data: &[u8], n: usize) -> Vec<Vec<u8>> {
    let size = data.len().div_ceil(n);
    data.chunks(size).map(<[u8]>::to_vec).collect()
}

fn pkg(id: u64, pri: u8, act: &str, target: &str, archive: &[u8], frags: usize) -> Pkg {
    let md5 = hex(&digest(DigestAlgo::Md5, archive));
    Pkg { id, info: info(id, pri, act, &md5, frags, target, "MD5", "Hexa"), frags: split(archive, frags) }
}

fn agent_config(state: &Path) -> Config {
    Config::parse(&format!(
        "[server]\nprotocol = \"ocs\"\nurl = \"http://ocs.test/ocsinventory\"\nca_cert = \"unused in simulation\"\n\
         [agent]\nstate_dir = \"{}\"\nexecution_timeout = 60\n",
        state.display()
    ))
    .unwrap()
}

fn conf() -> Vec<(&'static str, String)> {
    [("TYPE", "CONF"), ("ON", "1"), ("FRAG_LATENCY", "1"), ("CYCLE_LATENCY", "10"), ("PERIOD_LATENCY", "100")]
        .into_iter()
        .chain([("PERIOD_LENGTH", "4"), ("TIMEOUT", "30"), ("EXECUTION_TIMEOUT", "120")])
        .map(|(k, v)| (k, v.to_string()))
        .collect()
}

#[test]
fn ocs_mode_slots_follow_the_ocs_rules_and_each_package_ends_right() {
    let t = TempDir::new("ocs-mode");
    let mark = t.join("marks");
    let m = mark.display();
    let script = |tag: &str| format!("echo {tag} >> {m}\n");
    let a100 = targz(&[Member::File("s.sh", script("100").as_bytes(), 0o644)]);
    let a200 = targz(&[Member::File("run.sh", format!("#!/bin/sh\n{}", script("200")).as_bytes(), 0o755)]);
    let a300 = targz(&[Member::File("etc/app.conf", b"x=1\n", 0o644), Member::File("etc/more", &[7u8; 3000], 0o644)]);
    let a700 = targz(&[Member::File("t.sh", script("700").as_bytes(), 0o644)]);
    let store = t.join("store300");
    let sha1_b64 = base64_unpadded(&digest(DigestAlgo::Sha1, &a700));
    let mut packs = vec![
        // Values not escaped, as ocsreports writes them: `&&` in a command.
        pkg(100, 0, "EXECUTE", "sh s.sh && echo ok > ok100", &a100, 2),
        pkg(200, 1, "LAUNCH", "run.sh", &a200, 1),
        pkg(300, 2, "STORE", store.to_str().unwrap(), &a300, 2),
        pkg(400, 3, "EXECUTE", "sh s.sh", &a100, 1),
        Pkg { id: 500, info: info(500, 1, "EXECUTE", "", 0, "exit 3", "MD5", "Hexa"), frags: vec![] },
        Pkg { id: 600, info: "<DOWNLOAD ID=\"600\" PRI=\"five\" ACT=\"EXECUTE\" />".into(), frags: vec![] },
        Pkg {
            id: 700,
            info: info(700, 2, "EXECUTE", &sha1_b64, 1, "sh t.sh", "SHA1", "Base64"),
            frags: split(&a700, 1),
        },
    ];
    packs[3].info = packs[3].info.replace(&hex(&digest(DigestAlgo::Md5, &a100)), "0123456789abcdef0123456789abcdef");
    let sim = Sim {
        now: 1_800_000_000,
        conf: conf(),
        listed: packs.iter().map(|p| p.id).collect(),
        packs,
        events: Vec::new(),
        rng: 0x5eed,
        ..dummy()
    };
    let mut agent = OcsAgent::new(agent_config(&t.join("state")), sim).unwrap();
    let summary = agent.run_once().unwrap();
    // 400's archive does not match its digest: fetched again at the next run
    // (a mismatch is transient, issue 10 item 10), not ended at once.
    assert_eq!((summary.pending, summary.unreported), (1, 0), "{summary:?}");
    let sim = agent_env(agent);
    let got: Vec<&str> = sim.events.iter().map(|(_, e)| e.as_str()).collect();
    assert_eq!(
        got,
        [
            "REPORT 600 ERR_BAD_PARAM", // broken info: ends that package at once, blocks nothing
            "GET 100-1",                // cycle 1: priority 0 first
            "GET 200-1",                // priority 1 every cycle
            "REPORT 500 EXIT_CODE_3",   // FRAGS=0: its one slot is the install
            "GET 100-2",                // cycle 2
            "REPORT 200 SUCCESS",
            "GET 300-1", // priority 2: cycles 2 and 4
            "GET 700-1",
            "REPORT 100 SUCCESS", // cycle 3
            "GET 400-1",          // priority 3: cycle 3
            "GET 300-2",          // cycle 4
            "REPORT 700 SUCCESS", // SHA1 + unpadded Base64 digest checked
            "REPORT 300 SUCCESS", // next period, cycle 2
        ]
    );
    // Latencies happened in virtual time: 3 full cycles + a period latency before the last slot.
    let (first, last) = (sim.events[1].0, sim.events.last().unwrap().0);
    assert!(last - first >= 3 * 10 + 100, "virtual time advanced by {}", last - first);
    let marks = std::fs::read_to_string(&mark).unwrap();
    assert_eq!(marks.lines().collect::<Vec<_>>(), ["200", "100", "700"]);
    assert_eq!(std::fs::read(store.join("etc/app.conf")).unwrap(), b"x=1\n");
}

#[test]
fn ocs_mode_resumes_from_its_journal_when_the_server_stops_listing_the_package() {
    let t = TempDir::new("ocs-resume");
    let mark = t.join("marks");
    let a = targz(&[Member::File("s.sh", format!("echo done >> {}\n", mark.display()).as_bytes(), 0o644)]);
    let p = pkg(900, 1, "EXECUTE", "sh s.sh", &a, 3);
    let mut sim = Sim {
        now: 1_800_000_000,
        conf: conf(),
        listed: vec![900],
        packs: vec![p],
        events: Vec::new(),
        rng: 7,
        die_at_sleep: Some(4), // dies after its second fragment (frag + cycle latency per cycle)
        ..dummy()
    };
    let state = t.join("state");
    let mut agent = OcsAgent::new(agent_config(&state), std::mem::replace(&mut sim, dummy())).unwrap();
    let crashed = catch_unwind(AssertUnwindSafe(|| agent.run_once()));
    assert!(crashed.is_err(), "the simulated crash happened");
    let mut sim = agent_env(agent);
    let before: Vec<String> = sim.events.iter().map(|(_, e)| e.clone()).collect();
    assert_eq!(before, ["GET 900-1", "GET 900-2"]);

    // The server no longer lists it (the real agent then loops on http:///…).
    sim.listed.clear();
    sim.die_at_sleep = None;
    sim.events.clear();
    let mut agent = OcsAgent::new(agent_config(&state), sim).unwrap();
    let summary = agent.run_once().unwrap();
    assert!(summary.complete(), "{summary:?}");
    let sim = agent_env(agent);
    let after: Vec<&str> = sim.events.iter().map(|(_, e)| e.as_str()).collect();
    assert_eq!(after, ["GET 900-3", "REPORT 900 SUCCESS"], "fragments 1-2 are not fetched again");
    assert_eq!(std::fs::read_to_string(&mark).unwrap(), "done\n");
}

#[test]
fn ocs_mode_keeps_its_cache_under_the_cap_evicting_what_the_server_no_longer_lists() {
    // As above, but with a cache cap of 1 byte: once the server stops
    // listing the half-fetched package, it is evicted rather than resumed;
    // while listed, it stays whatever its size.
    let t = TempDir::new("ocs-cache-cap");
    let a = targz(&[Member::File("s.sh", b"exit 0\n", 0o644)]);
    let sim = Sim {
        listed: vec![900],
        packs: vec![pkg(900, 1, "EXECUTE", "sh s.sh", &a, 3)],
        conf: conf(),
        die_at_sleep: Some(4),
        ..dummy()
    };
    let state = t.join("state");
    let cfg = || {
        let mut c = agent_config(&state);
        c.agent.cache_max_size = 1;
        c
    };
    let mut agent = OcsAgent::new(cfg(), sim).unwrap();
    assert!(catch_unwind(AssertUnwindSafe(|| agent.run_once())).is_err(), "the simulated crash happened");
    let mut sim = agent_env(agent);
    assert!(state.join("packages/900/archive").exists(), "listed: kept over the cap");
    sim.listed.clear();
    sim.die_at_sleep = None;
    sim.events.clear();
    let mut agent = OcsAgent::new(cfg(), sim).unwrap();
    let summary = agent.run_once().unwrap();
    let sim = agent_env(agent);
    assert!(summary.complete(), "{summary:?}");
    assert!(sim.events.is_empty(), "evicted, not resumed: {:?}", sim.events);
    assert!(!state.join("packages/900").exists(), "its payload is gone");
}

#[test]
fn ocs_mode_refuses_a_package_the_endpoint_does_not_allow() {
    let t = TempDir::new("ocs-not-allowed");
    let a = targz(&[Member::File("s.sh", b"exit 0\n", 0o644)]);
    let sim = Sim { listed: vec![5], packs: vec![pkg(5, 1, "EXECUTE", "sh s.sh", &a, 2)], conf: conf(), ..dummy() };
    let mut cfg = agent_config(&t.join("state"));
    cfg.agent.allowed_actions = Some(vec!["store".into()]);
    let mut agent = OcsAgent::new(cfg, sim).unwrap();
    assert!(agent.run_once().unwrap().complete());
    let sim = agent_env(agent);
    let events: Vec<&str> = sim.events.iter().map(|(_, e)| e.as_str()).collect();
    assert_eq!(events, ["REPORT 5 ERR_NOT_ALLOWED"], "no fragment fetched, nothing run");
}

fn dummy() -> Sim {
    Sim {
        now: 1_800_000_000,
        conf: vec![],
        listed: vec![],
        packs: vec![],
        events: vec![],
        rng: 1,
        die_at_sleep: None,
        sleeps: 0,
        answers: Default::default(),
        asked: vec![],
        pour: 0,
        poured: 0,
        served: 0,
    }
}

fn agent_env(a: OcsAgent<Sim>) -> Sim {
    a.into_env()
}

#[test]
fn require_signed_refuses_ocs_packages_with_err_bad_digest() {
    let t = TempDir::new("ocs-signed");
    let a = targz(&[Member::File("s.sh", b"exit 0\n", 0o644)]);
    let sim = Sim { listed: vec![1], packs: vec![pkg(1, 5, "EXECUTE", "sh s.sh", &a, 1)], conf: conf(), ..dummy() };
    let mut cfg = agent_config(&t.join("state"));
    cfg.server.require_signed = true;
    let mut agent = OcsAgent::new(cfg, sim).unwrap();
    assert!(agent.run_once().unwrap().complete());
    let events: Vec<String> = agent_env(agent).events.into_iter().map(|(_, e)| e).collect();
    assert_eq!(events, ["REPORT 1 ERR_BAD_DIGEST"], "nothing fetched, nothing run");
}

#[test]
fn ocs_mode_asks_the_user_delay_then_proceed_and_abort() {
    let t = TempDir::new("ocs-notify");
    let mark = t.join("marks");
    let a = targz(&[Member::File("s.sh", format!("echo ran >> {}\n", mark.display()).as_bytes(), 0o644)]);
    let mut ask = pkg(1, 5, "EXECUTE", "sh s.sh", &a, 1);
    ask.info = ask.info.replace(
        "NOTIFY_USER=\"0\" NOTIFY_TEXT=\"\" NOTIFY_COUNTDOWN=\"\" NOTIFY_CAN_ABORT=\"0\" NOTIFY_CAN_DELAY=\"1\" NEED_DONE_ACTION=\"0\" NEED_DONE_ACTION_TEXT=\"\"",
        "",
    );
    ask.info = ask.info.replace(
        "NOTIFY_USER=\"0\" NOTIFY_TEXT=\"\" NOTIFY_COUNTDOWN=\"\" NOTIFY_CAN_ABORT=\"0\" NOTIFY_CAN_DELAY=\"0\" NEED_DONE_ACTION=\"0\" NEED_DONE_ACTION_TEXT=\"\"",
        "NOTIFY_USER=\"1\" NOTIFY_TEXT=\"Update & restart?\" NOTIFY_COUNTDOWN=\"300\" NOTIFY_CAN_ABORT=\"1\" NOTIFY_CAN_DELAY=\"1\" NEED_DONE_ACTION=\"1\" NEED_DONE_ACTION_TEXT=\"Done, thanks\"",
    );
    let mut abort = pkg(2, 5, "EXECUTE", "sh s.sh", &a, 1);
    abort.info = abort
        .info
        .replace("NOTIFY_USER=\"0\"", "NOTIFY_USER=\"1\"")
        .replace("NOTIFY_CAN_ABORT=\"0\"", "NOTIFY_CAN_ABORT=\"1\"");
    let sim = Sim {
        listed: vec![1, 2],
        packs: vec![ask, abort],
        conf: conf(),
        answers: [Answer::Delay, Answer::Abort].into_iter().collect(),
        ..dummy()
    };
    let state = t.join("state");
    let mut agent = OcsAgent::new(agent_config(&state), sim).unwrap();
    let s = agent.run_once().unwrap();
    assert_eq!(s.pending, 1, "package 1 delayed: {s:?}");
    let mut sim = agent_env(agent);
    let reports: Vec<&str> = sim.events.iter().map(|(_, e)| e.as_str()).filter(|e| e.starts_with("REPORT")).collect();
    assert_eq!(reports, ["REPORT 2 ERR_ABORTED"], "1 is delayed, 2 aborted");
    assert!(!mark.exists(), "nothing ran");

    sim.events.clear();
    let mut agent = OcsAgent::new(agent_config(&state), sim).unwrap();
    assert!(agent.run_once().unwrap().complete());
    let sim = agent_env(agent);
    let reports: Vec<&str> = sim.events.iter().map(|(_, e)| e.as_str()).filter(|e| e.starts_with("REPORT")).collect();
    assert_eq!(reports, ["REPORT 1 SUCCESS"]);
    assert_eq!(std::fs::read_to_string(&mark).unwrap(), "ran\n");
    assert_eq!(
        sim.asked,
        ["Before 1 Update & restart?", "Before 2 ", "Before 1 Update & restart?", "Done 1 Done, thanks"],
        "asked again after the delay; told when done"
    );
}

#[test]
fn ocs_mode_gives_up_on_a_missing_fragment_and_times_out_old_packages() {
    let t = TempDir::new("ocs-giveup");
    let a = targz(&[Member::File("s.sh", b"exit 0\n", 0o644)]);
    let mut missing = pkg(1, 1, "EXECUTE", "sh s.sh", &a, 1);
    missing.frags.clear(); // FRAGS=1, but the server has no fragment
    let mut conf = conf();
    for (k, v) in conf.iter_mut() {
        if *k == "TIMEOUT" {
            *v = "1".into(); // one day
        }
    }
    let sim = Sim { listed: vec![1], packs: vec![missing], conf, ..dummy() };
    let mut agent = OcsAgent::new(agent_config(&t.join("state")), sim).unwrap();
    assert!(agent.run_once().unwrap().complete());
    let sim = agent_env(agent);
    let gets = sim.events.iter().filter(|(_, e)| e.ends_with("404")).count();
    assert_eq!(gets, outpost_agent::engine::ocs_sched::MAX_SLOT_FAILURES as usize, "bounded tries");
    assert_eq!(sim.events.last().unwrap().1, "REPORT 1 ERR_DOWNLOAD_PACK");
    // agent.fragment_tries, when set, is the bound in OCS mode too.
    let t3 = TempDir::new("ocs-giveup-tries");
    let mut missing = pkg(1, 1, "EXECUTE", "sh s.sh", &a, 1);
    missing.frags.clear();
    let sim = Sim { listed: vec![1], packs: vec![missing], conf: sim.conf.clone(), ..dummy() };
    let mut cfg = agent_config(&t3.join("state"));
    cfg.agent.fragment_tries = Some(3);
    let mut agent = OcsAgent::new(cfg, sim).unwrap();
    assert!(agent.run_once().unwrap().complete());
    let sim = agent_env(agent);
    assert_eq!(sim.events.iter().filter(|(_, e)| e.ends_with("404")).count(), 3, "{:?}", sim.events);
    assert_eq!(sim.events.last().unwrap().1, "REPORT 1 ERR_DOWNLOAD_PACK");

    // A package still unfinished a day after it was first seen: ERR_TIMEOUT.
    let t2 = TempDir::new("ocs-timeout");
    let mut slow = pkg(2, 9, "EXECUTE", "sh s.sh", &a, 2);
    slow.frags.clear(); // its fragments never come: 404 in every slot
    let mut conf = self::conf();
    for (k, v) in conf.iter_mut() {
        match *k {
            "TIMEOUT" => *v = "1".into(),
            "PERIOD_LATENCY" => *v = "40000".into(), // half a day between periods
            _ => {}
        }
    }
    let sim = Sim { listed: vec![2], packs: vec![slow], conf, ..dummy() };
    let mut agent = OcsAgent::new(agent_config(&t2.join("state")), sim).unwrap();
    assert!(agent.run_once().unwrap().complete());
    let sim = agent_env(agent);
    assert_eq!(sim.events.last().unwrap().1, "REPORT 2 ERR_TIMEOUT", "{:?}", sim.events);
    assert!(sim.events.iter().filter(|(_, e)| e.ends_with("404")).count() < 10, "timed out before giving up");
}
