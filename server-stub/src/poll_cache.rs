//! Answers to polls from memory. Nearly every poll of a fleet at rest is
//! the same as its device's last one: same credentials, same address,
//! nothing new to tell. Such a poll is answered on the connection's own
//! thread, with no read of the database (four, on a poll worker,
//! otherwise), when:
//! - the device's last poll was answered by the whole path (lockout gate,
//!   credentials, assignments, depots) less than [`TTL_SECS`] ago, with
//!   no credentials waiting (`device rotate`); what it was told of as new
//!   then is NOTIFIED since, and kept so;
//! - it sends no progress lines (the whole path stores them);
//! - it presents the same secret (compared in constant time) and client
//!   certificate, from the same address;
//! - nothing that decides an answer changed since: the state's epoch
//!   ([`crate::db::changes`]), read before the whole path read the
//!   database, is still the same. Any commit that waited for the disk
//!   moves it on (an assignment, a revocation, a block, a depot, an OCS
//!   inventory, from this process or from a command run beside it), and
//!   every answer kept is dropped;
//! - the device has not reported since that read: a report changes its
//!   own answer only, so the group commit of reports tells the cache
//!   which devices it recorded ([`PollCache::reported`]) instead of
//!   moving the epoch on; their answers are dropped, and one read before
//!   their report is not kept;
//! - its contact can wait for the next flush ([`crate::contacts`]).
//!
//! A device's report is authenticated from its answer kept too
//! ([`PollCache::knows`]): the same credentials from the same address
//! that the whole path let in, with nothing changed since. Nothing is
//! lost either way: a poll without a kept answer takes the whole path, as
//! every poll did.
//!
//! SQLite only: instances on PostgreSQL see one another's writes only in
//! the database, so every poll there takes the whole path. Bounded: at
//! most [`MAX_ENTRIES`] answers, about 90 bytes each (a device's name and
//! credentials are kept as hashes; devices told the same share one
//! answer, whose offers and depots are bounded by what is assigned and
//! [`outpost_agent::engine::limits::MAX_DEPOTS`]); past that,
//! they are all dropped and kept again as devices poll.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::db::Pending;
use crate::db::changes::{self, Epoch};
use crate::pki::Fingerprint;

/// Longest time an answer is kept: then the whole path runs again (it
/// refreshes the lockout's trust in the device, among others).
pub const TTL_SECS: u64 = 600;
/// Most answers kept.
pub const MAX_ENTRIES: usize = 1 << 17;
/// Most devices remembered as reported ([`PollCache::reported`]); past
/// that, answers read before the last report are not kept at all.
pub const MAX_REPORTED: usize = 1 << 16;

/// What an answer is read at: the state's epoch and the reports recorded.
/// Take it before reading the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// The state's epoch.
    pub epoch: Epoch,
    /// Reports recorded in this process so far ([`PollCache::reported`]).
    pub reports: u64,
}

/// What a device was told: its offers and its depots.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Answer {
    /// The packages (none new: each was told of once).
    pub offers: Vec<Pending>,
    /// The depots for its address.
    pub depots: Vec<String>,
}

/// Who asked: what must match for an answer to be given again.
#[derive(Clone, Copy)]
pub struct Asker<'a> {
    /// The device.
    pub device: &'a str,
    /// SHA-256 of the secret it presented.
    pub secret_sha256: &'a [u8; 32],
    /// Its client certificate.
    pub cert: Option<&'a Fingerprint>,
    /// Its address.
    pub peer: IpAddr,
}

impl Asker<'_> {
    /// What it presented, in one digest: its secret's hash and its
    /// certificate (or none).
    fn credentials(&self) -> [u8; 32] {
        let mut m = [0u8; 65];
        m[..32].copy_from_slice(self.secret_sha256);
        if let Some(c) = self.cert {
            m[32..64].copy_from_slice(c);
            m[64] = 1;
        }
        outpost_agent::engine::manifest::sha256(&m)
    }
}

/// One answer kept (about 90 bytes; the answer itself is shared by every
/// device told the same).
struct Entry {
    /// A second hash of the device's name, independent of the map's key:
    /// two names whose keys collide are told apart.
    check: u64,
    credentials: [u8; 32],
    peer: IpAddr,
    until: Instant,
    answer: Arc<Answer>,
}

