//! The cache cap (`agent.cache_max_size`), the same in both protocols:
//! downloaded, not yet installed payloads are kept under the cap by evicting
//! packages the server does not list now, the least recently written first.
//! Listed packages are needed now and stay; so does a package whose report
//! is still on its way.

use super::store::{Store, StoreError};

/// Evict until the cached payloads fit in `cap` bytes (0: no cap), sparing
/// the packages in `listed`. Returns the evicted ids.
pub fn enforce_cap(store: &Store, cap: u64, listed: &[u64]) -> Result<Vec<u64>, StoreError> {
    let mut evicted = Vec::new();
    if cap == 0 {
        return Ok(evicted);
    }
    let pending = store.pending_reports()?;
    let mut cached = Vec::new();
    for id in store.package_ids()? {
        let (bytes, used) = store.payload(id);
        let pending_report = pending.iter().any(|r| r.package == id);
        if bytes > 0 && !pending_report {
            cached.push((used, id, bytes));
        }
    }
    let mut total: u64 = cached.iter().map(|c| c.2).sum();
    cached.sort();
    for (_, id, bytes) in cached {
        if total <= cap {
            break;
        }
        if listed.contains(&id) {
            continue;
        }
        log::info!(target: "outpost", "package {id}: evicted from the cache ({bytes} bytes; cache over {cap})");
        store.remove_package(id)?;
        evicted.push(id);
        total -= bytes;
    }
    Ok(evicted)
}
