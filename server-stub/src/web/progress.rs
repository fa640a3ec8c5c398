//! The download progress agents send with their polls
//! (`proto::decode_progress`), stored per device and package for the
//! status page. A poll whose progress lines do not decode is still a poll:
//! the lines are dropped (and logged at debug).

use outpost_agent::engine::proto;

use crate::db::ProgressRow;
use crate::serve::State;
use crate::time::unix_now;

/// Store the progress lines of `device`'s poll `body`, for packages
/// assigned to it and not yet reported.
pub fn store(state: &State, device: &str, body: &[u8]) {
    let list = match proto::decode_progress(body) {
        Ok(l) if l.is_empty() => return,
        Ok(l) => l,
        Err(e) => {
            log::debug!(target: "outpost", "device {device}: progress lines dropped: {e}");
            return;
        }
    };
    let at = unix_now();
    let rows: Vec<(u64, ProgressRow)> =
        list.iter().map(|p| (p.id, ProgressRow { held: p.held, total: p.total, rate: p.rate, at })).collect();
    let Ok(mut db) = state.db.lock() else { return };
    if let Err(e) = db.put_progress(device, &rows) {
        log::error!(target: "outpost", "database: {e}");
    }
}
