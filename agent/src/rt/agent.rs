//! The agent's work loop in the Outpost protocol: poll, then deploy each
//! offered package through the one lifecycle ([`crate::engine::deploy`]),
//! performing its actions (`drive.rs`), and report.
//!
//! Order of durable steps for one package (the lifecycle's; the same in OCS
//! mode):
//!
//! 1. info + manifest fetched over verified TLS; the manifest's signature and
//!    the info file's SHA-256 are checked; both are saved; record `Fetching`.
//! 2. fragments are fetched into one `archive` through the download engine
//!    ([`crate::engine::download`]): checkpoints every `checkpoint_bytes`, each
//!    fragment verified against the manifest before it counts.
//! 3. the whole archive is verified (SHA-256 from the manifest and the info
//!    file's own digest) and unpacked into a fresh directory.
//! 4. record `Installing` is written *before* the action starts.
//! 5. the status is written to the outbox and the record goes `Finished`;
//!    the report is deleted from the outbox only when the server acks it.
//!
//! Crash rule: a package found `Installing` at start was interrupted during
//! its action. It is **not** run again silently: it is reported
//! `ERR_DONE_FAILED` (the server may force a new deployment).

use std::time::Duration;

use outpost_hal::linux::{LinuxPower, RebootMethod};
use outpost_hal::power::{Power, RebootDecision, decide};
use ring::rand::SecureRandom;

use super::config::Config;
use super::env::{Env, EnvError, RealEnv};
use super::http::Url;
use super::identity;
use super::store::{Store, StoreError};
use crate::engine::backoff::Backoff;
use crate::engine::deploy::{Deployment, Offered, Retry};
use crate::engine::identity::{Credentials, Identity};
use crate::engine::journal::{OutboxRecord, PackageRecord, Phase};
use crate::engine::limits::{MAX_CONTROL_LEN, MAX_REPORTS_PER_REQUEST};
use crate::engine::plan;
use crate::engine::proto::{self, Offer, PollReply, Report};
use crate::engine::status::StatusCode;

mod bundle;
mod cached;
mod drive;
mod error;
mod install;
mod metadata;
mod objects;
mod progress;
mod trust;
pub use bundle::{Bundle, BundleOpenError, Installed, MAX_IMPORTED};
use drive::Done;
pub use error::AgentError;
pub(crate) use install::verify_and_unpack;
pub(crate) use objects::object_path;

/// What one run achieved.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Packages that reached a final status in this run.
    pub finished: usize,
    /// Packages left for a later run.
    pub pending: usize,
    /// Reports still waiting for the server's acknowledgement.
    pub unreported: usize,
    /// The poll's error, if the server could not be asked (already logged).
    pub poll_error: Option<String>,
    /// Seconds until the next poll, as the server said.
    pub poll_interval: Option<u32>,
    /// Packages all cached and waiting for their install moment (`agent.install`).
    pub held: usize,
}

impl RunSummary {
    /// Whether everything this run could see was finished and reported.
    pub fn complete(&self) -> bool {
        self.pending == 0 && self.unreported == 0 && self.poll_error.is_none()
    }
}

/// One run of an agent, whatever server it talks to.
pub trait Runner {
    /// One poll and the work it gives.
    fn run_once(&mut self) -> Result<RunSummary, AgentError>;
    /// Install an offline bundle (the Outpost protocol's; `None` in OCS mode).
    fn install_bundle(&mut self, _b: &Bundle) -> Result<Installed, AgentError> {
        Ok(Installed::Later)
    }
}

impl<E: Env> Runner for Agent<E> {
    fn run_once(&mut self) -> Result<RunSummary, AgentError> {
        Agent::run_once(self)
    }
    fn install_bundle(&mut self, b: &Bundle) -> Result<Installed, AgentError> {
        Agent::install_bundle(self, b)
    }
}

