//! outpost-agent in the Outpost protocol, the production loop
//! (`rt::agent::Agent`) driven in virtual time through [`Env`] against an
//! in-process server: poll, signed manifest, fragments with scripted faults,
//! reports. The same seam as `tests/ocs_mode.rs`, so both front ends are
//! tested through the code that runs on endpoints; `tests/sim_download.rs`
//! sweeps power cuts through the download engine below both of them.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::Duration;

use outpost_agent::engine::digest::hex;
use outpost_agent::engine::manifest::sha256;
use outpost_agent::engine::proto::{self, Offer, PollReply};
use outpost_agent::engine::trust::{Bundle, TrustedKey};
use outpost_agent::rt::agent::Agent;
use outpost_agent::rt::config::Config;
use outpost_agent::rt::env::{BodySink, Env, GetError};
use outpost_agent::rt::http::Url;
use outpost_hal::notify::{Answer, Notice};
use outpost_tests::{Fault, Member, TempDir, random_bytes, targz};
use ring::signature::{Ed25519KeyPair, KeyPair};

/// Package id in these tests.
const ID: u64 = 7;
/// Bytes handed to the agent at a time.
const CHUNK: usize = 16 * 1024;

/// The server, the network and the clock, all in one.
struct Sim {
    now: u64,
    info: Vec<u8>,
    manifest: Vec<u8>,
    frags: Vec<Vec<u8>>,
    faults: VecDeque<Fault>,
    /// Reports the server received: (package, status).
    reports: Vec<(u64, String)>,
    /// Fragment body bytes handed to the agent.
    served: u64,
    /// Every wait the agent asked for, in order.
    sleeps: Vec<Duration>,
    /// Panic at the n-th sleep (the agent dies there).
    die_at_sleep: Option<usize>,
    rng: u64,
    /// The trust bundle announced in poll replies, and how many of its
    /// fetches fail before one gets it.
    trust: Option<Vec<u8>>,
    trust_fails: usize,
    /// Depots the poll replies list, and the faults of their answers.
    depots: Vec<String>,
    depot_faults: VecDeque<Fault>,
    /// Fragment body bytes the depots handed to the agent.
    depot_served: u64,
    /// The control server is away (poll, report, trust unreachable).
    control_down: bool,
    /// Fetches of the info file that fail before one gets it.
    info_fails: usize,
}

impl Sim {
    fn new(archive: &[u8], frag: usize, key: &Ed25519KeyPair) -> Self {
        let md5 = {
            let mut h = outpost_agent::engine::digest::ArchiveHasher::new(outpost_agent::engine::info::DigestAlgo::Md5);
            h.update(archive);
            hex(&h.finish().1)
        };
        let frags: Vec<Vec<u8>> = archive.chunks(frag).map(<[u8]>::to_vec).collect();
        let info = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DOWNLOAD ID=\"{ID}\" PRI=\"5\" ACT=\"EXECUTE\" DIGEST=\"{md5}\" PROTO=\"HTTP\" FRAGS=\"{}\" DIGEST_ALGO=\"MD5\" DIGEST_ENCODE=\"Hexa\" COMMAND=\"sh run.sh\" NOTIFY_USER=\"0\" NOTIFY_TEXT=\"\" NOTIFY_COUNTDOWN=\"\" NOTIFY_CAN_ABORT=\"0\" NOTIFY_CAN_DELAY=\"0\" NEED_DONE_ACTION=\"0\" NEED_DONE_ACTION_TEXT=\"\" GARDEFOU=\"rien\" />\n",
            frags.len()
        )
        .into_bytes();
        let mut m = outpost_tests::manifest_of(archive, frag);
        m.package_id = ID;
        m.info_sha256 = sha256(&info);
        let manifest = m.encode_signed(|b| key.sign(b).as_ref().try_into().expect("64-byte signature"));
        Self {
            now: 1_800_000_000,
            info,
            manifest,
            frags,
            faults: VecDeque::new(),
            reports: Vec::new(),
            served: 0,
            sleeps: Vec::new(),
            die_at_sleep: None,
            rng: 0x9e37_79b9_7f4a_7c15,
            trust: None,
            trust_fails: 0,
            depots: Vec::new(),
            depot_faults: VecDeque::new(),
            depot_served: 0,
            control_down: false,
            info_fails: 0,
        }
    }

    fn fragment(
        &mut self,
        n: usize,
        range: Option<&str>,
        sink: &mut dyn BodySink,
        depot: bool,
    ) -> Result<(), GetError> {
        let body = self.frags[n - 1].clone();
        let len = body.len();
        let start: usize = range.and_then(|r| r.strip_prefix("bytes=")?.split('-').next()?.parse().ok()).unwrap_or(0);
        let fault = if depot { self.depot_faults.pop_front() } else { self.faults.pop_front() };
        let head = |sink: &mut dyn BodySink, start: usize| {
            if start > 0 {
                sink.head(206, Some(&format!("bytes {start}-{}/{len}", len - 1)))
            } else {
                sink.head(200, None)
            }
        };
        let mut part = match fault {
            Some(Fault::Status(s)) => return sink.head(s, None).map_err(GetError::Refused),
            Some(Fault::IgnoreRange) => {
                sink.head(200, None).map_err(GetError::Refused)?;
                body
            }
            Some(Fault::WrongContentRange) => {
                let off = (start + 10).min(len - 1);
                sink.head(206, Some(&format!("bytes {off}-{}/{len}", len - 1))).map_err(GetError::Refused)?;
                body[off..].to_vec()
            }
            _ => {
                head(sink, start).map_err(GetError::Refused)?;
                body[start..].to_vec()
            }
        };
        let mut broken = false;
        match fault {
            Some(Fault::Truncate(k)) => part.truncate(k),
            Some(Fault::LinkDown(k)) => {
                part.truncate(k);
                broken = true;
            }
            Some(Fault::Corrupt(at)) if at < part.len() => part[at] ^= 0x55,
            _ => {}
        }
        for c in part.chunks(CHUNK) {
            self.served += c.len() as u64;
            self.depot_served += if depot { c.len() as u64 } else { 0 };
            sink.data(c).map_err(|e| GetError::Broken(e.to_string()))?;
        }
        if broken { Err(GetError::Broken("link down".into())) } else { Ok(()) }
    }
}

