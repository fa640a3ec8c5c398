//! The device's credentials on disk: `STATE/identity`, the record of
//! [`crate::engine::identity`] once a rotation (`outpost-server device
//! rotate`) has reached the device. Before that, and for a record made for
//! another device id, the configuration's secret and client certificate are
//! used.
//!
//! The file holds the secret and the client certificate's private key. It is
//! written through `write_atomic` (a new file 0600, fsync, rename, fsync of
//! the directory: a crash leaves the old record or the new one), and read
//! without following a link. A record that is not the agent's own or that
//! group or others can read is refused, not repaired: whoever could read it
//! may hold the device's key, and only a new rotation makes that harmless.

use std::fs::OpenOptions;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use outpost_hal::linux::{euid, write_atomic};

use super::config::{Config, ConfigError};
use crate::engine::identity::Identity;
use crate::engine::journal::{self, RecordError, kind};
use crate::engine::limits::MAX_RECORD_LEN;

/// The record's file name in the state directory.
pub const FILE: &str = "identity";

/// Why the credentials cannot be had.
#[derive(Debug)]
pub enum IdentityError {
    /// Reading or writing the record failed.
    Io(PathBuf, io::Error),
    /// The record does not decode, or holds credentials that are not well formed.
    Record(PathBuf, RecordError),
    /// The record belongs to another user, or group or others can read it (its mode).
    Exposed(PathBuf, u32),
    /// The configuration's credentials are unusable.
    Config(ConfigError),
}

impl std::fmt::Display for IdentityError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(p, e) => write!(f, "{}: {e}", p.display()),
            Self::Record(p, e) => write!(f, "{}: {e}", p.display()),
            Self::Exposed(p, mode) => write!(
                f,
                "refusing {}: it holds the device's secret and key, and it is not the agent's own or group or \
                 others can read it (mode {:04o}); give the device new credentials (outpost-server device rotate, \
                 then remove this file) rather than trust it",
                p.display(),
                mode & 0o7777
            ),
            Self::Config(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for IdentityError {}

/// The credentials to use: the record in `state_dir` if there is one for
/// this device, else the configuration's.
pub fn load(state_dir: &Path, cfg: &Config) -> Result<Identity, IdentityError> {
    let path = state_dir.join(FILE);
    let from_config =
        || Ok(Identity::new(cfg.server.device_id.clone(), cfg.credentials().map_err(IdentityError::Config)?));
    let file = match OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return from_config(),
        Err(e) => return Err(IdentityError::Io(path, e)),
    };
    let m = file.metadata().map_err(|e| IdentityError::Io(path.clone(), e))?;
    if !m.is_file() || m.uid() != euid() || m.mode() & 0o077 != 0 {
        return Err(IdentityError::Exposed(path, m.mode()));
    }
    let mut bytes = Vec::new();
    (&file).take(MAX_RECORD_LEN as u64 + 1).read_to_end(&mut bytes).map_err(|e| IdentityError::Io(path.clone(), e))?;
    let id: Identity = journal::decode(kind::IDENTITY, &bytes).map_err(|e| IdentityError::Record(path.clone(), e))?;
    if !id.current.is_valid() || id.previous.as_ref().is_some_and(|p| !p.is_valid()) {
        return Err(IdentityError::Record(path, RecordError::Body));
    }
    if id.device_id != cfg.server.device_id {
        log::warn!(
            target: "outpost",
            "{} holds credentials for device {:?}, not {:?}: using the configuration's",
            path.display(),
            id.device_id,
            cfg.server.device_id
        );
        return from_config();
    }
    Ok(id)
}

/// Store `id` durably in `state_dir` (mode 0600), before it is used.
pub fn save(state_dir: &Path, id: &Identity) -> Result<(), IdentityError> {
    let path = state_dir.join(FILE);
    let bytes = journal::encode(kind::IDENTITY, id).map_err(|e| IdentityError::Record(path.clone(), e))?;
    write_atomic(&path, &bytes).map_err(|e| IdentityError::Io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::identity::Credentials;
    use std::os::unix::fs::PermissionsExt;

    const CFG: &str = "[server]\nurl = \"https://h:1\"\ndevice_id = \"pc-1\"\nsecret = \"fromtheconfig0000\"\n\
                       ca_cert = \"pem\"\nsigning_key = \"0000000000000000000000000000000000000000000000000000000000000000\"\n\
                       [agent]\nstate_dir = \"/x\"\n";

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("outpost-identity-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn the_record_overrides_the_config_for_its_device_only() {
        let d = dir("override");
        let cfg = Config::parse(CFG).unwrap();
        assert_eq!(load(&d, &cfg).unwrap().current.secret, "fromtheconfig0000", "no record: the config's");
        let mut id = Identity::new("pc-1".into(), cfg.credentials().unwrap());
        id.received(Credentials { secret: "rotated0000000000".into(), cert: vec![1], key: vec![2] });
        save(&d, &id).unwrap();
        assert_eq!(std::fs::metadata(d.join(FILE)).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(load(&d, &cfg).unwrap(), id, "read back as saved");
        let other = Config::parse(&CFG.replace("pc-1", "pc-2")).unwrap();
        assert_eq!(load(&d, &other).unwrap().device_id, "pc-2", "another device's record is not used");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_record_others_can_read_is_refused() {
        let d = dir("exposed");
        let cfg = Config::parse(CFG).unwrap();
        save(&d, &Identity::new("pc-1".into(), cfg.credentials().unwrap())).unwrap();
        std::fs::set_permissions(d.join(FILE), std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load(&d, &cfg).unwrap_err();
        assert!(matches!(e, IdentityError::Exposed(_, m) if m & 0o777 == 0o644), "{e}");
        assert!(e.to_string().contains("device rotate"), "{e}");
        std::fs::remove_file(d.join(FILE)).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", d.join(FILE)).unwrap();
        assert!(matches!(load(&d, &cfg), Err(IdentityError::Io(..))), "a link is not followed");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