/// Run forever: at the server's interval (or `default_interval` seconds)
/// after a complete run, with exponential backoff and jitter (1 s up to
/// 15 min) while the server is away or work is left. A wait ends early when
/// the link towards `server_url`'s host comes up (see [`super::wake`]).
/// Between cycles, a new or changed `*.outpost` file in `import_dir` (a
/// USB stick mounted there) starts the next cycle at once.
pub fn run_forever(
    runner: &mut dyn Runner,
    default_interval: u64,
    server_url: &str,
    import_dir: Option<&std::path::Path>,
) -> ! {
    let host = Url::parse(server_url).ok().map(|u| (u.host, u.port));
    let clock = outpost_hal::linux::StdClock::new();
    let mut net = outpost_hal::linux::SysNet::new();
    let rng = ring::rand::SystemRandom::new();
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(15 * 60));
    loop {
        let wait = match runner.run_once() {
            Ok(s) if s.complete() => {
                backoff.reset();
                Duration::from_secs(s.poll_interval.filter(|i| *i > 0).map_or(default_interval, u64::from))
            }
            other => {
                if let Err(e) = other {
                    log::error!(target: "outpost", "{e}");
                }
                let mut b = [0u8; 8];
                let _ = rng.fill(&mut b);
                backoff.next_delay(u64::from_le_bytes(b))
            }
        };
        log::debug!(target: "outpost", "next poll in {}s", wait.as_secs());
        let server = host.as_ref().and_then(|(h, p)| {
            use std::net::ToSocketAddrs;
            (h.as_str(), *p).to_socket_addrs().ok()?.next().map(|a| a.ip())
        });
        let seen = import_dir.map(bundle::import_fingerprint);
        let mut changed = || import_dir.map(bundle::import_fingerprint) != seen;
        if super::wake::wait_or_wake(wait, &mut net, server, &clock, &mut super::sleep, &mut changed)
            == super::wake::Wake::Asked
        {
            log::info!(target: "outpost", "a bundle appeared in import_dir: waking");
        }
    }
}

/// The agent in the Outpost protocol, working through `E` (the real world
/// by default; a simulator in tests).
pub struct Agent<E: Env = RealEnv> {
    cfg: Config,
    store: Store,
    env: E,
    /// The credentials requests present ([`crate::engine::identity`]).
    identity: Identity,
    /// The CAs and signing keys trusted ([`crate::engine::trust`]).
    trust: crate::engine::trust::Trust,
    /// More fragment locations from the last poll (`depot loc=…`).
    depots: Vec<String>,
    /// Bytes held per package at the last poll, and when (`progress`).
    last_progress: Vec<(u64, u64, u64)>,
    /// Whether the install from the cache at start was made (`agent/cached.rs`).
    started: bool,
    /// Whether it is being made now.
    starting: bool,
    /// Packages held for their install moment in this run.
    held: usize,
    /// The last poll's reply, for the configuration cache (`agent/cached.rs`).
    reply: Vec<u8>,
}

impl<E: Env> Agent<E> {
    /// Build an agent from its configuration, working through `env`.
    pub fn new(cfg: Config, mut env: E) -> Result<Self, AgentError> {
        let store = Store::open(cfg.agent.state_path())?;
        let identity = identity::load(store.root(), &cfg)?;
        env.set_identity(&identity.current.cert, &identity.current.key)
            .map_err(|e| AgentError::Env(EnvError::Tls(e)))?;
        let key = cfg.signing_key().map_err(|e| AgentError::Config(e.to_string()))?;
        let trust = trust::load(&cfg, &store, &mut env, key)?;
        Ok(Self {
            cfg,
            store,
            env,
            identity,
            trust,
            depots: Vec::new(),
            last_progress: Vec::new(),
            started: false,
            starting: false,
            held: 0,
            reply: Vec::new(),
        })
    }

    /// The state directory.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Give back the environment (tests inspect it).
    pub fn into_env(self) -> E {
        self.env
    }

