//! One transfer of a package's next fragment through the download engine
//! ([`crate::engine::download`]), the same for both protocols, told to the
//! lifecycle as a [`Fetched`]: progress, a digest mismatch, a failed try,
//! the disk full. Retries and backoff are the lifecycle's
//! ([`crate::engine::deploy`]).
//!
//! What differs between the protocols is only the download's [`Layout`]:
//! a signed manifest gives each fragment's size and SHA-256; an OCS info
//! file gives only their number, so each fragment ends where its answer
//! says, within the free space less a headroom (`room`). Past the room the
//! disk is full (`ERR_OUT_OF_SPACE` once, what is cached stays); past the
//! bound of a package nobody signed, the try fails.
//!
//! [`Layout`]: crate::engine::download::Layout

use std::io;

use outpost_hal::linux::{DirBlocks, IoError};

use super::env::{BodySink, Env, GetError};
use super::http::Url;
use super::store::StoreError;
use crate::engine::deploy::Fetched;
use crate::engine::download::{ARCHIVE, BodyError, BodyWriter, Download, Fragments};
use crate::engine::fetch::FetchError;
use crate::engine::info::{Info, Proto};
use crate::engine::limits::MIN_RESUME_PROGRESS;

/// Fetch from where `dl` stands: one request for the next fragment of
/// `info`'s package, from `pack_loc`. `room`: the bytes this answer may take
/// (`None`: not asked; the writes will tell). `objects`: the layout's
/// fragments are content objects, under this directory of `pack_loc`
/// (one the server does not have is a [`Fetched::BadLocation`]).
pub(crate) fn fetch_next<E: Env + ?Sized>(
    env: &mut E,
    info: &Info,
    pack_loc: &str,
    dl: &mut Download,
    blocks: &mut DirBlocks,
    room: Option<u64>,
    objects: Option<&str>,
) -> Result<Fetched, StoreError> {
    fetch_from(env, info, pack_loc, dl, blocks, room, objects).map(|(f, _)| f)
}

/// [`fetch_next`], also telling whether the source answered in full
/// (`false`: it failed, broke off or sent wrong bytes), for
/// [`crate::engine::sources`].
pub(crate) fn fetch_from<E: Env + ?Sized>(
    env: &mut E,
    info: &Info,
    pack_loc: &str,
    dl: &mut Download,
    blocks: &mut DirBlocks,
    room: Option<u64>,
    objects: Option<&str>,
) -> Result<(Fetched, bool), StoreError> {
    let id = info.id;
    let Some((n, _)) = dl.request() else { return Ok((Fetched::Complete, true)) };
    let suffix = match objects {
        Some(dir) => super::agent::object_path(dir, dl.layout(), n).unwrap_or_default(),
        None => format!("{id}/{id}-{n}"),
    };
    let url = match Url::from_location(info.proto == Proto::Https, pack_loc, &suffix) {
        Ok(u) => u,
        Err(e) => {
            log::error!(target: "outpost", "package {id}: unusable fragment location: {e}");
            return Ok((Fetched::BadLocation(e.to_string()), false));
        }
    };
    fetch_via(&mut |range, sink| env.get(&url, range, sink), &url, id, dl, blocks, room, objects.is_some())
}

/// One GET of the next fragment with its `Range`, feeding the sink.
pub(crate) type Get<'a> = dyn FnMut(Option<&str>, &mut dyn BodySink) -> Result<(), GetError> + 'a;

