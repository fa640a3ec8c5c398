//! Storage: free space of the state directory's filesystem, and files written
//! at offsets whose durability is explicit (`sync`).

use crate::ErrorType;

/// Space on the filesystem that holds the agent's state, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpaceInfo {
    /// Size of the filesystem.
    pub total: u64,
    /// Bytes an unprivileged writer may still use.
    pub available: u64,
}

/// Reports the space of one filesystem.
pub trait DiskSpace: ErrorType {
    /// Current total and available bytes.
    fn space(&mut self) -> Result<SpaceInfo, Self::Error>;
}

/// Files addressed by name (one path component), written at offsets.
///
/// Durability is explicit: after a power cut only what was `sync`ed is
/// there, so callers write data → `sync` → checkpoint → `sync`.
pub trait BlockStore: ErrorType {
    /// Write `data` at `offset` of `name` (created if missing, grown as needed).
    fn write_at(&mut self, name: &str, offset: u64, data: &[u8]) -> Result<(), Self::Error>;
    /// Read into `buf` from `offset`; returns the bytes read (0 at the end).
    fn read_at(&mut self, name: &str, offset: u64, buf: &mut [u8]) -> Result<usize, Self::Error>;
    /// Length of `name`; `NotFound` when absent.
    fn len(&mut self, name: &str) -> Result<u64, Self::Error>;
    /// Cut or extend `name` to `len` bytes.
    fn truncate(&mut self, name: &str, len: u64) -> Result<(), Self::Error>;
    /// Make `name`'s content (and its existence) durable.
    fn sync(&mut self, name: &str) -> Result<(), Self::Error>;
    /// Remove `name` durably; absent files are not an error.
    fn remove(&mut self, name: &str) -> Result<(), Self::Error>;
}

impl<T: BlockStore + ?Sized> BlockStore for &mut T {
    fn write_at(&mut self, name: &str, offset: u64, data: &[u8]) -> Result<(), Self::Error> {
        (**self).write_at(name, offset, data)
    }
    fn read_at(&mut self, name: &str, offset: u64, buf: &mut [u8]) -> Result<usize, Self::Error> {
        (**self).read_at(name, offset, buf)
    }
    fn len(&mut self, name: &str) -> Result<u64, Self::Error> {
        (**self).len(name)
    }
    fn truncate(&mut self, name: &str, len: u64) -> Result<(), Self::Error> {
        (**self).truncate(name, len)
    }
    fn sync(&mut self, name: &str) -> Result<(), Self::Error> {
        (**self).sync(name)
    }
    fn remove(&mut self, name: &str) -> Result<(), Self::Error> {
        (**self).remove(name)
    }
}

impl<T: DiskSpace + ?Sized> DiskSpace for &mut T {
    fn space(&mut self) -> Result<SpaceInfo, Self::Error> {
        (**self).space()
    }
}