    fn api(&self, path: &str) -> Result<Url, AgentError> {
        Url::parse(&format!("{}{path}", self.cfg.server.url.trim_end_matches('/')))
            .map_err(|e| AgentError::Config(format!("server.url: {e}")))
    }

    /// POST `body` to `path` with the device's credentials. A 200 retires
    /// credentials kept from before a rotation; a 401 falls back to them
    /// once, if there are any ([`Identity`]).
    fn post(&mut self, path: &'static str, body: &str) -> Result<Vec<u8>, AgentError> {
        let url = self.api(path)?;
        loop {
            let auth = proto::auth_header(&self.cfg.server.device_id, &self.identity.current.secret);
            let headers = [("Authorization", auth.as_str()), ("Content-Type", "text/plain")];
            let (status, reply) =
                self.env.post(&url, &headers, body.as_bytes(), MAX_CONTROL_LEN).map_err(AgentError::Unreachable)?;
            match status {
                200 => {
                    if self.identity.accepted() {
                        identity::save(self.store.root(), &self.identity)?;
                        log::info!(target: "outpost", "the new device credentials are in use; the old ones are forgotten");
                    }
                    return Ok(reply);
                }
                401 if self.identity.refused() => {
                    log::warn!(target: "outpost", "the server refused the new device credentials; back to the previous ones");
                    identity::save(self.store.root(), &self.identity)?;
                    let current = &self.identity.current;
                    self.env
                        .set_identity(&current.cert, &current.key)
                        .map_err(|e| AgentError::Env(EnvError::Tls(e)))?;
                }
                401 => {
                    return Err(AgentError::Unauthorized {
                        server: self.cfg.server.url.clone(),
                        device: self.cfg.server.device_id.clone(),
                    });
                }
                status => return Err(AgentError::Status { path, status }),
            }
        }
    }

    /// Take new credentials from the server: checked usable, stored durably,
    /// then used by every request from now on.
    fn adopt(&mut self, new: Credentials) -> Result<(), AgentError> {
        if let Err(e) = self.env.check_identity(&new.cert, &new.key) {
            log::error!(target: "outpost", "the server sent new credentials this agent cannot use ({e}); keeping the current ones");
            return Ok(());
        }
        if !self.identity.received(new) {
            return Ok(());
        }
        identity::save(self.store.root(), &self.identity)?;
        let current = &self.identity.current;
        self.env.set_identity(&current.cert, &current.key).map_err(|e| AgentError::Env(EnvError::Tls(e)))?;
        log::info!(
            target: "outpost",
            "the server gave this device new credentials{}; stored in {}",
            if current.has_cert() { " (secret and client certificate)" } else { " (secret)" },
            self.store.root().join(identity::FILE).display()
        );
        Ok(())
    }

    fn poll_once(&mut self) -> Result<PollReply, AgentError> {
        let progress = self.progress();
        let mut req = proto::encode_poll(env!("CARGO_PKG_VERSION"), &progress);
        super::facts::gather(self.store.root(), &self.cfg.agent.tags).encode_line(&mut req);
        let body = self.post(proto::POLL_PATH, &req)?;
        let reply = PollReply::decode(&body).map_err(|e| AgentError::BadReply("poll", e))?;
        // Kept once the trust it announces is followed; never credentials.
        self.reply = if reply.identity.is_none() { body } else { Vec::new() };
        Ok(reply)
    }

    /// Ask the server what to deploy. A reply with new credentials
    /// (`device rotate`) has them stored and used at once: the poll is made
    /// again with them, which tells the server to retire the old ones.
    pub fn poll(&mut self) -> Result<PollReply, AgentError> {
        let reply = self.poll_once()?;
        let Some(new) = reply.identity.clone() else { return Ok(reply) };
        self.adopt(new)?;
        match self.poll_once() {
            Ok(again) => Ok(again),
            Err(e) => {
                log::warn!(target: "outpost", "poll with the new credentials failed: {e}; they are tried again next time");
                Ok(reply)
            }
        }
    }

