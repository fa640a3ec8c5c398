//! `package check`: like the OCS console's activation check, fetch a
//! package's info file, manifest and every fragment from every location
//! devices are told to use, and verify them against the signed manifest,
//! so that a broken mirror is found before a device finds it.
//!
//! The locations ([`locations`]): info and manifest from `public.info_loc`
//! over HTTPS (verified against the server's CA), fragments from the
//! server's own listener and from `public.fragment_loc` (HTTPS for a
//! `PROTO=HTTPS` package). A new kind of location (a depot) is one more
//! [`Location`] in that list. Each fetch is bounded by the size the
//! manifest gives; the client is a small HTTP/1.1 one on std and rustls.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use outpost_agent::engine::digest::hex;
use outpost_agent::engine::manifest::{Manifest, sha256};

use crate::config::ServerConfig;

/// Longest head of a response read.
const MAX_HEAD: usize = 16 * 1024;
/// Longest info file or manifest read.
const MAX_META: u64 = 1 << 20;
/// Connect, read and write timeout.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Where devices fetch from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// What it is, for the report (`server`, `fragment_loc`, a depot's name).
    pub name: String,
    /// `host[:port]/path`, as the poll and the PROLOG give it.
    pub base: String,
    /// Over TLS (verified against the server's CA).
    pub https: bool,
}

/// The result of checking one file at one location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The location's name.
    pub location: String,
    /// The URL fetched.
    pub url: String,
    /// `None`: fetched and verified; else what is wrong.
    pub problem: Option<String>,
}

/// The locations devices are told to use for a package: info and manifest
/// from the first, fragments from the others (the server, `fragment_loc`,
/// and every depot, `depots`, for a package served over plain HTTP).
pub fn locations(cfg: &ServerConfig, https_fragments: bool, depots: &[crate::db::Depot]) -> Vec<Location> {
    let meta = Location { name: "server (info, manifest)".into(), base: cfg.public.info_loc.clone(), https: true };
    let mut out = vec![meta];
    if https_fragments {
        out.push(Location { name: "server (HTTPS fragments)".into(), base: cfg.public.info_loc.clone(), https: true });
        return out;
    }
    let own = format!("{}/download", cfg.listen.http);
    out.push(Location { name: "server".into(), base: own.clone(), https: false });
    if cfg.public.fragment_loc != own {
        out.push(Location { name: "fragment_loc".into(), base: cfg.public.fragment_loc.clone(), https: false });
    }
    for d in depots {
        out.push(Location { name: format!("depot {}", d.loc), base: d.loc.clone(), https: false });
    }
    out
}

/// A client that trusts the server's CA (`DIR/tls/ca-cert.pem`).
fn tls_config(dir: &Path) -> Result<Arc<rustls::ClientConfig>, String> {
    let pem = std::fs::read(dir.join("tls/ca-cert.pem")).map_err(|e| format!("tls/ca-cert.pem: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(c.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// GET `https?://base/rel`, at most `limit` bytes of body; the body of a 200.
fn get(tls: &Arc<rustls::ClientConfig>, loc: &Location, rel: &str, limit: u64) -> Result<Vec<u8>, String> {
    let (authority, path) = loc.base.split_once('/').unwrap_or((&loc.base, ""));
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
            (h, p.parse::<u16>().map_err(|_| format!("bad port in {authority}"))?)
        }
        _ => (authority, if loc.https { 443 } else { 80 }),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .map_err(|e| format!("{host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host}: no address"))?;
    let tcp = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    let req = format!(
        "GET /{path}{}{rel} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n",
        if path.is_empty() { "" } else { "/" }
    );
    let limit = limit.saturating_add(MAX_HEAD as u64);
    let mut raw = Vec::new();
    if loc.https {
        let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
        let conn = rustls::ClientConnection::new(tls.clone(), name).map_err(|e| e.to_string())?;
        let mut s = rustls::StreamOwned::new(conn, tcp);
        s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        read_to_close(&mut s, limit, &mut raw)?;
    } else {
        let mut s = tcp;
        s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        read_to_close(&mut s, limit, &mut raw)?;
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(head)) = resp.parse(&raw) else {
        return Err("malformed or truncated HTTP response".into());
    };
    if resp.code != Some(200) {
        return Err(format!("HTTP {}", resp.code.unwrap_or(0)));
    }
    let header = |n: &str| resp.headers.iter().find(|h| h.name.eq_ignore_ascii_case(n)).map(|h| h.value);
    if header("transfer-encoding").is_some() {
        return Err("answered with a Transfer-Encoding (expected a plain file)".into());
    }
    let body = raw[head..].to_vec();
    if let Some(len) = header("content-length").and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<usize>().ok())
        && len != body.len()
    {
        return Err(format!("body of {} bytes, Content-Length {len}", body.len()));
    }
    Ok(body)
}

/// Read until the peer closes, refusing more than `limit` bytes. A TLS
/// peer that closes without close_notify is accepted (the length is checked).
fn read_to_close(r: &mut impl Read, limit: u64, out: &mut Vec<u8>) -> Result<(), String> {
    match r.take(limit + 1).read_to_end(out) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(e) => return Err(e.to_string()),
    }
    if out.len() as u64 > limit { Err(format!("more than {limit} bytes")) } else { Ok(()) }
}

