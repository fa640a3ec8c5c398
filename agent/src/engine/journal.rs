//! Persisted records: versioned postcard bodies framed with a CRC-32.
//!
//! ```text
//!  "OPJ1" | kind (u8) | body length (u32 LE) | postcard body | crc32 (LE) of all before
//! ```
//!
//! Records are written whole through `outpost_hal::linux::write_atomic` (temporary
//! file, sync, rename, sync), so the only valid copy is never overwritten in
//! place. Decoding garbage returns an error, never panics.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::limits::MAX_RECORD_LEN;
use super::refetch::DigestTrouble;

const MAGIC: &[u8; 4] = b"OPJ1";

/// Record kinds.
pub mod kind {
    /// [`super::PackageRecord`].
    pub const PACKAGE: u8 = 1;
    /// [`super::HistoryRecord`].
    pub const HISTORY: u8 = 2;
    /// [`super::OutboxRecord`].
    pub const OUTBOX: u8 = 3;
    /// A checkpoint of the first format (no fragment start; signed
    /// fragments only), still read.
    pub const CHECKPOINT_V1: u8 = 4;
    /// [`crate::engine::download::Checkpoint`].
    pub const CHECKPOINT: u8 = 5;
    /// [`crate::engine::identity::Identity`].
    pub const IDENTITY: u8 = 6;
    /// [`crate::engine::version::Versions`].
    pub const VERSIONS: u8 = 7;
}

/// Why a record could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordError {
    /// Too short, wrong magic or wrong length.
    Malformed,
    /// The checksum does not match (torn or rotten write).
    Checksum,
    /// Another record kind than the one asked for.
    WrongKind(u8),
    /// The body does not decode.
    Body,
    /// Larger than [`MAX_RECORD_LEN`].
    TooLarge,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed => f.write_str("malformed record"),
            Self::Checksum => f.write_str("record checksum mismatch"),
            Self::WrongKind(k) => write!(f, "unexpected record kind {k}"),
            Self::Body => f.write_str("record body does not decode"),
            Self::TooLarge => f.write_str("record too large"),
        }
    }
}

impl core::error::Error for RecordError {}

/// Frame `value` as a record of `kind`.
pub fn encode<T: Serialize>(kind: u8, value: &T) -> Result<Vec<u8>, RecordError> {
    let body = postcard::to_allocvec(value).map_err(|_| RecordError::Body)?;
    if body.len() + 13 > MAX_RECORD_LEN {
        return Err(RecordError::TooLarge);
    }
    let mut out = Vec::with_capacity(body.len() + 13);
    out.extend_from_slice(MAGIC);
    out.push(kind);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Read a record of `kind`.
pub fn decode<T: DeserializeOwned>(kind: u8, bytes: &[u8]) -> Result<T, RecordError> {
    if bytes.len() > MAX_RECORD_LEN {
        return Err(RecordError::TooLarge);
    }
    if bytes.len() < 13 || &bytes[..4] != MAGIC {
        return Err(RecordError::Malformed);
    }
    let len = u32::from_le_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) as usize;
    if bytes.len() != len + 13 {
        return Err(RecordError::Malformed);
    }
    let (framed, crc) = bytes.split_at(len + 9);
    if crc32fast::hash(framed).to_le_bytes() != crc {
        return Err(RecordError::Checksum);
    }
    if bytes[4] != kind {
        return Err(RecordError::WrongKind(bytes[4]));
    }
    postcard::from_bytes(&framed[9..]).map_err(|_| RecordError::Body)
}

/// Where a package is in its life on this device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Info and manifest verified; fragments being fetched.
    Fetching,
    /// The action has been started (recorded before the process is spawned).
    Installing,
    /// A final status is known and queued for the server.
    Finished,
}

/// The durable state of one package.
///
/// Fields added later go last and decode as absent from older records
/// (postcard runs out of bytes there); older agents ignore them (postcard
/// leaves trailing bytes alone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PackageRecord {
    /// Package id.
    pub id: u64,
    /// Phase.
    pub phase: Phase,
    /// Priority from the server.
    pub priority: u8,
    /// Forced re-deploy.
    pub force: bool,
    /// Fragment location (`host[:port]/path`), kept so resume needs no server.
    pub pack_loc: String,
    /// Seconds since 1970 when first offered.
    pub first_seen: u64,
    /// Fragments verified and durable, in order.
    pub fragments_verified: u32,
    /// Final status, once known.
    pub status: Option<String>,
    /// `ERR_OUT_OF_SPACE` was reported for this download (reported once;
    /// the download goes on by itself when space returns).
    pub space_reported: bool,
    /// The series of digest mismatches in progress, with its deadline
    /// (see [`crate::engine::refetch`]). Added after the first release.
    pub digest_trouble: Option<DigestTrouble>,
}

