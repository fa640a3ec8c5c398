//! The body of one answer as an [`embedded_io::Write`]: any transport that
//! writes into an `embedded-io` sink feeds the download engine, without the
//! engine knowing sockets, TLS or an OS.
//!
//! ```text
//!   transport ──write_all(chunk)──► BodyWriter ──handle_body──► Download ──► BlockStore
//! ```

use embedded_io::{ErrorKind, ErrorType, Write};
use outpost_hal::storage::BlockStore;

use super::{BodyError, Download};
use crate::engine::fetch::FetchError;

/// `dl`'s current answer, writing into `store`.
pub struct BodyWriter<'a, S: BlockStore> {
    dl: &'a mut Download,
    store: &'a mut S,
}

impl<'a, S: BlockStore> BodyWriter<'a, S> {
    /// A writer for the body whose head `dl` accepted.
    pub fn new(dl: &'a mut Download, store: &'a mut S) -> Self {
        Self { dl, store }
    }
}

impl<E: outpost_hal::Error> embedded_io::Error for BodyError<E> {
    fn kind(&self) -> ErrorKind {
        match self {
            // A longer answer than the fragment (or the room) is too much
            // data; anything else wrong with the bytes is invalid data.
            Self::Fetch(FetchError::TooLong) => ErrorKind::OutOfMemory,
            Self::Fetch(_) => ErrorKind::InvalidData,
            Self::Store(e) => embedded_io::Error::kind(&e.kind()),
        }
    }
}

impl<S: BlockStore> ErrorType for BodyWriter<'_, S> {
    type Error = BodyError<S::Error>;
}

impl<S: BlockStore> Write for BodyWriter<'_, S> {
    /// Takes all of `buf` or fails: the engine never takes part of a chunk.
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.dl.handle_body(self.store, buf)?;
        Ok(buf.len())
    }

    /// Bytes are made durable at checkpoints and at the end of a fragment
    /// (`Download::handle_end`), not on flush.
    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use embedded_io::Write;
    use outpost_hal::sim::SimBlocks;

    use super::*;
    use crate::engine::download::Layout;
    use crate::engine::manifest::{FragmentEntry, Manifest, sha256};

    #[test]
    fn an_embedded_io_writer_feeds_the_engine_and_reports_its_refusals() {
        let data = [7u8; 1000];
        let m = Manifest {
            format: crate::engine::manifest::FORMAT,
            package_id: 1,
            version: 1,
            created: 0,
            info_sha256: [0; 32],
            archive_size: 1000,
            archive_sha256: sha256(&data),
            fragments: alloc::vec![FragmentEntry { size: 1000, sha256: sha256(&data) }],
            flags: 0,
            reboot_exit_codes: alloc::vec![],
            unpacked: None,
            expires: None,
            release: None,
            tree: None,
        };
        let mut disk = SimBlocks::new(1 << 20);
        let mut dl = Download::open_layout(&mut disk, Layout::signed(&m), 4096).unwrap();
        dl.handle_head(200, None).unwrap();
        BodyWriter::new(&mut dl, &mut disk).write_all(&data[..600]).unwrap();
        BodyWriter::new(&mut dl, &mut disk).write_all(&data[600..]).unwrap();
        // One byte more than the fragment: refused as too much data.
        let e = BodyWriter::new(&mut dl, &mut disk).write_all(&[0]).unwrap_err();
        assert_eq!(embedded_io::Error::kind(&e), ErrorKind::OutOfMemory);
        assert_eq!(dl.have(), 1000);
    }
}
