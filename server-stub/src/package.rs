//! Building a package in the OCS layout: `DIR/download/ID/{info, manifest, ID-1..ID-N}`.
//!
//! The directory is assembled under a temporary name and renamed into place,
//! so a static server never sees half a package.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use md5::Digest as _;
use outpost_agent::engine::digest::hex;
use outpost_agent::engine::info::{Action, DigestAlgo, DigestEncode, Info, Notify, Proto};
use outpost_agent::engine::limits::MAX_PACKAGE_NAME_LEN;
use outpost_agent::engine::manifest::{
    FLAG_KEEP_MODES, FLAG_REBOOT, FORMAT, FragmentEntry, Manifest, Release, Unpacked, sha256,
};
use outpost_agent::engine::plan::launch_program;
use outpost_agent::engine::version::Version;

use crate::db::{Db, NewPackage};
use crate::pki;

/// What `package add` was asked to build.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The archive, if any.
    pub file: Option<PathBuf>,
    /// The action.
    pub action: Action,
    /// Command line (launch, execute).
    pub command: Option<String>,
    /// Destination (store).
    pub path: Option<String>,
    /// Priority 0..=10.
    pub priority: u8,
    /// Fragment size in bytes.
    pub frag_size: u64,
    /// Fragment transport.
    pub proto: Proto,
    /// Display name; with a version, the package's name in its line of
    /// versions too (signed).
    pub name: Option<String>,
    /// Version (`--version`): ties the package, with its name, into a line
    /// of versions; agents refuse one older than a version of the name they
    /// ran (`ERR_DOWNGRADE`).
    pub version: Option<Version>,
    /// The version is meant to replace a higher one (`--downgrade`, signed).
    pub downgrade: bool,
    /// Ask for a reboot after success.
    pub reboot: bool,
    /// Exit codes meaning "installed, reboot required".
    pub reboot_exit_codes: Vec<i32>,
    /// User notification (NOTIFY_*, NEED_DONE_ACTION*).
    pub notify: Notify,
    /// Keep group- and world-write bits of archive members (`--keep-modes`);
    /// agents drop them otherwise.
    pub keep_modes: bool,
    /// Days the signed manifest is valid (`--valid-days`); agents refuse it
    /// afterwards (`ERR_EXPIRED`) until `package resign` renews it.
    pub valid_days: u32,
}

/// Seconds in a day.
const DAY: u64 = 86_400;

/// Sign package `id`'s manifest (in the download directory `download`) again, valid for `valid_days` from now
/// (0: expired at once, which withdraws the package from every device that
/// has not fetched it yet), with its version one higher. Returns the new
/// expiry (seconds since 1970 UTC).
pub fn resign(dir: &Path, download: &Path, id: u64, valid_days: u32) -> Result<u64, String> {
    let key = pki::signing_key(dir)?;
    let mut public = [0u8; 32];
    public.copy_from_slice(ring::signature::KeyPair::public_key(&key).as_ref());
    let path = download.join(id.to_string()).join("manifest");
    let bytes = fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    // Signed by the current key, or (after `keys rotate`) by one the
    // published trust bundle lists: it is re-signed with the current key.
    let mut keys = vec![public];
    if let Some(b) = crate::rollover::published(dir)
        && let Ok((bundle, _, _)) = outpost_agent::engine::trust::Bundle::decode(&b)
    {
        keys.extend(bundle.keys.iter().map(|k| k.public));
    }
    let mut m = Manifest::decode_verified_any(&bytes, &keys).map_err(|e| format!("{}: {e}", path.display()))?;
    if m.unpacked.is_none() {
        return Err(format!("package {id} was built before manifests could expire; add it again"));
    }
    let expires = crate::time::unix_now().saturating_add(u64::from(valid_days) * DAY);
    m.version = m.version.saturating_add(1);
    m.expires = Some(expires);
    let signed = m.encode_signed(|b| {
        let mut s = [0u8; 64];
        s.copy_from_slice(key.sign(b).as_ref());
        s
    });
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, signed).map_err(|e| format!("{}: {e}", tmp.display()))?;
    fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(expires)
}

