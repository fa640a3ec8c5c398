//! A block store whose unsynced state vanishes on a power cut and that can run full.

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::{ErrorKind, ErrorType};

#[derive(Debug, Default, Clone)]
struct SimFile {
    durable: Option<Vec<u8>>,
    pending: Vec<u8>,
}

/// A [`BlockStore`](crate::storage::BlockStore) with a power switch.
///
/// Every file has a durable image (what survives) and a pending one (what
/// reads see). `sync` makes pending durable. `power_cut_after(n)`: the n-th
/// next `write_at` fails with [`ErrorKind::PowerLoss`]; with `torn`, a prefix
/// of that write reaches the durable image anyway. Until [`SimBlocks::reboot`]
/// every call fails. The capacity counts pending bytes: past it, writes fail
/// with [`ErrorKind::StorageFull`] without effect.
#[derive(Debug)]
pub struct SimBlocks {
    files: BTreeMap<String, SimFile>,
    capacity: u64,
    cut_after: Option<(u64, bool)>,
    dead: bool,
    writes: u64,
    bytes_written: u64,
}

impl SimBlocks {
    /// An empty disk of `capacity` bytes.
    pub fn new(capacity: u64) -> Self {
        Self { files: BTreeMap::new(), capacity, cut_after: None, dead: false, writes: 0, bytes_written: 0 }
    }

    /// Change the capacity.
    pub fn set_capacity(&mut self, capacity: u64) {
        self.capacity = capacity;
    }

    /// Cut the power at the `n`-th next write (0 = the next one), tearing it if `torn`.
    pub fn power_cut_after(&mut self, n: u64, torn: bool) {
        self.cut_after = Some((n, torn));
    }

    /// Power back on: everything not synced is gone.
    pub fn reboot(&mut self) {
        self.dead = false;
        self.cut_after = None;
        self.files.retain(|_, f| f.durable.is_some());
        for f in self.files.values_mut() {
            f.pending = f.durable.clone().unwrap_or_default();
        }
    }

    /// Whether the power is cut.
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// Successful `write_at` calls and the bytes they wrote.
    pub fn write_stats(&self) -> (u64, u64) {
        (self.writes, self.bytes_written)
    }

    /// The durable content of `name`.
    pub fn durable(&self, name: &str) -> Option<&[u8]> {
        self.files.get(name)?.durable.as_deref()
    }

    /// Overwrite the durable and pending content of `name` (to plant garbage).
    pub fn plant(&mut self, name: &str, data: &[u8]) {
        self.files.insert(name.to_string(), SimFile { durable: Some(data.to_vec()), pending: data.to_vec() });
    }

    fn used(&self) -> u64 {
        self.files.values().map(|f| f.pending.len() as u64).sum()
    }

    fn alive(&self) -> Result<(), ErrorKind> {
        if self.dead { Err(ErrorKind::PowerLoss) } else { Ok(()) }
    }
}

impl ErrorType for SimBlocks {
    type Error = ErrorKind;
}

impl crate::storage::BlockStore for SimBlocks {
    fn write_at(&mut self, name: &str, offset: u64, data: &[u8]) -> Result<(), ErrorKind> {
        self.alive()?;
        let off = usize::try_from(offset).map_err(|_| ErrorKind::Other)?;
        if let Some((n, torn)) = self.cut_after {
            if n == 0 {
                self.dead = true;
                if torn && !data.is_empty() {
                    let f = self.files.entry(name.to_string()).or_default();
                    let mut d = f.durable.clone().unwrap_or_default();
                    let keep = (data.len() / 2).max(1);
                    if d.len() < off + keep {
                        d.resize(off + keep, 0);
                    }
                    d[off..off + keep].copy_from_slice(&data[..keep]);
                    f.durable = Some(d);
                }
                return Err(ErrorKind::PowerLoss);
            }
            self.cut_after = Some((n - 1, torn));
        }
        let cur = self.files.get(name).map_or(0, |f| f.pending.len());
        let grow = (off + data.len()).saturating_sub(cur) as u64;
        if self.used() + grow > self.capacity {
            return Err(ErrorKind::StorageFull);
        }
        let f = self.files.entry(name.to_string()).or_default();
        if f.pending.len() < off + data.len() {
            f.pending.resize(off + data.len(), 0);
        }
        f.pending[off..off + data.len()].copy_from_slice(data);
        self.writes += 1;
        self.bytes_written += data.len() as u64;
        Ok(())
    }

    fn read_at(&mut self, name: &str, offset: u64, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        self.alive()?;
        let f = self.files.get(name).ok_or(ErrorKind::NotFound)?;
        let off = usize::try_from(offset).map_err(|_| ErrorKind::Other)?.min(f.pending.len());
        let n = buf.len().min(f.pending.len() - off);
        buf[..n].copy_from_slice(&f.pending[off..off + n]);
        Ok(n)
    }

    fn len(&mut self, name: &str) -> Result<u64, ErrorKind> {
        self.alive()?;
        self.files.get(name).map(|f| f.pending.len() as u64).ok_or(ErrorKind::NotFound)
    }

    fn truncate(&mut self, name: &str, len: u64) -> Result<(), ErrorKind> {
        self.alive()?;
        let len = usize::try_from(len).map_err(|_| ErrorKind::Other)?;
        self.files.entry(name.to_string()).or_default().pending.resize(len, 0);
        Ok(())
    }

    fn sync(&mut self, name: &str) -> Result<(), ErrorKind> {
        self.alive()?;
        let f = self.files.entry(name.to_string()).or_default();
        f.durable = Some(f.pending.clone());
        Ok(())
    }

    fn remove(&mut self, name: &str) -> Result<(), ErrorKind> {
        self.alive()?;
        self.files.remove(name);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsynced_writes_vanish_on_a_power_cut() {
        use crate::storage::BlockStore;
        let mut d = SimBlocks::new(1 << 20);
        d.write_at("f", 0, b"durable").unwrap();
        d.sync("f").unwrap();
        d.write_at("f", 0, b"PENDING").unwrap();
        d.power_cut_after(0, false);
        assert_eq!(d.write_at("f", 7, b"x"), Err(ErrorKind::PowerLoss));
        assert_eq!(d.len("f"), Err(ErrorKind::PowerLoss), "dead until reboot");
        d.reboot();
        let mut b = [0u8; 16];
        let n = d.read_at("f", 0, &mut b).unwrap();
        assert_eq!(&b[..n], b"durable");
        // A torn write leaves half of the interrupted write on disk.
        d.power_cut_after(0, true);
        assert!(d.write_at("f", 0, b"ABCDEF").is_err());
        d.reboot();
        let n = d.read_at("f", 0, &mut b).unwrap();
        assert_eq!(&b[..n], b"ABCable");
        // Unsynced new files are gone entirely.
        d.write_at("g", 0, b"x").unwrap();
        d.power_cut_after(0, false);
        let _ = d.write_at("g", 1, b"y");
        d.reboot();
        assert_eq!(d.len("g"), Err(ErrorKind::NotFound));
    }

    #[test]
    fn blocks_run_full_without_effect() {
        use crate::storage::BlockStore;
        let mut d = SimBlocks::new(10);
        d.write_at("f", 0, b"12345678").unwrap();
        assert_eq!(d.write_at("f", 8, b"abc"), Err(ErrorKind::StorageFull));
        assert_eq!(d.len("f").unwrap(), 8);
        d.set_capacity(11);
        d.write_at("f", 8, b"abc").unwrap();
    }
}
