//! `outpost-agent status`: one line per package from the state directory
//! alone (no server), the same for both protocols: cached bytes come from
//! the download journal, read without re-hashing.

use outpost_hal::linux::DirBlocks;

use super::store::{Store, StoreError};
use crate::engine::download::{Layout, durable_bytes};
use crate::engine::info::Info;
use crate::engine::journal::Phase;
use crate::engine::manifest::Manifest;

/// The download layout of package `id` as its saved metadata gives it: the
/// signed manifest (Outpost), else the info file (OCS).
pub fn layout_of(store: &Store, id: u64) -> Result<Option<Layout>, StoreError> {
    if let Some(m) = store.package_file(id, "manifest")?.and_then(|b| Manifest::decode_unverified(&b)) {
        return Ok(Some(Layout::signed(&m)));
    }
    Ok(store.package_file(id, "info")?.and_then(|b| Some(Layout::ocs(id, &b, Info::parse(&b).ok()?.frags))))
}

/// One line per package, under a header.
pub fn lines(store: &Store) -> Result<Vec<String>, StoreError> {
    let pending = store.pending_reports()?;
    let mut out = vec![format!("{:<12} {:<11} {:>23}  {}", "PACKAGE", "STATE", "CACHED/TOTAL BYTES", "LAST STATUS")];
    for id in store.package_ids()? {
        let Some(rec) = store.package(id)? else {
            continue;
        };
        let layout = layout_of(store, id)?;
        let cached = match &layout {
            Some(l) if rec.phase == Phase::Fetching => {
                DirBlocks::open(store.package_dir(id)).ok().and_then(|mut b| durable_bytes(&mut b, l).ok()).unwrap_or(0)
            }
            _ => 0,
        };
        // An OCS package's size is known only once it is here.
        let total = match layout.as_ref().map(Layout::total) {
            Some(Some(t)) => t.to_string(),
            Some(None) => "?".to_string(),
            None => "0".to_string(),
        };
        let state = match rec.phase {
            Phase::Fetching => "downloading",
            Phase::Installing => "installing",
            Phase::Finished if pending.iter().any(|p| p.package == id) => "unreported",
            Phase::Finished => "reported",
        };
        let status = rec.status.as_deref().unwrap_or("-");
        out.push(format!("{id:<12} {state:<11} {:>23}  {status}", format!("{cached}/{total}")));
    }
    Ok(out)
}
