//! The `status` and `unblock` commands: what the console shows about
//! assignments and blocked clients, and lifting a block. Both work on
//! `DIR/state.db` directly, next to a running `serve` (which reads blocks
//! from the database on every authentication, so `unblock` takes effect at
//! once, without a restart).

use std::path::Path;

use crate::db::{BlockRow, Db, NOTIFIED, WAITING};
use crate::lockout::Client;
use crate::out::Out;
use crate::outln;
use crate::time::{rfc3339, unix_now};

fn open(dir: &Path) -> Result<Db, String> {
    Db::open_in(dir)
}

fn print_blocked(o: &mut Out, rows: &[BlockRow], now: u64, json: bool) -> Result<(), String> {
    if json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "address": r.client, "scope": r.scope, "identity": r.identity,
                    "blocked_until": rfc3339(r.blocked_until), "retry_after": r.blocked_until.saturating_sub(now),
                })
            })
            .collect();
        outln!(o, "{}", serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?);
        return Ok(());
    }
    outln!(o, "{:<28} {:<6} {:<32} {:<22} SECONDS LEFT", "BLOCKED ADDRESS", "SCOPE", "IDENTITY", "UNTIL");
    for r in rows {
        outln!(
            o,
            "{:<28} {:<6} {:<32} {:<22} {}",
            r.client,
            r.scope,
            r.identity,
            rfc3339(r.blocked_until),
            r.blocked_until.saturating_sub(now)
        );
    }
    Ok(())
}

/// `status`: per package the counts the OCS console shows, every device's
/// status, then the blocked clients. `json`: the assignments as a JSON
/// array of {package, name, device, status, updated}. `blocked`: only the
/// blocked clients (a JSON array of {address, scope, identity,
/// blocked_until, retry_after} with `json`).
pub fn status(dir: &Path, package: Option<u64>, json: bool, blocked: bool) -> Result<(), String> {
    let mut db = open(dir)?;
    let now = unix_now();
    let o = &mut Out::stdout();
    if blocked {
        return print_blocked(o, &db.blocked(now).map_err(|e| e.to_string())?, now, json);
    }
    // Rollouts move on when looked at (`fleet::rollout`): before the rows are read.
    let fleet = crate::fleet::status::fleet_status(&mut db, now).map_err(|e| e.to_string())?;
    let rows = db.status(package).map_err(|e| e.to_string())?;
    if json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({"package": r.package, "name": r.name, "device": r.device, "status": r.status, "updated": r.updated})
            })
            .collect();
        outln!(o, "{}", serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?);
        return Ok(());
    }
    // Per package, what the OCS console counts: waiting, notified, success, errors.
    let mut stats: Vec<(u64, String, [usize; 4])> = Vec::new();
    for r in &rows {
        if stats.last().is_none_or(|s| s.0 != r.package) {
            stats.push((r.package, r.name.clone(), [0; 4]));
        }
        let bucket = match r.status.as_str() {
            WAITING => 0,
            NOTIFIED => 1,
            s if s.starts_with("SUCCESS") => 2,
            _ => 3,
        };
        if let Some(last) = stats.last_mut() {
            last.2[bucket] += 1;
        }
    }
    outln!(o, "{:<12} {:<24} {:>8} {:>8} {:>8} {:>8}", "PACKAGE", "NAME", "WAITING", "NOTIFIED", "SUCCESS", "ERRORS");
    for (p, name, c) in &stats {
        outln!(o, "{p:<12} {name:<24} {:>8} {:>8} {:>8} {:>8}", c[0], c[1], c[2], c[3]);
    }
    outln!(o);
    ::std::io::Write::write_all(o, fleet.render().as_bytes()).map_err(|e| format!("stdout: {e}"))?;
    outln!(o, "{:<12} {:<24} {:<24} {:<22} UPDATED", "PACKAGE", "NAME", "DEVICE", "STATUS");
    for r in rows {
        outln!(o, "{:<12} {:<24} {:<24} {:<22} {}", r.package, r.name, r.device, r.status, r.updated);
    }
    let blocked = db.blocked(now).map_err(|e| e.to_string())?;
    if !blocked.is_empty() {
        outln!(o);
        print_blocked(o, &blocked, now, false)?;
    }
    Ok(())
}

/// `unblock --address ADDR`: lift every block of the client ADDR belongs to
/// (an IPv4 address, or an IPv6 /64) and clear its failure counts.
pub fn unblock(dir: &Path, address: &str) -> Result<(), String> {
    let client = Client::parse(address)
        .ok_or_else(|| format!("--address {address:?} is not an IP address (or an IPv6 /64 as status prints it)"))?;
    let n = open(dir)?.unblock(unix_now(), client).map_err(|e| e.to_string())?;
    let o = &mut Out::stdout();
    if n == 0 {
        outln!(o, "{client}: not blocked (failure counts cleared)");
    } else {
        outln!(o, "{client}: {n} block(s) lifted");
    }
    Ok(())
}
