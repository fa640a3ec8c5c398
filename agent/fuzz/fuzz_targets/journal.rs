//! The agent's persisted records (journal slots, package records, history,
//! outbox, identity, versions), as a torn write or a rotten disk leaves them. The first byte picks
//! the kind; the rest is decoded as it is, and once more framed with a valid
//! checksum so that the postcard bodies themselves are reached.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outpost_agent::engine::download::Checkpoint;
use outpost_agent::engine::identity::Identity;
use outpost_agent::engine::journal::{self, HistoryRecord, OutboxRecord, PackageRecord, kind};
use outpost_agent::engine::version::Versions;

fn frame(k: u8, body: &[u8]) -> Vec<u8> {
    let mut out = b"OPJ1".to_vec();
    out.push(k);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn check<T: Record>(k: u8, bytes: &[u8]) {
    if let Ok(v) = journal::decode::<T>(k, bytes) {
        let again = journal::encode(k, &v).expect("a decoded record encodes");
        assert_eq!(journal::decode::<T>(k, &again).as_ref(), Ok(&v), "encoded and decoded again");
    }
}

/// What the records have in common here.
trait Record: serde::Serialize + serde::de::DeserializeOwned + PartialEq + core::fmt::Debug {}
impl<T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + core::fmt::Debug> Record for T {}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let k = [kind::PACKAGE, kind::HISTORY, kind::OUTBOX, kind::CHECKPOINT, kind::IDENTITY, kind::VERSIONS]
        [usize::from(pick % 6)];
    for bytes in [rest.to_vec(), frame(k, rest)] {
        match k {
            kind::PACKAGE => check::<PackageRecord>(k, &bytes),
            kind::HISTORY => check::<HistoryRecord>(k, &bytes),
            kind::OUTBOX => check::<OutboxRecord>(k, &bytes),
            kind::IDENTITY => check::<Identity>(k, &bytes),
            kind::VERSIONS => check::<Versions>(k, &bytes),
            _ => check::<Checkpoint>(k, &bytes),
        }
    }
});
