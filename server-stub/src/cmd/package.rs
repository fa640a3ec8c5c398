//! `package add`: build a package and print its ID.

use outpost_server::config::ServerConfig;
use outpost_server::package;

use super::open_db;
use crate::cli::PackageAddArgs;

/// Builds the package `a.spec` describes in `a.dir` and prints its ID.
pub fn add(a: PackageAddArgs) -> Result<(), String> {
    ServerConfig::load(&a.dir)?;
    let spec = a.spec.into();
    let db = open_db(&a.dir)?;
    let id = package::add(&a.dir, &db, &spec)?;
    println!("{id}");
    Ok(())
}
