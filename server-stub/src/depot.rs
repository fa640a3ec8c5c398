//! Depots: more locations of the fragments (a branch office's nginx, a CDN)
//! for the devices in their networks (`depot add`), and `depot sync`, which
//! fills a depot's directory from `DIR/download`.
//!
//! ```text
//!  depot add ─► state.db depots(loc, networks)
//!  poll from a device at ADDR ─► for_client(ADDR): `depot loc=…` records (most specific first)
//!  depot sync --to PATH ─► PATH/ID/… copied from DIR/download, each file atomically
//! ```
//!
//! Depots serve plain HTTP: what a fragment holds is checked by the agent
//! against the signed manifest, wherever it came from.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use outpost_agent::engine::limits::MAX_DEPOTS;

use crate::db::Depot;

/// The locations of the depots that serve a device at `client`, the most
/// specific network first (a depot for every device last), at most
/// [`MAX_DEPOTS`].
pub fn for_client(depots: &[Depot], client: IpAddr) -> Vec<String> {
    let mut hits: Vec<(u8, &str)> = depots
        .iter()
        .filter_map(|d| {
            if d.networks.is_empty() {
                return Some((0, d.loc.as_str()));
            }
            let best = d.networks.iter().filter(|n| n.contains(client)).map(|n| n.prefix()).max()?;
            Some((best + 1, d.loc.as_str()))
        })
        .collect();
    hits.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    hits.into_iter().take(MAX_DEPOTS).map(|(_, l)| l.to_string()).collect()
}

/// What a sync did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Synced {
    /// Files copied.
    pub copied: u64,
    /// Files already there, same size and SHA-256.
    pub same: u64,
    /// Bytes copied.
    pub bytes: u64,
}

/// Why a sync stopped (files copied before stay: each is whole).
#[derive(Debug)]
pub struct SyncError(pub PathBuf, pub io::Error);

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.0.display(), self.1)
    }
}

impl std::error::Error for SyncError {}

/// Copy `download` (`DIR/download`) into `to`: every package directory
/// (but those `private` names: packages published with `--proto https`,
/// whose fragments are for TLS only) and its files. A file already there with the same size and SHA-256 is
/// skipped; any other is written beside its place, synced and renamed
/// over it, so a web server never serves half a file. Links and other
/// special files are skipped.
pub fn sync(download: &Path, to: &Path, private: &dyn Fn(&str) -> bool) -> Result<Synced, SyncError> {
    let mut out = Synced::default();
    copy_dir(download, to, private, 0, &mut out)?;
    Ok(out)
}

/// Whether the download directory's entry `name` stays out of a depot:
/// a package published with `--proto https` (`https(id)`; its fragments are
/// for TLS only), the objects of such packages (`objects-tls`), and
/// anything that is neither a package nor `objects` (content objects of
/// the packages served over plain HTTP, which depots serve too).
pub fn stays_private(name: &str, https: &dyn Fn(u64) -> bool) -> bool {
    match name {
        "objects" => false,
        _ => name.parse().map_or(true, https),
    }
}

fn err(p: &Path) -> impl FnOnce(io::Error) -> SyncError + '_ {
    move |e| SyncError(p.to_path_buf(), e)
}

fn copy_dir(
    from: &Path,
    to: &Path,
    private: &dyn Fn(&str) -> bool,
    depth: u8,
    out: &mut Synced,
) -> Result<(), SyncError> {
    // Never through a link planted in the depot's tree (the top may be one:
    // the admin named it).
    if depth > 0 && fs::symlink_metadata(to).is_ok_and(|m| !m.is_dir()) {
        return Err(SyncError(to.to_path_buf(), io::Error::other("not a directory (a link?): refused")));
    }
    fs::create_dir_all(to).map_err(err(to))?;
    let mut entries: Vec<_> = fs::read_dir(from).map_err(err(from))?.collect::<Result<_, _>>().map_err(err(from))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let kind = e.file_type().map_err(err(&src))?;
        if kind.is_dir() && depth == 0 && private(&e.file_name().to_string_lossy()) {
            continue;
        }
        if kind.is_dir() && depth < 2 {
            copy_dir(&src, &dst, private, depth + 1, out)?;
        } else if kind.is_file() && !e.file_name().to_string_lossy().ends_with(TMP) {
            if same_file(&src, &dst).map_err(err(&src))? {
                out.same += 1;
            } else {
                out.bytes += copy_atomically(&src, &dst).map_err(err(&dst))?;
                out.copied += 1;
            }
        }
    }
    Ok(())
}

/// Suffix of a file being copied.
const TMP: &str = ".outpost-sync";

fn same_file(a: &Path, b: &Path) -> io::Result<bool> {
    let Ok(mb) = fs::symlink_metadata(b) else { return Ok(false) };
    Ok(mb.is_file() && fs::metadata(a)?.len() == mb.len() && sha256_of(a)? == sha256_of(b)?)
}

fn sha256_of(p: &Path) -> io::Result<Vec<u8>> {
    let mut f = File::open(p)?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match f.read(&mut buf)? {
            0 => return Ok(ctx.finish().as_ref().to_vec()),
            n => ctx.update(&buf[..n]),
        }
    }
}

