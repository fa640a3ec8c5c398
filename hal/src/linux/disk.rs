//! Free space through `statvfs(2)`.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::IoError;
use crate::ErrorType;
use crate::storage::{DiskSpace, SpaceInfo};

/// The filesystem holding `path`.
#[derive(Debug, Clone)]
pub struct LinuxDisk {
    path: PathBuf,
}

impl LinuxDisk {
    /// Watch the filesystem that holds `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }
}

impl ErrorType for LinuxDisk {
    type Error = IoError;
}

impl DiskSpace for LinuxDisk {
    fn space(&mut self) -> Result<SpaceInfo, IoError> {
        space_of(&self.path)
    }
}

/// Total and available bytes of the filesystem that holds `path`.
pub fn space_of(path: &Path) -> Result<SpaceInfo, IoError> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| IoError(std::io::Error::from(std::io::ErrorKind::InvalidInput)))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is a valid NUL-terminated string and `st` points to writable
    // memory of the right size; statvfs fills it completely on success.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(IoError(std::io::Error::last_os_error()));
    }
    // SAFETY: statvfs returned 0, so the structure is initialised.
    let st = unsafe { st.assume_init() };
    // The field widths differ between platforms (u32 on some 32-bit ones).
    #[allow(clippy::unnecessary_cast)]
    let (frsize, blocks, avail) = (st.f_frsize as u64, st.f_blocks as u64, st.f_bavail as u64);
    Ok(SpaceInfo { total: blocks.saturating_mul(frsize), available: avail.saturating_mul(frsize) })
}