    /// Deliver queued reports. Returns how many are still unacknowledged.
    pub fn flush_reports(&mut self) -> Result<usize, AgentError> {
        let pending = self.store.pending_reports()?;
        for batch in pending.chunks(MAX_REPORTS_PER_REQUEST) {
            let reports: Vec<Report> = batch
                .iter()
                .map(|r| Report { id: r.report_id, package: r.package, status: StatusCode::parse(&r.status) })
                .collect();
            let body = match self.post(proto::REPORT_PATH, &proto::encode_reports(&reports)) {
                Ok(b) => b,
                Err(e) => {
                    log::warn!(target: "outpost", "status reports not delivered yet: {e}");
                    break;
                }
            };
            let acks = proto::decode_acks(&body).map_err(|e| AgentError::BadReply("report", e))?;
            for r in batch.iter().filter(|r| acks.contains(&r.report_id)) {
                self.store.ack_report(r.report_id)?;
                log::info!(target: "outpost", "package {}: reported {}", r.package, r.status);
            }
        }
        Ok(self.store.pending_reports()?.len())
    }

    /// One poll and all the work it gives, including packages left
    /// unfinished by earlier runs (they resume without the server's help).
    pub fn run_once(&mut self) -> Result<RunSummary, AgentError> {
        self.recover_interrupted()?;
        let mut summary = RunSummary::default();
        if !std::mem::replace(&mut self.started, true) {
            summary.finished += self.install_from_cache()?;
        }
        summary.finished += self.import_bundles()?;
        self.held = 0;
        self.flush_reports()?;
        // The trust bundle before any package: one may be signed by a key it brings.
        let polled = self.poll().and_then(|r| self.follow_trust(r.trust_version).map(|()| r));
        let mut offers = match polled {
            Ok(r) => {
                summary.poll_interval = Some(r.poll_interval);
                let windows: Vec<_> =
                    r.full_speed_windows.iter().filter_map(|w| crate::engine::throttle::Window::parse(w)).collect();
                self.env.set_server_limits(r.max_bandwidth, &windows);
                self.depots = r.depots;
                self.keep_assignments()?;
                r.offers
            }
            Err(e) => {
                log::error!(target: "outpost", "poll failed: {e}");
                summary.poll_error = Some(e.to_string());
                // Offline: the last assignments go on (not when the server refused).
                if matches!(e, AgentError::Unreachable(_)) { self.kept_assignments() } else { Vec::new() }
            }
        };
        plan::deploy_order(&mut offers);
        let listed: Vec<u64> = offers.iter().map(|o| o.id).collect();
        super::cache::enforce_cap(&self.store, self.cfg.agent.cache_max_size, &listed)?;
        // Resume what we were fetching even if the server no longer lists it.
        for id in self.store.package_ids()? {
            if offers.iter().any(|o| o.id == id) {
                continue;
            }
            if let Some(rec) = self.store.package(id)?
                && rec.phase == Phase::Fetching
                && rec.pack_loc != bundle::BUNDLE_LOC
            {
                offers.push(offer_of(&rec));
            }
        }
        for offer in &offers {
            let Some(d) = self.deployment(offer)? else { continue };
            match self.drive(d, offer)? {
                Done::Finished => summary.finished += 1,
                Done::Later => summary.pending += 1,
            }
        }
        summary.held = self.held.min(summary.pending);
        summary.pending -= summary.held;
        summary.unreported = self.flush_reports()?;
        self.reboot_if_due()?;
        Ok(summary)
    }