struct Inner {
    /// The epoch every entry was read at.
    epoch: Option<Epoch>,
    /// By the device's name, hashed.
    map: HashMap<u64, Entry>,
    /// The distinct answers of the entries.
    answers: HashSet<Arc<Answer>>,
    /// Devices (keys of `map`) by the report count at which they last
    /// reported, at most [`MAX_REPORTED`].
    reported: HashMap<u64, u64>,
    /// Answers read before this report count are not kept: who reported
    /// then was forgotten.
    floor: u64,
}

impl Inner {
    /// Drop everything, outside the lock (up to MAX_ENTRIES frees): the
    /// caller drops what this returns once it has let go of the lock.
    fn take(&mut self, epoch: Option<Epoch>) -> (HashMap<u64, Entry>, HashSet<Arc<Answer>>) {
        self.epoch = epoch;
        (std::mem::take(&mut self.map), std::mem::take(&mut self.answers))
    }

    /// Drop the entry of `key`, and its answer if no other entry shares
    /// it (an entry replaced or dropped must not leave its answer behind:
    /// a device that changes its answer at will would fill the set).
    fn remove(&mut self, key: u64) {
        if let Some(e) = self.map.remove(&key) {
            self.forget(e.answer);
        }
    }

    /// `answer` is no longer an entry's: out of the set if nobody else
    /// holds it (the set's own reference and this one).
    fn forget(&mut self, answer: Arc<Answer>) {
        if Arc::strong_count(&answer) <= 2 {
            self.answers.remove(&answer);
        }
    }
}

/// The answers kept.
pub struct PollCache {
    /// `DIR/state.changes`; `None`: nothing is kept (PostgreSQL).
    file: Option<PathBuf>,
    /// Keys of the map and checks of the entries: two hashers, each with
    /// its own random keys.
    keys: std::collections::hash_map::RandomState,
    checks: std::collections::hash_map::RandomState,
    inner: Mutex<Inner>,
    /// Reports recorded: moved on by [`PollCache::reported`], under the lock.
    reports: AtomicU64,
}

impl PollCache {
    /// Keep answers read from the SQLite database whose change file is
    /// `file`; none if `None`.
    pub fn new(file: Option<PathBuf>) -> Self {
        let inner =
            Inner { epoch: None, map: HashMap::new(), answers: HashSet::new(), reported: HashMap::new(), floor: 0 };
        let (keys, checks) = (Default::default(), Default::default());
        Self { file, keys, checks, inner: Mutex::new(inner), reports: AtomicU64::new(0) }
    }

    /// Whether answers are kept (SQLite).
    pub fn enabled(&self) -> bool {
        self.file.is_some()
    }

    /// What to read the database at, if answers are kept.
    pub fn snapshot(&self) -> Option<Snapshot> {
        // The count first: a report recorded between the two reads is
        // then seen as after this snapshot (its answer is not kept).
        let reports = self.reports.load(Ordering::Acquire);
        Some(Snapshot { epoch: changes::epoch(self.file.as_deref()?), reports })
    }

    /// Whether `asker` may be let in without the whole path: it would get
    /// an answer kept ([`PollCache::get`]), so the whole path let the same
    /// credentials in from the same address, and nothing changed since.
    pub fn knows(&self, asker: &Asker<'_>, now: Instant) -> bool {
        self.get(asker, now).is_some()
    }