impl Env for Sim {
    fn unix_time(&self) -> u64 {
        self.now
    }

    fn sleep(&mut self, d: Duration) {
        self.sleeps.push(d);
        if self.die_at_sleep == Some(self.sleeps.len()) {
            panic!("simulated crash of the agent");
        }
        self.now += d.as_secs().max(1);
    }

    fn random_u64(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn post(&mut self, url: &Url, _: &[(&str, &str)], body: &[u8], _: usize) -> Result<(u16, Vec<u8>), GetError> {
        if self.control_down {
            return Err(GetError::Unreachable("connection refused".into()));
        }
        if url.path.ends_with(proto::POLL_PATH) {
            let done = self.reports.iter().any(|(p, _)| *p == ID);
            let offers = if done {
                Vec::new()
            } else {
                let loc = "outpost.test/pkg".to_string();
                vec![Offer { id: ID, priority: 5, force: false, info_loc: loc.clone(), pack_loc: loc }]
            };
            let trust_version = self.trust.as_deref().and_then(Bundle::peek_version).unwrap_or(0);
            let depots = self.depots.clone();
            let reply = PollReply { poll_interval: 3600, offers, trust_version, depots, ..PollReply::default() };
            return Ok((200, reply.encode().into_bytes()));
        }
        if url.path.ends_with(proto::TRUST_PATH) {
            if self.trust_fails > 0 {
                self.trust_fails -= 1;
                return Err(GetError::Unreachable("connection refused".into()));
            }
            return Ok((200, self.trust.clone().unwrap_or_default()));
        }
        let reports = proto::decode_reports(body).expect("the agent's reports parse");
        self.reports.extend(reports.iter().map(|r| (r.package, r.status.to_string())));
        let ids: Vec<u64> = reports.iter().map(|r| r.id).collect();
        Ok((200, proto::encode_acks(&ids).into_bytes()))
    }

    fn get(&mut self, url: &Url, range: Option<&str>, sink: &mut dyn BodySink) -> Result<(), GetError> {
        let name = url.path.rsplit('/').next().unwrap_or_default().to_string();
        let whole = match name.as_str() {
            "info" if self.info_fails > 0 => {
                self.info_fails -= 1;
                return Err(GetError::Unreachable("connection refused".into()));
            }
            "info" => self.info.clone(),
            "manifest" => self.manifest.clone(),
            frag => {
                let n: usize = frag.rsplit('-').next().and_then(|n| n.parse().ok()).expect("a fragment name");
                // With depots, a transfer takes a second (they sit out a backoff in time).
                self.now += u64::from(!self.depots.is_empty());
                return self.fragment(n, range, sink, url.host != "outpost.test");
            }
        };
        assert!(url.tls, "metadata only over HTTPS");
        sink.head(200, None).map_err(GetError::Refused)?;
        sink.data(&whole).map_err(|e| GetError::Broken(e.to_string()))
    }

    fn ask(&mut self, _: &Notice<'_>) -> Answer {
        Answer::Proceed
    }
}

fn config(state: &Path, key: &Ed25519KeyPair) -> Config {
    Config::parse(&format!(
        "[server]\nurl = \"https://outpost.test\"\ndevice_id = \"dev-1\"\nsecret = \"s3cret\"\n\
         signing_key = \"{}\"\nca_cert = \"unused in simulation\"\n\
         [agent]\nstate_dir = \"{}\"\nexecution_timeout = 60\ncheckpoint_bytes = 65536\n",
        hex(key.public_key().as_ref()),
        state.display()
    ))
    .expect("the test's config parses")
}

struct Setup {
    _t: TempDir,
    state: std::path::PathBuf,
    mark: std::path::PathBuf,
    key: Ed25519KeyPair,
    archive: Vec<u8>,
}

fn setup(name: &str) -> Setup {
    let t = TempDir::new(name);
    let mark = t.join("ran");
    let script = format!("echo ran >> {}\n", mark.display());
    // Incompressible filler: the archive spans several fragments.
    let filler = random_bytes(300 * 1024, 11);
    let archive = targz(&[Member::File("run.sh", script.as_bytes(), 0o755), Member::File("data", &filler, 0o644)]);
    let key = Ed25519KeyPair::from_seed_unchecked(&[7u8; 32]).expect("a key from a seed");
    Setup { state: t.join("state"), _t: t, mark, key, archive }
}

/// Run the agent until it has nothing left to do (at most `runs` runs).
fn run_to_end(agent: &mut Agent<Sim>, runs: usize) {
    for _ in 0..runs {
        let s = agent.run_once().expect("a run");
        if s.complete() && s.finished == 0 {
            return;
        }
    }
}

#[test]
fn outpost_mode_rides_out_every_fragment_fault_and_reports_once() {
    let s = setup("outpost-mode-faults");
    let mut sim = Sim::new(&s.archive, 128 * 1024, &s.key);
    sim.faults = VecDeque::from([
        Fault::Status(503),
        Fault::LinkDown(40_000),
        Fault::IgnoreRange,
        Fault::Truncate(70_000),
        Fault::WrongContentRange,
        Fault::Corrupt(5),
        Fault::Status(500),
    ]);
    let mut agent = Agent::new(config(&s.state, &s.key), sim).expect("an agent");
    run_to_end(&mut agent, 5);
    let sim = agent.into_env();
    assert_eq!(sim.reports, vec![(ID, "SUCCESS".to_string())], "one SUCCESS, reported once");
    assert_eq!(std::fs::read_to_string(&s.mark).unwrap(), "ran\n", "the action ran once");
    assert!(sim.faults.is_empty(), "every fault was met: {:?}", sim.faults);
    // Failed tries waited (the lifecycle's backoff, in virtual time).
    assert!(sim.sleeps.len() >= 3, "backoff waits: {:?}", sim.sleeps);
    // What was refetched: the corrupt fragment, the ignored range, the
    // wrong Content-Range's fragment start; never the whole archive again.
    let total = s.archive.len() as u64;
    assert!(sim.served < total + 3 * 128 * 1024, "served {} for an archive of {total}", sim.served);
}

#[test]
fn outpost_mode_backs_off_longer_after_each_corrupt_fragment_and_still_succeeds() {
    let s = setup("outpost-mode-corrupt");
    let mut sim = Sim::new(&s.archive, 128 * 1024, &s.key);
    sim.faults = (0..6).map(|_| Fault::Corrupt(100)).collect();
    let mut agent = Agent::new(config(&s.state, &s.key), sim).expect("an agent");
    run_to_end(&mut agent, 10);
    let sim = agent.into_env();
    assert_eq!(sim.reports, vec![(ID, "SUCCESS".to_string())], "a burst of corrupt answers is not final");
    // Each corrupt answer is followed by a longer wait, up to
    // `fragment_tries` in one run; the next run goes on.
    assert!(sim.sleeps.len() >= 5, "one wait per corrupt answer: {:?}", sim.sleeps);
    assert!(sim.sleeps.windows(2).take(3).all(|w| w[1] > w[0]), "the waits grow: {:?}", sim.sleeps);
}

#[test]
fn outpost_mode_killed_mid_download_resumes_from_its_journal() {
    let s = setup("outpost-mode-kill");
    let mut sim = Sim::new(&s.archive, 128 * 1024, &s.key);
    // The link breaks one byte short of fragment 1 (progress: no wait); the
    // next answer is a 503, and the agent dies in its backoff wait.
    sim.faults = VecDeque::from([Fault::LinkDown(128 * 1024 - 1), Fault::Status(503)]);
    sim.die_at_sleep = Some(1);
    let mut agent = Agent::new(config(&s.state, &s.key), sim).expect("an agent");
    let died = catch_unwind(AssertUnwindSafe(|| agent.run_once())).is_err();
    assert!(died, "the agent died in its wait");
    let mut sim = agent.into_env();
    let before = sim.served;
    sim.die_at_sleep = None;
    let mut agent = Agent::new(config(&s.state, &s.key), sim).expect("an agent, again");
    run_to_end(&mut agent, 5);
    let sim = agent.into_env();
    assert_eq!(sim.reports, vec![(ID, "SUCCESS".to_string())]);
    let total = s.archive.len() as u64;
    // Everything that arrived before the death and was checkpointed counts.
    assert!(
        sim.served - before <= total - before + 64 * 1024,
        "after the restart {} bytes for {} missing",
        sim.served - before,
        total - before
    );
}

#[test]
fn outpost_mode_deploys_nothing_until_it_has_the_trust_bundle_a_poll_announces() {
    // keys rotate: the package is signed by the new key, which only the
    // bundle (vouched for by the old key, the one configured) brings; the
    // first fetch of the bundle fails.
    let s = setup("outpost-mode-trust");
    let new_key = Ed25519KeyPair::from_seed_unchecked(&[8u8; 32]).expect("a key from a seed");
    let mut sim = Sim::new(&s.archive, 128 * 1024, &new_key);
    let public = |k: &Ed25519KeyPair| -> [u8; 32] { k.public_key().as_ref().try_into().expect("32 bytes") };
    let bundle = Bundle {
        version: 1,
        issued: 0,
        cas: Vec::new(),
        keys: vec![
            TrustedKey { public: public(&s.key), until: Some(sim.now + 86_400) },
            TrustedKey { public: public(&new_key), until: None },
        ],
    };
    let sig = s.key.sign(&bundle.signed_bytes()).as_ref().try_into().expect("64-byte signature");
    sim.trust = Some(bundle.encode(&[(public(&s.key), sig)]));
    sim.trust_fails = 1;
    let mut agent = Agent::new(config(&s.state, &s.key), sim).expect("an agent");
    let first = agent.run_once().expect("a run");
    assert!(first.poll_error.is_some() && first.finished == 0, "the bundle not reached: a failed poll, {first:?}");
    assert!(!s.state.join("packages").join(ID.to_string()).exists(), "nothing of the package fetched");
    run_to_end(&mut agent, 5);
    let sim = agent.into_env();
    assert_eq!(sim.reports, vec![(ID, "SUCCESS".to_string())], "never ERR_BAD_DIGEST for a key not learnt yet");
    assert!(s.state.join("trust").exists(), "the bundle is kept");
}

#[test]
fn outpost_mode_leaves_a_failing_depot_for_the_next_source_at_the_same_byte_without_waiting() {
    let s = setup("outpost-mode-depots");
    let mut sim = Sim::new(&s.archive, 128 * 1024, &s.key);
    // The depot comes first (all connect alike here); it breaks off early
    // (a failed try), then, once back, stalls 100 KiB into a fragment.
    sim.depots = vec!["depot.test/pkg".into()];
    sim.depot_faults = VecDeque::from([Fault::LinkDown(30_000), Fault::LinkDown(100 * 1024)]);
    let mut agent = Agent::new(config(&s.state, &s.key), sim).expect("an agent");
    run_to_end(&mut agent, 5);
    let sim = agent.into_env();
    assert_eq!(sim.reports, vec![(ID, "SUCCESS".to_string())], "one SUCCESS, reported once");
    assert!(sim.depot_faults.is_empty(), "both depot faults were met: {:?}", sim.depot_faults);
    assert!(sim.sleeps.is_empty(), "another source took over at once, no backoff: {:?}", sim.sleeps);
    assert!(sim.depot_served > 0 && sim.depot_served < sim.served, "both sources served");
    assert_eq!(sim.served, s.archive.len() as u64, "no byte fetched twice");
}

#[test]
fn outpost_mode_goes_on_with_the_last_assignments_while_the_server_is_away() {
    // The configuration cache: a package assigned at the last poll is
    // deployed from the locations the agent can still reach while the
    // server is away, and reported once it is back.
    let s = setup("outpost-mode-kept");
    let mut sim = Sim::new(&s.archive, 128 * 1024, &s.key);
    sim.info_fails = 1;
    let mut agent = Agent::new(config(&s.state, &s.key), sim).expect("an agent");
    let first = agent.run_once().expect("a run");
    assert_eq!((first.finished, first.pending), (0, 1), "polled, its metadata not reached: {first:?}");
    let mut sim = agent.into_env();
    sim.control_down = true;
    let mut agent = Agent::new(config(&s.state, &s.key), sim).expect("an agent, again");
    let second = agent.run_once().expect("a run");
    assert!(second.poll_error.is_some() && second.finished == 1, "deployed while the server is away: {second:?}");
    let mut sim = agent.into_env();
    assert!(sim.reports.is_empty());
    sim.control_down = false;
    let mut agent = Agent::new(config(&s.state, &s.key), sim).expect("an agent, again");
    let third = agent.run_once().expect("a run");
    assert!(third.complete(), "{third:?}");
    assert_eq!(agent.into_env().reports, vec![(ID, "SUCCESS".to_string())], "reported once");
}
