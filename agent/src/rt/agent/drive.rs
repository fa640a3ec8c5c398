//! The Outpost protocol's half of a deployment's actions, as a
//! [`Front`] of the one driver loop ([`super::super::drive`]): the metadata
//! is the info file and the signed manifest, the space check knows the
//! archive's and the unpacked size from the manifest, fragments are checked
//! against the manifest, the action's exit codes may ask for a reboot, and a
//! final status goes to the outbox for the next report.

use std::fs;
use std::time::Duration;

use outpost_hal::linux::{DirBlocks, LinuxDisk};
use outpost_hal::notify::Answer;

use super::super::action;
use super::super::drive::{self, Front, Stop};
use super::super::env::Env;
use super::super::fragment;
use super::super::http::Url;
use super::super::store::{Store, StoreError};
use super::bundle::Bundle;
use super::install::{lacks_space, verify_and_unpack};
use super::objects::{self, NO_OBJECTS, Plan};
use super::{Agent, AgentError, record_final};
use crate::engine::deploy::{Deployment, Fetched, MetadataError};
use crate::engine::download::{ARCHIVE, Download, Layout};
use crate::engine::info::{Info, Proto};
use crate::engine::manifest::Manifest;
use crate::engine::plan;
use crate::engine::proto::Offer;
use crate::engine::sources::Sources;
use crate::engine::status::StatusCode;

/// How a deployment ended in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Done {
    /// With a final status (queued for the server).
    Finished,
    /// Not yet: it stays for a later run.
    Later,
}

/// Where a package's metadata and fragments come from.
#[derive(Clone, Copy)]
pub(super) enum Source<'a> {
    /// The server and the fragment location (the network).
    Server,
    /// An offline bundle: nothing from the network.
    Bundle(&'a Bundle),
    /// Only what the state directory holds (an install from the cache, at
    /// start or offline): a package not all here stops for this run.
    Cache,
}

impl<E: Env> Agent<E> {
    /// Perform `d`'s actions for `offer` until it finishes or stops for this run.
    pub(super) fn drive(&mut self, d: Deployment, offer: &Offer) -> Result<Done, AgentError> {
        self.drive_from(d, offer, Source::Server)
    }

    /// [`Self::drive`], with the metadata and fragments from `source`.
    pub(super) fn drive_from(
        &mut self,
        mut d: Deployment,
        offer: &Offer,
        source: Source<'_>,
    ) -> Result<Done, AgentError> {
        let timeout = Duration::from_secs(self.cfg.agent.execution_timeout);
        let mut package = Package { agent: self, offer, meta: None, download: None, source, sources: None, plan: None };
        Ok(match drive::drive(&mut package, &mut d, timeout)? {
            Stop::Finished => Done::Finished,
            Stop::Failed(why) | Stop::Later(Some(why)) => {
                log::warn!(target: "outpost", "package {}: not finished in this run: {why}", offer.id);
                Done::Later
            }
            Stop::Later(None) | Stop::Progressed => Done::Later,
        })
    }
}

/// One offered package and what its deployment has gathered so far: its
/// metadata, then its download.
struct Package<'a, E: Env> {
    agent: &'a mut Agent<E>,
    offer: &'a Offer,
    meta: Option<(Info, Manifest)>,
    download: Option<(Download, DirBlocks)>,
    source: Source<'a>,
    /// Where its fragments come from (depots, then its own location),
    /// probed on the first fetch from the server's locations.
    sources: Option<Sources>,
    /// The update by objects, when the manifest has a tree (`objects`)
    /// and the package comes from the server's locations.
    plan: Option<Plan>,
}

