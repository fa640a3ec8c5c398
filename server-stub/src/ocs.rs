//! `POST /ocsinventory`: the OCS Inventory NG server protocol, so that
//! existing OCS agents deploy from outpost-server.
//!
//! Bodies come zlib-compressed (the agent's `Compress::Zlib::compress`),
//! gzip'ed or plain, and are answered in the same encoding, as the real
//! server does. The messages themselves are `outpost_agent::engine::ocs`.
//! OCS agents prove nothing but their DEVICEID, so they are served only from
//! the networks in `[ocs] allow`, and, if configured, with Basic credentials.

use std::io::{Read, Write};
use std::net::IpAddr;

use flate2::Compression;
use outpost_agent::engine::ocs::{Conf, NO_ACCOUNT_UPDATE, Pack, PrologReply, Request};

use crate::cidr::Cidr;
use crate::config::BasicAuth;
use crate::ct::constant_time_eq;
use crate::db::{Db, KIND_OCS, OcsLimits, Registration};
use crate::http::Response;
use crate::lockout::{Client, Scope};
use crate::serve::State;
use crate::time::unix_now;

/// Largest inflated request accepted (an inventory can be large).
const MAX_INFLATED: u64 = 8 * 1024 * 1024;

/// How a body was encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// RFC 1950 zlib stream (what the agents send).
    Zlib,
    /// gzip.
    Gzip,
    /// Plain XML.
    Plain,
}

/// Inflate a request body, recognising its encoding.
pub fn decode(body: &[u8]) -> Option<(String, Encoding)> {
    let inflate = |r: &mut dyn Read| {
        let mut out = Vec::new();
        r.take(MAX_INFLATED).read_to_end(&mut out).ok()?;
        String::from_utf8(out).ok()
    };
    let zlib_header =
        body.len() >= 2 && body[0] & 0x0f == 8 && (u16::from(body[0]) << 8 | u16::from(body[1])) % 31 == 0;
    if zlib_header && let Some(s) = inflate(&mut flate2::read::ZlibDecoder::new(body)) {
        return Some((s, Encoding::Zlib));
    }
    if body.starts_with(&[0x1f, 0x8b]) {
        return inflate(&mut flate2::read::GzDecoder::new(body)).map(|s| (s, Encoding::Gzip));
    }
    let text = std::str::from_utf8(body).ok()?;
    text.trim_start().starts_with('<').then(|| (text.to_string(), Encoding::Plain))
}

/// Encode a reply like the request.
pub fn encode(xml: &str, enc: Encoding) -> Vec<u8> {
    match enc {
        Encoding::Plain => xml.as_bytes().to_vec(),
        Encoding::Zlib => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), Compression::default());
            let _ = e.write_all(xml.as_bytes());
            e.finish().unwrap_or_default()
        }
        Encoding::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), Compression::default());
            let _ = e.write_all(xml.as_bytes());
            e.finish().unwrap_or_default()
        }
    }
}

fn base64(bytes: &[u8]) -> String {
    let mut s = outpost_agent::engine::digest::base64_unpadded(bytes);
    while !s.len().is_multiple_of(4) {
        s.push('=');
    }
    s
}

fn ocs_response(status: u16, body: Vec<u8>) -> Response {
    Response {
        status,
        headers: vec![("Content-Type", "application/x-compressed".into()), ("Cache-control", "no-cache".into())],
        body: crate::http::Body::Bytes(body),
    }
}

/// A status code an OCS agent reports (the `ERR` of a DOWNLOAD query),
/// checked: `SUCCESS`, `SUCCESS_…`, `ERR_…` or `EXIT_CODE_…`, 1 to 64 of
/// `A-Z 0-9 _ -` (the Unix agent's retried `SUCCESS_` included). An empty
/// or other code is refused, not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OcsCode(String);

