//! A filesystem's free space, set by the test.

use crate::storage::{DiskSpace, SpaceInfo};
use crate::{ErrorKind, ErrorType};

/// A filesystem's space, set by the test: a disk that fills up, or gets
/// space back.
#[derive(Debug, Default, Clone)]
pub struct SimDisk {
    total: u64,
    available: u64,
    /// Fail every `space` call (a filesystem that cannot be asked).
    broken: bool,
}

impl SimDisk {
    /// An empty disk of `capacity` bytes.
    pub fn new(capacity: u64) -> Self {
        Self { total: capacity, available: capacity, broken: false }
    }

    /// Make `available` bytes free (at most the capacity).
    pub fn set_available(&mut self, available: u64) {
        self.available = available.min(self.total);
    }

    /// Make the next `space` calls fail (`true`) or answer again (`false`).
    pub fn set_broken(&mut self, broken: bool) {
        self.broken = broken;
    }
}

impl ErrorType for SimDisk {
    type Error = ErrorKind;
}

impl DiskSpace for SimDisk {
    fn space(&mut self) -> Result<SpaceInfo, ErrorKind> {
        if self.broken {
            return Err(ErrorKind::Io);
        }
        Ok(SpaceInfo { total: self.total, available: self.available })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_full_then_space_returns() {
        let mut d = SimDisk::new(10);
        d.set_available(0);
        assert_eq!(d.space().unwrap(), SpaceInfo { total: 10, available: 0 });
        d.set_available(99);
        assert_eq!(d.space().unwrap().available, 10, "never more than the capacity");
        d.set_broken(true);
        assert!(d.space().is_err());
    }
}
