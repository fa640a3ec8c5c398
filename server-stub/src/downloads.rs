//! The download directory: where `package add` publishes
//! `ID/{info, manifest, ID-1..ID-N}` and where `serve` (both listeners, the
//! Outpost and the OCS agents alike) reads them.
//!
//! By default it is `DIR/download`, inside the server directory, which is
//! 0700: a static server running as another user (Debian's nginx runs its
//! workers as `www-data`) cannot read it. `[server] download_dir` in
//! `server.toml` (`init --download-dir PATH`) puts it anywhere else, while
//! DIR stays 0700.
//!
//! What it holds is public by design: info files and fragments are checked
//! by agents against the signed manifest, and packages are meant to hold
//! nothing secret. So it is published world-readable, whatever the umask:
//! directories 0755, files 0644. The exception are packages published with
//! `PROTO=HTTPS` (their fragments are served on the TLS listener only):
//! their directory is 0700, so a static server beside it answers 403.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The download directory's name under DIR when `download_dir` is not set.
pub const DEFAULT: &str = "download";

/// Mode of the download directory and of a public package's directory.
pub const PUBLIC_DIR_MODE: u32 = 0o755;
/// Mode of a public package's files.
pub const PUBLIC_FILE_MODE: u32 = 0o644;
/// Mode of a `PROTO=HTTPS` package's directory (only the server reads it).
pub const PRIVATE_DIR_MODE: u32 = 0o700;
/// Mode of a `PROTO=HTTPS` package's files.
pub const PRIVATE_FILE_MODE: u32 = 0o600;

/// `[server]` in `server.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Section {
    /// The download directory; relative paths are under DIR. Not set:
    /// `DIR/download`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub download_dir: Option<PathBuf>,
}

impl Section {
    /// Nothing set (the table is then left out of `server.toml`).
    pub fn is_default(&self) -> bool {
        self.download_dir.is_none()
    }

    /// The download directory of the server in `dir`.
    pub fn download_dir(&self, dir: &Path) -> PathBuf {
        match &self.download_dir {
            Some(p) => dir.join(p),
            None => dir.join(DEFAULT),
        }
    }
}

/// Create the download directory `path` (and its parents) if missing, and
/// make it [`PUBLIC_DIR_MODE`].
pub fn create(path: &Path) -> io::Result<()> {
    fs::create_dir_all(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(PUBLIC_DIR_MODE))
}

/// Give a package's directory `pkg` and its files the modes of their kind
/// (`public`: readable by all; else the server's user only), whatever the
/// umask was when they were written. Called before the directory is
/// renamed into place, so a static server never sees other modes.
pub fn set_modes(pkg: &Path, public: bool) -> io::Result<()> {
    let (dir_mode, file_mode) =
        if public { (PUBLIC_DIR_MODE, PUBLIC_FILE_MODE) } else { (PRIVATE_DIR_MODE, PRIVATE_FILE_MODE) };
    for entry in fs::read_dir(pkg)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            fs::set_permissions(entry.path(), fs::Permissions::from_mode(file_mode))?;
        }
    }
    fs::set_permissions(pkg, fs::Permissions::from_mode(dir_mode))
}

/// Which packages publish their fragments on the TLS listener only
/// (`PROTO=HTTPS`), remembered per package: a package's protocol never
/// changes once it is added, so a plain-HTTP fragment request costs the
/// database one read per package, not one per request (each took the
/// database lock that polls wait on). At most [`HttpsOnly::MAX`] packages
/// are remembered; past that the memory starts again.
#[derive(Default)]
pub struct HttpsOnly(std::sync::Mutex<std::collections::HashMap<u64, bool>>);

impl HttpsOnly {
    /// Packages remembered, at most.
    pub const MAX: usize = 4096;

    /// Whether package `id` is HTTPS-only, from memory or from `lookup`
    /// (which is remembered when it answers).
    pub fn get(&self, id: u64, lookup: impl FnOnce() -> Option<bool>) -> Option<bool> {
        if let Some(&known) = self.0.lock().ok()?.get(&id) {
            return Some(known);
        }
        let found = lookup()?;
        let mut map = self.0.lock().ok()?;
        if map.len() >= Self::MAX {
            map.clear();
        }
        map.insert(id, found);
        Some(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn default_is_under_dir_and_a_set_path_anywhere() {
        let d = Path::new("/srv/outpost");
        assert_eq!(Section::default().download_dir(d), d.join("download"));
        let abs = Section { download_dir: Some("/var/www/outpost".into()) };
        assert_eq!(abs.download_dir(d), Path::new("/var/www/outpost"));
        let rel = Section { download_dir: Some("pub".into()) };
        assert_eq!(rel.download_dir(d), d.join("pub"));
        assert!(Section::default().is_default() && !abs.is_default());
    }

    #[test]
    fn packages_get_their_modes_whatever_the_umask() {
        let t = std::env::temp_dir().join(format!("outpost-downloads-{}", std::process::id()));
        let _ = fs::remove_dir_all(&t);
        create(&t.join("dl")).unwrap();
        assert_eq!(mode(&t.join("dl")), PUBLIC_DIR_MODE);
        for (name, public, dm, fm) in [("1", true, 0o755, 0o644), ("2", false, 0o700, 0o600)] {
            let pkg = t.join("dl").join(name);
            fs::create_dir(&pkg).unwrap();
            fs::set_permissions(&pkg, fs::Permissions::from_mode(0o700)).unwrap();
            let f = pkg.join(format!("{name}-1"));
            fs::write(&f, b"x").unwrap();
            fs::set_permissions(&f, fs::Permissions::from_mode(0o640)).unwrap();
            set_modes(&pkg, public).unwrap();
            assert_eq!((mode(&pkg), mode(&f)), (dm, fm), "package {name}");
        }
        fs::remove_dir_all(&t).unwrap();
    }

    #[test]
    fn a_package_is_looked_up_once_and_an_error_is_not_remembered() {
        let c = HttpsOnly::default();
        assert_eq!(c.get(7, || None), None, "the lookup failed");
        assert_eq!(c.get(7, || Some(true)), Some(true));
        assert_eq!(c.get(7, || panic!("looked up again")), Some(true));
    }
}