/// Parse `1M`, `512K`, `1048576`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1024),
        Some('m' | 'M') => (&s[..s.len() - 1], 1024 * 1024),
        Some('g' | 'G') => (&s[..s.len() - 1], 1024 * 1024 * 1024),
        _ => (s, 1),
    };
    let n: u64 = num.parse().map_err(|_| format!("bad size {s:?} (use e.g. 1M, 512K, 65536)"))?;
    match n.checked_mul(mult) {
        Some(v) if v > 0 => Ok(v),
        _ => Err(format!("bad size {s:?}")),
    }
}

/// The archive kinds accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Zip,
    TarGz,
}

/// Regular-file members of an archive (normalised: no leading `./`).
fn members(path: &Path) -> Result<(Kind, Vec<String>), String> {
    let mut head = [0u8; 4];
    let n = File::open(path).and_then(|mut f| f.read(&mut head)).map_err(|e| format!("{}: {e}", path.display()))?;
    let head = &head[..n];
    let norm = |s: &str| s.trim_start_matches("./").to_string();
    if head.starts_with(&[0x1f, 0x8b]) {
        let f = File::open(path).map_err(|e| e.to_string())?;
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
        let bad = |e: io::Error| format!("{} is not a valid tar.gz archive: {e}", path.display());
        let mut out = Vec::new();
        for e in ar.entries().map_err(bad)? {
            let e = e.map_err(bad)?;
            if e.header().entry_type().is_file() {
                out.push(norm(&e.path().map_err(bad)?.to_string_lossy()));
            }
        }
        Ok((Kind::TarGz, out))
    } else if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        let f = File::open(path).map_err(|e| e.to_string())?;
        let ar = zip::ZipArchive::new(f).map_err(|e| format!("{} is not a valid zip archive: {e}", path.display()))?;
        Ok((Kind::Zip, ar.file_names().filter(|n| !n.ends_with('/')).map(norm).collect()))
    } else {
        Err(format!("{} is neither a zip nor a tar.gz archive", path.display()))
    }
}

/// What `archive` unpacks to, counted the way the agent counts while it
/// unpacks: every member but tar extension headers, and the bytes each
/// member's reader yields (a GNU sparse member's real size, holes included;
/// a zip member's inflated bytes, whatever its header claims). The agent
/// checks free space for `size` first and stops past either number.
pub fn count_unpacked(archive: &Path) -> Result<Unpacked, String> {
    let (kind, _) = members(archive)?;
    let f = File::open(archive).map_err(|e| format!("{}: {e}", archive.display()))?;
    let mut u = Unpacked { size: 0, members: 0 };
    let mut add = |r: &mut dyn Read| -> io::Result<()> {
        u.size += io::copy(r, &mut io::sink())?;
        u.members += 1;
        Ok(())
    };
    let bad = |e: &dyn std::fmt::Display| format!("{}: {e}", archive.display());
    match kind {
        Kind::TarGz => {
            use tar::EntryType as T;
            let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
            for e in ar.entries().map_err(|e| bad(&e))? {
                let mut e = e.map_err(|e| bad(&e))?;
                let t = e.header().entry_type();
                if !matches!(t, T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink) {
                    add(&mut e).map_err(|e| bad(&e))?;
                }
            }
        }
        Kind::Zip => {
            let mut ar = zip::ZipArchive::new(f).map_err(|e| bad(&e))?;
            for i in 0..ar.len() {
                let mut e = ar.by_index(i).map_err(|e| bad(&e))?;
                add(&mut e).map_err(|e| bad(&e))?;
            }
        }
    }
    Ok(u)
}

/// The line of versions the spec puts the package in, if any.
fn release_of(spec: &Spec) -> Result<Option<Release>, String> {
    let Some(version) = spec.version else {
        return if spec.downgrade { Err("--downgrade needs --name and --version".into()) } else { Ok(None) };
    };
    let name = spec.name.clone().ok_or("--version needs --name (the line of versions it belongs to)")?;
    if name.is_empty() || name.len() > MAX_PACKAGE_NAME_LEN {
        return Err(format!("--name with --version must be 1 to {MAX_PACKAGE_NAME_LEN} bytes"));
    }
    if name.trim() != name || name.chars().any(char::is_control) {
        return Err(format!("--name {name:?} must not start or end with a space or hold control characters"));
    }
    Ok(Some(Release { name, version, downgrade: spec.downgrade }))
}

