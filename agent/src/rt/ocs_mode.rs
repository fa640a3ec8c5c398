//! `server.protocol = "ocs"`: outpost-agent as a client of an OCS Inventory
//! NG server, without the real Unix agent's bugs.
//!
//! One run: deliver queued reports (DOWNLOAD queries), send PROLOG with a
//! DEVICEID in the OCS form (kept across runs in `STATE/ocs-deviceid`), send
//! an INVENTORY with the download history when the server asks, fetch each
//! new package's info file over verified HTTPS, then let the OCS scheduler
//! ([`crate::engine::ocs_sched`]) hand out slots (fragments, installs) with
//! the CONF's latencies, and report each final code. Packages being fetched
//! are resumed from the journal even if the server stops listing them (the
//! fragment location is kept), so resume never depends on the server.
//!
//! An OCS server has no signed manifest: the archive is checked against the
//! info file's MD5 or SHA1 (hex or base64), which came over verified TLS;
//! the agent says so in its log. `require_signed = true` refuses such
//! packages with `ERR_BAD_DIGEST`.
//!
//! All IO goes through [`Env`], so tests drive this exact code against an
//! in-process server in virtual time.

use std::fs;
use std::io::{Read, Write};

use outpost_hal::linux::write_atomic;

use super::agent::{AgentError, RunSummary, Runner, record_final};
use super::config::Config;
use super::drive::Stop;
use super::env::{Env, GetError};
use super::http::Url;
use super::store::{Store, StoreError};
use crate::engine::deploy::{Action, Deployment, Retry};
use crate::engine::journal::Phase;
use crate::engine::limits::MAX_CONTROL_LEN;
use crate::engine::ocs::{Conf, PrologReply, Request, device_id_for, valid_device_id};
use crate::engine::ocs_sched::{Next, Scheduler};

mod fragment;
mod offer;
mod slot;
use crate::engine::proto::Offer;
use crate::engine::status::StatusCode;

fn zlib(xml: &str) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    let _ = e.write_all(xml.as_bytes());
    e.finish().unwrap_or_default()
}

/// Inflate a reply: zlib as the server sends, gzip or plain tolerated.
fn inflate(body: &[u8]) -> Option<String> {
    let mut s = String::new();
    let limited = |r: &mut dyn Read, s: &mut String| r.take(8 << 20).read_to_string(s).is_ok();
    if limited(&mut flate2::read::ZlibDecoder::new(body), &mut s) {
        return Some(s);
    }
    s.clear();
    if body.starts_with(&[0x1f, 0x8b]) && limited(&mut flate2::read::GzDecoder::new(body), &mut s) {
        return Some(s);
    }
    std::str::from_utf8(body).ok().filter(|t| t.trim_start().starts_with('<')).map(str::to_string)
}

/// The host name, as the OCS agent uses it for its DEVICEID.
fn host_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

impl<E: Env> Runner for OcsAgent<E> {
    fn run_once(&mut self) -> Result<RunSummary, AgentError> {
        OcsAgent::run_once(self)
    }
}

/// The agent in OCS mode.
pub struct OcsAgent<E: Env> {
    cfg: Config,
    store: Store,
    env: E,
    url: Url,
    device_id: String,
}

impl<E: Env> OcsAgent<E> {
    /// An agent for `cfg` (protocol `ocs`) working through `env`.
    pub fn new(cfg: Config, env: E) -> Result<Self, AgentError> {
        let store = Store::open(cfg.agent.state_path())?;
        let url = Url::parse(&cfg.server.url).map_err(|e| AgentError::Config(format!("server.url: {e}")))?;
        if !url.tls {
            log::warn!(target: "outpost", "the OCS control channel {} is plain HTTP: anyone on the path sees which packages this device gets (info files still come over verified HTTPS)", cfg.server.url);
        }
        let device_id = Self::load_device_id(&store, env.unix_time())?;
        Ok(Self { cfg, store, env, url, device_id })
    }

    /// Give back the environment (tests inspect it).
    pub fn into_env(self) -> E {
        self.env
    }

    /// The DEVICEID this agent uses.
    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    /// The kept DEVICEID, made anew when missing or when the host name
    /// changed (as the OCS agent does).
    fn load_device_id(store: &Store, now: u64) -> Result<String, AgentError> {
        let path = store.root().join("ocs-deviceid");
        let host = device_id_for(&host_name(), 0);
        let prefix = host.trim_end_matches("-1970-01-01-00-00-00");
        if let Ok(id) = fs::read_to_string(&path) {
            let id = id.trim().to_string();
            if valid_device_id(&id) && id.strip_suffix(&id[id.len() - 20..]) == Some(prefix) {
                return Ok(id);
            }
        }
        let id = device_id_for(&host_name(), now);
        write_atomic(&path, id.as_bytes()).map_err(|e| AgentError::Store(StoreError::Io(path.clone(), e)))?;
        Ok(id)
    }

    fn post(&mut self, req: &Request) -> Result<(u16, Vec<u8>), GetError> {
        let url = self.url.clone();
        let headers = [("Content-Type", "application/x-compress"), ("Pragma", "no-cache")];
        self.env.post(&url, &headers, &zlib(&req.to_xml()), MAX_CONTROL_LEN * 32)
    }

