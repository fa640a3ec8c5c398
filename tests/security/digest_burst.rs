//! Item 10, digest bursts: whoever sits on the plain-HTTP fragment path (a
//! flaky proxy, an attacker) corrupts a few answers in a row. That must cost
//! a refetch with backoff, never the package: `ERR_BAD_DIGEST` comes only
//! after mismatches have gone on for a day, a deadline kept in the package
//! record across restarts.
//!
//! The engine ([`Download`] + [`Refetch`]) runs in virtual time here, as the
//! runtime drives it (`rt/agent/fetch.rs`); the real agent and server run
//! the same attack with one try per run, so no real waiting happens.
#![allow(clippy::disallowed_methods)] // real processes

use std::fs;
use std::time::Duration;

use outpost_agent::engine::download::Download;
use outpost_agent::engine::fetch::FetchError;
use outpost_agent::engine::journal::{self, PackageRecord, Phase, kind};
use outpost_agent::engine::limits::DIGEST_GIVE_UP_SECS;
use outpost_agent::engine::manifest::Manifest;
use outpost_agent::engine::refetch::{Refetch, Verdict};
use outpost_hal::sim::SimBlocks;
use outpost_tests::{Member, Server, TempDir, agent, random_bytes, targz, text, tune_agent};

const T0: u64 = 1_800_000_000;
/// The runtime's runs back off up to 15 minutes while work is left.
const BETWEEN_RUNS: u64 = 15 * 60;

struct Path {
    data: Vec<u8>,
    frag: usize,
    /// Answers still to corrupt (`u32::MAX`: forever).
    corrupt: u32,
    /// Virtual wall time, seconds.
    now: f64,
}

enum Run {
    Complete,
    Later,
    GiveUp,
}

/// One run of the agent's fetch loop over `path`, with the record as the
/// state directory keeps it (decoded, as after a restart).
fn run(
    path: &mut Path,
    disk: &mut SimBlocks,
    m: &Manifest,
    saved: &[u8],
    delays: &mut Vec<Duration>,
) -> (Run, Vec<u8>) {
    let mut rec: PackageRecord = journal::decode(kind::PACKAGE, saved).unwrap();
    let mut dl = Download::open(disk, m, 64 * 1024).unwrap();
    let mut refetch = Refetch::new(5, rec.digest_trouble);
    let outcome = loop {
        let Some((n, _)) = dl.request() else { break Run::Complete };
        let mut body = path.data[(n - 1) * path.frag..(n * path.frag).min(path.data.len())].to_vec();
        if path.corrupt > 0 {
            path.corrupt = path.corrupt.saturating_sub(u32::from(path.corrupt != u32::MAX));
            body[7] ^= 0x20;
        }
        path.now += 0.2; // the answer's own time
        dl.handle_head(200, None).unwrap();
        dl.handle_body(disk, &body).unwrap();
        match dl.handle_end(disk).unwrap() {
            None => refetch.verified(),
            Some(FetchError::Corrupt) => match refetch.corrupt(path.now as u64, 0x5eed) {
                Verdict::RetryIn(d) => {
                    delays.push(d);
                    path.now += d.as_secs_f64();
                }
                Verdict::Later => break Run::Later,
                Verdict::GiveUp => break Run::GiveUp,
            },
            Some(e) => panic!("{e}"),
        }
    };
    rec.digest_trouble = refetch.trouble();
    (outcome, journal::encode(kind::PACKAGE, &rec).unwrap())
}

fn setup(corrupt: u32) -> (Path, SimBlocks, Manifest, Vec<u8>) {
    let data = random_bytes(300_000, 10);
    let frag = 100_000;
    let m = outpost_tests::manifest_of(&data, frag);
    let rec = PackageRecord {
        id: 7,
        phase: Phase::Fetching,
        priority: 5,
        force: false,
        pack_loc: "h/d".into(),
        first_seen: T0,
        fragments_verified: 0,
        status: None,
        space_reported: false,
        digest_trouble: None,
    };
    let saved = journal::encode(kind::PACKAGE, &rec).unwrap();
    (Path { data, frag, corrupt, now: T0 as f64 }, SimBlocks::new(1 << 20), m, saved)
}

