//! Installing from the cache, at the right moment (`[agent] install`,
//! [`crate::engine::moment`]), and going on without the server.
//!
//! * A package whose fragments are all cached and verified against its
//!   signed manifest is held there until its moment: `when_idle`, until
//!   nobody is logged in; `at_startup`, until the agent's next start, the
//!   user being asked once for a restart through the notify hook
//!   (`OUTPOST_NOTIFY_KIND=reboot`) and a reboot left to the reboot policy.
//! * At start, before its first poll and with no network, the agent
//!   installs what is all cached and due ([`Source::Cache`]): a package not
//!   all cached is never installed from the cache; it waits for its download.
//! * The configuration cache: the last poll's assignments are kept in
//!   `STATE/assignments`; when the server cannot be asked, the agent goes on
//!   with them (downloads from locations it can reach, installs from the
//!   cache what is due) and its reports wait in the outbox.

use outpost_hal::linux::{LinuxPower, RebootMethod, read_nofollow, write_atomic};
use outpost_hal::notify::{Notice, NoticeKind};
use outpost_hal::power::Power;

use super::super::env::Env;
use super::super::store::StoreError;
use super::bundle::BUNDLE_LOC;
use super::drive::Source;
use super::{Agent, AgentError, offer_of};
use crate::engine::deploy::{Deployment, Retry};
use crate::engine::journal::Phase;
use crate::engine::limits::MAX_CONTROL_LEN;
use crate::engine::moment::{Gate, InstallMoment, decide};
use crate::engine::proto::{Offer, PollReply};

/// The configuration cache's file in the state directory.
const ASSIGNMENTS: &str = "assignments";
/// A package's mark, once the restart it waits for was asked.
const ASKED: &str = "restart-asked";

impl<E: Env> Agent<E> {
    /// Why the all-cached package `id` is not installed now (`None`: it is).
    pub(super) fn hold(&mut self, id: u64) -> Result<Option<String>, StoreError> {
        let moment = self.cfg.agent.install_moment();
        let user = match moment {
            InstallMoment::WhenIdle => LinuxPower::new(RebootMethod::Syscall).user_logged_in().unwrap_or(None),
            _ => None,
        };
        let gate = decide(moment, self.starting, user);
        self.held += usize::from(gate != Gate::Now);
        Ok(match gate {
            Gate::Now => None,
            Gate::UntilIdle => Some("cached and verified; installs when nobody is logged in".into()),
            Gate::UntilStart => {
                if self.store.package_file(id, ASKED)?.is_none() {
                    let text = "An update installs at the next restart.";
                    let notice = Notice {
                        kind: NoticeKind::Reboot,
                        package: id,
                        text,
                        countdown: 0,
                        can_abort: false,
                        can_delay: false,
                    };
                    self.env.ask(&notice);
                    self.store.put_package_file(id, ASKED, b"")?;
                    self.store.set_reboot_pending(id)?;
                }
                Some("cached and verified; installs at the agent's next start".into())
            }
        })
    }

    /// At start, before anything else: install from the cache every
    /// package all here and due, with no network.
    pub(super) fn install_from_cache(&mut self) -> Result<usize, AgentError> {
        self.starting = true;
        let mut finished = 0;
        for id in self.store.package_ids()? {
            let Some(rec) = self.store.package(id)? else { continue };
            if rec.phase != Phase::Fetching || rec.pack_loc == BUNDLE_LOC {
                continue;
            }
            let offer = offer_of(&rec);
            let Some(d) = Deployment::recovered(rec, Retry::Backoff(1)) else { continue };
            let done = self.drive_from(d, &offer, Source::Cache);
            if matches!(done, Ok(super::drive::Done::Finished)) {
                log::info!(target: "outpost", "package {id}: installed from the cache at start");
                finished += 1;
            }
            done?;
        }
        self.starting = false;
        Ok(finished)
    }

    /// Keep the last poll's reply (its assignments) for when the server is away.
    pub(super) fn keep_assignments(&self) -> Result<(), StoreError> {
        let p = self.store.root().join(ASSIGNMENTS);
        if !self.reply.is_empty() && read_nofollow(&p).ok().as_deref() != Some(&self.reply[..]) {
            write_atomic(&p, &self.reply).map_err(|e| StoreError::Io(p, e))?;
        }
        Ok(())
    }

    /// The last poll's assignments, less those finished here since.
    pub(super) fn kept_assignments(&self) -> Vec<Offer> {
        let bytes = read_nofollow(&self.store.root().join(ASSIGNMENTS)).unwrap_or_default();
        if bytes.len() > MAX_CONTROL_LEN {
            return Vec::new();
        }
        let mut offers = PollReply::decode(&bytes).map(|r| r.offers).unwrap_or_default();
        offers.retain(|o| self.store.package(o.id).ok().flatten().is_none_or(|r| r.phase != Phase::Finished));
        offers
    }
}