impl OcsCode {
    /// Check a code as received.
    pub fn parse(s: &str) -> Option<Self> {
        let shape =
            s.len() <= 64 && s.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b"_-".contains(&b));
        let family = s == "SUCCESS" || ["SUCCESS_", "ERR_", "EXIT_CODE_"].iter().any(|p| s.starts_with(p));
        (shape && family).then(|| Self(s.to_string()))
    }

    /// The code.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for OcsCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How long a "log once" refusal stays quiet for the same client, seconds.
const LOG_QUIET_SECS: u64 = 3600;

fn device_id(req: &Request) -> &str {
    match req {
        Request::Prolog { device_id }
        | Request::Download { device_id, .. }
        | Request::Inventory { device_id, .. }
        | Request::Other { device_id, .. } => device_id,
    }
}

/// Check the Basic credentials of a request claiming `identity`, with lockout.
fn check_basic(
    state: &State,
    auth: &BasicAuth,
    presented: &str,
    peer: IpAddr,
    identity: &str,
    now: u64,
) -> Result<(), Response> {
    let want = format!("Basic {}", base64(format!("{}:{}", auth.user, auth.password).as_bytes()));
    let ok = constant_time_eq(presented.trim().as_bytes(), want.as_bytes());
    crate::auth::check(
        state,
        peer,
        Scope::Ocs,
        identity,
        now,
        |_| Ok(if ok { Ok(()) } else { Err("wrong Basic credentials") }),
        || challenge(auth),
    )
}

fn challenge(auth: &BasicAuth) -> Response {
    let mut r = Response::text(401, "authorization required");
    r.headers.push(("WWW-Authenticate", format!("Basic realm=\"{}\"", auth.realm.replace('"', ""))));
    r
}