impl<E: Env> Front for Package<'_, E> {
    type E = E;

    fn env(&mut self) -> &mut E {
        &mut self.agent.env
    }

    fn store(&self) -> &Store {
        &self.agent.store
    }

    fn id(&self) -> u64 {
        self.offer.id
    }

    fn metadata(&mut self, fresh: bool) -> Result<Result<(), MetadataError>, AgentError> {
        let id = self.offer.id;
        if fresh {
            self.agent.store.drop_payload(id)?;
            // Only a fetching record carries a verified manifest for resume.
            let _ = fs::remove_file(self.agent.store.package_dir(id).join("manifest"));
        }
        Ok(match self.agent.metadata(self.offer, fresh, self.source)? {
            Ok(m) => {
                self.meta = Some(m);
                Ok(())
            }
            Err(e) => Err(e),
        })
    }

    fn lacks_space(&mut self) -> Result<Option<String>, AgentError> {
        let Self { agent, offer, meta, download, plan, source, .. } = self;
        let (_, m) = meta.as_ref().ok_or(AgentError::NoMetadata(offer.id))?;
        // What is left to fetch (the archive, or the missing objects), plus
        // room to unpack, plus a margin.
        let by_objects = !matches!(source, Source::Bundle(_));
        let dl =
            &open_download(&agent.store, agent.cfg.agent.checkpoint_bytes, download, plan, by_objects, m, offer.id)?.0;
        let total = dl.total().unwrap_or(m.archive_size);
        let mut disk = LinuxDisk::new(agent.store.root());
        Ok(lacks_space(&mut disk, total.saturating_sub(dl.have()), plan::unpacked_size(m), total))
    }

    fn fetch(&mut self) -> Result<Fetched, AgentError> {
        let Self { agent, offer, meta, download, source, sources, plan } = self;
        let (info, m) = meta.as_ref().ok_or(AgentError::NoMetadata(offer.id))?;
        let by_objects = !matches!(source, Source::Bundle(_));
        let (dl, blocks) =
            open_download(&agent.store, agent.cfg.agent.checkpoint_bytes, download, plan, by_objects, m, offer.id)?;
        let f = match source {
            Source::Server => {
                let objects = plan.as_ref().map(|_| if info.proto == Proto::Https { "objects-tls" } else { "objects" });
                // Depots serve plain HTTP only: a PROTO=HTTPS package keeps its own location.
                let depots = if info.proto == Proto::Https { &[][..] } else { &agent.depots[..] };
                let env = &mut agent.env;
                let src = sources.get_or_insert_with(|| probe(env, depots, &offer.pack_loc));
                fetch_from_sources(env, info, src, objects, dl, blocks)?
            }
            Source::Bundle(b) => b.fetch(m, dl, blocks)?,
            Source::Cache if dl.is_complete() => Fetched::Complete,
            Source::Cache => Fetched::Unavailable("not all of it is cached; the download goes on first".into()),
        };
        if let (Some(_), Fetched::BadLocation(why)) = (&plan, &f) {
            // No source has such an object: fetch the fragments instead.
            log::warn!(target: "outpost", "package {}: {why}; fetching its fragments", offer.id);
            agent.store.drop_payload(offer.id)?;
            agent.store.put_package_file(offer.id, NO_OBJECTS, b"")?;
            (*download, *plan, *sources) = (None, None, None);
            return Ok(Fetched::Progress(None));
        }
        // All here and verified: installed now, or held for its moment
        // (a bundle is installed when it is given).
        if f == Fetched::Complete
            && !matches!(source, Source::Bundle(_))
            && let Some(why) = agent.hold(offer.id)?
        {
            return Ok(Fetched::Unavailable(why));
        }
        if let Fetched::Progress(Some(n)) = f {
            log::info!(target: "outpost", "package {}: fragment {n}/{} verified", offer.id, info.frags);
        }
        Ok(f)
    }

    fn unpack(&mut self) -> Result<Option<StatusCode>, AgentError> {
        let Self { agent, offer, meta, download, plan: by_objects, source, .. } = self;
        let (info, manifest) = meta.as_ref().ok_or(AgentError::NoMetadata(offer.id))?;
        let bounds = plan::unpack_bounds(Some(manifest));
        if let Some(tree) = &manifest.tree {
            let allowed = !matches!(source, Source::Bundle(_));
            open_download(
                &agent.store,
                agent.cfg.agent.checkpoint_bytes,
                download,
                by_objects,
                allowed,
                manifest,
                offer.id,
            )?;
            if let Some(p) = by_objects {
                // Hold the tree for the next version unless it passes the cache cap.
                let cap = agent.cfg.agent.cache_max_size;
                let keep = cap == 0 || plan::unpacked_size(manifest) <= cap;
                return Ok(objects::unpack(&agent.store, offer.id, p, tree, bounds, keep)?);
            }
        }
        let dir = agent.store.package_dir(offer.id);
        let sha = Some(&manifest.archive_sha256);
        Ok(verify_and_unpack(&agent.store, info, &dir.join(ARCHIVE), sha, &dir.join("unpack"), bounds)?)
    }

    fn ask(&mut self) -> Result<Answer, AgentError> {
        let (info, _) = self.meta.as_ref().ok_or(AgentError::NoMetadata(self.offer.id))?;
        let env = &mut self.agent.env;
        Ok(action::consent(info, &mut |n| env.ask(n)))
    }

    fn run(&mut self, timeout: Duration) -> Result<StatusCode, AgentError> {
        let id = self.offer.id;
        let (info, manifest) = self.meta.as_ref().ok_or(AgentError::NoMetadata(id))?;
        log::info!(target: "outpost", "package {id}: running {} {:?}", info.action.as_ocs(), info.target);
        let dir = self.agent.store.package_dir(id);
        // After the record says Installing, before the action: a crash
        // during it cannot open the way to a downgrade.
        if let Some(r) = &manifest.release {
            self.agent.store.note_release(r)?;
        }
        let outcome = action::run(info, &dir.join("unpack"), &dir.join("action.log"), timeout);
        let code = plan::status_with_reboot_codes(outcome, &manifest.reboot_exit_codes);
        if code.is_success() {
            let env = &mut self.agent.env;
            action::tell_done(info, &mut |n| env.ask(n));
            if manifest.wants_reboot() || code == StatusCode::SuccessRebootRequired {
                log::info!(target: "outpost", "package {id}: asks for a reboot");
                self.agent.store.set_reboot_pending(id)?;
            }
        }
        Ok(code)
    }

    fn finish(&mut self, code: &StatusCode) -> Result<(), AgentError> {
        let report_id = self.agent.env.random_u64();
        Ok(record_final(&self.agent.store, report_id, self.offer, code)?)
    }
}

