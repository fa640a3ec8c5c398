//! The routes: control API (poll, report), OCS endpoint, info, manifest,
//! fragment files and the administrative routes (`/admin/…`, HTTPS only,
//! for clients in `[security] admin_networks`). Called by [`crate::serve`]
//! once a request has been read, with the client address it is counted
//! against ([`crate::access`]).

use std::net::IpAddr;
use std::path::Path;

use outpost_agent::engine::manifest::sha256;
use outpost_agent::engine::proto;

use crate::access::Origin;
use crate::db::{Presented, Verdict};
use crate::http::{self, Body, RangeAnswer, Request, Response};
use crate::lockout::Scope;
use crate::pki::Fingerprint;
use crate::serve::{Side, State};
use crate::time::unix_now;

mod poll;
pub mod report;
pub use poll::from_memory as poll_from_memory;

/// Answer `req`, which came on `side`'s listener from `origin`, over a
/// connection whose client presented the certificate `cert` (verified to
/// chain to the server's CA in the TLS handshake; its fingerprint).
pub fn route(state: &State, req: &Request, side: Side, origin: Origin, cert: Option<Fingerprint>) -> Response {
    let client = origin.client;
    let parts: Vec<&str> = req.path.split('/').collect();
    match (side, parts.as_slice()) {
        (_, ["", "ocsinventory"]) => post_only(req, || {
            crate::ocs::handle(state, &req.body, req.header("authorization"), client, req.header("user-agent"))
        }),
        (Side::Https, ["", "api", "v1", "poll"]) => post_only(req, || poll::poll(state, req, client, cert)),
        // A POST is checked on a poll worker and recorded by the group
        // commit, in `crate::serve` (`report::check`, `report::record`).
        (Side::Https, ["", "api", "v1", "report"]) => Response::text(405, "use POST"),
        (Side::Https, ["", "api", "v1", "trust"]) => post_only(req, || trust(state, req, client, cert)),
        (Side::Https, ["", "admin", rest @ ..]) => admin(state, req, origin, rest),
        (Side::Https, ["", "metrics"]) => match admin_refusal(state, req, origin) {
            Some(refused) => refused,
            None if req.method == "GET" || req.method == "HEAD" => crate::web::metrics(state),
            None => Response::text(405, "use GET or HEAD"),
        },
        (_, ["", "download", dir @ ("objects" | "objects-tls"), ab, name]) => {
            // Content objects (crate::objects): those of HTTPS-only packages
            // on the TLS listener only.
            let hex = |s: &str| s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            let ok = name.len() == 64 && hex(name) && name.starts_with(ab) && ab.len() == 2;
            if !ok || (*dir == "objects-tls" && side == Side::Http) {
                return Response::text(404, "not found");
            }
            if req.method != "GET" && req.method != "HEAD" {
                return Response::text(405, "use GET or HEAD");
            }
            serve_file(&state.cfg.download_dir(&state.dir).join(dir).join(ab).join(name), req)
        }
        (_, ["", "download", id, name]) => {
            let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            let is_fragment = name.strip_prefix(&format!("{id}-")).is_some_and(digits);
            let is_meta = matches!(*name, "info" | "manifest");
            if !digits(id) || !(is_fragment || (is_meta && side == Side::Https)) {
                return Response::text(404, "not found");
            }
            if req.method != "GET" && req.method != "HEAD" {
                return Response::text(405, "use GET or HEAD");
            }
            // A package published with PROTO=HTTPS has its fragments on the
            // TLS listener only: not on the plain one, for anyone to read.
            let path = state.cfg.download_dir(&state.dir).join(id).join(name);
            // The file first: a request for none costs the database nothing.
            if side == Side::Http && (!path.exists() || https_only(state, id)) {
                return Response::text(404, "not found");
            }
            serve_file(&path, req)
        }
        _ => Response::text(404, "not found"),
    }
}

/// An administrative route: only for clients in `[security]
/// admin_networks`, and never through a proxy missing from
/// `trusted_proxies` (behind one on loopback, every client would look
/// local); checked before the route is looked at (an outsider learns
/// nothing of which exist). `GET /admin/v1/health` answers `ok`, or
/// `warning: …` while the server certificate is due and cannot be renewed
/// (still 200: the server works). Everything else is the status page
/// ([`crate::web`]).
fn admin(state: &State, req: &Request, origin: Origin, rest: &[&str]) -> Response {
    if let Some(refused) = admin_refusal(state, req, origin) {
        return refused;
    }
    match rest {
        ["v1", "health"] if req.method == "GET" || req.method == "HEAD" => match state.cert.warning() {
            None => Response::text(200, "ok\n"),
            Some(w) => Response::text(200, format!("warning: {w}\n")),
        },
        ["v1", "health"] => Response::text(405, "use GET or HEAD"),
        _ => crate::web::route(state, req, origin, rest),
    }
}

/// Why an administrative request (`/admin/…`, `/metrics`) is refused, if it is.
fn admin_refusal(state: &State, req: &Request, origin: Origin) -> Option<Response> {
    let client = origin.client;
    if origin.untrusted_forwarding {
        log::warn!(
            target: "outpost",
            "{client}: {} {} refused: forwarding headers from a peer not in [security] trusted_proxies",
            req.method,
            req.path
        );
        return Some(Response::text(403, "administrative routes are not open through an untrusted proxy"));
    }
    if !crate::cidr::Cidr::any_contains(&state.cfg.security.admin_networks, client) {
        log::info!(target: "outpost", "{client}: {} {} refused: not in [security] admin_networks", req.method, req.path);
        return Some(Response::text(403, "administrative routes are not open to this address"));
    }
    None
}