    /// The reports of `devices` were committed: their answers are dropped,
    /// and one read before now is not kept. Call it after the commit and
    /// before the devices are answered.
    pub fn reported<'a>(&self, devices: impl IntoIterator<Item = &'a str>) {
        if !self.enabled() {
            return;
        }
        let Ok(mut inner) = self.inner.lock() else { return };
        let count = self.reports.load(Ordering::Acquire) + 1;
        for d in devices {
            let key = self.keys.hash_one(d);
            inner.remove(key);
            inner.reported.insert(key, count);
        }
        if inner.reported.len() > MAX_REPORTED {
            inner.reported.clear();
            inner.floor = count;
        }
        self.reports.store(count, Ordering::Release);
    }

    /// The answer kept for `asker` at `now`, if it may be given again. One
    /// that does not match is left as it is: a client guessing secrets
    /// must not make the device's own polls take the whole path.
    pub fn get(&self, asker: &Asker<'_>, now: Instant) -> Option<Arc<Answer>> {
        let epoch = changes::epoch(self.file.as_deref()?);
        let (key, check, credentials) =
            (self.keys.hash_one(asker.device), self.checks.hash_one(asker.device), asker.credentials());
        let mut inner = self.inner.lock().ok()?;
        if inner.epoch != Some(epoch) {
            let stale = inner.take(None);
            drop(inner);
            drop(stale);
            return None;
        }
        let e = inner.map.get(&key)?;
        // Every comparison, whatever the others say.
        let same =
            crate::ct::constant_time_eq(&e.credentials, &credentials) & (e.check == check) & (e.peer == asker.peer);
        (same && now < e.until).then(|| e.answer.clone())
    }

    /// Keep `answer` for `asker`, read at `at` (before the database) at
    /// `now`, its packages no longer new (they were NOTIFIED: a write that
    /// changes no other answer and does not move the epoch on); not if the
    /// state changed since or the device reported since (and then what was
    /// kept for the device is dropped).
    pub fn put(&self, asker: &Asker<'_>, at: Snapshot, now: Instant, mut answer: Answer) {
        for p in &mut answer.offers {
            p.new = false;
        }
        let Some(file) = self.file.as_deref() else { return };
        let epoch = at.epoch;
        let keep = changes::epoch(file) == epoch;
        let (key, check, credentials) =
            (self.keys.hash_one(asker.device), self.checks.hash_one(asker.device), asker.credentials());
        let Ok(mut inner) = self.inner.lock() else { return };
        let reported_since = at.reports < inner.floor || inner.reported.get(&key).is_some_and(|&r| r > at.reports);
        if !keep || reported_since {
            inner.remove(key);
            return;
        }
        let mut stale = Default::default();
        if inner.epoch != Some(epoch) || inner.map.len() >= MAX_ENTRIES || inner.answers.len() >= MAX_ENTRIES {
            stale = inner.take(Some(epoch));
        }
        let answer = match inner.answers.get(&answer) {
            Some(a) => a.clone(),
            None => {
                let a = Arc::new(answer);
                inner.answers.insert(a.clone());
                a
            }
        };
        let until = now + Duration::from_secs(TTL_SECS);
        if let Some(old) = inner.map.insert(key, Entry { check, credentials, peer: asker.peer, until, answer }) {
            inner.forget(old.answer);
        }
        drop(inner);
        drop(stale);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(new: bool) -> Answer {
        let p = Pending { package: 7, priority: 5, force: false, https: false, new };
        Answer { offers: vec![p], depots: vec!["depot.example/dl".into()] }
    }

    /// `f` at an epoch that did not move while it ran (other tests of
    /// this process commit, and move it on).
    fn stable<T>(cache: &PollCache, f: impl Fn(Snapshot) -> T) -> T {
        loop {
            let e = cache.snapshot().unwrap();
            let out = f(e);
            if cache.snapshot().map(|s| s.epoch) == Some(e.epoch) {
                return out;
            }
        }
    }

    #[test]
    fn an_answer_is_given_again_only_to_the_same_credentials_and_address_until_the_state_changes() {
        let dir = std::env::temp_dir().join(format!("outpost-poll-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = changes::file_of(&dir.join("state.db"));
        let cache = PollCache::new(Some(file));
        let (secret, other, cert) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        let peer: IpAddr = "198.18.0.2".parse().unwrap();
        let asker = Asker { device: "pc-1", secret_sha256: &secret, cert: Some(&cert), peer };
        let t = crate::time::monotonic_now();
        let again = |a: &Asker<'_>, kept: Answer, at: Instant| {
            stable(&cache, |e| {
                cache.put(&asker, e, t, kept.clone());
                cache.get(a, at).map(|a| (*a).clone())
            })
        };

        assert_eq!(again(&asker, answer(false), t + Duration::from_secs(1)), Some(answer(false)));
        assert_eq!(again(&asker, answer(true), t), Some(answer(false)), "told of once: no longer new");
        for (wrong, why) in [
            (Asker { secret_sha256: &other, ..asker }, "another secret"),
            (Asker { cert: None, ..asker }, "no certificate"),
            (Asker { peer: "198.18.0.3".parse().unwrap(), ..asker }, "another address"),
        ] {
            let (got, then) = stable(&cache, |e| {
                cache.put(&asker, e, t, answer(false));
                (cache.get(&wrong, t).map(|a| (*a).clone()), cache.get(&asker, t).map(|a| (*a).clone()))
            });
            assert_eq!((got, then), (None, Some(answer(false))), "{why}; the device's own answer is kept");
        }
        assert_eq!(again(&asker, answer(false), t + Duration::from_secs(TTL_SECS)), None, "too old");
        let shared = stable(&cache, |e| {
            for d in ["pc-1", "pc-2", "pc-3"] {
                cache.put(&Asker { device: d, ..asker }, e, t, answer(false));
            }
            let two = cache.get(&Asker { device: "pc-2", ..asker }, t).map(|a| (*a).clone());
            let i = cache.inner.lock().unwrap();
            (i.map.len(), i.answers.len(), two)
        });
        assert_eq!(shared, (3, 1, Some(answer(false))), "three devices told the same share one answer");

        // A command run beside the server (this process does not serve)
        // commits to the database: the answer is dropped.
        let mut db = crate::db::Db::open(&dir.join("state.db")).unwrap();
        assert_eq!(again(&asker, answer(false), t), Some(answer(false)));
        let before = cache.snapshot().unwrap().epoch.file;
        assert!(db.add_device("pc-2", &[9; 32]).unwrap());
        assert_ne!(cache.snapshot().unwrap().epoch.file, before, "the change file was replaced");
        assert!(cache.get(&asker, t).is_none(), "a commit moved the epoch on");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_report_drops_its_devices_answer_and_one_read_before_it_is_not_kept() {
        let dir = std::env::temp_dir().join(format!("outpost-poll-cache-r-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let cache = PollCache::new(Some(changes::file_of(&dir.join("state.db"))));
        let asker = Asker { device: "pc-1", secret_sha256: &[1; 32], cert: None, peer: "198.18.0.2".parse().unwrap() };
        let other = Asker { device: "pc-2", ..asker };
        let t = crate::time::monotonic_now();
        let got = |a: &Asker<'_>| cache.get(a, t).map(|a| (*a).clone());
        let (kept, dropped, stale, fresh) = stable(&cache, |e| {
            cache.put(&asker, e, t, answer(false));
            cache.put(&other, e, t, answer(false));
            let kept = (got(&asker), got(&other));
            cache.reported(["pc-1"]);
            let dropped = (got(&asker), got(&other));
            // A poll that read the database before the report commits.
            cache.put(&asker, e, t, answer(false));
            let stale = got(&asker);
            let now = Snapshot { reports: e.reports + 1, ..e };
            cache.put(&asker, now, t, answer(false));
            (kept, dropped, stale, got(&asker))
        });
        assert_eq!(kept, (Some(answer(false)), Some(answer(false))));
        assert_eq!(dropped, (None, Some(answer(false))), "pc-1's answer only");
        assert_eq!(stale, None, "read before the report: not kept");
        assert_eq!(fresh, Some(answer(false)), "read after it: kept");

        // A device whose answer changes at will (it reports, polls, …)
        // leaves no answer behind.
        stable(&cache, |e| {
            for n in 0..100 {
                let mut a = answer(false);
                a.offers[0].package = n;
                cache.put(&asker, Snapshot { reports: e.reports + 1, ..e }, t, a);
            }
        });
        let i = cache.inner.lock().unwrap();
        assert_eq!((i.map.len(), i.answers.len()), (2, 2), "pc-1's last answer and pc-2's");
        drop(i);

        // Past MAX_REPORTED devices, nothing read before is kept.
        let e = cache.snapshot().unwrap();
        let names: Vec<String> = (0..=MAX_REPORTED).map(|i| format!("d{i}")).collect();
        cache.reported(names.iter().map(String::as_str));
        assert!(cache.inner.lock().unwrap().reported.is_empty(), "bounded");
        cache.put(&Asker { device: "pc-3", ..asker }, e, t, answer(false));
        assert_eq!(got(&Asker { device: "pc-3", ..asker }), None, "read before the forgotten reports");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn nothing_is_kept_without_a_change_file() {
        let cache = PollCache::new(None);
        assert_eq!(cache.snapshot(), None);
        let asker = Asker { device: "pc-1", secret_sha256: &[1; 32], cert: None, peer: "198.18.0.2".parse().unwrap() };
        assert!(cache.get(&asker, crate::time::monotonic_now()).is_none());
    }
}
