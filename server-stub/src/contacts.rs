//! Devices' contacts written a second at a time. Every poll records the
//! device's last contact, address and facts ([`crate::db::Db::record_contact`]);
//! written at once, that is a write transaction per poll, and at thousands
//! of polls a second SQLite's WAL then writes the same few pages thousands
//! of times a second. So a contact whose facts are those last recorded here
//! (free space aside) is kept here and written with the others of the same
//! second in one transaction ([`Contacts::take`], by the flusher in
//! [`crate::serve`]), which then moves rollouts on: a group whose filter
//! reads free space, address or last contact sees them within a second.
//!
//! Written at once, as before, is a contact that may change a group's
//! members by what the device says of itself (its first contact since the
//! server started, or a host, OS, architecture, agent version or tag that
//! differs from the last ones it sent here): rollouts and dynamic groups see
//! it before the poll is answered. On PostgreSQL, each instance remembers
//! what it recorded itself. Memory is bounded: at most [`MAX_PENDING`]
//! contacts wait (each a device id, an address, a time and a free-space
//! figure; a contact past that is written at once) and [`MAX_KNOWN`] devices
//! are remembered (about 50 bytes each; past that the memory starts again,
//! and each device's next contact is written at once). A contact waiting
//! here is lost if the process is killed, or if its flush fails (logged):
//! the device's next poll writes it again, as a power cut may lose a
//! relaxed commit.

use std::collections::HashMap;
use std::collections::hash_map::{Entry, RandomState};
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Mutex;

use outpost_agent::engine::facts::Facts;

/// Contacts waiting for the next flush, at most.
pub const MAX_PENDING: usize = 65_536;
/// Devices whose last facts are remembered, at most.
pub const MAX_KNOWN: usize = 1 << 20;

/// A contact waiting to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// The device.
    pub device: String,
    /// The free space its facts said, if it sent facts since the last
    /// flush (the newest; the rest of its facts are those recorded).
    pub free: Option<Option<u64>>,
    /// Where it came from, last.
    pub address: IpAddr,
    /// When, last (Unix seconds).
    pub now: u64,
}

/// The contacts of a `serve` process.
#[derive(Default)]
pub struct Contacts {
    inner: Mutex<Inner>,
    hasher: RandomState,
}

#[derive(Default)]
struct Inner {
    /// Device (hashed) to the hash of its last recorded facts (`None`: it
    /// sent none yet).
    known: HashMap<u64, Option<u64>>,
    /// Device (hashed) to its contact waiting for the flush.
    pending: HashMap<u64, Contact>,
}

impl Contacts {
    /// Keep the contact of `device` for the next flush if it changes no
    /// group's members: `true`. `false`: record it now (the caller does),
    /// then [`Contacts::recorded`].
    pub fn defer(&self, device: &str, facts: Option<&Facts>, address: IpAddr, now: u64) -> bool {
        let (id, sent) = (self.hash(device), facts.map(|f| self.facts_hash(f)));
        let Ok(mut inner) = self.inner.lock() else { return false };
        let same = match (inner.known.get(&id), sent) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(known), Some(s)) => *known == Some(s),
        };
        if !same {
            // Written now: an older contact waiting would undo it.
            inner.pending.remove(&id);
            return false;
        }
        let full = inner.pending.len() >= MAX_PENDING;
        match inner.pending.entry(id) {
            Entry::Occupied(mut e) => {
                let c = e.get_mut();
                if let Some(f) = facts {
                    c.free = Some(f.free);
                }
                c.address = address;
                c.now = c.now.max(now);
            }
            Entry::Vacant(_) if full => return false,
            Entry::Vacant(e) => {
                let free = facts.map(|f| f.free);
                e.insert(Contact { device: device.to_string(), free, address, now });
            }
        }
        true
    }

    /// `device`'s contact with `facts` was written: later ones with the
    /// same facts may wait.
    pub fn recorded(&self, device: &str, facts: Option<&Facts>) {
        let (id, sent) = (self.hash(device), facts.map(|f| self.facts_hash(f)));
        let Ok(mut inner) = self.inner.lock() else { return };
        if inner.known.len() >= MAX_KNOWN && !inner.known.contains_key(&id) {
            inner.known.clear();
        }
        let known = inner.known.entry(id).or_insert(None);
        if sent.is_some() {
            *known = sent;
        }
    }

    /// The contacts waiting, to be written now (they wait no more).
    pub fn take(&self) -> Vec<Contact> {
        match self.inner.lock() {
            Ok(mut inner) => inner.pending.drain().map(|(_, c)| c).collect(),
            Err(_) => Vec::new(),
        }
    }

    fn hash(&self, device: &str) -> u64 {
        self.hasher.hash_one(device)
    }

    /// What group membership can depend on: everything but free space.
    fn facts_hash(&self, f: &Facts) -> u64 {
        self.hasher.hash_one((&f.host, &f.os, &f.os_version, &f.arch, &f.agent, &f.tags))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(tag: &str, free: u64) -> Facts {
        Facts { host: "h".into(), tags: vec![tag.into()], free: Some(free), ..Facts::default() }
    }

    const ADDR: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn a_first_contact_is_written_at_once_then_the_same_facts_wait() {
        let c = Contacts::default();
        assert!(!c.defer("pc1", Some(&facts("a", 1)), ADDR, 10), "never recorded here: at once");
        c.recorded("pc1", Some(&facts("a", 1)));
        assert!(c.defer("pc1", Some(&facts("a", 2)), ADDR, 11), "free space alone moved");
        assert!(c.defer("pc1", None, ADDR, 12), "no facts: nothing new");
        let taken = c.take();
        assert_eq!(taken.len(), 1, "one row per device, however many polls");
        assert_eq!((taken[0].now, taken[0].free), (12, Some(Some(2))), "the newest of each");
        assert!(c.take().is_empty(), "taken: none waits");
    }

    #[test]
    fn changed_facts_are_written_at_once() {
        let c = Contacts::default();
        c.recorded("pc1", Some(&facts("a", 1)));
        assert!(c.defer("pc1", None, ADDR, 10));
        assert!(!c.defer("pc1", Some(&facts("b", 1)), ADDR, 11), "a tag changed: groups may change");
        assert!(c.take().is_empty(), "the older contact waiting is dropped: it would undo the newer");
        assert!(c.defer("pc1", Some(&facts("a", 1)), ADDR, 11));
        c.recorded("pc2", None);
        assert!(!c.defer("pc2", Some(&facts("a", 1)), ADDR, 11), "its first facts");
    }

    #[test]
    fn the_waiting_contacts_are_bounded() {
        let c = Contacts::default();
        for i in 0..MAX_PENDING {
            c.recorded(&format!("pc{i}"), None);
            assert!(c.defer(&format!("pc{i}"), None, ADDR, 1));
        }
        c.recorded("one-more", None);
        assert!(!c.defer("one-more", None, ADDR, 1), "full: written at once");
        assert!(c.defer("pc0", None, ADDR, 2), "a waiting device still merges");
        assert_eq!(c.take().len(), MAX_PENDING);
    }
}
