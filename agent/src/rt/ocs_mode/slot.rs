//! One OCS slot: the OCS protocol's half of a deployment's actions, as a
//! [`Front`] of the one driver loop ([`super::super::drive`]), for a package
//! until one fragment was fetched (one per slot, as the OCS agent does), the
//! package finished, or it stops for this run. The metadata is the info
//! file journaled when the PROLOG listed the package; an OCS package's size
//! is known only as it arrives, so the room is checked per answer
//! (`fragment.rs`); a final status is reported at once.

use std::time::Duration;

use outpost_hal::notify::Answer;

use super::super::action;
use super::super::agent::{AgentError, verify_and_unpack};
use super::super::drive::{self, Front, Stop};
use super::super::env::Env;
use super::super::store::Store;
use super::OcsAgent;
use crate::engine::deploy::{Deployment, Fetched, MetadataError, Retry};
use crate::engine::download::ARCHIVE;
use crate::engine::info::Info;
use crate::engine::plan::{self, Outcome};
use crate::engine::status::StatusCode;

impl<E: Env> OcsAgent<E> {
    /// One slot: the lifecycle's actions until a fragment was fetched, the
    /// package finished, or it stops.
    pub(super) fn slot(&mut self, id: u64) -> Result<Stop, AgentError> {
        let Some(rec) = self.store.package(id)? else { return Ok(Stop::Finished) };
        let (priority, pack_loc) = (rec.priority, rec.pack_loc.clone());
        let Some(mut d) = Deployment::recovered(rec, Retry::Schedule) else { return Ok(Stop::Finished) };
        let timeout = Duration::from_secs(self.cfg.agent.execution_timeout);
        let mut slot = Slot { agent: self, id, priority, pack_loc, info: None };
        drive::drive(&mut slot, &mut d, timeout)
    }
}

/// One package in its slot, and its info file once read.
struct Slot<'a, E: Env> {
    agent: &'a mut OcsAgent<E>,
    id: u64,
    priority: u8,
    pack_loc: String,
    info: Option<(Info, Vec<u8>)>,
}

impl<E: Env> Slot<'_, E> {
    fn info(&self) -> Result<&Info, AgentError> {
        self.info.as_ref().map(|(i, _)| i).ok_or(AgentError::NoMetadata(self.id))
    }
}

impl<E: Env> Front for Slot<'_, E> {
    type E = E;

    fn env(&mut self) -> &mut E {
        &mut self.agent.env
    }

    fn store(&self) -> &Store {
        &self.agent.store
    }

    fn id(&self) -> u64 {
        self.id
    }

    fn metadata(&mut self, _fresh: bool) -> Result<Result<(), MetadataError>, AgentError> {
        let file = self.agent.store.package_file(self.id, "info")?.unwrap_or_default();
        Ok(match Info::parse(&file) {
            Ok(i) => {
                self.info = Some((i, file));
                Ok(())
            }
            Err(_) => Err(MetadataError::Final(StatusCode::ErrBadParam)),
        })
    }

    fn lacks_space(&mut self) -> Result<Option<String>, AgentError> {
        Ok(None)
    }

    fn fetch(&mut self) -> Result<Fetched, AgentError> {
        let Self { agent, id, pack_loc, info, .. } = self;
        let (info, file) = info.as_ref().ok_or(AgentError::NoMetadata(*id))?;
        let f = agent.fetch_next(info, file, pack_loc)?;
        if let Fetched::Progress(Some(n)) = f {
            log::info!(target: "outpost", "package {id}: fragment {n}/{} fetched", info.frags);
        }
        Ok(f)
    }

    fn one_fragment_per_turn(&self) -> bool {
        true
    }

    fn unpack(&mut self) -> Result<Option<StatusCode>, AgentError> {
        let info = self.info()?;
        let dir = self.agent.store.package_dir(self.id);
        let (archive, unpack) = (dir.join(ARCHIVE), dir.join("unpack"));
        Ok(verify_and_unpack(&self.agent.store, info, &archive, None, &unpack, plan::unpack_bounds(None))?)
    }

    fn ask(&mut self) -> Result<Answer, AgentError> {
        let (info, _) = self.info.as_ref().ok_or(AgentError::NoMetadata(self.id))?;
        let env = &mut self.agent.env;
        Ok(action::consent(info, &mut |n| env.ask(n)))
    }

    fn run(&mut self, timeout: Duration) -> Result<StatusCode, AgentError> {
        let (info, _) = self.info.as_ref().ok_or(AgentError::NoMetadata(self.id))?;
        log::info!(target: "outpost", "package {}: running {} {:?}", self.id, info.action.as_ocs(), info.target);
        let dir = self.agent.store.package_dir(self.id);
        let outcome: Outcome = action::run(info, &dir.join("unpack"), &dir.join("action.log"), timeout);
        let code = plan::status_for(outcome);
        if code.is_success() {
            let env = &mut self.agent.env;
            action::tell_done(info, &mut |n| env.ask(n));
        }
        Ok(code)
    }

    fn finish(&mut self, code: &StatusCode) -> Result<(), AgentError> {
        let pack_loc = self.pack_loc.clone();
        self.agent.finish(self.id, self.priority, &pack_loc, code)
    }
}
