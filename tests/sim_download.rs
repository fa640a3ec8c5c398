//! The download engine in simulation: a server with scripted faults, a disk
//! that loses unsynced writes on a power cut (optionally tearing the last),
//! runs full, and a reboot that rebuilds the engine from the durable image.
//! Everything is deterministic (fixed seeds); no real time passes.

use std::collections::VecDeque;

use outpost_agent::engine::download::{
    ARCHIVE, BodyError, BodyWriter, DEFAULT_CHECKPOINT_BYTES, Download, Layout, SLOTS,
};
use outpost_agent::engine::fetch::FetchError;
use outpost_agent::engine::manifest::Manifest;
use outpost_hal::ErrorKind;
use outpost_hal::sim::{LinkFault, SimBlocks, SimClock, SimLink, TransferEnd};
use outpost_hal::time::{Clock, Instant};
use outpost_tests::{Fault, random_bytes};

/// Bytes the network hands the engine at a time.
const CHUNK: usize = 16 * 1024;

fn manifest(data: &[u8], frag: usize) -> Manifest {
    outpost_tests::manifest_of(data, frag)
}

/// What the engine knows of the fragments beforehand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Sizes and SHA-256 from a signed manifest (the Outpost protocol).
    Signed,
    /// Only their number (an OCS info file): each ends where its answer says.
    Unsigned,
}

fn layout(kind: Kind, data: &[u8], frag: usize) -> Layout {
    match kind {
        Kind::Signed => Layout::signed(&manifest(data, frag)),
        Kind::Unsigned => Layout::ocs(1, b"<DOWNLOAD ID=\"1\" />", data.len().div_ceil(frag) as u32),
    }
}

fn open(disk: &mut SimBlocks, l: &Layout, checkpoint_bytes: u64) -> Download {
    Download::open_layout(disk, l.clone(), checkpoint_bytes).unwrap()
}

struct Server {
    data: Vec<u8>,
    frag: usize,
    faults: VecDeque<Fault>,
    /// The path to the agent: bandwidth, latency, transport faults.
    link: SimLink,
    /// Virtual time, moved by the arrival of bytes.
    clock: SimClock,
    /// Body bytes handed to the engine, over all requests.
    delivered: u64,
    /// The Range of every request.
    ranges: Vec<Option<String>>,
}

impl Server {
    fn new(data: Vec<u8>, frag: usize) -> Self {
        Self {
            data,
            frag,
            faults: VecDeque::new(),
            link: SimLink::new(0, std::time::Duration::ZERO),
            clock: SimClock::new(1_800_000_000),
            delivered: 0,
            ranges: Vec::new(),
        }
    }

