//! Performing a deployment's actions in the Outpost protocol: the runtime
//! half of [`crate::engine::deploy`]. Each action is done here with real IO
//! (HTTPS, the state directory, the disk, the user, the action's process)
//! and its result handed back; every record the lifecycle hands out is saved
//! before the next action.

use std::fs;
use std::time::Duration;

use outpost_hal::linux::{DirBlocks, LinuxDisk};

use super::super::action;
use super::super::env::Env;
use super::super::fragment;
use super::super::store::StoreError;
use super::install::{lacks_space, verify_and_unpack};
use super::{Agent, AgentError, record_final};
use crate::engine::deploy::{Action, Deployment};
use crate::engine::download::{ARCHIVE, Download};
use crate::engine::info::Info;
use crate::engine::journal::OutboxRecord;
use crate::engine::manifest::Manifest;
use crate::engine::plan;
use crate::engine::proto::Offer;

/// How a deployment ended in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Done {
    /// With a final status (queued for the server).
    Finished,
    /// Not yet: it stays for a later run.
    Later,
}

/// What a deployment has gathered so far: its metadata, then its download.
#[derive(Default)]
struct Held {
    meta: Option<(Info, Manifest)>,
    download: Option<(Download, DirBlocks)>,
}

impl<E: Env> Agent<E> {
    /// Perform `d`'s actions for `offer` until it finishes or stops for this run.
    pub(super) fn drive(&mut self, mut d: Deployment, offer: &Offer) -> Result<Done, AgentError> {
        let id = offer.id;
        let mut held = Held::default();
        loop {
            if let Some(rec) = d.poll_record() {
                self.store.put_package(&rec)?;
            }
            let Some(action) = d.poll_action() else { return Ok(Done::Later) };
            match action {
                Action::FetchMetadata { fresh } => {
                    if fresh {
                        self.store.drop_payload(id)?;
                        // Only a fetching record carries a verified manifest for resume.
                        let _ = fs::remove_file(self.store.package_dir(id).join("manifest"));
                    }
                    match self.metadata(offer, fresh)? {
                        Ok(m) => {
                            held.meta = Some(m);
                            d.handle_metadata(Ok(()));
                        }
                        Err(e) => d.handle_metadata(Err(e)),
                    }
                }
                Action::CheckSpace => {
                    let Held { meta: Some((_, m)), download } = &mut held else { return Ok(Done::Later) };
                    // What is left to fetch, plus room to unpack, plus a margin.
                    let have = self.download(download, m, id)?.0.have();
                    let mut disk = LinuxDisk::new(self.store.root());
                    let left = m.archive_size.saturating_sub(have);
                    d.handle_space(lacks_space(&mut disk, left, plan::unpacked_size(m), m.archive_size));
                }
                Action::Fetch => {
                    let Held { meta: Some((info, m)), download } = &mut held else { return Ok(Done::Later) };
                    let (dl, blocks) = self.download(download, m, id)?;
                    let f = fragment::fetch_next(&mut self.env, info, &offer.pack_loc, dl, blocks, None)?;
                    if let crate::engine::deploy::Fetched::Progress(Some(n)) = f {
                        log::info!(target: "outpost", "package {id}: fragment {n}/{} verified", info.frags);
                    }
                    let (now, random) = (self.env.unix_time(), self.env.random_u64());
                    d.handle_fetch(f, now, random);
                }
                Action::Wait { delay, why } => {
                    log::warn!(target: "outpost", "package {id}: {why}; retrying in {} ms", delay.as_millis());
                    self.env.sleep(delay);
                }
                Action::Unpack => {
                    let Some((info, manifest)) = held.meta.as_ref() else { return Ok(Done::Later) };
                    let dir = self.store.package_dir(id);
                    let bounds = plan::unpack_bounds(Some(manifest));
                    let sha = Some(&manifest.archive_sha256);
                    let unpack_dir = dir.join("unpack");
                    let r = verify_and_unpack(&self.store, info, &dir.join(ARCHIVE), sha, &unpack_dir, bounds)?;
                    d.handle_unpacked(r, self.env.unix_time());
                }
                Action::Ask => {
                    let Some((info, _)) = held.meta.as_ref() else { return Ok(Done::Later) };
                    let env = &mut self.env;
                    d.handle_answer(action::consent(info, &mut |n| env.ask(n)));
                }
                Action::Run => {
                    let Some((info, manifest)) = held.meta.as_ref() else { return Ok(Done::Later) };
                    log::info!(target: "outpost", "package {id}: running {} {:?}", info.action.as_ocs(), info.target);
                    let dir = self.store.package_dir(id);
                    let timeout = Duration::from_secs(self.cfg.agent.execution_timeout);
                    let outcome = action::run(info, &dir.join("unpack"), &dir.join("action.log"), timeout);
                    let code = plan::status_with_reboot_codes(outcome, &manifest.reboot_exit_codes);
                    if code.is_success() {
                        let env = &mut self.env;
                        action::tell_done(info, &mut |n| env.ask(n));
                        if manifest.wants_reboot() || code == crate::engine::status::StatusCode::SuccessRebootRequired {
                            log::info!(target: "outpost", "package {id}: asks for a reboot");
                            self.store.set_reboot_pending(id)?;
                        }
                    }
                    d.handle_outcome(code);
                }
                Action::ReportOnce(code) => {
                    log::error!(target: "outpost", "package {id}: reporting {code}; kept what is cached, will go on when space returns");
                    let report =
                        OutboxRecord { report_id: self.env.random_u64(), package: id, status: code.to_string() };
                    self.store.queue_report(&report)?;
                }
                Action::Failed(why) | Action::Later(why) => {
                    log::warn!(target: "outpost", "package {id}: not finished in this run: {why}");
                    return Ok(Done::Later);
                }
                Action::Finish(code) => {
                    record_final(&self.store, self.env.random_u64(), offer, &code)?;
                    return Ok(Done::Finished);
                }
            }
        }
    }

    /// The package's download (`manifest`'s), opened on first use from its journal.
    fn download<'a>(
        &self,
        slot: &'a mut Option<(Download, DirBlocks)>,
        manifest: &Manifest,
        id: u64,
    ) -> Result<&'a mut (Download, DirBlocks), StoreError> {
        let pair = match slot.take() {
            Some(pair) => pair,
            None => {
                let dir = self.store.package_dir(id);
                let mut blocks = DirBlocks::open(&dir).map_err(|e| StoreError::Io(dir.clone(), e))?;
                let dl = Download::open(&mut blocks, manifest, self.cfg.agent.checkpoint_bytes)
                    .map_err(|e| StoreError::Io(dir.join(ARCHIVE), e.0))?;
                if dl.have() > 0 && !dl.is_complete() {
                    log::info!(target: "outpost", "package {id}: resuming at byte {} of {}", dl.have(), manifest.archive_size);
                }
                (dl, blocks)
            }
        };
        Ok(slot.insert(pair))
    }
}
