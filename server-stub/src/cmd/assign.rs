//! The commands that change which devices a package is for: `assign`, `validate`, `unaffect`
//! (`assign --group` is in `fleet.rs`).

use std::path::Path;

use super::open_db;
use crate::cli::AssignArgs;

/// Assigns `a.package` to one device, to every device (present and future) or to a group (a rollout).
pub fn assign(a: AssignArgs) -> Result<(), String> {
    let mut db = open_db(&a.dir)?;
    if !db.has_package(a.package).map_err(|e| e.to_string())? {
        return Err(format!("no package {}", a.package));
    }
    if a.target.group.is_none()
        && (a.waves.waves.is_some() || a.waves.wave_wait.is_some() || a.waves.halt_above.is_some())
    {
        return Err("--waves, --wave-wait and --halt-above go with --group".into());
    }
    if let Some(g) = &a.target.group {
        return super::fleet::assign_group(&mut db, a.package, g, a.force, &a.waves);
    }
    if let Some(d) = &a.target.device
        && !db.has_device(d).map_err(|e| e.to_string())?
    {
        return Err(format!("no device {d:?}"));
    }
    let n = db.assign(a.package, a.target.device.as_deref(), a.force).map_err(|e| e.to_string())?;
    match &a.target.device {
        Some(d) => println!("package {} assigned to {d}", a.package),
        None => println!("package {} assigned to all devices ({n} now, and every future one)", a.package),
    }
    Ok(())
}

/// Clears the package's successful devices from the status (OCS "validate").
pub fn validate(dir: &Path, package: u64) -> Result<(), String> {
    let mut db = open_db(dir)?;
    let n = db.validate(package).map_err(|e| e.to_string())?;
    println!("package {package}: {n} successful device(s) cleared");
    Ok(())
}

/// Removes the package from devices (OCS "unaffect").
pub fn unaffect(dir: &Path, package: u64, not_notified: bool) -> Result<(), String> {
    let mut db = open_db(dir)?;
    let n = db.unaffect(package, not_notified).map_err(|e| e.to_string())?;
    println!("package {package}: removed from {n} device(s)");
    Ok(())
}
