//! Issue 10 review: an OCS fragment server (untrusted, and OCS info files
//! give no fragment sizes) that sends an endless body. The agent's bounds
//! (`agent/src/rt/ocs_mode/fragment.rs`, through `engine::download`): all of
//! a package's fragments at most 4 GiB (past it the try fails), and never
//! the free space less a 16 MiB headroom (past it the disk is full:
//! `ERR_OUT_OF_SPACE` once, the cache kept, and on when there is room).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use outpost_agent::engine::download::{Checkpoint, SLOTS};
use outpost_agent::engine::journal::{self, kind};
use outpost_agent::engine::manifest::sha256;
use outpost_agent::rt::env::{BodySink, GetError};
use outpost_agent::rt::ocs_mode::OcsAgent;
use outpost_tests::{Member, TempDir, targz};

use super::{Sim, agent_config, agent_env, conf, dummy, pkg};

impl Sim {
    /// An endless answer for fragment `name`, 64 KiB at a time.
    pub(super) fn pour_into(
        &mut self,
        name: &str,
        range: Option<&str>,
        sink: &mut dyn BodySink,
    ) -> Result<(), GetError> {
        self.events.push((self.now, format!("POUR {name}")));
        let start = range.and_then(|r| r.strip_prefix("bytes=")?.trim_end_matches('-').parse::<u64>().ok());
        match start {
            Some(a) => sink.head(206, Some(&format!("bytes {a}-{}/*", a + self.pour))),
            None => sink.head(200, None),
        }
        .map_err(GetError::Refused)?;
        let chunk = vec![b'p'; 64 * 1024];
        for _ in 0..self.pour / chunk.len() as u64 {
            sink.data(&chunk).map_err(|e| GetError::Broken(e.to_string()))?;
            self.poured += chunk.len() as u64;
        }
        Ok(())
    }
}

/// A tmpfs of `mib` MiB at `dir`, unmounted when dropped. `None` where
/// this machine does not let the test mount one (it needs root).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, mib: u32) -> Option<Self> {
        std::fs::create_dir_all(dir).ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m,mode=0700"), "tmpfs"])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self(dir.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

const MIB: u64 = 1 << 20;

#[test]
fn an_endless_fragment_body_stops_short_of_filling_the_disk() {
    // The review's attack: an OCS info file gives no fragment sizes, and the
    // agent wrote whatever a fragment server sent until the disk was full.
    let t = TempDir::new("ocs-endless");
    let state = t.join("state");
    let Some(_fs) = Tmpfs::mount(&state, 48) else {
        eprintln!("SKIPPED an_endless_fragment_body_…: this machine does not allow mounting a tmpfs (needs root)");
        return;
    };
    let a = targz(&[Member::File("s.sh", b"exit 0\n", 0o644)]);
    let sim = Sim {
        listed: vec![1],
        packs: vec![pkg(1, 5, "EXECUTE", "sh s.sh", &a, 1)],
        conf: conf(),
        pour: 1 << 30,
        ..dummy()
    };
    let mut agent = OcsAgent::new(agent_config(&state), sim).unwrap();
    let free_before = outpost_hal::linux::space_of(&state).unwrap().available;
    let s = agent.run_once().unwrap();
    assert_eq!(s.pending, 1, "waits for room: {s:?}");
    let mut sim = agent_env(agent);
    let free_after = outpost_hal::linux::space_of(&state).unwrap().available;
    // The agent took at most the free space less its 16 MiB headroom, left
    // the headroom free, and said the disk is full, once.
    assert!(sim.poured <= free_before - 16 * MIB, "took {} of {free_before} free bytes", sim.poured);
    assert!(free_after >= 15 * MIB, "only {free_after} bytes left free (took {})", sim.poured);
    let events: Vec<&str> = sim.events.iter().map(|(_, e)| e.as_str()).collect();
    assert_eq!(events, ["POUR 1-1", "REPORT 1 ERR_OUT_OF_SPACE"]);
    // The next run finds no room: no request, no second report.
    sim.events.clear();
    let mut agent = OcsAgent::new(agent_config(&state), sim).unwrap();
    agent.run_once().unwrap();
    assert_eq!(agent_env(agent).events, [], "nothing asked, nothing reported again");
}

