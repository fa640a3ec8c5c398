//! `keys rotate`, `ca rotate`, `ca switch`: what `outpost_server::rollover`
//! does, told to the administrator with the next step.

use std::path::Path;

use outpost_server::config::ServerConfig;
use outpost_server::rollover;

/// A new package-signing key, the old one trusted `overlap_days` more.
pub fn rotate_key(dir: &Path, overlap_days: u32) -> Result<(), String> {
    ServerConfig::load(dir)?;
    let (key, version) = rollover::rotate_key(dir, overlap_days)?;
    println!(
        "new signing key {key}, published in trust bundle version {version}, vouched for by the old key; \
         new packages are signed with it, and those signed with the old key verify for {overlap_days} more days \
         (`package resign` moves one to the new key)"
    );
    Ok(())
}

/// Step 1 of a CA rollover: a new CA, published.
pub fn rotate_ca(dir: &Path, valid_years: u32) -> Result<(), String> {
    ServerConfig::load(dir)?;
    let (path, version) = rollover::rotate_ca(dir, valid_years)?;
    println!(
        "new CA {} published in trust bundle version {version}; the server still presents its certificate from \
         the old CA. Agents learn the new CA at their next poll: once every agent has polled, run \
         `outpost-server ca switch --dir {}` and restart serve",
        path.display(),
        dir.display()
    );
    Ok(())
}

/// Step 2: the server's certificate from the new CA.
pub fn switch_ca(dir: &Path) -> Result<(), String> {
    ServerConfig::load(dir)?;
    let names = rollover::switch_ca(dir)?;
    println!(
        "tls/server-cert.pem re-issued by the new CA for {}; the new CA is tls/ca-cert.pem, the old one \
         tls/ca-old-cert.pem (agents keep trusting both until the old one expires). Restart serve to present it; \
         tls/ca-key.pem may go offline again",
        names.join(", ")
    );
    Ok(())
}
