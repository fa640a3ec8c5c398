//! A package the OCS server lists in its PROLOG reply: the lifecycle
//! ([`crate::engine::deploy`]) decides; a new one has its info file fetched
//! over verified HTTPS, checked, and journaled for the OCS schedule.

use super::super::agent::AgentError;
use super::super::env::{Env, get_small};
use super::super::http::Url;
use super::OcsAgent;
use crate::engine::deploy::{Action, Deployment, MetadataError, Offered, Retry};
use crate::engine::info::Info;
use crate::engine::limits::MAX_INFO_LEN;
use crate::engine::status::StatusCode;

impl<E: Env> OcsAgent<E> {
    /// A package from the PROLOG: the lifecycle decides; a new one has its
    /// info file fetched and is journaled for the schedule.
    pub(super) fn take_pack(&mut self, pack: &crate::engine::ocs::Pack) -> Result<(), AgentError> {
        let id = pack.id;
        let prev = self.store.package(id)?;
        let queued = self.store.pending_reports()?.iter().any(|r| r.package == id);
        let in_history = self.store.history()?.ids.contains(&id);
        let offer = Offered { id, priority: 5, force: pack.force, pack_loc: &pack.pack_loc };
        let now = self.env.unix_time();
        let Some(mut d) = Deployment::offered(prev, &offer, in_history, queued, now, Retry::Schedule) else {
            return Ok(()); // already ours, or its report is on its way
        };
        if let Some(Action::FetchMetadata { .. }) = d.poll_action() {
            self.store.drop_payload(id)?;
            match self.fetch_info(pack)? {
                Ok((info, file)) => {
                    self.store.put_package_file(id, "info", &file)?;
                    d.set_priority(info.priority);
                    d.handle_metadata(Ok(()));
                }
                Err((e, priority)) => {
                    d.set_priority(priority);
                    d.handle_metadata(Err(e));
                }
            }
        }
        if let Some(rec) = d.poll_record() {
            self.store.put_package(&rec)?;
        }
        match d.poll_action() {
            Some(Action::Finish(code)) => {
                let rec = d.record().clone();
                self.finish(id, rec.priority, &rec.pack_loc, &code)
            }
            // Unreachable or broken: try again at the next PROLOG.
            Some(Action::Later(why)) => {
                log::warn!(target: "outpost", "package {id}: info not fetched yet: {why}");
                Ok(())
            }
            _ => Ok(()), // journaled: the schedule takes it
        }
    }

    /// Fetch and check a package's info file over verified HTTPS: the info
    /// and its bytes, or why not (with the priority, when the file said it).
    #[allow(clippy::type_complexity)]
    fn fetch_info(
        &mut self,
        pack: &crate::engine::ocs::Pack,
    ) -> Result<Result<(Info, Vec<u8>), (MetadataError, u8)>, AgentError> {
        let id = pack.id;
        let fail = |code, priority| Ok(Err((MetadataError::Final(code), priority)));
        let url = match Url::from_location(true, &pack.info_loc, &format!("{id}/info")) {
            Ok(u) => u,
            Err(e) => {
                log::error!(target: "outpost", "package {id}: bad INFO_LOC: {e}");
                return fail(StatusCode::ErrDownloadInfo, 5);
            }
        };
        let body = match get_small(&mut self.env, &url, MAX_INFO_LEN) {
            Ok((200, body)) => body,
            Ok((status, _)) => {
                log::error!(target: "outpost", "package {id}: {url} answered {status}");
                return fail(StatusCode::ErrDownloadInfo, 5);
            }
            Err(e) => return Ok(Err((MetadataError::Later(e.to_string()), 5))),
        };
        let info = match Info::parse(&body) {
            Ok(i) => i,
            Err(e) => {
                log::error!(target: "outpost", "package {id}: {e}");
                return fail(StatusCode::ErrBadParam, 5);
            }
        };
        if info.id != id {
            log::error!(target: "outpost", "package {id}: its info file says ID {}", info.id);
            return fail(StatusCode::ErrBadId, info.priority);
        }
        if let Err(why) = crate::engine::allow::check(&info, self.cfg.agent.allowed()) {
            log::error!(target: "outpost", "package {id}: not allowed on this endpoint: {why}; nothing fetched or run");
            return fail(StatusCode::ErrNotAllowed, info.priority);
        }
        if self.cfg.server.require_signed {
            log::error!(target: "outpost", "package {id}: no signed manifest (OCS server) and require_signed is set; refusing it");
            return fail(StatusCode::ErrBadDigest, info.priority);
        }
        if info.frags > 0 {
            log::info!(
                target: "outpost",
                "package {id}: from an OCS server, without a signed manifest: its archive will be checked against the info file's {:?} digest, fetched over verified TLS",
                info.digest_algo
            );
        }
        Ok(Ok((info, body)))
    }
}