/// The package's download (`manifest`'s), opened on first use from its journal.
fn open_download<'a>(
    store: &Store,
    checkpoint_bytes: u64,
    slot: &'a mut Option<(Download, DirBlocks)>,
    plan: &mut Option<Plan>,
    by_objects: bool,
    manifest: &Manifest,
    id: u64,
) -> Result<&'a mut (Download, DirBlocks), StoreError> {
    let pair = match slot.take() {
        Some(pair) => pair,
        None => {
            let dir = store.package_dir(id);
            let mut blocks = DirBlocks::open(&dir).map_err(|e| StoreError::Io(dir.clone(), e))?;
            // A bundle carries the archive's fragments, never objects.
            *plan = if !by_objects || dir.join(NO_OBJECTS).exists() { None } else { Plan::new(store.root(), manifest) };
            let layout = plan.as_ref().map_or_else(|| Layout::signed(manifest), |p| p.layout.clone());
            let dl = Download::open_layout(&mut blocks, layout, checkpoint_bytes)
                .map_err(|e| StoreError::Io(dir.join(ARCHIVE), e.0))?;
            if dl.have() > 0 && !dl.is_complete() {
                log::info!(target: "outpost", "package {id}: resuming at byte {} of {}", dl.have(), manifest.archive_size);
            }
            (dl, blocks)
        }
    };
    Ok(slot.insert(pair))
}

/// The next fragment (or object) from the best of `src` (the depots and the
/// offer's own location, [`Sources`]): each source at most once per call, a failure
/// moving on at once to the next from the byte where the last one stopped.
fn fetch_from_sources<E: Env>(
    env: &mut E,
    info: &Info,
    src: &mut Sources,
    objects: Option<&str>,
    dl: &mut Download,
    blocks: &mut DirBlocks,
) -> Result<Fetched, AgentError> {
    let mut f = Fetched::Complete;
    for _ in 0..src.len() {
        let start = env.now();
        let Some(i) = src.poll_source(start) else { break };
        let have = dl.have();
        let (got, ok) = fragment::fetch_from(env, info, src.loc(i), dl, blocks, None, objects)?;
        let now = env.now();
        src.handle_transfer(i, now, dl.have().saturating_sub(have), now.saturating_duration_since(start), ok);
        f = got;
        let Some(j) = src.poll_source(now).filter(|j| !ok && !src.is_demoted(*j, now)) else { break };
        let (id, at) = (info.id, dl.have());
        log::warn!(target: "outpost", "package {id}: {} failed at byte {at}; going on from {}", src.loc(i), src.loc(j));
        if !matches!(f, Fetched::Failed(_) | Fetched::BadLocation(_)) {
            break;
        }
    }
    Ok(f)
}

/// The sources of a package's fragments, `depots` then `pack_loc`, each
/// probed for its connect time when there is a choice.
fn probe<E: Env>(env: &mut E, depots: &[String], pack_loc: &str) -> Sources {
    let mut s = Sources::new(depots.iter().map(String::as_str).chain([pack_loc]));
    if s.len() > 1 {
        for i in 0..s.len() {
            let t = Url::from_location(false, s.loc(i), "").ok().and_then(|u| env.probe(&u));
            s.handle_probe(i, env.now(), t);
        }
    }
    s
}
