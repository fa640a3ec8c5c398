//! One package's lifecycle, the same for both protocols (sans-IO): the
//! runtime feeds in what happened (`handle_*`) and performs what it is told
//! (`poll_action`), saving the record whenever `poll_record` hands one out.
//! Every transition of a [`PackageRecord`] is made here: the crash rule,
//! "already installed", out-of-space reported once, retries and backoff of
//! fragment fetches, the archive digest's refetch deadline, the phase
//! written before the action runs.
//!
//! ```text
//!  offered / recovered ─► FetchMetadata ─► handle_metadata ─► CheckSpace ─► handle_space
//!     ─► (Fetch ─► handle_fetch ─► Wait?)* ─► CheckSpace ─► Unpack ─► handle_unpacked
//!     ─► Ask ─► handle_answer ─► [record: Installing] Run ─► handle_outcome ─► Finish(code)
//!  at any step: Later(why) (the package stays for a later run), ReportOnce(ERR_OUT_OF_SPACE)
//! ```
//!
//! Call order: after creating a deployment, and after each `handle_*`, take
//! the record (`poll_record`, persist it) before the next `poll_action`. One
//! action is pending at a time; `handle_*` for another is ignored.
//!
//! Retries follow a [`Retry`]: in the Outpost protocol the deployment backs
//! off and tries again within the run (`fragment_tries`); in OCS mode each
//! failed try is handed back ([`Action::Failed`]) to the OCS scheduler, which
//! counts them across slots.

use alloc::collections::VecDeque;
use alloc::string::{String, ToString};
use core::time::Duration;

use super::journal::{PackageRecord, Phase};
use super::plan::{self, Decision};
use super::refetch::{Refetch, Verdict};
use super::status::StatusCode;
use outpost_hal::notify::Answer;

/// How failed tries are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Back off and try again within the run, up to this many failures
    /// (the Outpost protocol: `agent.fragment_tries`).
    Backoff(u32),
    /// Hand each failure back to the caller's schedule (OCS mode).
    Schedule,
}

/// What the runtime must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Get the package's metadata: from the server when `fresh` (anything
    /// cached is stale), else what the state directory kept.
    FetchMetadata {
        /// Fetch anew rather than reload.
        fresh: bool,
    },
    /// Ask the disk whether what is left fits; answer with `handle_space`.
    CheckSpace,
    /// One transfer of the next fragment request; answer with `handle_fetch`.
    Fetch,
    /// Wait this long (a backoff after `why`); [`Action::Fetch`] follows.
    Wait {
        /// How long.
        delay: Duration,
        /// What failed.
        why: String,
    },
    /// Verify the whole archive and unpack it; answer with `handle_unpacked`.
    Unpack,
    /// Ask the user for consent; answer with `handle_answer`.
    Ask,
    /// Run the package's action; answer with `handle_outcome`.
    Run,
    /// Queue this status report now, without finishing the package.
    ReportOnce(StatusCode),
    /// This try failed; the caller's schedule decides (see [`Retry::Schedule`]).
    Failed(String),
    /// Stop for this run; the package stays for a later one.
    Later(String),
    /// The final status: record it (history, outbox, record `Finished`) and
    /// drop the payload. The deployment is over.
    Finish(StatusCode),
}

/// The metadata could not be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataError {
    /// It is wrong (bad digest, bad id, refused): this final status.
    Final(StatusCode),
    /// The server could not be reached: try at a later run.
    Later(String),
}

/// How one transfer of a fragment went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// Every fragment is verified and durable.
    Complete,
    /// Progress: a fragment was verified (`Some(verified so far)`), or the
    /// answer broke off after real progress (`None`): go on at once.
    Progress(Option<u32>),
    /// A fragment failed its digest and starts over.
    Corrupt,
    /// The try failed with little or nothing to show.
    Failed(String),
    /// The disk is full.
    OutOfSpace(String),
    /// The fragment location cannot be used.
    BadLocation(String),
    /// The source holds no more of it and cannot be asked now (an install
    /// from the local cache with no network): stop for this run.
    Unavailable(String),
    /// The source can never give it right (a bundle's fragment that fails
    /// its digest: the file will not change): this final status.
    Final(StatusCode),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Metadata,
    SpaceBeforeFetch,
    Fetch,
    SpaceBeforeUnpack,
    Unpack,
    Ask,
    Run,
    Over,
}

/// One package's deployment.
#[derive(Debug)]
pub struct Deployment {
    rec: PackageRecord,
    dirty: bool,
    stage: Stage,
    /// What to do next, in order (two at most: a report then `Later`, a
    /// wait then a fetch).
    next: VecDeque<Action>,
    retry: Retry,
    refetch: Refetch,
}

/// What the server says of a package it offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offered<'a> {
    /// Package id.
    pub id: u64,
    /// Priority.
    pub priority: u8,
    /// Deploy even when already installed.
    pub force: bool,
    /// Where its fragments are.
    pub pack_loc: &'a str,
}

