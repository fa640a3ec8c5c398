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

use crate::http::Response;
use crate::cidr::Cidr;
use crate::ct::constant_time_eq;
use crate::serve::State;

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

/// Handle one `POST /ocsinventory` from `peer`.
pub fn handle(state: &State, body: &[u8], authorization: Option<&str>, peer: IpAddr) -> Response {
    let ocs = &state.cfg.ocs;
    if !ocs.allow.iter().filter_map(|c| Cidr::parse(c)).any(|c| c.contains(peer)) {
        log::warn!(target: "outpost", "OCS request from {peer} refused: not in [ocs] allow");
        return Response::text(403, "forbidden");
    }
    if let Some(auth) = &ocs.basic_auth {
        let want = format!("Basic {}", base64(format!("{}:{}", auth.user, auth.password).as_bytes()));
        let ok = authorization.is_some_and(|got| constant_time_eq(got.trim().as_bytes(), want.as_bytes()));
        if !ok {
            let mut r = Response::text(401, "authorization required");
            r.headers.push(("WWW-Authenticate", format!("Basic realm=\"{}\"", auth.realm.replace('"', ""))));
            return r;
        }
    }
    let Some((xml, enc)) = decode(body) else { return Response::text(400, "body is not zlib, gzip or XML") };
    let req = match Request::parse(&xml) {
        Ok(r) => r,
        Err(e) => {
            log::warn!(target: "outpost", "OCS request from {peer} refused: {e}");
            return Response::text(400, e.to_string());
        }
    };
    let Ok(mut db) = state.db.lock() else { return Response::text(500, "database lock poisoned") };
    let db_err = |e: rusqlite::Error| {
        log::error!(target: "outpost", "database: {e}");
        Response::text(500, "database error")
    };
    match req {
        Request::Prolog { device_id } => {
            match db.ensure_ocs_device(&device_id) {
                Ok(true) => {}
                Ok(false) => {
                    log::warn!(target: "outpost", "OCS agent at {peer} claims the Outpost device id {device_id:?}");
                    return Response::text(403, "device id taken");
                }
                Err(e) => return db_err(e),
            }
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
            ocs_response(200, encode(&reply.to_xml(), enc))
        }
        Request::Download { device_id, id, err } => {
            match db.report_ocs(&device_id, id, &err) {
                Ok(true) => log::info!(target: "outpost", "OCS device {device_id}: package {id} -> {err}"),
                Ok(false) => {
                    log::warn!(target: "outpost", "OCS device {device_id}: report {err} for unassigned package {id}")
                }
                Err(e) => return db_err(e),
            }
            // The real server answers an empty 200.
            ocs_response(200, Vec::new())
        }
        Request::Inventory { device_id, history } => {
            if let Err(e) = db.ensure_ocs_device(&device_id).and_then(|_| db.set_history(&device_id, &history)) {
                return db_err(e);
            }
            ocs_response(200, encode(NO_ACCOUNT_UPDATE, enc))
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
    fn basic_credentials_are_base64_padded() {
        assert_eq!(base64(b"user:pw"), "dXNlcjpwdw==");
    }
}
