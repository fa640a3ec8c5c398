//! `depot add`, `depot list`, `depot remove`, `depot sync`: more locations
//! of `DIR/download` for the devices of a network ([`outpost_server::depot`]).
//! The running server reads them from `state.db` at every poll.

use std::path::Path;

use outpost_agent::engine::proto::valid_location;
use outpost_server::cidr::Cidr;
use outpost_server::db::Depot;

use super::open_db;

/// Records a depot at `loc` for `networks` (none: every device).
pub fn add(dir: &Path, loc: &str, networks: Vec<Cidr>) -> Result<(), String> {
    if !valid_location(loc) {
        return Err(format!("--loc {loc:?}: give HOST[:PORT]/PATH, without a scheme (depots serve plain HTTP)"));
    }
    let mut db = open_db(dir)?;
    db.add_depot(&Depot { loc: loc.to_string(), networks }).map_err(|e| e.to_string())?;
    println!(
        "depot {loc} added; fill it with `outpost-server depot sync --dir DIR --to PATH` (or rsync DIR/download/)"
    );
    Ok(())
}

/// Prints each depot and its networks.
pub fn list(dir: &Path) -> Result<(), String> {
    for d in open_db(dir)?.depots().map_err(|e| e.to_string())? {
        let nets: Vec<String> = d.networks.iter().map(Cidr::to_string).collect();
        println!("{} {}", d.loc, if nets.is_empty() { "every device".to_string() } else { nets.join(",") });
    }
    Ok(())
}

/// Forgets the depot at `loc`.
pub fn remove(dir: &Path, loc: &str) -> Result<(), String> {
    if !open_db(dir)?.remove_depot(loc).map_err(|e| e.to_string())? {
        return Err(format!("no depot {loc}"));
    }
    println!("depot {loc} removed");
    Ok(())
}

/// Copies the download directory (`DIR/download` or `[server] download_dir`) into `to`, but packages published with `--proto
/// https` (and directories that are no package id).
pub fn sync(dir: &Path, to: &Path) -> Result<(), String> {
    let cfg = outpost_server::config::ServerConfig::load(dir)?;
    let db = open_db(dir)?;
    let https = |id| db.package_is_https(id).unwrap_or(true);
    let private = |name: &str| outpost_server::depot::stays_private(name, &https);
    let s = outpost_server::depot::sync(&cfg.download_dir(dir), to, &private).map_err(|e| e.to_string())?;
    println!("{} file(s) copied ({} bytes), {} already there", s.copied, s.bytes, s.same);
    Ok(())
}