impl Deployment {
    fn new(rec: PackageRecord, retry: Retry, first: Action, stage: Stage) -> Self {
        let tries = match retry {
            Retry::Backoff(t) => t,
            Retry::Schedule => 1,
        };
        let refetch = Refetch::new(tries, rec.digest_trouble);
        Self { rec, dirty: false, stage, next: VecDeque::from([first]), retry, refetch }
    }

    /// A package the state directory holds at start, before any server is
    /// asked. Found `Installing`: the agent stopped during its action, which
    /// is not run again silently (`ERR_DONE_FAILED`; the server may force a
    /// new deployment). Found `Fetching`: it resumes from the journal, even if
    /// the server no longer lists it. `None` when there is nothing to do.
    pub fn recovered(rec: PackageRecord, retry: Retry) -> Option<Self> {
        match rec.phase {
            Phase::Installing => Some(Self::new(rec, retry, Action::Finish(StatusCode::ErrDoneFailed), Stage::Over)),
            Phase::Fetching => Some(Self::new(rec, retry, Action::FetchMetadata { fresh: false }, Stage::Metadata)),
            Phase::Finished => None,
        }
    }

    /// A package the server offers, with what the state directory says of
    /// it: its record, whether it is in the history, whether a report of it
    /// is still queued. `None` when there is nothing to do (its report is on
    /// its way; or, `Fetching` or `Installing`, it is already under way and
    /// [`Self::recovered`] takes it).
    pub fn offered(
        prev: Option<PackageRecord>,
        offer: &Offered<'_>,
        in_history: bool,
        report_queued: bool,
        now: u64,
        retry: Retry,
    ) -> Option<Self> {
        match prev.as_ref().map(|r| r.phase) {
            Some(Phase::Finished) if report_queued => return None,
            Some(Phase::Fetching | Phase::Installing) => return None,
            _ => {}
        }
        let rec = PackageRecord {
            id: offer.id,
            phase: Phase::Fetching,
            priority: offer.priority,
            force: offer.force,
            pack_loc: offer.pack_loc.to_string(),
            first_seen: prev.as_ref().map_or(now, |p| if p.first_seen == 0 { now } else { p.first_seen }),
            fragments_verified: 0,
            status: None,
            space_reported: false,
            digest_trouble: None,
        };
        if plan::decide(offer.force, in_history) == Decision::AlreadySetup {
            return Some(Self::new(rec, retry, Action::Finish(StatusCode::SuccessAlreadySetup), Stage::Over));
        }
        Some(Self::new(rec, retry, Action::FetchMetadata { fresh: true }, Stage::Metadata))
    }

    /// The package's priority, when its metadata names it (an OCS info file).
    pub fn set_priority(&mut self, priority: u8) {
        if self.rec.priority != priority {
            self.rec.priority = priority;
            self.dirty |= self.stage != Stage::Metadata;
        }
    }

    /// The package's record as it stands.
    pub fn record(&self) -> &PackageRecord {
        &self.rec
    }

    /// The record to persist, when it changed since the last call.
    #[must_use]
    pub fn poll_record(&mut self) -> Option<PackageRecord> {
        core::mem::take(&mut self.dirty).then(|| self.rec.clone())
    }