/// Check the spec against the rules of each action.
fn validate(spec: &Spec) -> Result<String, String> {
    if spec.priority > 10 {
        return Err("--priority must be 0..10".into());
    }
    match spec.action {
        Action::Launch => {
            let cmd = spec.command.clone().ok_or("launch needs --command (the file to run, from the archive)")?;
            let file = spec.file.as_ref().ok_or("launch needs --file ARCHIVE")?;
            let prog = launch_program(&cmd)
                .ok_or_else(|| format!("--command {cmd:?} must start with a relative file name"))?;
            let (_, names) = members(file)?;
            if !names.iter().any(|n| n == prog) {
                return Err(format!("launch command names {prog:?}, which is not a file in {}", file.display()));
            }
            Ok(cmd)
        }
        Action::Execute => {
            if let Some(f) = &spec.file {
                members(f)?;
            }
            spec.command.clone().filter(|c| !c.trim().is_empty()).ok_or_else(|| "execute needs --command".into())
        }
        Action::Store => {
            let p = spec.path.clone().ok_or("store needs --path (the destination directory)")?;
            if !p.starts_with('/') {
                return Err("--path must be an absolute path".into());
            }
            let f = spec.file.as_ref().ok_or("store needs --file ARCHIVE")?;
            members(f)?;
            Ok(p)
        }
    }
}

/// Build and publish a package in the download directory `download`
/// ([`crate::downloads`]); returns its id.
pub fn add(dir: &Path, download: &Path, db: &Db, spec: &Spec) -> Result<u64, String> {
    let target = validate(spec)?;
    let release = release_of(spec)?;
    let key = pki::signing_key(dir)?;
    let download = download.to_path_buf();
    if !download.is_dir() {
        crate::downloads::create(&download).map_err(|e| format!("cannot create {}: {e}", download.display()))?;
    }

    // OCS uses the creation time as id; keep ids unique and increasing.
    let mut id = crate::time::unix_now().max(db.max_package_id().map_err(|e| e.to_string())? + 1);
    while download.join(id.to_string()).exists() {
        id += 1;
    }
    let tmp = download.join(format!(".{id}.tmp"));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).map_err(|e| e.to_string())?;
    let result = build(&tmp, id, spec, &target, release, &key);
    let (info, manifest) = match result {
        Ok(v) => v,
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    let name = match (&spec.name, spec.version) {
        (Some(n), Some(v)) => Some(format!("{n} {v}")),
        (n, _) => n.clone(),
    };
    let name = name.unwrap_or_else(|| {
        spec.file
            .as_ref()
            .and_then(|f| f.file_name())
            .map_or_else(|| target.clone(), |n| n.to_string_lossy().into_owned())
    });
    if let Err(e) = crate::downloads::set_modes(&tmp, info.proto != Proto::Https) {
        let _ = fs::remove_dir_all(&tmp);
        return Err(format!("{}: {e}", tmp.display()));
    }
    fs::rename(&tmp, download.join(id.to_string())).map_err(|e| e.to_string())?;
    db.add_package(&NewPackage {
        id,
        name: &name,
        action: info.action.as_ocs(),
        priority: info.priority,
        frags: info.frags,
        size: manifest.archive_size,
        https: info.proto == Proto::Https,
    })
    .map_err(|e| e.to_string())?;
    Ok(id)
}

