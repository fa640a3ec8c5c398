//! `device add`: register a device and write its agent configuration.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

use outpost_agent::engine::digest::hex;
use outpost_agent::engine::manifest::sha256;
use outpost_agent::engine::proto::valid_device_id;
use outpost_server::agent_config;
use outpost_server::config::ServerConfig;
use outpost_server::pki;
use ring::rand::SecureRandom;

use super::open_db;
use crate::cli::DeviceAddArgs;

/// Writes the agent's configuration to `a.agent_config`, then registers the device.
pub fn add(a: DeviceAddArgs) -> Result<(), String> {
    let DeviceAddArgs { dir, id, agent_config: out, state_dir } = a;
    if !valid_device_id(&id) {
        return Err(format!("device id {id:?}: use 1-128 of A-Za-z0-9._-"));
    }
    let cfg = ServerConfig::load(&dir)?;
    // During a CA rollover, both CAs: the device works before and after the switch.
    let ca = outpost_server::rollover::agent_ca_pem(&dir)?;
    let public = pki::signing_public_hex(&dir)?;
    let mut secret = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut secret).map_err(|_| "no randomness available")?;
    let secret = hex(&secret);
    let mut db = open_db(&dir)?;
    let state = state_dir.to_str().ok_or("--state-dir must be UTF-8")?;
    let text =
        agent_config::render(&agent_config::for_device(&cfg.public.server_url, &id, &secret, &public, &ca, state))?;
    // Write the file before registering, so a failure leaves no orphan device.
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&out)
        .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    f.set_permissions(fs::Permissions::from_mode(0o600)).map_err(|e| e.to_string())?;
    f.write_all(text.as_bytes()).map_err(|e| e.to_string())?;
    f.sync_all().map_err(|e| e.to_string())?;
    if !db.add_device(&id, &sha256(secret.as_bytes())).map_err(|e| e.to_string())? {
        let _ = fs::remove_file(&out);
        return Err(format!("device {id:?} already exists"));
    }
    println!("device {id} registered; agent configuration in {}", out.display());
    Ok(())
}
