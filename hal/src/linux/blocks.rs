//! [`BlockStore`] over the files of one directory.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;

use super::{IoError, sync_dir};
use crate::ErrorType;
use crate::storage::BlockStore;

/// The files of one directory; keeps the last file used open.
#[derive(Debug)]
pub struct DirBlocks {
    root: PathBuf,
    open: Option<(String, File)>,
    /// Files created since the directory was last synced.
    dir_dirty: bool,
}

impl DirBlocks {
    /// A store over `root` (created if missing).
    pub fn open(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root)?;
        Ok(Self { root, open: None, dir_dirty: false })
    }

    /// Path of `name` in the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn file(&mut self, name: &str, create: bool) -> Result<&File, IoError> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(IoError(io::Error::new(io::ErrorKind::InvalidInput, "bad file name")));
        }
        if self.open.as_ref().is_none_or(|(n, _)| n != name) {
            let path = self.root.join(name);
            let existed = path.exists();
            let mut o = OpenOptions::new();
            o.read(true).write(true).create(create).truncate(false).mode(0o600).custom_flags(libc::O_NOFOLLOW);
            let f = o.open(&path)?;
            self.dir_dirty |= !existed;
            self.open = Some((name.to_string(), f));
        }
        match &self.open {
            Some((_, f)) => Ok(f),
            None => Err(IoError(io::Error::from(io::ErrorKind::NotFound))),
        }
    }
}

impl ErrorType for DirBlocks {
    type Error = IoError;
}

impl BlockStore for DirBlocks {
    fn write_at(&mut self, name: &str, offset: u64, data: &[u8]) -> Result<(), IoError> {
        Ok(self.file(name, true)?.write_all_at(data, offset)?)
    }

    fn read_at(&mut self, name: &str, offset: u64, buf: &mut [u8]) -> Result<usize, IoError> {
        Ok(self.file(name, false)?.read_at(buf, offset)?)
    }

    fn len(&mut self, name: &str) -> Result<u64, IoError> {
        Ok(self.file(name, false)?.metadata()?.len())
    }

    fn truncate(&mut self, name: &str, len: u64) -> Result<(), IoError> {
        Ok(self.file(name, true)?.set_len(len)?)
    }

    fn sync(&mut self, name: &str) -> Result<(), IoError> {
        self.file(name, true)?.sync_data()?;
        if self.dir_dirty {
            sync_dir(&self.root)?;
            self.dir_dirty = false;
        }
        Ok(())
    }

    fn remove(&mut self, name: &str) -> Result<(), IoError> {
        if self.open.as_ref().is_some_and(|(n, _)| n == name) {
            self.open = None;
        }
        match fs::remove_file(self.root.join(name)) {
            Ok(()) => Ok(sync_dir(&self.root)?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Error, ErrorKind};

    #[test]
    fn write_read_truncate_remove() {
        let d = std::env::temp_dir().join(format!("outpost-blocks-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        let mut b = DirBlocks::open(&d).unwrap();
        b.write_at("a", 3, b"xyz").unwrap();
        b.write_at("b", 0, b"1").unwrap();
        b.sync("a").unwrap();
        assert_eq!(b.len("a").unwrap(), 6);
        let mut buf = [9u8; 6];
        assert_eq!(b.read_at("a", 0, &mut buf).unwrap(), 6);
        assert_eq!(&buf, b"\0\0\0xyz");
        b.truncate("a", 4).unwrap();
        assert_eq!(b.len("a").unwrap(), 4);
        b.remove("a").unwrap();
        assert_eq!(b.len("a").unwrap_err().kind(), ErrorKind::NotFound);
        assert!(b.write_at("../x", 0, b"no").is_err());
        fs::remove_dir_all(&d).unwrap();
    }
}
