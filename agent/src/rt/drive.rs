//! The one driver loop: it performs a deployment's actions
//! ([`crate::engine::deploy`]) for either protocol. What differs between the
//! protocols (where the metadata comes from, how space is checked, what a
//! fragment's layout is, how a final status is delivered) is a [`Front`];
//! waiting, randomness and the clock are the front's [`Env`]; the record
//! each action leaves is saved before the next action.
//!
//! ```text
//!   Deployment ──poll_record──► Store            (saved before the next action)
//!              ──poll_action──► drive ──► Front: metadata, space, fetch, unpack, run, finish
//!              ◄──handle_*───────┘   └──► Env: sleep (Wait), ask (Ask), time, randomness
//! ```

use std::time::Duration;

use outpost_hal::notify::Answer;

use super::agent::AgentError;
use super::env::Env;
use super::store::Store;
use crate::engine::deploy::{Action, Deployment, Fetched, MetadataError};
use crate::engine::journal::OutboxRecord;
use crate::engine::status::StatusCode;

/// How a turn of the driver ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stop {
    /// With a final status (queued for the server).
    Finished,
    /// A fragment arrived, and the front takes one per turn (OCS slots).
    Progressed,
    /// The try failed; the front's schedule decides what follows (OCS).
    Failed(String),
    /// Not in this run: why (`None`: the user delayed the install).
    Later(Option<String>),
}

/// One package's protocol-specific half of the actions.
pub(crate) trait Front {
    /// The world the front works through.
    type E: Env;
    /// The environment.
    fn env(&mut self) -> &mut Self::E;
    /// The state directory.
    fn store(&self) -> &Store;
    /// The package.
    fn id(&self) -> u64;
    /// Fetch (`fresh`) or reload the package's metadata and keep it.
    fn metadata(&mut self, fresh: bool) -> Result<Result<(), MetadataError>, AgentError>;
    /// What the disk lacks for the rest of the download and the unpack.
    fn lacks_space(&mut self) -> Result<Option<String>, AgentError>;
    /// One transfer of the next fragment.
    fn fetch(&mut self) -> Result<Fetched, AgentError>;
    /// Whether a turn ends after each fragment that arrived (OCS slots).
    fn one_fragment_per_turn(&self) -> bool {
        false
    }
    /// Verify the archive and unpack it (`Some`: the failure's status).
    fn unpack(&mut self) -> Result<Option<StatusCode>, AgentError>;
    /// Ask the user, if the package says so.
    fn ask(&mut self) -> Result<Answer, AgentError>;
    /// Run the action; its status.
    fn run(&mut self, timeout: Duration) -> Result<StatusCode, AgentError>;
    /// Deliver the final status (durably, then to the server as the protocol does).
    fn finish(&mut self, code: &StatusCode) -> Result<(), AgentError>;
}

/// Perform `d`'s actions through `front` until it finishes or stops for
/// this turn. `timeout`: the action's execution timeout.
pub(crate) fn drive<E: Env>(
    front: &mut dyn Front<E = E>,
    d: &mut Deployment,
    timeout: Duration,
) -> Result<Stop, AgentError> {
    let id = front.id();
    loop {
        if let Some(rec) = d.poll_record() {
            front.store().put_package(&rec)?;
        }
        let Some(action) = d.poll_action() else { return Ok(Stop::Later(None)) };
        match action {
            Action::FetchMetadata { fresh } => {
                let r = front.metadata(fresh)?;
                d.handle_metadata(r);
            }
            Action::CheckSpace => {
                let lacks = front.lacks_space()?;
                d.handle_space(lacks);
            }
            Action::Fetch => {
                let f = front.fetch()?;
                let progressed = matches!(f, Fetched::Progress(_));
                let (now, random) = (front.env().unix_time(), front.env().random_u64());
                d.handle_fetch(f, now, random);
                if progressed && front.one_fragment_per_turn() {
                    if let Some(rec) = d.poll_record() {
                        front.store().put_package(&rec)?;
                    }
                    return Ok(Stop::Progressed);
                }
            }
            Action::Wait { delay, why } => {
                log::warn!(target: "outpost", "package {id}: {why}; retrying in {} ms", delay.as_millis());
                front.env().sleep(delay);
            }
            Action::Unpack => {
                let r = front.unpack()?;
                let now = front.env().unix_time();
                d.handle_unpacked(r, now);
            }
            Action::Ask => {
                let a = front.ask()?;
                d.handle_answer(a);
            }
            Action::Run => {
                let code = front.run(timeout)?;
                d.handle_outcome(code);
            }
            Action::ReportOnce(code) => {
                log::error!(target: "outpost", "package {id}: reporting {code}; kept what is cached, will go on when space returns");
                let report_id = front.env().random_u64();
                front.store().queue_report(&OutboxRecord { report_id, package: id, status: code.to_string() })?;
            }
            Action::Failed(why) => return Ok(Stop::Failed(why)),
            Action::Later(why) => return Ok(Stop::Later(Some(why))),
            Action::Finish(code) => {
                front.finish(&code)?;
                return Ok(Stop::Finished);
            }
        }
    }
}