/// Fetch from where `dl` stands through `get` (a GET of the next fragment
/// with its `Range`, feeding the sink: the network, or a local bundle);
/// `at` names the source in messages; `objects`: a 404 means the source
/// lacks that object ([`Fetched::BadLocation`]). Also tells whether the source
/// answered in full (`false`: it failed, broke off or sent wrong bytes).
pub(crate) fn fetch_via(
    get: &mut Get<'_>,
    at: &dyn std::fmt::Display,
    id: u64,
    dl: &mut Download,
    blocks: &mut DirBlocks,
    room: Option<u64>,
    objects: bool,
) -> Result<(Fetched, bool), StoreError> {
    let path = blocks.path(ARCHIVE);
    let store_err = |e: IoError| StoreError::Io(path.clone(), e.0);
    let Some((n, range)) = dl.request() else { return Ok((Fetched::Complete, true)) };
    if room.is_some_and(|r| r < MIN_RESUME_PROGRESS) {
        return Ok((Fetched::OutOfSpace(format!("fragment {n}: no room left above the headroom")), true));
    }
    dl.set_room(room);
    let before = dl.have();
    let mut sink = DownloadSink { dl, blocks, store: None, fetch: None };
    let got = get(range.as_deref(), &mut sink);
    let DownloadSink { dl, blocks, store, fetch } = sink;
    if let Some(e) = store {
        // The engine fell back to its last checkpoint.
        return if e.0.kind() == io::ErrorKind::StorageFull {
            Ok((Fetched::OutOfSpace(format!("{}: {}", path.display(), e.0)), true))
        } else {
            Err(store_err(e))
        };
    }
    let error = match got {
        Ok(()) => match dl.handle_end(blocks).map_err(store_err)? {
            None if dl.verified() as usize >= n => return Ok((Fetched::Progress(Some(dl.verified())), true)),
            None => return Ok((Fetched::Progress(None), true)),
            Some(e) => (e, format!("{at}: {e}")),
        },
        Err(e) => {
            dl.handle_abort(blocks).map_err(store_err)?;
            match e {
                GetError::Refused(e) => (e, format!("{at}: {e}")),
                e => (fetch.unwrap_or(FetchError::Short), e.to_string()),
            }
        }
    };
    let fetched = match error {
        (FetchError::Status(404), why) if objects => Fetched::BadLocation(why),
        (FetchError::Corrupt, _) => {
            log::warn!(target: "outpost", "package {id}: fragment {n} failed its digest, fetching it again");
            Fetched::Corrupt
        }
        // The answer filled the room: the disk is full, not the try failed.
        (FetchError::TooLong, _) if dl.cut_by_room() => {
            Fetched::OutOfSpace(format!("fragment {n}: the free space less its headroom is used up"))
        }
        (_, why) if dl.have() >= before.saturating_add(MIN_RESUME_PROGRESS) => {
            // Real progress (e.g. a truncated response): go on at once.
            log::debug!(target: "outpost", "package {id}: {why}; resuming at byte {}", dl.have());
            Fetched::Progress(None)
        }
        (error, why) => {
            // Little or nothing arrived: a failed try, with backoff. A
            // fragment whose answer was out of place starts over; one past
            // the bound of an unsigned package keeps what it has (each later
            // try fails at once, until the lifecycle gives up).
            let signed = matches!(dl.layout().fragments, Fragments::Signed(_));
            if error == FetchError::BadContentRange || (error == FetchError::TooLong && signed) {
                dl.restart_fragment(blocks).map_err(store_err)?;
            }
            let why = if error == FetchError::TooLong && !signed {
                format!("{why}: past the bound of a package without signed sizes")
            } else {
                why
            };
            Fetched::Failed(format!("fragment {n}: {why}"))
        }
    };
    Ok((fetched, false))
}

/// Feeds an answer into the download engine, keeping the first error of
/// each side for the caller.
struct DownloadSink<'a> {
    dl: &'a mut Download,
    blocks: &'a mut DirBlocks,
    store: Option<IoError>,
    fetch: Option<FetchError>,
}

impl BodySink for DownloadSink<'_> {
    fn head(&mut self, status: u16, content_range: Option<&str>) -> Result<(), FetchError> {
        self.dl.handle_head(status, content_range)
    }

    fn data(&mut self, chunk: &[u8]) -> io::Result<()> {
        match embedded_io::Write::write_all(&mut BodyWriter::new(self.dl, self.blocks), chunk) {
            Ok(()) => Ok(()),
            Err(BodyError::Fetch(e)) => {
                self.fetch = Some(e);
                Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
            }
            Err(BodyError::Store(e)) => {
                let err = io::Error::new(e.0.kind(), e.0.to_string());
                self.store = Some(e);
                Err(err)
            }
        }
    }
}