    /// The next action, once (`None`: wait for the `handle_*` of the last).
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.next.pop_front()
    }

    /// Whether the deployment is over (finished, or stopped for this run).
    pub fn is_over(&self) -> bool {
        self.stage == Stage::Over && self.next.is_empty()
    }

    fn then(&mut self, stage: Stage, action: Action) {
        self.stage = stage;
        self.next.clear();
        self.next.push_back(action);
    }

    fn finish(&mut self, code: StatusCode) {
        self.then(Stage::Over, Action::Finish(code));
    }

    /// Whether the archive is checked by signed fragment digests: in the
    /// Outpost protocol (the one that retries with backoff), where a
    /// mismatch of the whole archive is then final, not refetched.
    fn signed(&self) -> bool {
        matches!(self.retry, Retry::Backoff(_))
    }

    fn save(&mut self) {
        self.dirty = true;
    }

    /// The metadata: `Ok(())` when it is there and verified.
    pub fn handle_metadata(&mut self, r: Result<(), MetadataError>) {
        if self.stage != Stage::Metadata {
            return;
        }
        match r {
            Ok(()) => {
                // Written before any byte is fetched: the record says where
                // the journal belongs and lets a restart resume.
                self.save();
                self.then(Stage::SpaceBeforeFetch, Action::CheckSpace);
            }
            Err(MetadataError::Final(code)) => self.finish(code),
            Err(MetadataError::Later(why)) => self.then(Stage::Over, Action::Later(why)),
        }
    }

    /// Whether there is room: `None` when it fits (or the disk cannot be
    /// asked), else why not. The disk being full is reported once
    /// (`ERR_OUT_OF_SPACE`) per download; what is cached stays, and the
    /// download goes on by itself at a later run when there is room.
    pub fn handle_space(&mut self, lacks: Option<String>) {
        let next = match self.stage {
            Stage::SpaceBeforeFetch => (Stage::Fetch, Action::Fetch),
            Stage::SpaceBeforeUnpack => (Stage::Unpack, Action::Unpack),
            _ => return,
        };
        match lacks {
            None => self.then(next.0, next.1),
            Some(why) => self.out_of_space(why),
        }
    }

    fn out_of_space(&mut self, why: String) {
        let why = alloc::format!("out of space ({why}); kept what is cached, waiting for room");
        if self.rec.space_reported {
            self.then(Stage::Over, Action::Later(why));
        } else {
            self.rec.space_reported = true;
            self.save();
            self.then(Stage::Over, Action::ReportOnce(StatusCode::ErrOutOfSpace));
            self.next.push_back(Action::Later(why));
        }
    }

    /// One transfer's outcome, at wall time `now`; `random` jitters backoff.
    pub fn handle_fetch(&mut self, f: Fetched, now: u64, random: u64) {
        if self.stage != Stage::Fetch {
            return;
        }
        match f {
            Fetched::Complete => {
                // Signed fragments were each verified; unsigned ones only
                // are once the archive matches its digest (handle_unpacked).
                if self.signed() {
                    self.refetch.verified();
                    if self.rec.digest_trouble.take().is_some() {
                        self.save();
                    }
                }
                self.then(Stage::SpaceBeforeUnpack, Action::CheckSpace);
            }
            Fetched::Progress(verified) => {
                if let Some(n) = verified {
                    // The journal is what resume trusts: the record's count
                    // is saved with its next change, not once per fragment
                    // (flash), unless a series of digest mismatches ended.
                    self.refetch.verified();
                    self.rec.fragments_verified = n;
                    if self.rec.digest_trouble.take().is_some() {
                        self.save();
                    }
                }
                self.then(Stage::Fetch, Action::Fetch);
            }
            Fetched::Corrupt => {
                let v = self.refetch.corrupt(now, random);
                self.rec.digest_trouble = self.refetch.trouble();
                self.save();
                self.after_failure(v, "fragment digest mismatch".into());
            }
            Fetched::Failed(why) => {
                let v = self.refetch.failed(random);
                self.after_failure(v, why);
            }
            Fetched::OutOfSpace(why) => self.out_of_space(why),
            Fetched::BadLocation(_) => self.finish(StatusCode::ErrDownloadPack),
            Fetched::Unavailable(why) => self.then(Stage::Over, Action::Later(why)),
            Fetched::Final(code) => self.finish(code),
        }
    }

    fn after_failure(&mut self, v: Verdict, why: String) {
        match (v, self.retry) {
            (Verdict::GiveUp, _) => self.finish(StatusCode::ErrBadDigest),
            (_, Retry::Schedule) => self.then(Stage::Over, Action::Failed(why)),
            (Verdict::RetryIn(delay), Retry::Backoff(_)) => {
                self.then(Stage::Fetch, Action::Wait { delay, why });
                self.next.push_back(Action::Fetch);
            }
            (Verdict::Later, Retry::Backoff(_)) => self.then(Stage::Over, Action::Later(why)),
        }
    }

    /// The archive was verified and unpacked (`None`), or not (the status).
    /// A whole archive that does not match its digest although nobody signed
    /// its fragments (OCS) is fetched again at a later run, until the
    /// mismatches outlast the refetch deadline; with signed fragments it is
    /// final.
    pub fn handle_unpacked(&mut self, r: Option<StatusCode>, now: u64) {
        if self.stage != Stage::Unpack {
            return;
        }
        match r {
            None => {
                if self.rec.digest_trouble.take().is_some() {
                    self.save();
                }
                self.then(Stage::Ask, Action::Ask);
            }
            Some(StatusCode::ErrBadDigest) if !self.signed() => {
                if self.refetch.corrupt(now, 0) == Verdict::GiveUp {
                    return self.finish(StatusCode::ErrBadDigest);
                }
                self.rec.digest_trouble = self.refetch.trouble();
                self.rec.fragments_verified = 0;
                self.save();
                self.then(Stage::Over, Action::Later("archive digest mismatch: fetching it again".into()));
            }
            Some(code) => self.finish(code),
        }
    }

    /// The user's answer: go on (the record says `Installing` before the
    /// action runs), abort (`ERR_ABORTED`), or ask again at a later run.
    pub fn handle_answer(&mut self, a: Answer) {
        if self.stage != Stage::Ask {
            return;
        }
        match a {
            Answer::Proceed => {
                self.rec.phase = Phase::Installing;
                self.save();
                self.then(Stage::Run, Action::Run);
            }
            Answer::Abort => self.finish(StatusCode::ErrAborted),
            Answer::Delay => self.then(Stage::Over, Action::Later("delayed by the user; asking again later".into())),
        }
    }

    /// The action ended with this status.
    pub fn handle_outcome(&mut self, code: StatusCode) {
        if self.stage == Stage::Run {
            self.finish(code);
        }
    }
}

#[cfg(test)]
mod tests;