/// Whether package `id` (digits) was published with `PROTO=HTTPS`. If the
/// database cannot say, its fragments are withheld from plain HTTP.
fn https_only(state: &State, id: &str) -> bool {
    let Ok(id) = id.parse::<u64>() else { return true };
    let mut unknown = false;
    let known = state.https_only.get(id, || {
        let db = state.db.lock().ok()?;
        match db.package_https(id) {
            Ok(Some(https)) => Some(https),
            Ok(None) => {
                unknown = true;
                None
            }
            Err(e) => {
                log::error!(target: "outpost", "database: {e}");
                None
            }
        }
    });
    // No such package: its files (if any) are served as before; a
    // database error refuses.
    known.unwrap_or(!unknown)
}

fn post_only(req: &Request, f: impl FnOnce() -> Response) -> Response {
    if req.method == "POST" { f() } else { Response::text(405, "use POST") }
}

fn serve_file(path: &Path, req: &Request) -> Response {
    let Ok(file) = std::fs::File::open(path) else {
        return Response::text(404, "not found");
    };
    let Ok(len) = file.metadata().map(|m| m.len()) else {
        return Response::text(500, "cannot stat");
    };
    let mut headers =
        vec![("Accept-Ranges", "bytes".to_string()), ("Content-Type", "application/octet-stream".to_string())];
    match http::range(req.header("range"), len) {
        RangeAnswer::Full => Response { status: 200, headers, body: Body::File { file, offset: 0, len } },
        RangeAnswer::Partial(a, b) => {
            headers.push(("Content-Range", format!("bytes {a}-{b}/{len}")));
            Response { status: 206, headers, body: Body::File { file, offset: a, len: b - a + 1 } }
        }
        RangeAnswer::Unsatisfiable => {
            let mut r = Response::text(416, "range not satisfiable");
            r.headers.push(("Content-Range", format!("bytes */{len}")));
            r
        }
    }
}

/// The device a request names and the SHA-256 of the secret it presents
/// (`Authorization: Outpost DEVICE SECRET`), not checked yet.
fn presented(req: &Request) -> Option<(&str, [u8; 32])> {
    let (device, secret) = req.header("authorization").and_then(proto::parse_auth_header)?;
    Some((device, sha256(secret.as_bytes())))
}

/// Authenticate a device by its secret and, where it has one or the server
/// requires it, its client certificate `cert` ([`crate::db::Db::authenticate`],
/// checked on every request), with lockout ([`crate::auth`]). `Err` is the
/// response to send: 401 (missing header, unknown or revoked device, wrong
/// secret or certificate; the same answer for each), 429 (blocked after too
/// many failures, secret not checked) or 500. `Ok`: the device, and whether
/// new credentials wait for it (`device rotate`).
fn authenticate<'r>(
    state: &State,
    req: &'r Request,
    peer: IpAddr,
    cert: Option<Fingerprint>,
) -> Result<(&'r str, bool), Response> {
    let unauthorized = || {
        let mut r = Response::text(401, "unknown device, wrong secret or wrong client certificate");
        r.headers.push(("WWW-Authenticate", "Outpost".into()));
        r
    };
    let (device, secret) = req.header("authorization").and_then(proto::parse_auth_header).ok_or_else(unauthorized)?;
    let require = state.cfg.security.require_client_cert;
    let staged = std::cell::Cell::new(false);
    let verify = |db: &mut crate::db::Db| {
        let presented = Presented { secret_sha256: &sha256(secret.as_bytes()), cert: cert.as_ref() };
        Ok(match db.authenticate(device, &presented, require)? {
            Verdict::Current { staged: s } => {
                staged.set(s);
                Ok(())
            }
            Verdict::Rotated => {
                log::info!(
                    target: "outpost",
                    "device {device}: uses its new credentials (device rotate); its old secret and certificate are refused from now on"
                );
                Ok(())
            }
            Verdict::Refused(why) => Err(why.as_str()),
        })
    };
    crate::auth::check(state, peer, Scope::Api, device, unix_now(), verify, unauthorized)?;
    Ok((device, staged.get()))
}

/// The trust bundle (`crate::rollover`), to a registered device only, over
/// TLS only: agents take it from no other channel.
fn trust(state: &State, req: &Request, peer: IpAddr, cert: Option<Fingerprint>) -> Response {
    let (device, _) = match authenticate(state, req, peer, cert) {
        Ok(d) => d,
        Err(r) => return r,
    };
    match crate::rollover::published(&state.dir) {
        Some(bytes) => {
            let version = outpost_agent::engine::trust::Bundle::peek_version(&bytes).unwrap_or(0);
            log::info!(target: "outpost", "device {device}: sent trust bundle version {version}");
            Response {
                status: 200,
                headers: vec![("Content-Type", "application/octet-stream".into())],
                body: Body::Bytes(bytes),
            }
        }
        None => Response::text(404, "no trust bundle published"),
    }
}
