//! `device add`, `device revoke`, `device rotate`: a device's credentials
//! (a secret, and a client certificate signed by the server's CA) from its
//! registration to its end. The running server reads them from `state.db`
//! on every request, so each command takes effect there at once.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use outpost_agent::engine::digest::hex;
use outpost_agent::engine::identity::Credentials;
use outpost_agent::engine::manifest::sha256;
use outpost_agent::engine::proto::valid_device_id;
use outpost_server::agent_config;
use outpost_server::config::ServerConfig;
use outpost_server::db::Change;
use outpost_server::pki::{self, DeviceCert};
use ring::rand::SecureRandom;

use super::open_db;
use crate::cli::{DeviceAddArgs, DeviceArgs};

/// A new random secret: 64 hex digits.
fn new_secret() -> Result<String, String> {
    let mut secret = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut secret).map_err(|_| "no randomness available")?;
    Ok(hex(&secret))
}

/// `device`'s client certificate, or `None` when the CA's key is offline and
/// the server does not require one (said on stderr); an error when it does.
fn client_cert(dir: &Path, cfg: &ServerConfig, device: &str, command: &str) -> Result<Option<DeviceCert>, String> {
    match pki::issue_device_cert(dir, device)? {
        Some(c) => Ok(Some(c)),
        None if cfg.security.require_client_cert => Err(format!(
            "{command}: tls/ca-key.pem is not in {} (kept offline?) and server.toml requires client certificates \
             ([security] require_client_cert = true): bring the CA key back to DIR/tls/ca-key.pem (mode 0600) for \
             this command, then move it offline again",
            dir.display()
        )),
        None => {
            eprintln!(
                "outpost-server: note: tls/ca-key.pem is not here (kept offline?), so device {device} gets no client \
                 certificate and authenticates with its secret alone (enough while [security] require_client_cert \
                 is false). To give it one later, bring the key back and run `device rotate`."
            );
            Ok(None)
        }
    }
}

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
    let secret = new_secret()?;
    let mut db = open_db(&dir)?;
    if db.has_device(&id).map_err(|e| e.to_string())? {
        return Err(format!("device {id:?} already exists"));
    }
    let cert = client_cert(&dir, &cfg, &id, "device add")?;
    let state = state_dir.to_str().ok_or("--state-dir must be UTF-8")?;
    let mut agent = agent_config::for_device(&cfg.public.server_url, &id, &secret, &public, &ca, state);
    if let Some(c) = &cert {
        agent.server.client_cert = c.cert_pem.clone();
        agent.server.client_key = c.key_pem.clone();
    }
    let text = agent_config::render(&agent)?;
    // Write the file before registering, so a failure leaves no orphan device.
    // A new file only (O_EXCL: never an existing file or a link someone
    // planted there, which would keep its owner and could be read).
    let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&out).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            format!("{} already exists; give a new path (it holds a device's secret)", out.display())
        } else {
            format!("cannot write {}: {e}", out.display())
        }
    })?;
    f.set_permissions(fs::Permissions::from_mode(0o600)).map_err(|e| e.to_string())?;
    f.write_all(text.as_bytes()).map_err(|e| e.to_string())?;
    f.sync_all().map_err(|e| e.to_string())?;
    let fingerprint = cert.as_ref().map(DeviceCert::fingerprint);
    if !db.add_device_with_cert(&id, &sha256(secret.as_bytes()), fingerprint.as_ref()).map_err(|e| e.to_string())? {
        let _ = fs::remove_file(&out);
        return Err(format!("device {id:?} already exists"));
    }
    let with = if cert.is_some() { "secret and client certificate" } else { "secret" };
    println!("device {id} registered ({with}); agent configuration in {}", out.display());
    Ok(())
}

/// Revoke a device: its secret and certificate are refused from the next
/// request on, by the running server too.
pub fn revoke(a: DeviceArgs) -> Result<(), String> {
    let mut db = open_db(&a.dir)?;
    match db.revoke(&a.id).map_err(|e| e.to_string())? {
        Change::Done | Change::Replaced => {
            println!("device {} revoked: its secret and client certificate are refused from now on", a.id);
            Ok(())
        }
        Change::Revoked => {
            println!("device {} was already revoked", a.id);
            Ok(())
        }
        Change::NoDevice => Err(format!("no device {:?} registered with device add", a.id)),
    }
}

/// Stage a new secret and certificate for a device; its next poll gets them
/// over its verified channel, and the old ones keep working until it uses them.
pub fn rotate(a: DeviceArgs) -> Result<(), String> {
    let cfg = ServerConfig::load(&a.dir)?;
    let mut db = open_db(&a.dir)?;
    // Checked before a certificate is signed for it.
    if !db.has_device(&a.id).map_err(|e| e.to_string())? {
        return Err(format!("no device {:?} registered with device add", a.id));
    }
    if db.is_revoked(&a.id).map_err(|e| e.to_string())? {
        return Err(format!("device {:?} is revoked; a revoked device cannot be given new credentials", a.id));
    }
    let cert = client_cert(&a.dir, &cfg, &a.id, "device rotate")?;
    let new = Credentials {
        secret: new_secret()?,
        cert: cert.as_ref().map_or_else(Vec::new, |c| c.cert.clone()),
        key: cert.as_ref().map_or_else(Vec::new, |c| c.key.clone()),
    };
    let what = if cert.is_some() { "secret and client certificate" } else { "secret" };
    match db.stage_rotation(&a.id, &new).map_err(|e| e.to_string())? {
        Change::Done => {}
        Change::Replaced => println!("(this replaces the rotation staged before, which the device had not used)"),
        Change::NoDevice => return Err(format!("no device {:?} registered with device add", a.id)),
        Change::Revoked => return Err(format!("device {:?} is revoked", a.id)),
    }
    println!(
        "device {}: new {what} staged; its next poll delivers them over its verified channel, and its old ones \
         keep working until it uses the new ones",
        a.id
    );
    Ok(())
}