fn build(
    tmp: &Path,
    id: u64,
    spec: &Spec,
    target: &str,
    release: Option<Release>,
    key: &ring::signature::Ed25519KeyPair,
) -> Result<(Info, Manifest), String> {
    let mut fragments = Vec::new();
    let mut md5 = md5::Md5::new();
    let mut whole = ring::digest::Context::new(&ring::digest::SHA256);
    let mut size = 0u64;
    if let Some(file) = &spec.file {
        let mut f = File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // One fragment: up to frag_size bytes.
            let mut frag_hash = ring::digest::Context::new(&ring::digest::SHA256);
            let mut frag_len = 0u64;
            let path = tmp.join(format!("{id}-{}", fragments.len() + 1));
            let mut out = File::create(&path).map_err(|e| e.to_string())?;
            while frag_len < spec.frag_size {
                let want = buf.len().min((spec.frag_size - frag_len) as usize);
                let n = f.read(&mut buf[..want]).map_err(|e| e.to_string())?;
                if n == 0 {
                    break;
                }
                out.write_all(&buf[..n]).map_err(|e| e.to_string())?;
                frag_hash.update(&buf[..n]);
                md5.update(&buf[..n]);
                whole.update(&buf[..n]);
                frag_len += n as u64;
            }
            if frag_len == 0 {
                drop(out);
                fs::remove_file(&path).map_err(|e| e.to_string())?;
                break;
            }
            out.sync_all().map_err(|e| e.to_string())?;
            let mut sha = [0u8; 32];
            sha.copy_from_slice(frag_hash.finish().as_ref());
            fragments.push(FragmentEntry { size: frag_len, sha256: sha });
            size += frag_len;
        }
        if fragments.is_empty() {
            return Err(format!("{} is empty", file.display()));
        }
    }
    let unpacked = match &spec.file {
        Some(file) => Some(count_unpacked(file)?),
        None => Some(Unpacked { size: 0, members: 0 }),
    };
    let frags = fragments.len() as u32;
    let info = Info {
        id,
        priority: spec.priority,
        action: spec.action,
        digest: if frags > 0 { hex(&md5.finalize()) } else { String::new() },
        proto: spec.proto,
        frags,
        digest_algo: DigestAlgo::Md5,
        digest_encode: DigestEncode::Hexa,
        target: target.to_string(),
        notify: spec.notify.clone(),
    };
    // A package in a line of versions is also published as content objects
    // (engine::tree), so that agents holding an earlier version fetch only
    // what changed.
    let objects = tmp.parent().unwrap_or(tmp).join(crate::objects::dir_name(spec.proto == Proto::Https));
    let tree = match (&spec.file, &release) {
        (Some(file), Some(_)) => crate::objects::publish(file, &objects)?,
        _ => None,
    };
    let info_xml = info.to_ocs_xml();
    let mut archive_sha256 = [0u8; 32];
    archive_sha256.copy_from_slice(whole.finish().as_ref());
    let manifest = Manifest {
        format: FORMAT,
        package_id: id,
        version: 1,
        created: crate::time::unix_now(),
        info_sha256: sha256(info_xml.as_bytes()),
        archive_size: size,
        archive_sha256,
        fragments,
        flags: if spec.reboot { FLAG_REBOOT } else { 0 } | if spec.keep_modes { FLAG_KEEP_MODES } else { 0 },
        reboot_exit_codes: spec.reboot_exit_codes.clone(),
        unpacked,
        expires: None,
        release,
        tree,
    };
    let manifest =
        Manifest { expires: Some(manifest.created.saturating_add(u64::from(spec.valid_days) * DAY)), ..manifest };
    let signed = manifest.encode_signed(|b| {
        let mut s = [0u8; 64];
        s.copy_from_slice(key.sign(b).as_ref());
        s
    });
    fs::write(tmp.join("info"), info_xml).map_err(|e| e.to_string())?;
    fs::write(tmp.join("manifest"), signed).map_err(|e| e.to_string())?;
    Ok((info, manifest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpacked_size_and_members_are_counted_as_the_agent_counts_them() {
        let dir = std::env::temp_dir().join(format!("outpost-count-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let mut b = tar::Builder::new(gz);
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        b.append_data(&mut h, "d/", &[][..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(3000);
        b.append_data(&mut h, "d/a", &[1u8; 3000][..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        b.append_data(&mut h, "n".repeat(200), &b"hello"[..]).unwrap(); // a GNU long name
        let tgz = dir.join("a.tar.gz");
        fs::write(&tgz, b.into_inner().unwrap().finish().unwrap()).unwrap();
        assert_eq!(count_unpacked(&tgz).unwrap(), Unpacked { size: 3005, members: 3 });
        let mut z = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        z.start_file("x", zip::write::SimpleFileOptions::default()).unwrap();
        z.write_all(&[0u8; 70_000]).unwrap();
        let zf = dir.join("a.zip");
        fs::write(&zf, z.finish().unwrap().into_inner()).unwrap();
        assert_eq!(count_unpacked(&zf).unwrap(), Unpacked { size: 70_000, members: 1 });
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1M").unwrap(), 1 << 20);
        assert_eq!(parse_size("512k").unwrap(), 512 << 10);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert!(parse_size("0").is_err());
        assert!(parse_size("x").is_err());
        assert!(parse_size("99999999999999999G").is_err());
    }
}
