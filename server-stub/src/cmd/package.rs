//! `package add`: build a package and print its ID; `package resign`:
//! renew (or withdraw) its signed manifest.

use outpost_server::config::ServerConfig;
use outpost_server::package;

use super::open_db;
use crate::cli::{PackageAddArgs, PackageResignArgs};

/// Builds the package `a.spec` describes in `a.dir` and prints its ID.
pub fn add(a: PackageAddArgs) -> Result<(), String> {
    let cfg = ServerConfig::load(&a.dir)?;
    let spec = a.spec.into();
    let db = open_db(&a.dir)?;
    let id = package::add(&a.dir, &cfg.download_dir(&a.dir), &db, &spec)?;
    println!("{id}");
    Ok(())
}

/// Signs package `a.id`'s manifest again, valid `a.valid_days` from now.
pub fn resign(a: PackageResignArgs) -> Result<(), String> {
    let cfg = ServerConfig::load(&a.dir)?;
    let expires = package::resign(&a.dir, &cfg.download_dir(&a.dir), a.id, a.valid_days)?;
    println!("package {}: manifest signed again, valid until {expires} (seconds since 1970 UTC)", a.id);
    Ok(())
}
