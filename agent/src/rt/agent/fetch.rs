//! Fetching a package's fragments: one request at a time through the
//! download engine, retried under [`Refetch`] (a digest mismatch is
//! transient until its series outlasts the deadline).

use outpost_hal::linux::{DirBlocks, StdClock};
use outpost_hal::time::Clock;

use super::super::http::{self, Url};
use super::{Agent, Step, StoreError};
use crate::engine::download::{ARCHIVE, BodyError, Download};
use crate::engine::fetch::FetchError;
use crate::engine::info::{Info, Proto};
use crate::engine::journal::PackageRecord;
use crate::engine::limits::MIN_RESUME_PROGRESS;
use crate::engine::refetch::{Refetch, Verdict};
use crate::engine::status::StatusCode;

impl Agent {
    /// Fetch every fragment through the download engine, retrying with
    /// backoff ([`Refetch`]). `Err(step)` when this run stops: network
    /// trouble and digest mismatches are for a later run; only a digest that
    /// has not matched for [`crate::engine::limits::DIGEST_GIVE_UP_SECS`]
    /// is final. The series of mismatches is left in `rec.digest_trouble`
    /// for the caller to persist.
    pub(super) fn fetch_all(
        &self,
        info: &Info,
        rec: &mut PackageRecord,
        dl: &mut Download,
        blocks: &mut DirBlocks,
    ) -> Result<Result<(), Step>, StoreError> {
        let mut refetch = Refetch::new(self.cfg.agent.fragment_tries, rec.digest_trouble);
        let r = self.fetch_with(info, &rec.pack_loc, &mut refetch, dl, blocks);
        rec.digest_trouble = refetch.trouble();
        r
    }

    fn fetch_with(
        &self,
        info: &Info,
        pack_loc: &str,
        refetch: &mut Refetch,
        dl: &mut Download,
        blocks: &mut DirBlocks,
    ) -> Result<Result<(), Step>, StoreError> {
        let id = info.id;
        let store_err = |e: outpost_hal::linux::IoError| StoreError::Io(self.store.package_dir(id).join(ARCHIVE), e.0);
        let clock = StdClock::new();
        let mut resumed = 0u32;
        while let Some((n, range)) = dl.request() {
            let url = match Url::from_location(info.proto == Proto::Https, pack_loc, &format!("{id}/{id}-{n}")) {
                Ok(u) => u,
                Err(e) => return Ok(Err(Step::Final(bad_location(id, &e)))),
            };
            let before = dl.have();
            let (verdict, why) = match self.transfer(&url, range.as_deref(), dl, blocks)? {
                None if dl.verified() as usize >= n => {
                    log::info!(target: "outpost", "package {id}: fragment {n}/{} verified", info.frags);
                    refetch.verified();
                    continue;
                }
                None => continue,
                Some(Failed { error: FetchError::Corrupt, .. }) => {
                    log::warn!(target: "outpost", "package {id}: fragment {n} failed its digest, fetching it again");
                    (refetch.corrupt(clock.unix_time(), self.random_u64()), "fragment digest mismatch".to_string())
                }
                Some(Failed { error, why }) => {
                    if dl.have() >= before.saturating_add(MIN_RESUME_PROGRESS) {
                        // Real progress (e.g. a truncated response): go on at once.
                        resumed += 1;
                        if resumed == 1 {
                            log::warn!(target: "outpost", "package {id}: {why}; resuming at byte {}", dl.have());
                        } else {
                            log::debug!(target: "outpost", "package {id}: {why}; resuming at byte {}", dl.have());
                        }
                        continue;
                    }
                    // Little or nothing arrived: a failed try, with backoff.
                    if matches!(error, FetchError::BadContentRange | FetchError::TooLong) {
                        dl.restart_fragment(blocks).map_err(store_err)?;
                    }
                    (refetch.failed(self.random_u64()), why)
                }
            };
            match verdict {
                Verdict::RetryIn(wait) => {
                    log::warn!(target: "outpost", "package {id}: {why}; retrying in {} ms", wait.as_millis());
                    super::super::sleep(wait);
                }
                Verdict::Later => return Ok(Err(Step::Later(why))),
                Verdict::GiveUp => {
                    log::error!(target: "outpost", "package {id}: fragment {n} has not matched its signed digest for a day; giving up");
                    return Ok(Err(Step::Final(StatusCode::ErrBadDigest)));
                }
            }
        }
        Ok(Ok(()))
    }

    /// One request. `None` when the body ended normally and the engine took
    /// it (a fragment may now be verified); `Some` for what went wrong.
    pub(super) fn transfer(
        &self,
        url: &Url,
        range: Option<&str>,
        dl: &mut Download,
        blocks: &mut DirBlocks,
    ) -> Result<Option<Failed>, StoreError> {
        let path = blocks.path(ARCHIVE);
        let store_err = |e: outpost_hal::linux::IoError| StoreError::Io(path.clone(), e.0);
        let headers: Vec<(&str, &str)> = range.map(|r| ("Range", r)).into_iter().collect();
        let window = self.pacer.borrow_mut().begin(url);
        let mut resp = match self.client.request_with_window("GET", url, &headers, &[], window) {
            Ok(r) => r,
            Err(e) => {
                if let http::Error::Tls(m) = &e {
                    log::error!(target: "outpost", "{m}");
                }
                // The HTTP error itself (a head too large, a stall…), not
                // "server answered 0": the caller logs it once per try.
                return Ok(Some(Failed { error: FetchError::Status(0), why: format!("{url}: {e}") }));
            }
        };
        let cr = resp.header("content-range").map(str::to_owned);
        let failed = |error: FetchError| Some(Failed { why: format!("{url}: {error}"), error });
        if let Err(e) = dl.handle_head(resp.status, cr.as_deref()) {
            return Ok(failed(e));
        }
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let k = match self.pacer.borrow_mut().read(&mut resp, &mut buf) {
                Ok(0) => break,
                Ok(k) => k,
                Err(e) => {
                    dl.handle_abort(blocks).map_err(store_err)?;
                    return Ok(Some(Failed { error: FetchError::Short, why: format!("{url}: body read failed: {e}") }));
                }
            };
            match dl.handle_body(blocks, &buf[..k]) {
                Ok(()) => {}
                Err(BodyError::Store(e)) => return Err(store_err(e)),
                Err(BodyError::Fetch(e)) => {
                    dl.handle_abort(blocks).map_err(store_err)?;
                    return Ok(failed(e));
                }
            }
        }
        resp.release();
        Ok(dl.handle_end(blocks).map_err(store_err)?.and_then(failed))
    }
}

/// A request that went wrong: what the engine makes of it, and what to log.
pub(super) struct Failed {
    error: FetchError,
    why: String,
}

fn bad_location(id: u64, e: &http::Error) -> StatusCode {
    log::error!(target: "outpost", "package {id}: unusable fragment location: {e}");
    StatusCode::ErrDownloadPack
}