fn copy_atomically(src: &Path, dst: &Path) -> io::Result<u64> {
    let mut tmp = dst.as_os_str().to_owned();
    tmp.push(TMP);
    let tmp = PathBuf::from(tmp);
    // A leftover (or planted) temporary file is removed, never written
    // through: whoever can write the depot's tree must not be able to aim
    // this (often root's) copy at another file with a link.
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut out =
        fs::OpenOptions::new().write(true).create_new(true).custom_flags(libc::O_NOFOLLOW).mode(0o644).open(&tmp)?;
    let n = io::copy(&mut File::open(src)?, &mut out)?;
    out.flush()?;
    out.sync_all()?;
    fs::rename(&tmp, dst)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depots_get_packages_and_objects_served_over_plain_http_only() {
        let https = |id: u64| id == 7;
        assert!(!stays_private("5", &https));
        assert!(!stays_private("objects", &https), "content objects of plain packages");
        assert!(stays_private("7", &https), "a --proto https package");
        assert!(stays_private("objects-tls", &https));
        assert!(stays_private("lost+found", &https));
    }
    use crate::cidr::Cidr;

    fn depot(loc: &str, nets: &[&str]) -> Depot {
        Depot { loc: loc.into(), networks: nets.iter().map(|n| Cidr::parse(n).unwrap()).collect() }
    }

    #[test]
    fn a_device_gets_the_depots_of_its_networks_most_specific_first() {
        let all = [
            depot("cdn.example/o", &[]),
            depot("branch17/o", &["10.17.0.0/16"]),
            depot("pc-room/o", &["10.17.3.0/24", "192.0.2.0/24"]),
            depot("branch18/o", &["10.18.0.0/16"]),
        ];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(for_client(&all, ip("10.17.3.9")), ["pc-room/o", "branch17/o", "cdn.example/o"]);
        assert_eq!(for_client(&all, ip("10.18.0.1")), ["branch18/o", "cdn.example/o"]);
        assert_eq!(for_client(&all, ip("198.51.100.1")), ["cdn.example/o"]);
        let many: Vec<Depot> = (0..10).map(|i| depot(&format!("d{i}/o"), &["10.0.0.0/8"])).collect();
        assert_eq!(for_client(&many, ip("10.1.1.1")).len(), MAX_DEPOTS);
    }

    #[test]
    fn sync_copies_what_differs_and_skips_what_is_there() {
        let t = std::env::temp_dir().join(format!("outpost-depot-sync-{}", std::process::id()));
        let _ = fs::remove_dir_all(&t);
        let (src, dst) = (t.join("download"), t.join("depot"));
        fs::create_dir_all(src.join("17")).unwrap();
        fs::write(src.join("17/17-1"), b"first fragment").unwrap();
        fs::write(src.join("17/17-2"), b"second").unwrap();
        fs::write(src.join("17/info"), b"<DOWNLOAD/>").unwrap();
        fs::create_dir_all(src.join("19")).unwrap();
        fs::write(src.join("19/19-1"), b"for TLS only").unwrap();
        let https_only = |name: &str| name == "19";
        let s = sync(&src, &dst, &https_only).unwrap();
        assert_eq!((s.copied, s.same), (3, 0));
        assert!(!dst.join("19").exists(), "a --proto https package stays off plain HTTP");
        assert_eq!(fs::read(dst.join("17/17-1")).unwrap(), b"first fragment");
        // A changed file (same size) and a new package: only those are copied.
        fs::write(dst.join("17/17-2"), b"SECOND").unwrap();
        fs::create_dir_all(src.join("18")).unwrap();
        fs::write(src.join("18/18-1"), b"x").unwrap();
        let s = sync(&src, &dst, &https_only).unwrap();
        assert_eq!((s.copied, s.same), (2, 2), "{s:?}");
        assert_eq!(fs::read(dst.join("17/17-2")).unwrap(), b"second");
        assert!(!dst.join(format!("17/17-2{TMP}")).exists());
        fs::remove_dir_all(&t).unwrap();
    }

    #[test]
    fn sync_writes_through_no_link_planted_in_the_depot() {
        let t = std::env::temp_dir().join(format!("outpost-depot-links-{}", std::process::id()));
        let _ = fs::remove_dir_all(&t);
        let (src, dst) = (t.join("download"), t.join("depot"));
        fs::create_dir_all(src.join("17")).unwrap();
        fs::write(src.join("17/17-1"), b"fragment").unwrap();
        fs::create_dir_all(dst.join("17")).unwrap();
        let victim = t.join("victim");
        fs::write(&victim, b"precious").unwrap();
        std::os::unix::fs::symlink(&victim, dst.join(format!("17/17-1{TMP}"))).unwrap();
        sync(&src, &dst, &|_: &str| false).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious", "the planted temporary link was not written through");
        assert_eq!(fs::read(dst.join("17/17-1")).unwrap(), b"fragment");
        // A package directory that is a link elsewhere: refused.
        fs::remove_dir_all(dst.join("17")).unwrap();
        let elsewhere = t.join("elsewhere");
        fs::create_dir_all(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, dst.join("17")).unwrap();
        assert!(sync(&src, &dst, &|_: &str| false).is_err());
        assert!(!elsewhere.join("17-1").exists(), "nothing written through the linked directory");
        fs::remove_dir_all(&t).unwrap();
    }
}
