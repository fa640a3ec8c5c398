//! Durable writes on a real filesystem: data → fsync → rename → fsync(dir).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::storage::DurableStore;
use crate::{Error, ErrorKind, ErrorType};

/// An `std::io::Error` with a HAL [`ErrorKind`].
#[derive(Debug)]
pub struct IoError(pub io::Error);

impl core::fmt::Display for IoError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for IoError {}

impl From<io::Error> for IoError {
    fn from(e: io::Error) -> Self {
        Self(e)
    }
}

impl Error for IoError {
    fn kind(&self) -> ErrorKind {
        match self.0.kind() {
            io::ErrorKind::NotFound => ErrorKind::NotFound,
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => ErrorKind::StorageFull,
            io::ErrorKind::TimedOut => ErrorKind::TimedOut,
            io::ErrorKind::Unsupported => ErrorKind::Unsupported,
            _ => ErrorKind::Io,
        }
    }
}

/// fsync a directory, so that renames and creations in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replace `path` with `data`: write `path.tmp`, fsync it, rename over
/// `path`, fsync the parent directory. A crash leaves the old or the new file.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or_else(|| Path::new("."));
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(".tmp");
    let tmp = parent.join(tmp_name);
    {
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    sync_dir(parent)
}

/// A [`DurableStore`] over one directory.
#[derive(Debug, Clone)]
pub struct DirStore {
    root: PathBuf,
}

impl DirStore {
    /// A store rooted at `root`, created if missing.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root)?;
        Ok(Self { root })
    }

    fn path(&self, name: &str) -> Result<PathBuf, IoError> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(IoError(io::Error::new(io::ErrorKind::InvalidInput, "bad object name")));
        }
        Ok(self.root.join(name))
    }
}

impl ErrorType for DirStore {
    type Error = IoError;
}

impl DurableStore for DirStore {
    fn write_atomic(&mut self, name: &str, data: &[u8]) -> Result<(), IoError> {
        Ok(write_atomic(&self.path(name)?, data)?)
    }

    fn read(&mut self, name: &str, out: &mut Vec<u8>) -> Result<(), IoError> {
        out.clear();
        File::open(self.path(name)?)?.read_to_end(out)?;
        Ok(())
    }

    fn remove(&mut self, name: &str) -> Result<(), IoError> {
        match fs::remove_file(self.path(name)?) {
            Ok(()) => Ok(sync_dir(&self.root)?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linux::space_of;

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("outpost-hal-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp() {
        let d = tempdir("atomic");
        let mut s = DirStore::open(&d).unwrap();
        s.write_atomic("state", b"one").unwrap();
        s.write_atomic("state", b"two").unwrap();
        let mut out = Vec::new();
        s.read("state", &mut out).unwrap();
        assert_eq!(out, b"two");
        assert!(!d.join("state.tmp").exists());
        s.remove("state").unwrap();
        assert_eq!(s.read("state", &mut out).unwrap_err().kind(), ErrorKind::NotFound);
        assert!(s.write_atomic("../escape", b"x").is_err());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn statvfs_reports_space() {
        let s = space_of(Path::new("/")).unwrap();
        assert!(s.total > 0 && s.available <= s.total);
        assert!(space_of(Path::new("/nonexistent/really")).is_err());
    }
}