    /// Answer a request: status, Content-Range and the body as the link delivers it.
    fn respond(&mut self, n: usize, range: Option<&str>) -> (u16, Option<String>, outpost_hal::sim::Transfer) {
        self.ranges.push(range.map(str::to_string));
        let frag = self.data[(n - 1) * self.frag..(n * self.frag).min(self.data.len())].to_vec();
        let start: usize = range.and_then(|r| r.strip_prefix("bytes=")?.split('-').next()?.parse().ok()).unwrap_or(0);
        let cr = |a: usize| Some(format!("bytes {a}-{}/{}", frag.len() - 1, frag.len()));
        let (status, head, from) = if start > 0 { (206, cr(start), start) } else { (200, None, 0) };
        match self.faults.pop_front() {
            None => {}
            Some(Fault::Status(s)) => {
                let t = self.link.transfer(self.clock.now(), &[], CHUNK);
                return (s, None, t);
            }
            Some(Fault::IgnoreRange) => {
                let t = self.link.transfer(self.clock.now(), &frag, CHUNK);
                return (200, None, t);
            }
            Some(Fault::WrongContentRange) => {
                let t = self.link.transfer(self.clock.now(), &frag[start + 10..], CHUNK);
                return (206, cr(start + 10), t);
            }
            Some(Fault::Truncate(k)) => self.link.push_fault(LinkFault::Truncate(k)),
            Some(Fault::LinkDown(k)) => self.link.push_fault(LinkFault::DropAfter(k)),
            Some(Fault::Corrupt(at)) => self.link.push_fault(LinkFault::Corrupt(at)),
        }
        let t = self.link.transfer(self.clock.now(), &frag[from..], CHUNK);
        (status, head, t)
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Stop {
    Complete,
    Crashed,
    DiskFull,
}

/// Drive the engine until complete, or until the disk dies or fills.
fn drive(dl: &mut Download, disk: &mut SimBlocks, srv: &mut Server) -> Stop {
    let store_err = |e: ErrorKind| if e == ErrorKind::StorageFull { Stop::DiskFull } else { Stop::Crashed };
    for _ in 0..10_000 {
        let Some((n, range)) = dl.request() else { return Stop::Complete };
        let (status, cr, transfer) = srv.respond(n, range.as_deref());
        if transfer.chunks.is_empty() {
            // Nothing came (link down, an error status): the runtime backs off.
            srv.clock.advance(std::time::Duration::from_secs(1));
        }
        if let Err(e) = dl.handle_head(status, cr.as_deref()) {
            if matches!(e, FetchError::BadContentRange | FetchError::TooLong)
                && let Err(e) = dl.restart_fragment(disk)
            {
                return store_err(e);
            }
            continue;
        }
        let mut failed = false;
        for (at, c) in &transfer.chunks {
            srv.clock.advance_to(*at);
            srv.delivered += c.len() as u64;
            // The engine's byte boundary is embedded-io's `Write`.
            match embedded_io::Write::write_all(&mut BodyWriter::new(dl, disk), c) {
                Ok(()) => {}
                Err(BodyError::Store(e)) => return store_err(e),
                Err(BodyError::Fetch(_)) => {
                    failed = true;
                    break;
                }
            }
        }
        let broken = matches!(transfer.end, TransferEnd::Dropped | TransferEnd::LinkDown);
        let r = if failed || broken { dl.handle_abort(disk).map(|()| None) } else { dl.handle_end(disk) };
        if let Err(e) = r {
            return store_err(e);
        }
    }
    panic!("no progress in 10 000 requests");
}

/// Every byte the engine counts as held is durable and correct.
fn assert_held_durable(disk: &SimBlocks, src: &[u8], dl: &Download) {
    let archive = disk.durable(ARCHIVE).unwrap_or(&[]);
    let have = dl.have() as usize;
    assert!(archive.len() >= have, "held bytes beyond the durable archive");
    assert!(archive[..have] == src[..have], "a held byte is not durable or not right");
}

#[test]
fn crash_point_sweep_power_cut_after_every_write() {
    sweep(Kind::Signed);
}

/// OCS fragments (no signed sizes) go through the same journal: the same
/// sweep holds for them.
#[test]
fn crash_point_sweep_of_unsigned_fragments() {
    sweep(Kind::Unsigned);
}

fn sweep(kind: Kind) {
    // 1.5 MB in fragments of 600 000, 600 000 and 300 000 bytes: every
    // fragment crosses 256 KiB checkpoint boundaries before its end.
    let src = random_bytes(1_500_000, 42);
    let l = layout(kind, &src, 600_000);
    // A clean run counts the writes.
    let mut disk = SimBlocks::new(64 << 20);
    let mut srv = Server::new(src.clone(), 600_000);
    let mut dl = open(&mut disk, &l, DEFAULT_CHECKPOINT_BYTES);
    assert_eq!(drive(&mut dl, &mut disk, &mut srv), Stop::Complete);
    let (writes, written) = disk.write_stats();
    assert!(writes > 90, "{writes} writes");
    assert!(dl.checkpoints() > l.count() as u64 + 2, "checkpoints inside fragments too");
    // Flash-friendly: few bytes written per byte downloaded, one checkpoint per 256 KiB at most
    // besides fragment ends.
    assert!(written as f64 / src.len() as f64 <= 1.1, "write amplification {written} / {}", src.len());
    assert!(dl.checkpoints() <= src.len() as u64 / DEFAULT_CHECKPOINT_BYTES + l.count() as u64);
    eprintln!(
        "{kind:?}: clean run: {writes} writes, {written} bytes written for {} downloaded (x{:.4}), {} checkpoints",
        src.len(),
        written as f64 / src.len() as f64,
        dl.checkpoints()
    );
    let mut worst = 0;

    for torn in [false, true] {
        for k in 0..writes {
            let mut disk = SimBlocks::new(64 << 20);
            let mut srv = Server::new(src.clone(), 600_000);
            disk.power_cut_after(k, torn);
            let mut dl = open(&mut disk, &l, DEFAULT_CHECKPOINT_BYTES);
            assert_eq!(drive(&mut dl, &mut disk, &mut srv), Stop::Crashed, "k={k}");
            let delivered_at_cut = srv.delivered;
            disk.reboot();
            let mut dl = open(&mut disk, &l, DEFAULT_CHECKPOINT_BYTES);
            assert_held_durable(&disk, &src, &dl);
            let kept = dl.have();
            assert!(
                delivered_at_cut - kept <= DEFAULT_CHECKPOINT_BYTES,
                "k={k} torn={torn}: {} bytes to fetch again",
                delivered_at_cut - kept
            );
            assert_eq!(drive(&mut dl, &mut disk, &mut srv), Stop::Complete, "k={k}");
            assert_eq!(disk.durable(ARCHIVE).unwrap(), &src[..], "k={k} torn={torn}: wrong bytes");
            assert!(srv.delivered - src.len() as u64 <= DEFAULT_CHECKPOINT_BYTES, "k={k}: fetched again");
            worst = worst.max(srv.delivered - src.len() as u64);
        }
    }
    eprintln!(
        "{kind:?}: power cut after each of the {writes} writes, torn and not: at most {worst} bytes fetched again"
    );
}

fn run_with(faults: &[Fault]) -> (Server, SimBlocks) {
    let (srv, disk) = run_kind(Kind::Signed, faults);
    // The same faults of the link and the server cost an OCS download no
    // more (a clean but short body is not among them: without a signed size
    // it would end the fragment, for the archive's digest to catch).
    if !faults.iter().any(|f| matches!(f, Fault::Truncate(_) | Fault::Corrupt(_))) {
        let (u, _) = run_kind(Kind::Unsigned, faults);
        // An open range (`bytes=N-`): the end is not known.
        let starts = |s: &Server| -> Vec<Option<String>> {
            s.ranges.iter().map(|r| r.as_ref().and_then(|r| Some(r.split_once('-')?.0.to_string()))).collect()
        };
        assert_eq!((u.delivered, starts(&u)), (srv.delivered, starts(&srv)), "OCS layout, {faults:?}");
    }
    (srv, disk)
}

fn run_kind(kind: Kind, faults: &[Fault]) -> (Server, SimBlocks) {
    let src = random_bytes(300_000, 9);
    let l = layout(kind, &src, 100_000);
    let mut disk = SimBlocks::new(64 << 20);
    let mut srv = Server::new(src.clone(), 100_000);
    srv.faults = faults.iter().copied().collect();
    let mut dl = open(&mut disk, &l, DEFAULT_CHECKPOINT_BYTES);
    assert_eq!(drive(&mut dl, &mut disk, &mut srv), Stop::Complete);
    assert_eq!(disk.durable(ARCHIVE).unwrap(), &src[..]);
    (srv, disk)
}

#[test]
fn server_5xx_is_retried() {
    let (srv, _) = run_with(&[Fault::Status(503), Fault::Status(500)]);
    assert_eq!(srv.delivered, 300_000, "nothing fetched twice");
}

#[test]
fn range_ignored_skips_what_it_has() {
    let (srv, disk) = run_with(&[Fault::Truncate(40_000), Fault::IgnoreRange]);
    assert_eq!(srv.ranges[1].as_deref(), Some("bytes=40000-99999"));
    assert!(disk.write_stats().1 <= 300_000 + 4 * 200, "the prefix sent again is not written again");
}

#[test]
fn wrong_content_range_starts_the_fragment_over() {
    let (srv, _) = run_with(&[Fault::Truncate(50_000), Fault::WrongContentRange]);
    assert_eq!(srv.ranges[2], None, "a plain GET after the bad Content-Range");
}

#[test]
fn truncated_body_resumes_with_range() {
    let (srv, _) = run_with(&[Fault::Truncate(12_345)]);
    assert_eq!(srv.ranges[1].as_deref(), Some("bytes=12345-99999"));
    assert_eq!(srv.delivered, 300_000);
}

#[test]
fn link_down_mid_fragment_keeps_what_arrived() {
    let (srv, _) = run_with(&[Fault::LinkDown(70_000)]);
    assert_eq!(srv.ranges[1].as_deref(), Some("bytes=70000-99999"));
    assert_eq!(srv.delivered, 300_000);
}

#[test]
fn corrupted_byte_is_caught_and_the_fragment_fetched_again() {
    let (srv, _) = run_with(&[Fault::Corrupt(99_000)]);
    assert_eq!(srv.ranges[1], None, "fragment 1 again, from its start");
    assert_eq!(srv.delivered, 400_000, "only that fragment twice");
}

#[test]
fn disk_full_then_space_returns_and_nothing_is_lost() {
    for kind in [Kind::Signed, Kind::Unsigned] {
        let src = random_bytes(300_000, 3);
        let l = layout(kind, &src, 100_000);
        let mut disk = SimBlocks::new(150_000);
        let mut srv = Server::new(src.clone(), 100_000);
        let mut dl = open(&mut disk, &l, DEFAULT_CHECKPOINT_BYTES);
        assert_eq!(drive(&mut dl, &mut disk, &mut srv), Stop::DiskFull, "{kind:?}");
        let have = dl.have();
        assert!(have >= 100_000, "{kind:?}: fragment 1 kept: {have}");
        disk.set_capacity(64 << 20);
        assert_eq!(drive(&mut dl, &mut disk, &mut srv), Stop::Complete);
        assert_eq!(disk.durable(ARCHIVE).unwrap(), &src[..], "{kind:?}");
        assert!(srv.delivered - 300_000 <= DEFAULT_CHECKPOINT_BYTES, "{kind:?}: at most one checkpoint interval again");
    }
}

#[test]
fn power_cut_during_the_journal_write_leaves_the_other_slot() {
    for kind in [Kind::Signed, Kind::Unsigned] {
        let src = random_bytes(300_000, 5);
        let l = layout(kind, &src, 100_000);
        // Find the first journal write: cut there, torn.
        for k in 0..40 {
            let mut disk = SimBlocks::new(64 << 20);
            let mut srv = Server::new(src.clone(), 100_000);
            let mut dl = open(&mut disk, &l, 64 * 1024);
            disk.power_cut_after(k, true);
            if drive(&mut dl, &mut disk, &mut srv) != Stop::Crashed {
                continue;
            }
            disk.reboot();
            let slots_ok = SLOTS.iter().filter(|s| disk.durable(s).is_some()).count();
            let mut dl = open(&mut disk, &l, 64 * 1024);
            assert_held_durable(&disk, &src, &dl);
            assert_eq!(drive(&mut dl, &mut disk, &mut srv), Stop::Complete);
            assert_eq!(disk.durable(ARCHIVE).unwrap(), &src[..], "{kind:?} k={k} slots={slots_ok}");
        }
    }
}

#[test]
fn garbage_journal_starts_over_safely() {
    let src = random_bytes(200_000, 11);
    let m = manifest(&src, 100_000);
    let mut disk = SimBlocks::new(64 << 20);
    disk.plant(SLOTS[0], b"OPJ1\x04garbage that is not a record");
    disk.plant(SLOTS[1], &[0xff; 300]);
    disk.plant(ARCHIVE, &[0u8; 150_000]);
    let mut dl = Download::open(&mut disk, &m, DEFAULT_CHECKPOINT_BYTES).unwrap();
    assert_eq!(dl.have(), 0, "nothing trusted from a journal that does not decode");
    let mut srv = Server::new(src.clone(), 100_000);
    assert_eq!(drive(&mut dl, &mut disk, &mut srv), Stop::Complete);
    assert_eq!(disk.durable(ARCHIVE).unwrap(), &src[..]);
}

#[test]
fn a_slow_link_takes_its_time_in_virtual_time() {
    let src = random_bytes(500_000, 21);
    let m = manifest(&src, 100_000);
    let mut disk = SimBlocks::new(64 << 20);
    let mut srv = Server::new(src.clone(), 100_000);
    srv.link = SimLink::new(50_000, std::time::Duration::from_millis(80)); // 50 kB/s, 80 ms
    srv.link.down_between(Instant::from_secs(4), Instant::from_secs(6)); // and 2 s without a link
    srv.faults.extend([Fault::Truncate(1), Fault::Status(503)]);
    let t0 = srv.clock.now();
    let mut dl = Download::open(&mut disk, &m, DEFAULT_CHECKPOINT_BYTES).unwrap();
    assert_eq!(drive(&mut dl, &mut disk, &mut srv), Stop::Complete);
    let took = srv.clock.now().saturating_duration_since(t0);
    assert_eq!(disk.durable(ARCHIVE).unwrap(), &src[..]);
    assert!(took >= std::time::Duration::from_secs(10), "500 kB at 50 kB/s: {took:?} of virtual time");
}