    /// Deliver queued reports as DOWNLOAD queries; any 2xx is the ack.
    pub fn flush_reports(&mut self) -> Result<usize, AgentError> {
        for r in self.store.pending_reports()? {
            let req = Request::Download { device_id: self.device_id.clone(), id: r.package, err: r.status.clone() };
            match self.post(&req) {
                Ok((s, _)) if (200..300).contains(&s) => {
                    self.store.ack_report(r.report_id)?;
                    log::info!(target: "outpost", "package {}: reported {}", r.package, r.status);
                }
                Ok((s, _)) => {
                    log::warn!(target: "outpost", "report of package {} refused ({s}); kept for later", r.package);
                    break;
                }
                Err(e) => {
                    log::warn!(target: "outpost", "status reports not delivered yet: {e}");
                    break;
                }
            }
        }
        Ok(self.store.pending_reports()?.len())
    }

    fn finish(&mut self, id: u64, priority: u8, pack_loc: &str, code: &StatusCode) -> Result<(), AgentError> {
        let offer = Offer { id, priority, force: false, info_loc: String::new(), pack_loc: pack_loc.to_string() };
        let report_id = self.env.random_u64();
        record_final(&self.store, report_id, &offer, code)?;
        // Report at once, as the OCS agent does: the server sees codes as they come.
        self.flush_reports()?;
        Ok(())
    }

    /// One PROLOG and all the work it (and the journal) gives.
    pub fn run_once(&mut self) -> Result<RunSummary, AgentError> {
        let mut summary = RunSummary::default();
        self.flush_reports()?;
        let reply = match self.prolog() {
            Ok(r) => Some(r),
            Err(e) => {
                log::error!(target: "outpost", "PROLOG to {} failed: {e}", self.cfg.server.url);
                summary.poll_error = Some(e.to_string());
                None
            }
        };
        let conf = reply.as_ref().and_then(|r| r.conf.clone()).unwrap_or_default();
        if let Some(reply) = &reply {
            summary.poll_interval = Some(reply.prolog_freq.saturating_mul(3600));
            if reply.send_inventory {
                let history = self.store.history()?.ids;
                let inv = Request::Inventory { device_id: self.device_id.clone(), history };
                if let Err(e) = self.post(&inv) {
                    log::warn!(target: "outpost", "inventory not sent: {e}");
                }
            }
            if !conf.on {
                log::info!(target: "outpost", "the OCS server has downloads switched off (ON=0)");
            } else {
                let listed: Vec<u64> = reply.packs.iter().map(|p| p.id).collect();
                super::cache::enforce_cap(&self.store, self.cfg.agent.cache_max_size, &listed)?;
                for pack in &reply.packs {
                    self.take_pack(pack)?;
                }
            }
        }
        if conf.on {
            self.schedule(conf, &mut summary)?;
        }
        summary.unreported = self.flush_reports()?;
        Ok(summary)
    }

    fn prolog(&mut self) -> Result<PrologReply, AgentError> {
        let req = Request::Prolog { device_id: self.device_id.clone() };
        let (status, body) = self.post(&req).map_err(AgentError::Unreachable)?;
        if status != 200 {
            return Err(AgentError::Status { path: "PROLOG", status });
        }
        let xml = inflate(&body).ok_or(AgentError::NotXml)?;
        PrologReply::parse(&xml).map_err(AgentError::BadOcsReply)
    }

    fn schedule(&mut self, conf: Conf, summary: &mut RunSummary) -> Result<(), AgentError> {
        let tries = self.cfg.agent.fragment_tries.unwrap_or(crate::engine::ocs_sched::MAX_SLOT_FAILURES);
        let mut sched = Scheduler::new(conf).with_max_failures(tries);
        for id in self.store.package_ids()? {
            if let Some(rec) = self.store.package(id)? {
                match rec.phase {
                    Phase::Fetching => sched.add(id, rec.priority, rec.first_seen),
                    Phase::Installing => {
                        log::error!(target: "outpost", "package {id}: the agent stopped during its action; not running it again");
                        let (priority, loc) = (rec.priority, rec.pack_loc.clone());
                        if let Some(Action::Finish(code)) =
                            Deployment::recovered(rec, Retry::Schedule).and_then(|mut d| d.poll_action())
                        {
                            self.finish(id, priority, &loc, &code)?;
                            summary.finished += 1;
                        }
                    }
                    Phase::Finished => {}
                }
            }
        }
        loop {
            match sched.next(self.env.unix_time()) {
                Next::Idle => return Ok(()),
                Next::Wait(d) => self.env.sleep(d),
                Next::Expired(id) => {
                    let rec = self.store.package(id)?;
                    let (pri, loc) = rec.map(|r| (r.priority, r.pack_loc)).unwrap_or_default();
                    self.finish(id, pri, &loc, &StatusCode::ErrTimeout)?;
                    summary.finished += 1;
                }
                Next::Slot(id) => match self.slot(id)? {
                    Stop::Progressed => sched.slot_done(id),
                    Stop::Finished => {
                        sched.remove(id);
                        summary.finished += 1;
                    }
                    Stop::Later(why) => {
                        let why = why.as_deref().unwrap_or("delayed by the user");
                        log::info!(target: "outpost", "package {id}: {why}; until the next run");
                        sched.remove(id);
                        summary.pending += 1;
                    }
                    Stop::Failed(why) => {
                        log::warn!(target: "outpost", "package {id}: {why}");
                        if sched.slot_failed(id) {
                            let rec = self.store.package(id)?;
                            let (pri, loc) = rec.map(|r| (r.priority, r.pack_loc)).unwrap_or_default();
                            self.finish(id, pri, &loc, &StatusCode::ErrDownloadPack)?;
                            summary.finished += 1;
                        }
                    }
                },
            }
        }
    }
}