#[test]
fn ocs_mode_disk_full_reports_once_keeps_the_cache_and_goes_on_when_space_returns() {
    let t = TempDir::new("ocs-disk-full");
    let state = t.join("state");
    let Some(_fs) = Tmpfs::mount(&state, 96) else {
        eprintln!("SKIPPED ocs_mode_disk_full_…: this machine does not allow mounting a tmpfs (needs root)");
        return;
    };
    // 55 MiB taken by something else: 41 MiB free, 25 above the headroom.
    // Fragment 1 (15 MiB) fits; fragment 2 stops after about 10 MiB.
    let filler = state.join("filler");
    std::fs::write(&filler, vec![1u8; 55 * MIB as usize]).unwrap();
    let data = outpost_tests::random_bytes(30 * MIB as usize, 77);
    let a = targz(&[Member::File("s.sh", b"exit 0\n", 0o644), Member::File("big", &data, 0o644)]);
    let sim = Sim { listed: vec![1], packs: vec![pkg(1, 5, "EXECUTE", "sh s.sh", &a, 2)], conf: conf(), ..dummy() };
    let mut agent = OcsAgent::new(agent_config(&state), sim).unwrap();
    let s = agent.run_once().unwrap();
    let mut sim = agent_env(agent);
    let events: Vec<&str> = sim.events.iter().map(|(_, e)| e.as_str()).collect();
    assert_eq!(events, ["GET 1-1", "GET 1-2", "REPORT 1 ERR_OUT_OF_SPACE"], "{s:?}");
    let cached = |state: &Path| {
        let st = outpost_agent::rt::status::lines(&outpost_agent::rt::store::Store::open(state).unwrap()).unwrap();
        let line = st.iter().find(|l| l.starts_with('1')).cloned().unwrap();
        line.split_whitespace().nth(2).unwrap().split('/').next().unwrap().parse::<u64>().unwrap()
    };
    let held = cached(&state);
    assert!(held > 20 * MIB && held < 26 * MIB, "status shows {held} bytes cached");

    // Still full at the next run (at most the last few KiB above the
    // headroom taken): nothing reported again.
    sim.events.clear();
    let mut agent = OcsAgent::new(agent_config(&state), sim).unwrap();
    agent.run_once().unwrap();
    let mut sim = agent_env(agent);
    assert!(!sim.events.iter().any(|(_, e)| e.starts_with("REPORT")), "no second report: {:?}", sim.events);

    // Room again: it goes on from what it holds (fragment 2 resumed, not
    // fetched again) and installs.
    let held = cached(&state);
    std::fs::remove_file(&filler).unwrap();
    sim.listed = vec![1];
    sim.served = 0;
    sim.events.clear();
    let mut agent = OcsAgent::new(agent_config(&state), sim).unwrap();
    let s = agent.run_once().unwrap();
    let sim = agent_env(agent);
    let events: Vec<&str> = sim.events.iter().map(|(_, e)| e.as_str()).collect();
    assert_eq!(events, ["GET 1-2", "REPORT 1 SUCCESS"], "{s:?}");
    // Fragments as the test server splits them: the first is the larger.
    let total = a.len() as u64;
    assert_eq!(sim.served, total - held, "only what fragment 2 lacked");
}

#[test]
fn an_endless_fragment_body_stops_at_the_bound_of_a_package_without_signed_sizes() {
    // Plenty of disk: the bound is 4 GiB for all of a package's fragments.
    // Its fragment 1 already holds 4 GiB less 1 MiB (made sparse after the
    // agent fetched it and died), so the endless answer for fragment 2 gets
    // 1 MiB, and every later try nothing.
    let t = TempDir::new("ocs-endless-package");
    let state = t.join("state");
    let a = targz(&[Member::File("s.sh", b"exit 0\n", 0o644)]);
    let pkg = pkg(1, 1, "EXECUTE", "sh s.sh", &a, 2);
    let sim =
        Sim { listed: vec![1], packs: vec![pkg], conf: conf(), pour: 64 * 1024, die_at_sleep: Some(2), ..dummy() };
    let mut agent = OcsAgent::new(agent_config(&state), sim).unwrap();
    assert!(catch_unwind(AssertUnwindSafe(|| agent.run_once())).is_err(), "the simulated crash happened");
    let mut sim = agent_env(agent);
    assert_eq!(sim.poured, 64 * 1024, "fragment 1 fetched: {:?}", sim.events);
    // Fragment 1 as if it had been 4 GiB less 1 MiB long: the archive made
    // that long (sparse) and a newer checkpoint saying so in both slots.
    let dir = state.join("packages/1");
    let held = outpost_agent::engine::limits::MAX_UNPACKED_BYTES - MIB;
    std::fs::OpenOptions::new().write(true).open(dir.join("archive")).unwrap().set_len(held).unwrap();
    let info = std::fs::read(dir.join("info")).unwrap();
    let cp = Checkpoint { seq: 1000, package: 1, key: sha256(&info), verified: 1, offset: 0, start: held };
    for slot in SLOTS {
        std::fs::write(dir.join(slot), journal::encode(kind::CHECKPOINT, &cp).unwrap()).unwrap();
    }
    (sim.die_at_sleep, sim.pour, sim.poured) = (None, 8 * MIB, 0);
    sim.events.clear();
    let mut agent = OcsAgent::new(agent_config(&state), sim).unwrap();
    let s = agent.run_once().unwrap();
    let sim = agent_env(agent);
    assert!(s.complete(), "{s:?} {:?} {}", sim.events, sim.poured);
    let pours = sim.events.iter().filter(|(_, e)| e.starts_with("POUR")).count();
    // The first answer brought the last MiB (real progress, not a failed
    // try); each later one is cut at once and fails, until the scheduler
    // gives up.
    assert_eq!(pours, outpost_agent::engine::ocs_sched::MAX_SLOT_FAILURES as usize + 1, "each a failed try");
    assert!(sim.poured <= MIB, "took {} bytes past the package bound: {:?}", sim.poured, sim.events);
    assert_eq!(sim.events.last().unwrap().1, "REPORT 1 ERR_DOWNLOAD_PACK");
}
