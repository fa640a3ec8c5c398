//! The download progress agents send with their polls
//! (`proto::decode_progress`), stored per device and package for the
//! status page. A poll whose progress lines do not decode is still a poll:
//! the lines are dropped (and logged at debug).

use outpost_agent::engine::proto;

use crate::db::ProgressRow;
use crate::serve::State;
use crate::time::unix_now;

/// Store the progress lines of `device`'s poll `body`, for packages
/// assigned to it.
pub fn store(state: &State, device: &str, body: &[u8]) {
    let list = match proto::decode_progress(body) {
        Ok(l) if l.is_empty() => return,
        Ok(l) => l,
        Err(e) => {
            log::debug!(target: "outpost", "device {device}: progress lines dropped: {e}");
            return;
        }
    };
    let Ok(mut db) = state.db.lock() else { return };
    let at = unix_now();
    for p in list {
        let row = ProgressRow { held: p.held, total: p.total, rate: p.rate, at };
        if let Err(e) = db.put_progress(device, p.id, row) {
            log::error!(target: "outpost", "database: {e}");
            return;
        }
    }
}