impl<'de> Deserialize<'de> for PackageRecord {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = PackageRecord;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a package record")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut s: A) -> Result<PackageRecord, A::Error> {
                fn next<'de, T: Deserialize<'de>, A: serde::de::SeqAccess<'de>>(s: &mut A) -> Result<T, A::Error> {
                    s.next_element()?.ok_or_else(|| serde::de::Error::custom("short package record"))
                }
                Ok(PackageRecord {
                    id: next(&mut s)?,
                    phase: next(&mut s)?,
                    priority: next(&mut s)?,
                    force: next(&mut s)?,
                    pack_loc: next(&mut s)?,
                    first_seen: next(&mut s)?,
                    fragments_verified: next(&mut s)?,
                    status: next(&mut s)?,
                    space_reported: next(&mut s)?,
                    // Absent from records written before it existed.
                    digest_trouble: s.next_element().ok().flatten().flatten(),
                })
            }
        }
        const FIELDS: &[&str] = &[
            "id",
            "phase",
            "priority",
            "force",
            "pack_loc",
            "first_seen",
            "fragments_verified",
            "status",
            "space_reported",
            "digest_trouble",
        ];
        d.deserialize_struct("PackageRecord", FIELDS, V)
    }
}

/// Packages installed on this device (never run again unless forced).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRecord {
    /// Package ids, oldest first.
    pub ids: Vec<u64>,
}

impl HistoryRecord {
    /// Add `id` (once); past [`MAX_HISTORY_IDS`] the oldest ids go, so the
    /// record always fits [`super::limits::MAX_RECORD_LEN`]. `false` when
    /// `id` was there already (nothing to write).
    ///
    /// [`MAX_HISTORY_IDS`]: super::limits::MAX_HISTORY_IDS
    pub fn add(&mut self, id: u64) -> bool {
        if self.ids.contains(&id) {
            return false;
        }
        self.ids.push(id);
        let over = self.ids.len().saturating_sub(super::limits::MAX_HISTORY_IDS);
        self.ids.drain(..over);
        true
    }
}

/// A status report not yet acknowledged by the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxRecord {
    /// Report id (the server drops duplicates by it).
    pub report_id: u64,
    /// Package id.
    pub package: u64,
    /// Wire status code.
    pub status: String,
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_history_keeps_the_newest_ids_and_always_fits_a_record() {
        use crate::engine::limits::{MAX_HISTORY_IDS, MAX_RECORD_LEN};
        let mut h = HistoryRecord::default();
        for id in 0..(MAX_HISTORY_IDS as u64 + 10) {
            assert!(h.add(u64::MAX - id), "a new id is added");
        }
        assert!(!h.add(u64::MAX - 20), "an id it holds is not added twice");
        assert_eq!(h.ids.len(), MAX_HISTORY_IDS);
        assert_eq!(h.ids[0], u64::MAX - 10, "the oldest ten are forgotten");
        // The longest ids (ten bytes each in postcard) still make a record.
        assert!(encode(kind::HISTORY, &h).unwrap().len() <= MAX_RECORD_LEN);
    }

    use super::*;

    fn rec() -> PackageRecord {
        PackageRecord {
            id: 9,
            phase: Phase::Fetching,
            priority: 5,
            force: false,
            pack_loc: "h:1/d".into(),
            first_seen: 3,
            fragments_verified: 2,
            status: None,
            space_reported: false,
            digest_trouble: Some(DigestTrouble { deadline: 1_800_086_400, faults: 5 }),
        }
    }

    #[test]
    fn records_from_before_digest_trouble_still_decode_and_old_agents_skip_it() {
        // The record as the first release wrote it: the same fields, minus the last.
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct V1 {
            id: u64,
            phase: Phase,
            priority: u8,
            force: bool,
            pack_loc: String,
            first_seen: u64,
            fragments_verified: u32,
            status: Option<String>,
            space_reported: bool,
        }
        let r = rec();
        let v1 = V1 {
            id: r.id,
            phase: r.phase,
            priority: r.priority,
            force: r.force,
            pack_loc: r.pack_loc.clone(),
            first_seen: r.first_seen,
            fragments_verified: r.fragments_verified,
            status: r.status.clone(),
            space_reported: r.space_reported,
        };
        let old = encode(kind::PACKAGE, &v1).unwrap();
        assert_eq!(
            decode::<PackageRecord>(kind::PACKAGE, &old).unwrap(),
            PackageRecord { digest_trouble: None, ..rec() }
        );
        let new = encode(kind::PACKAGE, &r).unwrap();
        assert_eq!(decode::<V1>(kind::PACKAGE, &new).unwrap(), v1);
    }

    #[test]
    fn records_round_trip() {
        let b = encode(kind::PACKAGE, &rec()).unwrap();
        assert_eq!(decode::<PackageRecord>(kind::PACKAGE, &b).unwrap(), rec());
        assert_eq!(decode::<PackageRecord>(kind::HISTORY, &b), Err(RecordError::WrongKind(kind::PACKAGE)));
    }

    #[test]
    fn garbage_and_torn_records_are_errors() {
        let b = encode(kind::PACKAGE, &rec()).unwrap();
        for i in 0..b.len() {
            assert!(decode::<PackageRecord>(kind::PACKAGE, &b[..i]).is_err(), "prefix {i}");
            let mut c = b.clone();
            c[i] ^= 0x80;
            assert!(decode::<PackageRecord>(kind::PACKAGE, &c).is_err(), "flip {i}");
        }
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let n = (x % 64) as usize;
            let g: Vec<u8> = (0..n).map(|i| (x >> (i % 8 * 8)) as u8).collect();
            let _ = decode::<PackageRecord>(kind::PACKAGE, &g);
        }
    }
}
