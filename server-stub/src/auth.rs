//! Authentication with lockout, once for both front ends: the control API
//! (device id + secret, counted per claimed device) and the OCS endpoint
//! (Basic credentials, counted per client address only). The policy and its
//! NAT-friendly design are in [`crate::lockout`]; failure counts are kept in
//! memory, blocks and trust in SQLite ([`crate::db`]).
//!
//! Order: gate (a blocked claim gets 429 at once, its secret unchecked) →
//! verify → count the failure and log it with the peer address (a client's
//! first failure, then a line a minute at most: [`crate::faillog`]), or
//! record the success. Secrets are never logged.

use std::net::IpAddr;

use crate::db::{Db, DbResult};
use crate::http::Response;
use crate::lockout::{Client, Gate, Scope};
use crate::serve::State;

/// `429 Too Many Requests` with `Retry-After`.
pub fn too_many(retry_after: u64, why: &str) -> Response {
    let mut r = Response::text(429, why);
    r.headers.push(("Retry-After", retry_after.max(1).to_string()));
    r
}

fn db_error(e: &crate::db::DbError) -> Response {
    log::error!(target: "outpost", "database: {e}");
    Response::text(500, "database error")
}

/// Check a claim of `identity` from `peer` at `now` (Unix seconds).
/// `verify` checks the presented credentials (it may read and write the
/// database: a rotation is promoted there) and says why it refuses them,
/// for the log; `refused` is the response to a refusal (401 with its
/// challenge).
pub fn check(
    state: &State,
    peer: IpAddr,
    scope: Scope,
    identity: &str,
    now: u64,
    verify: impl FnOnce(&mut Db) -> DbResult<Result<(), &'static str>>,
    refused: impl FnOnce() -> Response,
) -> Result<(), Response> {
    let client = Client::of(peer);
    let counted = scope.counted_identity(identity);
    let Ok(mut db) = state.db.lock() else { return Err(Response::text(500, "database lock poisoned")) };
    let read = db.auth_gate_read(now, client, scope, counted).map_err(|e| db_error(&e))?;
    match read.gate {
        Gate::Blocked { retry_after } => {
            log::debug!(target: "outpost", "{peer}: {} claim {identity:?} refused unchecked: blocked", scope.as_str());
            return Err(too_many(retry_after, "too many authentication failures; retry later"));
        }
        Gate::Open => {}
    }
    let Err(why) = verify(&mut db).map_err(|e| db_error(&e))? else {
        // OCS Basic: one agent's success must not clear the address's
        // failures (a guesser behind the same NAT would get fresh tries).
        if scope.trusts_identities() {
            db.auth_succeeded(now, client, scope, counted, &read).map_err(|e| db_error(&e))?;
        }
        return Ok(());
    };
    let policy = &state.cfg.security;
    let f = db.auth_failed(now, policy, client, scope, counted).map_err(|e| db_error(&e))?;
    drop(db);
    state.metrics.auth_failure(u64::from(f.claim_blocked) + u64::from(f.address_blocked));
    let kind = match scope {
        Scope::Api => "device",
        Scope::Ocs => "OCS Basic",
        Scope::Admin => "administrator",
    };
    match state.failure_log.note(now, client) {
        Some(0) => log::warn!(
            target: "outpost",
            "{peer}: authentication failed ({kind} credentials for {identity:?}: {why}); \
             more failures from {client} are logged at most once a minute"
        ),
        Some(unlogged) => log::warn!(
            target: "outpost",
            "{peer}: authentication failed ({kind} credentials for {identity:?}: {why}); \
             {unlogged} more failures from {client} since the last such line"
        ),
        None => {}
    }
    if f.claim_blocked {
        log::warn!(
            target: "outpost",
            "blocking {} ({}) from {client} for {} s: {} failures within {} s",
            if scope.trusts_identities() { format!("{identity:?}") } else { "every claim".to_string() },
            scope.as_str(),
            policy.client_block_time,
            policy.max_auth_failures,
            policy.auth_failures_interval
        );
    }
    if f.address_blocked {
        log::warn!(
            target: "outpost",
            "blocking {client} for {} s, except identities that authenticated from it: {} failures within {} s",
            policy.client_block_time,
            policy.max_address_auth_failures,
            policy.auth_failures_interval
        );
    }
    Err(refused())
}
