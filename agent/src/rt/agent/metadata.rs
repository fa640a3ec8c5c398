//! A package's metadata in the Outpost protocol: the info file and the
//! signed manifest, fetched over verified TLS (or reloaded from the state
//! directory when resuming), the manifest's signature and the info file's
//! SHA-256 checked; then what the endpoint refuses: an expired manifest, a
//! downgrade, an action or store path it does not allow.

use super::super::env::{Env, get_small};
use super::super::http::Url;
use super::super::store::StoreError;
use super::Agent;
use super::drive::Source;
use crate::engine::deploy::MetadataError;
use crate::engine::info::Info;
use crate::engine::limits::{MAX_INFO_LEN, MAX_MANIFEST_LEN};
use crate::engine::manifest::{Manifest, sha256};
use crate::engine::proto::Offer;
use crate::engine::status::StatusCode;

impl<E: Env> Agent<E> {
    /// Fetch (or reload) and verify the info file and manifest.
    pub(super) fn metadata(
        &mut self,
        offer: &Offer,
        fresh: bool,
        source: Source<'_>,
    ) -> Result<Result<(Info, Manifest), MetadataError>, StoreError> {
        let id = offer.id;
        let cached = if fresh {
            None
        } else {
            self.store.package_file(id, "info")?.zip(self.store.package_file(id, "manifest")?)
        };
        let (info_bytes, manifest_bytes) = match (cached, source) {
            // A bundle brings its own, checked like the server's.
            (_, Source::Bundle(b)) => (b.info.clone(), b.manifest.clone()),
            (Some(c), _) => c,
            (None, Source::Cache) => return Ok(Err(MetadataError::Later("its metadata is not cached".into()))),
            (None, Source::Server) => {
                if offer.info_loc.is_empty() {
                    return Ok(Err(MetadataError::Final(StatusCode::ErrDownloadInfo)));
                }
                let mut got = Vec::new();
                for (name, max) in [("info", MAX_INFO_LEN), ("manifest", MAX_MANIFEST_LEN)] {
                    let url = match Url::from_location(true, &offer.info_loc, &format!("{id}/{name}")) {
                        Ok(u) => u,
                        Err(e) => return Ok(Err(MetadataError::Later(e.to_string()))),
                    };
                    match get_small(&mut self.env, &url, max) {
                        Ok((200, body)) => got.push(body),
                        Ok((status, _)) => {
                            log::error!(target: "outpost", "package {id}: {url} answered {status}");
                            return Ok(Err(MetadataError::Final(StatusCode::ErrDownloadInfo)));
                        }
                        Err(e) => return Ok(Err(MetadataError::Later(e.to_string()))),
                    }
                }
                let manifest = got.pop().unwrap_or_default();
                (got.pop().unwrap_or_default(), manifest)
            }
        };
        let now = self.env.unix_time();
        let manifest = match Manifest::decode_verified_any(&manifest_bytes, &self.trust.keys(now)) {
            Ok(m) => m,
            Err(e) => {
                log::error!(target: "outpost", "package {id}: {e}; refusing it");
                return Ok(Err(MetadataError::Final(StatusCode::ErrBadDigest)));
            }
        };
        // Only a fresh manifest is judged: a download accepted while its
        // manifest was valid is not cut off halfway.
        if fresh && manifest.is_expired(now) {
            log::error!(target: "outpost", "package {id}: its signed manifest expired at {}; refusing it (the server may renew it with package resign)", manifest.expires.unwrap_or(0));
            return Ok(Err(MetadataError::Final(StatusCode::ErrExpired)));
        }
        if manifest.package_id != id {
            log::error!(target: "outpost", "package {id}: manifest is for package {}", manifest.package_id);
            return Ok(Err(MetadataError::Final(StatusCode::ErrBadId)));
        }
        // Fresh or resumed: a higher version may have run in between.
        if let Some(r) = &manifest.release
            && let Err(have) = self.store.versions()?.admit(r)
        {
            log::error!(target: "outpost", "package {id}: {} {} is older than the {have} run here and its signed manifest does not say a downgrade is intended; refusing it", r.name, r.version);
            return Ok(Err(MetadataError::Final(StatusCode::ErrDowngrade)));
        }
        if sha256(&info_bytes) != manifest.info_sha256 {
            log::error!(target: "outpost", "package {id}: info file does not match its signed manifest; refusing it");
            return Ok(Err(MetadataError::Final(StatusCode::ErrBadDigest)));
        }
        let info = match Info::parse(&info_bytes) {
            Ok(i) => i,
            Err(e) => {
                log::error!(target: "outpost", "package {id}: {e}");
                return Ok(Err(MetadataError::Final(StatusCode::ErrBadParam)));
            }
        };
        if info.id != id {
            return Ok(Err(MetadataError::Final(StatusCode::ErrBadId)));
        }
        if let Err(why) = crate::engine::allow::check(&info, self.cfg.agent.allowed()) {
            log::error!(target: "outpost", "package {id}: not allowed on this endpoint: {why}; nothing fetched or run");
            return Ok(Err(MetadataError::Final(StatusCode::ErrNotAllowed)));
        }
        if info.frags as usize != manifest.fragments.len() {
            log::error!(target: "outpost", "package {id}: info says {} fragments, manifest {}", info.frags, manifest.fragments.len());
            return Ok(Err(MetadataError::Final(StatusCode::ErrBadParam)));
        }
        if let Source::Bundle(b) = source
            && b.payload_len != manifest.archive_size
        {
            log::error!(target: "outpost", "package {id}: the bundle's payload is not its signed size; refusing it");
            return Ok(Err(MetadataError::Final(StatusCode::ErrBadDigest)));
        }
        if fresh {
            self.store.put_package_file(id, "info", &info_bytes)?;
            self.store.put_package_file(id, "manifest", &manifest_bytes)?;
        }
        Ok(Ok((info, manifest)))
    }
}
