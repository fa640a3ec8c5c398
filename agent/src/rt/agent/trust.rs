//! The runtime half of a CA or signing-key rollover (`engine::trust` decides,
//! `docs/rollover.md` tells the procedure): fetch the trust bundle a poll
//! announces, over the control channel and nowhere else, verify it, store it
//! (`STATE/trust`, written atomically, 0600) and only then use it: the
//! environment's HTTPS client trusts `server.ca_cert` and the bundle's CAs
//! until their end ([`super::super::env::Env::trust_cas`]), the manifests
//! verify with any key trusted now.

use super::super::config::Config;
use super::super::env::Env;
use super::super::store::Store;
use super::{Agent, AgentError};
use crate::engine::proto;
use crate::engine::trust::{Bundle, Trust};

/// `server.ca_cert` and the learned CAs `trust` holds at `now`, as one PEM.
fn ca_pem(cfg: &Config, trust: &Trust, now: u64) -> String {
    let mut pem = cfg.server.ca_cert.clone();
    for ca in trust.cas(now) {
        pem.push('\n');
        pem.push_str(ca);
    }
    pem
}

/// What the agent trusts at start: the configuration, and the bundle stored
/// by an earlier run (the state directory is the agent's own, checked at
/// open: what it holds was verified when it came), its CAs given to `env`.
/// A stored bundle that no longer decodes, or whose CAs make no client, is
/// an error (fail closed, as a damaged versions record is): falling back to
/// the configuration alone would trust again a key the bundle retired.
pub(super) fn load<E: Env>(cfg: &Config, store: &Store, env: &mut E, key: [u8; 32]) -> Result<Trust, AgentError> {
    let held = match store.trust_bundle()?.map(|b| Bundle::decode(&b).map(|(b, _, _)| b)) {
        Some(Ok(b)) => b,
        Some(Err(e)) => {
            log::error!(target: "outpost", "{}/trust: {e}; refusing to fall back to the configuration alone, which would trust again what the bundle retired (remove the file to do so knowingly)", store.root().display());
            return Err(AgentError::Trust(e));
        }
        None => return Ok(Trust::new(key, None)),
    };
    let trust = Trust::new(key, Some(held));
    let now = env.unix_time();
    if trust.cas(now).next().is_none() {
        return Ok(trust);
    }
    env.trust_cas(&ca_pem(cfg, &trust, now)).map_err(AgentError::Env)?;
    Ok(trust)
}

impl<E: Env> Agent<E> {
    /// After a poll announcing trust bundle `announced`: fetch it if newer
    /// than the one held, and adopt it if it verifies. Not reaching it is
    /// an error, as a failed poll is (the run deploys nothing, and tries
    /// again soon: a package may be signed by a key it brings); a bundle
    /// refused leaves the trust as it was (logged; fetched again at the
    /// next poll).
    pub(super) fn follow_trust(&mut self, announced: u64) -> Result<(), AgentError> {
        if announced <= self.trust.version() {
            return Ok(());
        }
        // Over the client that trusts only what the agent already trusts.
        let bytes = self.post(proto::TRUST_PATH, &format!("{}\n", proto::HEADER))?;
        if let Err(e) = self.adopt_trust(&bytes) {
            log::error!(target: "outpost", "trust bundle version {announced} refused: {e}; trusting what it trusted");
        }
        Ok(())
    }

    fn adopt_trust(&mut self, bytes: &[u8]) -> Result<(), AgentError> {
        let now = self.env.unix_time();
        let bundle = self.trust.verify(bytes, now).map_err(AgentError::Trust)?;
        let mut next = self.trust.clone();
        let version = bundle.version;
        next.adopt(bundle);
        // Checked before it is stored: a bundle whose CAs make no client is refused.
        let pem = ca_pem(&self.cfg, &next, now);
        self.env.trust_cas(&pem).map_err(AgentError::Env)?;
        if let Err(e) = self.store.put_trust_bundle(bytes) {
            let back = ca_pem(&self.cfg, &self.trust, now);
            self.env.trust_cas(&back).map_err(AgentError::Env)?;
            return Err(e.into());
        }
        log::info!(
            target: "outpost",
            "trust bundle version {version} adopted: {} CA(s) besides server.ca_cert and {} signing key(s) trusted",
            next.cas(now).count(),
            next.keys(now).len()
        );
        self.trust = next;
        Ok(())
    }
}
