//! `device list`, `group …`, `assign --group` and `rollout …`.

use outpost_server::db::{Db, FleetDeviceRow as DeviceRow, NewRollout, valid_group_name};
use outpost_server::fleet::expr::Expr;
use outpost_server::fleet::members::{matching, members};
use outpost_server::fleet::rollout;
use outpost_server::time::{rfc3339, unix_now};

use super::open_db;
use crate::cli::{DeviceListArgs, GroupCmd, RolloutArgs, WaveArgs};

fn db_err(e: outpost_server::db::DbError) -> String {
    format!("state.db: {e}")
}

fn device_json(d: &DeviceRow) -> serde_json::Value {
    let f = &d.facts;
    serde_json::json!({
        "id": d.id, "kind": d.kind, "host": f.host, "os": f.os, "os_version": f.os_version, "arch": f.arch,
        "agent_version": f.agent, "free": f.free, "tags": f.tags, "address": d.address,
        "last_contact": d.last_contact.map(rfc3339),
    })
}

/// `device list [--where EXPR] [--json]`.
pub fn device_list(a: DeviceListArgs) -> Result<(), String> {
    let filter = a.filter.as_deref().map(Expr::parse).transpose().map_err(|e| format!("--where: {e}"))?;
    let db = open_db(&a.dir)?;
    let all = db.devices_with_facts().map_err(db_err)?;
    let now = unix_now();
    let rows: Vec<&DeviceRow> = match &filter {
        Some(f) => matching(&all, f, now),
        None => all.iter().collect(),
    };
    if a.json {
        let v: Vec<serde_json::Value> = rows.iter().map(|d| device_json(d)).collect();
        println!("{}", serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?);
        return Ok(());
    }
    println!(
        "{:<28} {:<7} {:<20} {:<8} {:<16} {:<8} {:<8} {:>12} {:<20} TAGS",
        "DEVICE", "KIND", "HOST", "OS", "OS VERSION", "ARCH", "AGENT", "FREE", "LAST CONTACT"
    );
    for d in rows {
        let f = &d.facts;
        println!(
            "{:<28} {:<7} {:<20} {:<8} {:<16} {:<8} {:<8} {:>12} {:<20} {}",
            d.id,
            d.kind,
            f.host,
            f.os,
            f.os_version,
            f.arch,
            f.agent,
            f.free.map_or_else(|| "-".into(), |v| v.to_string()),
            d.last_contact.map_or_else(|| "never".into(), rfc3339),
            f.tags.join(",")
        );
    }
    Ok(())
}

/// `group add | add-device | remove-device | list`.
pub fn group(cmd: GroupCmd) -> Result<(), String> {
    match cmd {
        GroupCmd::Add { dir, name, filter } => {
            if !valid_group_name(&name) {
                return Err(format!("group name {name:?}: use 1 to 64 of A-Za-z0-9._-"));
            }
            if let Some(f) = &filter {
                Expr::parse(f).map_err(|e| format!("--where: {e}"))?;
            }
            let mut db = open_db(&dir)?;
            if !db.add_group(&name, filter.as_deref()).map_err(db_err)? {
                return Err(format!("group {name:?} exists"));
            }
            match filter {
                Some(f) => println!("dynamic group {name} created: devices where {f}"),
                None => println!("static group {name} created"),
            }
        }
        GroupCmd::AddDevice(a) => {
            let mut db = static_group(&a.dir, &a.name)?;
            if !db.has_device(&a.device).map_err(db_err)? {
                return Err(format!("no device {:?}", a.device));
            }
            let added = db.group_add_device(&a.name, &a.device).map_err(db_err)?;
            rollout::evaluate(&mut db, unix_now()).map_err(|e| e.to_string())?;
            println!("{} {} group {}", a.device, if added { "added to" } else { "already in" }, a.name);
        }
        GroupCmd::RemoveDevice(a) => {
            let mut db = static_group(&a.dir, &a.name)?;
            if !db.group_remove_device(&a.name, &a.device).map_err(db_err)? {
                return Err(format!("{} is not in group {}", a.device, a.name));
            }
            rollout::evaluate(&mut db, unix_now()).map_err(|e| e.to_string())?;
            println!("{} removed from group {}", a.device, a.name);
        }
        GroupCmd::List { dir } => {
            let db = open_db(&dir)?;
            let devices = db.devices_with_facts().map_err(db_err)?;
            for g in db.groups().map_err(db_err)? {
                let m = members(&db, &g, &devices, unix_now()).map_err(|e| e.to_string())?;
                let what = g.filter.as_deref().map_or_else(|| "static".to_string(), |f| format!("where {f}"));
                println!("{} ({what}): {}", g.name, m.into_iter().collect::<Vec<_>>().join(" "));
            }
        }
    }
    Ok(())
}

fn static_group(dir: &std::path::Path, name: &str) -> Result<Db, String> {
    let db = open_db(dir)?;
    match db.group(name).map_err(db_err)? {
        None => Err(format!("no group {name:?}")),
        Some(g) if g.filter.is_some() => {
            Err(format!("group {name} is dynamic: its members are the devices matching its filter"))
        }
        Some(_) => Ok(db),
    }
}

/// `assign --package ID --group NAME [--waves …]`: a rollout.
pub fn assign_group(db: &mut Db, package: u64, group: &str, force: bool, w: &WaveArgs) -> Result<(), String> {
    if db.group(group).map_err(db_err)?.is_none() {
        return Err(format!("no group {group:?}"));
    }
    if let Some(id) = db.live_rollout_of(package, group).map_err(db_err)? {
        return Err(format!("package {package} is already rolling out to {group} (rollout {id}; rollout cancel {id})"));
    }
    let waves = w.waves.as_ref().map_or_else(|| vec![100], |w| w.0.clone());
    let r = NewRollout {
        package,
        group,
        force,
        waves: &waves,
        wave_wait: w.wave_wait,
        halt_above: w.halt_above.unwrap_or(100),
    };
    let id = rollout::start(db, &r, unix_now()).map_err(|e| e.to_string())?;
    let shares: Vec<String> = waves.iter().map(|p| format!("{p}%")).collect();
    println!(
        "package {package} assigned to group {group} (rollout {id}, waves {}; present and future members)",
        shares.join(",")
    );
    Ok(())
}

/// `rollout resume ID`.
pub fn resume(a: RolloutArgs) -> Result<(), String> {
    let mut db = open_db(&a.dir)?;
    let r = rollout::resume(&mut db, a.id, unix_now()).map_err(|e| e.to_string())?;
    println!("rollout {}: {}, wave {} of {}", r.id, r.state, r.wave + 1, r.waves.len());
    Ok(())
}

/// `rollout cancel ID`.
pub fn cancel(a: RolloutArgs) -> Result<(), String> {
    let mut db = open_db(&a.dir)?;
    let n = rollout::cancel(&mut db, a.id).map_err(|e| e.to_string())?;
    println!("rollout {} cancelled; {n} assignment(s) not yet sent withdrawn", a.id);
    Ok(())
}
