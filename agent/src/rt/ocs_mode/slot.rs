//! One OCS slot: the lifecycle's actions ([`crate::engine::deploy`]) for a
//! package until one fragment was fetched (one per slot, as the OCS agent
//! does), the package finished, or it stops for this run.

use std::time::Duration;

use super::super::agent::{AgentError, verify_and_unpack};
use super::super::env::Env;
use super::{OcsAgent, SlotResult};
use crate::engine::deploy::{Action, Deployment, Fetched, MetadataError, Retry};
use crate::engine::download::ARCHIVE;
use crate::engine::info::Info;
use crate::engine::journal::OutboxRecord;
use crate::engine::plan::{self, Outcome};
use crate::engine::status::StatusCode;

impl<E: Env> OcsAgent<E> {
    /// One slot: the lifecycle's actions until a fragment was fetched (one
    /// per slot, as the OCS agent does), the package finished, or it stops.
    pub(super) fn slot(&mut self, id: u64) -> Result<SlotResult, AgentError> {
        let Some(rec) = self.store.package(id)? else { return Ok(SlotResult::Finished) };
        let Some(mut d) = Deployment::recovered(rec, Retry::Schedule) else { return Ok(SlotResult::Finished) };
        let mut info: Option<(Info, Vec<u8>)> = None;
        let dir = self.store.package_dir(id);
        loop {
            if let Some(rec) = d.poll_record() {
                self.store.put_package(&rec)?;
            }
            let Some(action) = d.poll_action() else { return Ok(SlotResult::Deferred(None)) };
            match action {
                Action::FetchMetadata { .. } => {
                    let file = self.store.package_file(id, "info")?.unwrap_or_default();
                    match Info::parse(&file) {
                        Ok(i) => {
                            info = Some((i, file));
                            d.handle_metadata(Ok(()));
                        }
                        Err(_) => d.handle_metadata(Err(MetadataError::Final(StatusCode::ErrBadParam))),
                    }
                }
                // An OCS package's size is known only as it arrives: the
                // room is checked per answer (fragment.rs).
                Action::CheckSpace => d.handle_space(None),
                Action::Fetch => {
                    let Some((i, file)) = info.as_ref() else { return Ok(SlotResult::Deferred(None)) };
                    let pack_loc = d.record().pack_loc.clone();
                    let f = self.fetch_next(i, file, &pack_loc)?;
                    let progressed = matches!(f, Fetched::Progress(_));
                    if let Fetched::Progress(Some(n)) = f {
                        log::info!(target: "outpost", "package {id}: fragment {n}/{} fetched", i.frags);
                    }
                    d.handle_fetch(f, self.env.unix_time(), 0);
                    if progressed {
                        if let Some(rec) = d.poll_record() {
                            self.store.put_package(&rec)?;
                        }
                        return Ok(SlotResult::Progressed);
                    }
                }
                Action::Wait { delay, .. } => self.env.sleep(delay),
                Action::Unpack => {
                    let Some((i, _)) = info.as_ref() else { return Ok(SlotResult::Deferred(None)) };
                    let (archive, unpack) = (dir.join(ARCHIVE), dir.join("unpack"));
                    let r = verify_and_unpack(&self.store, i, &archive, None, &unpack, plan::unpack_bounds(None))?;
                    d.handle_unpacked(r, self.env.unix_time());
                }
                Action::Ask => {
                    let Some((i, _)) = info.as_ref() else { return Ok(SlotResult::Deferred(None)) };
                    let env = &mut self.env;
                    d.handle_answer(super::super::action::consent(i, &mut |n| env.ask(n)));
                }
                Action::Run => {
                    let Some((i, _)) = info.as_ref() else { return Ok(SlotResult::Deferred(None)) };
                    log::info!(target: "outpost", "package {id}: running {} {:?}", i.action.as_ocs(), i.target);
                    let timeout = Duration::from_secs(self.cfg.agent.execution_timeout);
                    let outcome: Outcome =
                        super::super::action::run(i, &dir.join("unpack"), &dir.join("action.log"), timeout);
                    let code = plan::status_for(outcome);
                    if code.is_success() {
                        let env = &mut self.env;
                        super::super::action::tell_done(i, &mut |n| env.ask(n));
                    }
                    d.handle_outcome(code);
                }
                Action::ReportOnce(code) => {
                    log::error!(target: "outpost", "package {id}: reporting {code}; kept what is cached, will go on when space returns");
                    let report_id = self.next_report_id();
                    self.store.queue_report(&OutboxRecord { report_id, package: id, status: code.to_string() })?;
                }
                Action::Failed(why) => return Ok(SlotResult::Failed(why)),
                Action::Later(why) => return Ok(SlotResult::Deferred(Some(why))),
                Action::Finish(code) => {
                    let rec = d.record().clone();
                    self.finish(id, rec.priority, &rec.pack_loc, &code)?;
                    return Ok(SlotResult::Finished);
                }
            }
        }
    }
}
