//! `package list`, `package show`, `package delete` and `package check`.

use outpost_server::check;
use outpost_server::config::ServerConfig;
use outpost_server::db::{Db, PackageRow};

use super::open_db;
use crate::cli::{PackageDeleteArgs, PackageIdArgs, PackageListArgs};

fn db_err(e: outpost_server::db::DbError) -> String {
    format!("state.db: {e}")
}

fn find(db: &Db, id: u64) -> Result<PackageRow, String> {
    db.packages().map_err(db_err)?.into_iter().find(|p| p.id == id).ok_or_else(|| format!("no package {id}"))
}

/// `package list [--json]`.
pub fn list(a: PackageListArgs) -> Result<(), String> {
    let rows = open_db(&a.dir)?.packages().map_err(db_err)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?);
        return Ok(());
    }
    println!(
        "{:<12} {:<24} {:<8} {:>12} {:>6} {:>8} {:>8} {:>8} {:>8}  STATE",
        "PACKAGE", "NAME", "ACTION", "SIZE", "FRAGS", "WAITING", "NOTIFIED", "SUCCESS", "ERRORS"
    );
    for p in rows {
        let c = p.counts;
        let state = match (&p.deleted, p.all) {
            (Some(d), _) => format!("deleted {d}"),
            (None, true) => "assigned to all".into(),
            (None, false) => String::new(),
        };
        println!(
            "{:<12} {:<24} {:<8} {:>12} {:>6} {:>8} {:>8} {:>8} {:>8}  {state}",
            p.id, p.name, p.action, p.size, p.frags, c[0], c[1], c[2], c[3]
        );
    }
    Ok(())
}

/// `package show ID`.
pub fn show(a: PackageIdArgs) -> Result<(), String> {
    let cfg = ServerConfig::load(&a.dir)?;
    let db = open_db(&a.dir)?;
    let p = find(&db, a.id)?;
    let pdir = cfg.download_dir(&a.dir).join(a.id.to_string());
    println!(
        "package {}: {} ({}, priority {}, {} bytes in {} fragment(s))",
        p.id, p.name, p.action, p.priority, p.size, p.frags
    );
    println!("created {}{}", p.created, p.deleted.as_ref().map_or(String::new(), |d| format!(", deleted {d}")));
    match std::fs::read_to_string(pdir.join("info")) {
        Ok(info) => println!("\ninfo:\n{}", info.trim_end()),
        Err(e) => println!("\ninfo: {e}"),
    }
    match std::fs::read(pdir.join("manifest"))
        .ok()
        .and_then(|b| outpost_agent::engine::manifest::Manifest::decode_unverified(&b))
    {
        Some(m) => {
            println!(
                "\nmanifest: version {}, created {}, expires {}",
                m.version,
                outpost_server::time::rfc3339(m.created),
                m.expires.map_or_else(|| "never".into(), outpost_server::time::rfc3339)
            );
            println!(
                "  archive {} bytes, SHA-256 {}",
                m.archive_size,
                outpost_agent::engine::digest::hex(&m.archive_sha256)
            );
            if let Some(r) = &m.release {
                println!("  release {} {}{}", r.name, r.version, if r.downgrade { " (downgrade)" } else { "" });
            }
        }
        None => println!("\nmanifest: none readable"),
    }
    println!("\nlocations:");
    for l in check::locations(&cfg, p.https, &db.depots().map_err(db_err)?) {
        println!("  {:<26} {}://{}", l.name, if l.https { "https" } else { "http" }, l.base);
    }
    println!(
        "\nassignments: {} waiting, {} notified, {} success, {} errors{}",
        p.counts[0],
        p.counts[1],
        p.counts[2],
        p.counts[3],
        if p.all { "; assigned to all devices" } else { "" }
    );
    for r in db.rollouts(false).map_err(db_err)?.iter().filter(|r| r.package == a.id) {
        println!(
            "  rollout {} to group {}: {}{}",
            r.id,
            r.group,
            r.state,
            if r.reason.is_empty() { String::new() } else { format!(" ({})", r.reason) }
        );
    }
    for r in db.status(Some(a.id)).map_err(db_err)? {
        println!("  {:<28} {:<24} {}", r.device, r.status, r.updated);
    }
    Ok(())
}

/// `package delete ID [--force]`.
pub fn delete(a: PackageDeleteArgs) -> Result<(), String> {
    let mut db = open_db(&a.dir)?;
    let p = find(&db, a.id)?;
    if p.deleted.is_some() {
        return Err(format!("package {} was deleted already", a.id));
    }
    let live = db.rollouts(true).map_err(db_err)?.iter().any(|r| r.package == a.id && r.state != "done");
    if (p.assigned() || live) && !a.force {
        return Err(format!(
            "package {} is assigned ({} waiting, {} notified{}{}); unaffect it first, or delete with --force",
            a.id,
            p.counts[0],
            p.counts[1],
            if p.all { ", to all devices" } else { "" },
            if live { ", a rollout" } else { "" }
        ));
    }
    let n = db.delete_package(a.id).map_err(db_err)?;
    let pdir = ServerConfig::load(&a.dir)?.download_dir(&a.dir).join(a.id.to_string());
    match std::fs::remove_dir_all(&pdir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{}: {e} (the package is deleted in state.db)", pdir.display())),
    }
    println!("package {} deleted: files removed, {n} pending assignment(s) withdrawn; the install history stays", a.id);
    Ok(())
}

/// `package check ID`: exit non-zero if any location serves a bad file.
pub fn check(a: PackageIdArgs) -> Result<(), String> {
    let cfg = ServerConfig::load(&a.dir)?;
    let db = open_db(&a.dir)?;
    let p = find(&db, a.id)?;
    if p.deleted.is_some() {
        return Err(format!("package {} was deleted", a.id));
    }
    let findings = check::check(&a.dir, &cfg, a.id, p.https, &db.depots().map_err(db_err)?)?;
    let bad = findings.iter().filter(|f| f.problem.is_some()).count();
    for f in &findings {
        match &f.problem {
            None => println!("ok    {:<26} {}", f.location, f.url),
            Some(e) => println!("BAD   {:<26} {}: {e}", f.location, f.url),
        }
    }
    if bad > 0 {
        return Err(format!("package {}: {bad} of {} file(s) bad", a.id, findings.len()));
    }
    println!("package {}: every file verified at every location", a.id);
    Ok(())
}