#[test]
fn five_corrupt_answers_in_a_row_then_right_ones_reach_the_end() {
    let (mut path, mut disk, m, mut saved) = setup(5);
    let mut delays = Vec::new();
    let mut runs = 0;
    loop {
        runs += 1;
        let (r, s) = run(&mut path, &mut disk, &m, &saved, &mut delays);
        saved = s;
        match r {
            Run::Complete => break,
            Run::Later => path.now += BETWEEN_RUNS as f64,
            Run::GiveUp => panic!("a burst of 5 ended the package"),
        }
    }
    assert_eq!(runs, 2, "the fifth corrupt answer ends the first run, not the package");
    assert_eq!(delays.len(), 4, "{delays:?}");
    assert!(delays.windows(2).all(|w| w[1] > w[0]), "growing delays: {delays:?}");
    let rec: PackageRecord = journal::decode(kind::PACKAGE, &saved).unwrap();
    assert_eq!(rec.digest_trouble, None, "right answers end the series");
}

#[test]
fn corrupt_answers_for_more_than_a_day_end_the_package_across_restarts() {
    let (mut path, mut disk, m, mut saved) = setup(u32::MAX);
    let mut delays = Vec::new();
    let mut runs = 0u32;
    loop {
        runs += 1;
        let (r, s) = run(&mut path, &mut disk, &m, &saved, &mut delays);
        saved = s;
        match r {
            Run::Complete => panic!("every answer was corrupt"),
            Run::Later => {
                let rec: PackageRecord = journal::decode(kind::PACKAGE, &saved).unwrap();
                assert_eq!(rec.digest_trouble.unwrap().deadline, T0 + DIGEST_GIVE_UP_SECS, "kept, not reset");
                assert!((path.now as u64) < T0 + DIGEST_GIVE_UP_SECS, "past the deadline and still going");
                path.now += BETWEEN_RUNS as f64;
            }
            Run::GiveUp => break,
        }
    }
    let elapsed = path.now as u64 - T0;
    assert!((DIGEST_GIVE_UP_SECS..DIGEST_GIVE_UP_SECS + BETWEEN_RUNS + 60).contains(&elapsed), "{elapsed}");
    assert!(runs > 90, "{runs} runs");
}

/// The real agent and server: the fragment on the server is corrupt for five
/// answers (one per run, `fragment_tries = 1`, so no real waiting), then
/// right. The old agent ended the package `ERR_BAD_DIGEST` at the first run.
#[test]
fn five_corrupt_answers_from_a_real_fragment_server_then_success() {
    let t = TempDir::new("sec-digest-burst");
    let mut srv = Server::init(t.join("srv"), &[]);
    let mut body = b"#!/bin/sh\nexit 0\n".to_vec();
    body.extend(random_bytes(3000, 3).iter().map(|b| b'a' + b % 26));
    let arc = t.join("a.tar.gz");
    fs::write(&arc, targz(&[Member::File("run.sh", &body, 0o755)])).unwrap();
    let id = srv.package_add(&["--file", arc.to_str().unwrap(), "--action", "launch", "--command", "run.sh"]);
    let frag = srv.dir.join(format!("download/{id}/{id}-1"));
    let good = fs::read(&frag).unwrap();
    let mut bad = good.clone();
    bad[40] ^= 0x55;
    fs::write(&frag, &bad).unwrap();
    let cfg = srv.device_add("pc-1", t.path());
    tune_agent(&cfg, "fragment_tries = 1");
    srv.assign(id, "pc-1", &[]);
    srv.start();
    for i in 1..=5 {
        let o = agent(&cfg, &["run", "--once"], &[]);
        assert!(String::from_utf8_lossy(&o.stderr).contains("failed its digest"), "run {i}: {}", text(&o));
        assert_ne!(srv.status_of(id, "pc-1"), "ERR_BAD_DIGEST", "run {i}: {}", text(&o));
    }
    fs::write(&frag, &good).unwrap();
    let o = agent(&cfg, &["run", "--once"], &[]);
    assert_eq!(srv.status_of(id, "pc-1"), "SUCCESS", "{}", text(&o));
}
