//! The status page and its JSON twin, under `/admin/` on the HTTPS
//! listener (only for `[security] admin_networks`, checked by
//! [`crate::api`] before anything here), and `/metrics`.
//!
//! ```text
//!  GET  /admin/login               form (no session needed)
//!  POST /admin/login               name + password ─► lockout (scope admin) ─► PBKDF2 check
//!                                  ─► session: 32 random bytes in a cookie, their SHA-256 in state.db
//!  GET  /admin/                    packages: name, version, priority, waiting/notified/success/errors
//!  GET  /admin/packages/ID         its devices: status, download progress, last contact
//!  GET  /admin/devices/ID          its packages and its status history
//!  GET  /admin/fleet               groups (members, filter), rollouts and their waves' error rates
//!  GET  /admin/blocked             blocked addresses;  POST /admin/unblock lifts one
//!  POST /admin/logout
//!  GET  /admin/api/{packages,packages/ID,devices/ID,fleet,blocked}   the same data as JSON
//!  GET  /metrics                   Prometheus text (admin_networks only, no session)
//! ```
//!
//! Cookies are `Secure; HttpOnly; SameSite=Strict; Path=/admin`; every
//! POST also has its `Origin` (when the browser sends one, as they all do
//! for a form) checked against `Host`, so no other site can post a form
//! here. Pages have no script and are sent with a CSP that forbids any.

mod fleet;
mod html;
mod json;
mod pages;
pub mod password;
pub mod progress;

use std::io::Read as _;

use outpost_agent::engine::limits::MAX_MANIFEST_LEN;
use outpost_agent::engine::manifest::Manifest;

use crate::access::Origin;
use crate::db::{Db, DbResult, PackageSummary};
use crate::http::Request;
use crate::http::Response;
use crate::lockout::{Client, Gate, Scope};
use crate::serve::State;
use crate::time::unix_now;

/// The session cookie's name.
pub const COOKIE: &str = "outpost_admin";
/// How long a session lasts, seconds (8 hours).
pub const SESSION_SECS: u64 = 8 * 3600;
/// Longest administrator name and password accepted.
const MAX_NAME: usize = 64;
const MAX_PASSWORD: usize = 256;

