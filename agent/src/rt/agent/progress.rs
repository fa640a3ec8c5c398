//! The download progress sent with each poll (`proto::Progress`), for the
//! server's status page: per package being fetched, the bytes held (from
//! the download journal, as `outpost-agent status` counts them), the total,
//! and the rate since the previous poll of this process (0 on its first).

use outpost_hal::linux::DirBlocks;

use super::super::env::Env;
use super::super::status::layout_of;
use super::Agent;
use crate::engine::download::durable_bytes;
use crate::engine::journal::Phase;
use crate::engine::limits::MAX_POLL_PACKAGES;
use crate::engine::proto::Progress;

impl<E: Env> Agent<E> {
    /// The progress of every package being fetched (at most
    /// [`MAX_POLL_PACKAGES`]); remembers it for the next poll's rate.
    pub(super) fn progress(&mut self) -> Vec<Progress> {
        let now = self.env.unix_time();
        let mut out = Vec::new();
        for id in self.store.package_ids().unwrap_or_default() {
            if out.len() == MAX_POLL_PACKAGES {
                break;
            }
            if !matches!(self.store.package(id), Ok(Some(r)) if r.phase == Phase::Fetching) {
                continue;
            }
            let Ok(Some(layout)) = layout_of(&self.store, id) else { continue };
            let Some(total) = layout.total() else { continue };
            let blocks = DirBlocks::open(self.store.package_dir(id));
            let held = blocks.ok().and_then(|mut b| durable_bytes(&mut b, &layout).ok()).unwrap_or(0).min(total);
            let rate = match self.last_progress.iter().find(|p| p.0 == id) {
                Some(&(_, h, t)) if now > t && held >= h => (held - h) / (now - t),
                _ => 0,
            };
            out.push(Progress { id, held, total, rate });
        }
        self.last_progress = out.iter().map(|p| (p.id, p.held, now)).collect();
        out
    }
}