/// The manifest's signing keys: the current one and those the published trust bundle lists.
fn keys(dir: &Path) -> Result<Vec<[u8; 32]>, String> {
    let key = crate::pki::signing_key(dir)?;
    let mut public = [0u8; 32];
    public.copy_from_slice(ring::signature::KeyPair::public_key(&key).as_ref());
    let mut keys = vec![public];
    if let Some(b) = crate::rollover::published(dir)
        && let Ok((bundle, _, _)) = outpost_agent::engine::trust::Bundle::decode(&b)
    {
        keys.extend(bundle.keys.iter().map(|k| k.public));
    }
    Ok(keys)
}

/// Check package `id` (fragments over HTTPS if `https`) at every location;
/// one finding per file and location. `Err` only when the check cannot run.
pub fn check(
    dir: &Path,
    cfg: &ServerConfig,
    id: u64,
    https: bool,
    depots: &[crate::db::Depot],
) -> Result<Vec<Finding>, String> {
    check_at(dir, id, &locations(cfg, https, depots))
}

/// [`check`] with the locations given: info and manifest from the first,
/// fragments from each of the others.
pub fn check_at(dir: &Path, id: u64, locs: &[Location]) -> Result<Vec<Finding>, String> {
    let tls = tls_config(dir)?;
    let keys = keys(dir)?;
    let (meta, frag_locs) = locs.split_first().ok_or("no location")?;
    let mut out = Vec::new();
    let url = |l: &Location, rel: &str| format!("{}://{}/{rel}", if l.https { "https" } else { "http" }, l.base);
    let mut finding = |l: &Location, rel: &str, problem: Option<String>| {
        out.push(Finding { location: l.name.clone(), url: url(l, rel), problem });
    };
    let m_rel = format!("{id}/manifest");
    let manifest = match get(&tls, meta, &m_rel, MAX_META)
        .and_then(|b| Manifest::decode_verified_any(&b, &keys).map_err(|e| format!("manifest refused: {e}")))
    {
        Ok(m) if m.package_id == id => m,
        Ok(m) => {
            return Ok(vec![Finding {
                location: meta.name.clone(),
                url: url(meta, &m_rel),
                problem: Some(format!("manifest is for package {}", m.package_id)),
            }]);
        }
        Err(e) => {
            finding(meta, &m_rel, Some(e));
            return Ok(out);
        }
    };
    finding(meta, &m_rel, None);
    let i_rel = format!("{id}/info");
    let info = get(&tls, meta, &i_rel, MAX_META).and_then(|b| {
        let got = sha256(&b);
        if got == manifest.info_sha256 {
            Ok(())
        } else {
            Err(format!("info SHA-256 {} is not the signed {}", hex(&got), hex(&manifest.info_sha256)))
        }
    });
    finding(meta, &i_rel, info.err());
    for loc in frag_locs {
        let mut whole = ring::digest::Context::new(&ring::digest::SHA256);
        let mut intact = true;
        for (i, f) in manifest.fragments.iter().enumerate() {
            let rel = format!("{id}/{id}-{}", i + 1);
            let r = get(&tls, loc, &rel, f.size).and_then(|b| {
                let got = sha256(&b);
                if b.len() as u64 != f.size {
                    Err(format!("{} bytes, the manifest says {}", b.len(), f.size))
                } else if got != f.sha256 {
                    Err(format!("SHA-256 {} is not the signed {}", hex(&got), hex(&f.sha256)))
                } else {
                    whole.update(&b);
                    Ok(())
                }
            });
            intact &= r.is_ok();
            finding(loc, &rel, r.err());
        }
        if intact && whole.finish().as_ref() != manifest.archive_sha256 {
            finding(loc, &format!("{id}/*"), Some("the fragments do not make the signed archive".into()));
        }
    }
    Ok(out)
}