    /// Act on a pending reboot under the configured policy, once the
    /// statuses are reported.
    fn reboot_if_due(&mut self) -> Result<(), AgentError> {
        let Some(id) = self.store.reboot_pending() else { return Ok(()) };
        if self.store.pending_reports()?.iter().any(|r| r.package == id) {
            return Ok(()); // report first
        }
        let mut power = LinuxPower::new(match (&self.cfg.agent.reboot_dry_run, &self.cfg.agent.reboot_command) {
            (Some(path), _) => RebootMethod::DryRun(path.into()),
            (None, Some(cmd)) => RebootMethod::Command(cmd.clone()),
            (None, None) => RebootMethod::Syscall,
        });
        let user = power.user_logged_in().unwrap_or(None);
        match decide(self.cfg.agent.reboot.policy(), user) {
            RebootDecision::Drop => {
                log::info!(target: "outpost", "package {id} asked for a reboot; the policy is never");
                self.store.clear_reboot_pending()?;
            }
            RebootDecision::Wait => {
                log::info!(target: "outpost", "package {id} asked for a reboot; waiting until nobody is logged in");
            }
            RebootDecision::Now => {
                self.store.clear_reboot_pending()?;
                log::warn!(target: "outpost", "rebooting, as package {id} asked");
                if let Err(e) = power.reboot() {
                    log::error!(target: "outpost", "reboot failed: {e}");
                }
            }
        }
        Ok(())
    }
    /// The deployment of an offered package: a new one, or the one under
    /// way (resumed from the journal); `None` when there is nothing to do.
    fn deployment(&mut self, offer: &Offer) -> Result<Option<Deployment>, AgentError> {
        let prev = self.store.package(offer.id)?;
        let queued = self.store.pending_reports()?.iter().any(|r| r.package == offer.id);
        let in_history = self.store.history()?.ids.contains(&offer.id);
        let retry = Retry::Backoff(self.cfg.agent.fragment_tries.unwrap_or(super::config::DEFAULT_FRAGMENT_TRIES));
        let now = self.env.unix_time();
        let o = Offered { id: offer.id, priority: offer.priority, force: offer.force, pack_loc: &offer.pack_loc };
        Ok(match Deployment::offered(prev.clone(), &o, in_history, queued, now, retry) {
            Some(d) => Some(d),
            None => prev.and_then(|r| if r.phase == Phase::Fetching { Deployment::recovered(r, retry) } else { None }),
        })
    }

    /// Packages found `Installing` were interrupted during their action:
    /// the lifecycle's crash rule reports them rather than run them again.
    fn recover_interrupted(&mut self) -> Result<(), AgentError> {
        for id in self.store.package_ids()? {
            if let Some(rec) = self.store.package(id)?
                && rec.phase == Phase::Installing
            {
                log::error!(target: "outpost", "package {id}: the agent stopped during its action; not running it again");
                let offer = offer_of(&rec);
                if let Some(d) = Deployment::recovered(rec, Retry::Backoff(1)) {
                    self.drive(d, &offer)?;
                }
            }
        }
        Ok(())
    }
}

/// The offer a record stands for, when the server does not list it.
fn offer_of(rec: &PackageRecord) -> Offer {
    Offer {
        id: rec.id,
        priority: rec.priority,
        force: rec.force,
        info_loc: String::new(),
        pack_loc: rec.pack_loc.clone(),
    }
}

/// Record a final status durably: history (on success), the report in the
/// outbox, the record `Finished`; then free the package's payload.
pub(crate) fn record_final(store: &Store, report_id: u64, offer: &Offer, code: &StatusCode) -> Result<(), StoreError> {
    let id = offer.id;
    let prev = store.package(id).ok().flatten();
    if code.is_success() && *code != StatusCode::SuccessAlreadySetup {
        store.add_history(id)?;
    }
    store.queue_report(&OutboxRecord { report_id, package: id, status: code.to_string() })?;
    let rec = PackageRecord {
        id,
        phase: Phase::Finished,
        priority: offer.priority,
        force: offer.force,
        pack_loc: offer.pack_loc.clone(),
        first_seen: prev.as_ref().map_or(0, |p| p.first_seen),
        fragments_verified: 0,
        status: Some(code.to_string()),
        space_reported: false,
        digest_trouble: None,
    };
    store.put_package(&rec)?;
    store.drop_payload(id)?;
    log::info!(target: "outpost", "package {id}: finished with {code}");
    Ok(())
}