/// Administrator names: 1 to 64 of `A-Za-z0-9._-`.
pub fn valid_admin_name(s: &str) -> bool {
    (1..=MAX_NAME).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn db_error(e: &crate::db::DbError) -> Response {
    log::error!(target: "outpost", "database: {e}");
    Response::text(500, "database error")
}

fn with_db<T>(state: &State, f: impl FnOnce(&mut Db) -> DbResult<T>) -> Result<T, Response> {
    let Ok(mut db) = state.db.lock() else { return Err(Response::text(500, "database lock poisoned")) };
    f(&mut db).map_err(|e| db_error(&e))
}

/// Answer an administrative request (`rest`: the path after `/admin/`)
/// from a client already found in `admin_networks`.
pub fn route(state: &State, req: &Request, origin: Origin, rest: &[&str]) -> Response {
    let get = req.method == "GET" || req.method == "HEAD";
    let post = req.method == "POST";
    if post && !same_origin(req) {
        log::warn!(target: "outpost", "{}: POST {} refused: Origin is not this server", origin.client, req.path);
        return Response::text(403, "cross-origin form refused");
    }
    match rest {
        ["login"] if get => return pages::login(200, None),
        ["login"] if post => return login(state, req, origin),
        ["login"] => return Response::text(405, "use GET or POST"),
        _ => {}
    }
    let session = html::cookie(req.header("cookie"), COOKIE).filter(|s| valid_session_id(s));
    let admin = match session {
        Some(id) => match with_db(state, |db| db.session_admin(&password::session_hash(id), unix_now())) {
            Ok(a) => a,
            Err(r) => return r,
        },
        None => None,
    };
    let api = rest.first() == Some(&"api");
    let Some(admin) = admin else {
        return if api { json::unauthorized() } else { html::redirect("/admin/login") };
    };
    let r = match (rest, get, post) {
        (["logout"], _, true) => logout(state, session),
        (["unblock"], _, true) => unblock(state, req, &admin),
        ([] | [""], true, _) => list(state).map(|l| pages::packages(&l)),
        (["packages", id], true, _) => package(state, id).map(|(p, rows)| pages::package(&p, &rows)),
        (["devices", id], true, _) => device(state, id).map(|d| pages::device(&d)),
        (["fleet"], true, _) => fleet_status(state).map(|f| fleet::page_of(&f)),
        (["api", "fleet"], true, _) => fleet_status(state).map(|f| fleet::json_of(&f)),
        (["blocked"], true, _) => with_db(state, |db| db.blocked(unix_now())).map(|b| pages::blocked(&b, unix_now())),
        (["api", "packages"], true, _) => list(state).map(|l| json::packages(&l)),
        (["api", "packages", id], true, _) => package(state, id).map(|(p, rows)| json::package(&p, &rows)),
        (["api", "devices", id], true, _) => device(state, id).map(|d| json::device(&d)),
        (["api", "blocked"], true, _) => with_db(state, |db| db.blocked(unix_now())).map(|b| json::blocked(&b)),
        (_, false, false) => Ok(Response::text(405, "use GET or POST")),
        _ => Ok(Response::text(404, "not found")),
    };
    r.unwrap_or_else(|e| e)
}

/// Groups and rollouts now ([`crate::fleet::status::fleet_status`]).
fn fleet_status(state: &State) -> Result<crate::fleet::status::FleetStatus, Response> {
    let Ok(mut db) = state.db.lock() else { return Err(Response::text(500, "database lock poisoned")) };
    crate::fleet::status::fleet_status(&mut db, unix_now()).map_err(|e| {
        log::error!(target: "outpost", "fleet: {e}");
        Response::text(500, "database error")
    })
}

fn valid_session_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A POST's `Origin`, when sent, names this server (`https://` + `Host`).
fn same_origin(req: &Request) -> bool {
    match (req.header("origin"), req.header("host")) {
        (None, _) => true,
        (Some(o), Some(h)) => o.strip_prefix("https://").is_some_and(|rest| rest.eq_ignore_ascii_case(h)),
        (Some(_), None) => false,
    }
}

fn login(state: &State, req: &Request, origin: Origin) -> Response {
    let user = html::form_value(&req.body, "user").unwrap_or_default();
    let pass = html::form_value(&req.body, "password").unwrap_or_default();
    if !valid_admin_name(&user) || pass.is_empty() || pass.len() > MAX_PASSWORD {
        return pages::login(400, Some("Give a name and a password."));
    }
    let now = unix_now();
    let client = origin.client;
    // Gate first (a blocked claim costs no PBKDF2), then hash outside the
    // database lock (PBKDF2 takes a good part of a second by design).
    let stored = with_db(state, |db| {
        Ok(match db.auth_gate(now, Client::of(client), Scope::Admin, &user)? {
            Gate::Blocked { retry_after } => Err(retry_after),
            Gate::Open => Ok(db.admin_hash(&user)?),
        })
    });
    let stored = match stored {
        Ok(Ok(h)) => h,
        Ok(Err(retry_after)) => {
            let mut r = pages::login(429, Some("Too many failed logins from this address; try again later."));
            r.headers.push(("Retry-After", retry_after.max(1).to_string()));
            return r;
        }
        Err(r) => return r,
    };
    let ok = password::verify(stored.as_ref(), &pass);
    let checked = crate::auth::check(
        state,
        client,
        Scope::Admin,
        &user,
        now,
        |_| Ok(if ok { Ok(()) } else { Err("wrong name or password") }),
        || pages::login(401, Some("Wrong name or password.")),
    );
    if let Err(r) = checked {
        return r;
    }
    let Ok((id, hash)) = password::new_session() else { return Response::text(500, "no randomness") };
    if let Err(r) = with_db(state, |db| db.add_session(&hash, &user, now + SESSION_SECS, now)) {
        return r;
    }
    log::info!(target: "outpost", "{client}: administrator {user:?} logged in");
    let mut r = html::redirect("/admin/");
    r.headers.push((
        "Set-Cookie",
        format!("{COOKIE}={id}; Secure; HttpOnly; SameSite=Strict; Path=/admin; Max-Age={SESSION_SECS}"),
    ));
    r
}

fn logout(state: &State, session: Option<&str>) -> Result<Response, Response> {
    if let Some(id) = session {
        with_db(state, |db| db.end_session(&password::session_hash(id)))?;
    }
    let mut r = html::redirect("/admin/login");
    r.headers.push(("Set-Cookie", format!("{COOKIE}=; Secure; HttpOnly; SameSite=Strict; Path=/admin; Max-Age=0")));
    Ok(r)
}

fn unblock(state: &State, req: &Request, admin: &str) -> Result<Response, Response> {
    let address = html::form_value(&req.body, "address").unwrap_or_default();
    let Some(client) = Client::parse(&address) else { return Ok(Response::text(400, "not an address")) };
    let n = with_db(state, |db| db.unblock(unix_now(), client))?;
    log::info!(target: "outpost", "administrator {admin:?} lifted {n} block(s) of {client}");
    Ok(html::redirect("/admin/blocked"))
}

/// The keys the server's manifests are signed with: the current signing
/// key and those of the published trust bundle (after `keys rotate`).
fn manifest_keys(state: &State) -> Vec<[u8; 32]> {
    let mut keys = Vec::new();
    if let Ok(key) = crate::pki::signing_key(&state.dir) {
        let mut public = [0u8; 32];
        public.copy_from_slice(ring::signature::KeyPair::public_key(&key).as_ref());
        keys.push(public);
    }
    if let Some(b) = crate::rollover::published(&state.dir)
        && let Ok((bundle, _, _)) = outpost_agent::engine::trust::Bundle::decode(&b)
    {
        keys.extend(bundle.keys.iter().map(|k| k.public));
    }
    keys
}

/// The version in package `id`'s manifest, if it has one (read bounded by
/// the manifest size limit, its signature checked against `keys`).
fn version_of(state: &State, keys: &[[u8; 32]], id: u64) -> Option<String> {
    let f = std::fs::File::open(state.cfg.download_dir(&state.dir).join(id.to_string()).join("manifest")).ok()?;
    let mut b = Vec::new();
    f.take(MAX_MANIFEST_LEN as u64 + 1).read_to_end(&mut b).ok()?;
    Manifest::decode_verified_any(&b, keys).ok()?.release.map(|r| r.version.to_string())
}

fn list(state: &State) -> Result<Vec<pages::Listed>, Response> {
    let rows = with_db(state, |db| db.package_summaries())?;
    let keys = manifest_keys(state);
    Ok(rows.into_iter().map(|p| (version_of(state, &keys, p.id), p)).map(|(v, p)| (p, v)).collect())
}

type PackagePage = (pages::Listed, Vec<crate::db::DeviceRow>);

fn package(state: &State, id: &str) -> Result<PackagePage, Response> {
    let not_found = || Response::text(404, "no such package");
    let id: u64 = id.parse().map_err(|_| not_found())?;
    let (summary, rows) = with_db(state, |db| {
        let s: Option<PackageSummary> = db.package_summaries()?.into_iter().find(|p| p.id == id);
        Ok((s, db.device_rows(Some(id), None)?))
    })?;
    let summary = summary.ok_or_else(not_found)?;
    Ok(((summary, version_of(state, &manifest_keys(state), id)), rows))
}

/// A device's page: its id, last poll, assignments and history.
pub struct DevicePage {
    /// Device id.
    pub id: String,
    /// Last poll (RFC 3339), if any.
    pub last_seen: Option<String>,
    /// Its assignments.
    pub rows: Vec<crate::db::DeviceRow>,
    /// Its status changes, newest first.
    pub history: Vec<crate::db::HistoryRow>,
}

fn device(state: &State, id: &str) -> Result<DevicePage, Response> {
    let not_found = || Response::text(404, "no such device");
    let id = html::unpercent(id, false).ok_or_else(not_found)?;
    let (seen, rows, history) = with_db(state, |db| {
        Ok((db.device_last_seen(&id)?, db.device_rows(None, Some(&id))?, db.device_history(&id)?))
    })?;
    let last_seen = seen.ok_or_else(not_found)?;
    Ok(DevicePage { id, last_seen, rows, history })
}

/// `GET /metrics`: the counters and the gauges read now.
pub fn metrics(state: &State) -> Response {
    let now = unix_now();
    let gauges = with_db(state, |db| {
        let mut g = crate::metrics::Gauges { devices: db.device_count()?, ..Default::default() };
        for p in db.package_summaries()? {
            for (slot, n) in g.assignments.iter_mut().zip([p.waiting, p.notified, p.success, p.errors]) {
                *slot += n;
            }
        }
        g.blocked = db.blocked(now)?.len() as u64;
        Ok(g)
    });
    let mut g = match gauges {
        Ok(g) => g,
        Err(r) => return r,
    };
    g.open_connections = state.open_connections();
    let mut r = Response::text(200, state.metrics.render(&g));
    r.headers = vec![("Content-Type", "text/plain; version=0.0.4; charset=utf-8".into())];
    r
}