/// Handle one `POST /ocsinventory` from `peer`.
///
/// Every query that writes checks the device's kind: an OCS client never
/// writes to an Outpost device (403). New DEVICEIDs are bounded per client
/// (429) and in total (503); histories by `[ocs] max_history` (413);
/// an empty or malformed `ERR` is refused (400). With Basic credentials
/// configured, wrong ones count towards the lockout ([`crate::auth`]).
/// `user_agent` (the agent's version, `OCS-NG_unified_unix_agent_v2.10.0`)
/// goes into the device's facts with an INVENTORY.
pub fn handle(
    state: &State,
    body: &[u8],
    authorization: Option<&str>,
    peer: IpAddr,
    user_agent: Option<&str>,
) -> Response {
    let ocs = &state.cfg.ocs;
    if !Cidr::any_contains(&ocs.allow, peer) {
        log::warn!(target: "outpost", "OCS request from {peer} refused: not in [ocs] allow");
        return Response::text(403, "forbidden");
    }
    let now = unix_now();
    // The agent sends each request first without credentials and answers
    // the challenge: a missing header is not a failure.
    if let Some(auth) = &ocs.basic_auth
        && authorization.is_none()
    {
        return challenge(auth);
    }
    let decoded = decode(body);
    let parsed = decoded.as_ref().map(|(xml, enc)| (Request::parse(xml), *enc));
    if let (Some(auth), Some(presented)) = (&ocs.basic_auth, authorization) {
        let identity = match &parsed {
            Some((Ok(req), _)) => device_id(req),
            _ => "?",
        };
        if let Err(r) = check_basic(state, auth, presented, peer, identity, now) {
            return r;
        }
    }
    let Some((req, enc)) = parsed else { return Response::text(400, "body is not zlib, gzip or XML") };
    let req = match req {
        Ok(r) => r,
        Err(e) => {
            log::warn!(target: "outpost", "OCS request from {peer} refused: {e}");
            return Response::text(400, e.to_string());
        }
    };
    let Ok(mut db) = state.db.lock() else { return Response::text(500, "database lock poisoned") };
    let db_err = |e: crate::db::DbError| {
        log::error!(target: "outpost", "database: {e}");
        Response::text(500, "database error")
    };
    let client = Client::of(peer);
    let limits = OcsLimits {
        new_devices_per_hour: ocs.new_devices_per_hour,
        max_devices: ocs.max_devices,
        stale_after_days: ocs.stale_after_days,
    };
    // The first contact of a DEVICEID (PROLOG or INVENTORY), within limits.
    let register = |db: &mut Db, id: &str| -> Result<(), Response> {
        match db.register_ocs_device(now, client, limits, id).map_err(db_err)? {
            Registration::Known => Ok(()),
            Registration::New => {
                log::info!(target: "outpost", "OCS device {id} registered from {peer}");
                Ok(())
            }
            Registration::Evicted { evicted } => {
                log::info!(target: "outpost", "OCS device {id} registered from {peer}");
                if db.should_log(now, "ocs-evict", LOG_QUIET_SECS).unwrap_or(false) {
                    log::info!(
                        target: "outpost",
                        "[ocs] max_devices = {} reached: evicted the stale OCS device {evicted} (no history, no \
                         report, not seen for over {} days) to register {id} (logged once an hour)",
                        limits.max_devices,
                        limits.stale_after_days
                    );
                }
                Ok(())
            }
            Registration::NotOcs => {
                if db.should_log(now, &format!("ocs-kind {client}"), LOG_QUIET_SECS).unwrap_or(false) {
                    log::warn!(
                        target: "outpost",
                        "OCS client at {peer} claims the Outpost device id {id:?}; refused (logged once an hour)"
                    );
                }
                Err(Response::text(403, "device id taken"))
            }
            Registration::RateLimited { retry_after } => {
                if db.should_log(now, &format!("ocs-new {client}"), LOG_QUIET_SECS).unwrap_or(false) {
                    log::warn!(
                        target: "outpost",
                        "{client} registered [ocs] new_devices_per_hour = {} new DEVICEIDs; refusing more (logged once an hour)",
                        limits.new_devices_per_hour
                    );
                }
                Err(crate::auth::too_many(retry_after, "too many new devices from this address"))
            }
            Registration::Full => {
                if db.should_log(now, "ocs-full", LOG_QUIET_SECS).unwrap_or(false) {
                    log::warn!(
                        target: "outpost",
                        "[ocs] max_devices = {} reached, none stale; refusing new DEVICEIDs (logged once an hour)",
                        limits.max_devices
                    );
                }
                Err(Response::text(503, "device limit reached"))
            }
        }
    };
    match req {
        Request::Prolog { device_id } => {
            if let Err(r) = register(&mut db, &device_id) {
                return r;
            }
            crate::fleet::contact::on_contact(&mut db, &device_id, None, peer, now);
            let pending = match db.poll(&device_id) {
                Ok(p) => p,
                Err(e) => return db_err(e),
            };
            let public = &state.cfg.public;
            let reply = PrologReply {
                send_inventory: ocs.request_inventory,
                prolog_freq: ocs.prolog_freq,
                conf: Some(Conf {
                    on: true,
                    frag_latency: ocs.frag_latency,
                    cycle_latency: ocs.cycle_latency,
                    period_latency: ocs.period_latency,
                    period_length: ocs.period_length,
                    timeout: ocs.timeout,
                    execution_timeout: ocs.execution_timeout,
                }),
                packs: pending
                    .iter()
                    .map(|p| Pack {
                        id: p.package,
                        info_loc: public.info_loc.clone(),
                        pack_loc: if p.https { &public.info_loc } else { &public.fragment_loc }.clone(),
                        force: p.force,
                    })
                    .collect(),
            };
            if !reply.packs.is_empty() {
                log::info!(target: "outpost", "OCS device {device_id}: notified of {} package(s)", reply.packs.len());
            }
            state.metrics.poll(crate::metrics::Front::Ocs);
            ocs_response(200, encode(&reply.to_xml(), enc))
        }
        Request::Download { device_id, id, err } => {
            let Some(code) = OcsCode::parse(&err) else {
                if db.should_log(now, &format!("ocs-err {client}"), LOG_QUIET_SECS).unwrap_or(false) {
                    log::warn!(
                        target: "outpost",
                        "OCS report from {peer} refused: ERR {err:?} is not an OCS status code (logged once an hour)"
                    );
                }
                return Response::text(400, "ERR is not an OCS status code");
            };
            match db.device_kind(&device_id) {
                Ok(Some(kind)) if kind == KIND_OCS => {}
                Ok(Some(_)) => {
                    if db.should_log(now, &format!("ocs-kind {client}"), LOG_QUIET_SECS).unwrap_or(false) {
                        log::warn!(
                            target: "outpost",
                            "OCS client at {peer} reported for the Outpost device {device_id:?}; refused (logged once an hour)"
                        );
                    }
                    return Response::text(403, "not an OCS device");
                }
                Ok(None) => {
                    log::debug!(target: "outpost", "OCS report from {peer} for unknown device {device_id:?} ignored");
                    return ocs_response(200, Vec::new());
                }
                Err(e) => return db_err(e),
            }
            state.metrics.report(code.as_str());
            match db.report_ocs(&device_id, id, code.as_str()) {
                Ok(true) => {
                    log::info!(target: "outpost", "OCS device {device_id}: package {id} -> {code}");
                }
                Ok(false) => {
                    log::warn!(target: "outpost", "OCS device {device_id}: report {code} for unassigned package {id}")
                }
                Err(e) => return db_err(e),
            }
            // The real server answers an empty 200.
            ocs_response(200, Vec::new())
        }
        Request::Inventory { device_id, history } => {
            if history.len() > ocs.max_history {
                if db.should_log(now, &format!("ocs-history {client}"), LOG_QUIET_SECS).unwrap_or(false) {
                    log::warn!(
                        target: "outpost",
                        "OCS inventory from {peer} refused: {} history entries, [ocs] max_history is {} (logged once an hour)",
                        history.len(),
                        ocs.max_history
                    );
                }
                return Response::text(413, "download history too long");
            }
            if let Err(r) = register(&mut db, &device_id) {
                return r;
            }
            match db.set_history(&device_id, &history) {
                Ok(true) => {
                    let facts = decoded
                        .as_ref()
                        .and_then(|(xml, _)| crate::fleet::contact::ocs_inventory_facts(xml, user_agent));
                    crate::fleet::contact::on_contact(&mut db, &device_id, facts.as_ref(), peer, now);
                    ocs_response(200, encode(NO_ACCOUNT_UPDATE, enc))
                }
                Ok(false) => Response::text(403, "not an OCS device"),
                Err(e) => db_err(e),
            }
        }
        Request::Other { query, .. } => {
            log::debug!(target: "outpost", "OCS query {query} from {peer} answered with nothing to do");
            ocs_response(200, encode(NO_ACCOUNT_UPDATE, enc))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_round_trip() {
        let xml = "<REQUEST><DEVICEID>a-2026-01-01-00-00-00</DEVICEID><QUERY>PROLOG</QUERY></REQUEST>";
        for enc in [Encoding::Zlib, Encoding::Gzip, Encoding::Plain] {
            let b = encode(xml, enc);
            assert_eq!(decode(&b), Some((xml.to_string(), enc)));
        }
        assert_eq!(&encode(xml, Encoding::Zlib)[..2], &[0x78, 0x9c], "RFC 1950, like Compress::Zlib");
        assert_eq!(decode(b"\x78\x9cgarbage"), None);
        assert_eq!(decode(b"hello"), None);
    }

    #[test]
    fn ocs_codes_are_the_ocs_families_and_nothing_else() {
        for good in ["SUCCESS", "SUCCESS_", "SUCCESS_3", "SUCCESS_ALREADY_SETUP", "ERR_BAD_DIGEST", "EXIT_CODE_-1"] {
            assert_eq!(OcsCode::parse(good).map(|c| c.to_string()).as_deref(), Some(good));
        }
        for bad in
            ["", "success", "NOTIFIED", "WAITING NOTIFICATION", "ERR", "SUCCESSFUL", "ERR_<x>", &"ERR_A".repeat(13)]
        {
            assert_eq!(OcsCode::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn basic_credentials_are_base64_padded() {
        assert_eq!(base64(b"user:pw"), "dXNlcjpwdw==");
    }
}
