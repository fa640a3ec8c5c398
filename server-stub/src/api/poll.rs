//! `POST /api/v1/poll`: an Outpost device asks what to deploy. The whole
//! path ([`poll`], on a poll worker) authenticates it with lockout,
//! records its contact, marks what it is told of NOTIFIED and finds its
//! depots; a poll that changes nothing since the device's last one is
//! answered from memory ([`from_memory`], on the connection's thread,
//! [`crate::poll_cache`]).

use std::net::IpAddr;

use outpost_agent::engine::facts::Facts;
use outpost_agent::engine::proto::{self, Offer, PollReply};

use crate::db::Pending;
use crate::http::{Request, Response};
use crate::metrics::Front;
use crate::pki::Fingerprint;
use crate::poll_cache::{Answer, Asker};
use crate::serve::State;
use crate::time::unix_now;

/// The poll `req` from `peer`, if its answer is kept and its contact may
/// wait: its answer, with no read of the database. `None`: take the whole
/// path (`poll`), which also says why a poll is refused.
pub fn from_memory(state: &State, req: &Request, peer: IpAddr, cert: Option<Fingerprint>) -> Option<Response> {
    if req.method != "POST" || !state.poll_cache.enabled() {
        return None;
    }
    let (device, secret_sha256) = super::presented(req)?;
    let asker = Asker { device, secret_sha256: &secret_sha256, cert: cert.as_ref(), peer };
    let answer = state.poll_cache.get(&asker, crate::time::monotonic_now())?;
    // The body is read only now, for a device known: progress lines are
    // stored, and facts that do not parse logged, by the whole path.
    if !matches!(proto::decode_progress(&req.body), Ok(l) if l.is_empty()) {
        return None;
    }
    let facts = match Facts::from_poll(&req.body) {
        Some(Ok(f)) => Some(f),
        Some(Err(_)) => return None,
        None => None,
    };
    if !state.contacts.defer(device, facts.as_ref(), peer, unix_now()) {
        return None;
    }
    state.metrics.poll(Front::Outpost);
    state.metrics.poll_from_memory();
    Some(reply(state, &answer.offers, None, &answer.depots))
}

/// The whole path of a poll.
pub(super) fn poll(state: &State, req: &Request, peer: IpAddr, cert: Option<Fingerprint>) -> Response {
    // Read before the database: an answer kept is dropped at any change
    // committed after this.
    let snapshot = state.poll_cache.snapshot();
    let (device, staged) = match super::authenticate(state, req, peer, cert) {
        Ok(d) => d,
        Err(r) => return r,
    };
    state.metrics.poll(Front::Outpost);
    crate::web::progress::store(state, device, &req.body);
    let facts = match Facts::from_poll(&req.body) {
        Some(Ok(f)) => Some(f),
        Some(Err(e)) => {
            log::warn!(target: "outpost", "device {device}: {e}; its facts are not updated");
            None
        }
        None => None,
    };
    let now = unix_now();
    // Most contacts wait for the next second's flush (`crate::contacts`).
    let deferred = state.contacts.defer(device, facts.as_ref(), peer, now);
    let pending = match state.db.lock() {
        Ok(mut db) => {
            let address = peer.to_string();
            let contact = (!deferred).then_some((facts.as_ref(), address.as_str(), now));
            let polled = crate::fleet::contact::poll(&mut db, device, contact);
            if !deferred && polled.is_ok() {
                state.contacts.recorded(device, facts.as_ref());
            }
            polled.and_then(|p| {
                let identity = if staged { db.staged_rotation(device)? } else { None };
                Ok((p, identity, db.depots()?))
            })
        }
        Err(_) => return Response::text(500, "database lock poisoned"),
    };
    let (pending, identity, depots) = match pending {
        Ok(p) => p,
        Err(e) => {
            log::error!(target: "outpost", "database: {e}");
            return Response::text(500, "database error");
        }
    };
    let new = pending.iter().filter(|p| p.new).count();
    // Fragment locations for this device's address (`depot add`).
    let depots = crate::depot::for_client(&depots, peer);
    if identity.is_some() {
        log::info!(target: "outpost", "device {device}: sent its new credentials (device rotate)");
    }
    // Once per package, not at every poll until its report.
    if new > 0 {
        log::info!(target: "outpost", "device {device}: notified of {new} package(s)");
    }
    let resp = reply(state, &pending, identity, &depots);
    if let Some(snapshot) = snapshot
        && !staged
        && let Some((_, secret_sha256)) = super::presented(req)
    {
        let asker = Asker { device, secret_sha256: &secret_sha256, cert: cert.as_ref(), peer };
        state.poll_cache.put(&asker, snapshot, crate::time::monotonic_now(), Answer { offers: pending, depots });
    }
    resp
}

/// The reply that tells of `pending`, with the new credentials
/// `identity` and the `depots` for the device's address.
fn reply(
    state: &State,
    pending: &[Pending],
    identity: Option<outpost_agent::engine::identity::Credentials>,
    depots: &[String],
) -> Response {
    let public = &state.cfg.public;
    let reply = PollReply {
        poll_interval: state.cfg.agents.poll_interval,
        max_bandwidth: state.cfg.agents.max_bandwidth,
        full_speed_windows: state.cfg.agents.full_speed_windows.clone(),
        trust_version: state.trust_version.get(&state.dir),
        offers: pending
            .iter()
            .map(|p| Offer {
                id: p.package,
                priority: p.priority,
                force: p.force,
                info_loc: public.info_loc.clone(),
                // PROTO="HTTPS" fragments come from the HTTPS listener.
                pack_loc: if p.https { &public.info_loc } else { &public.fragment_loc }.clone(),
            })
            .collect(),
        identity,
        depots: depots.to_vec(),
    };
    Response::text(200, reply.encode())
}
