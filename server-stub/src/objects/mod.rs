//! Publishing a package's payload as content objects (`package add` with
//! `--name` and `--version`): each file of the archive is cut into chunks
//! ([`chunker`]); each distinct chunk is written once to
//! `DIR/download/objects/AB/SHA256HEX` (`objects-tls/` for a package whose
//! fragments are HTTPS-only), shared by every package, and the files are
//! listed in the signed manifest as an [`outpost_agent::engine::tree::Tree`].
//! Objects are plain static files: nginx or a CDN serves them as it serves
//! fragments.
//!
//! An archive with links or special files, or paths the agent would refuse,
//! gets no tree: agents fetch its fragments as before.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use outpost_agent::engine::digest::hex;
use outpost_agent::engine::manifest::sha256;
use outpost_agent::engine::tree::{Chunk, DIR, Entry, Tree, path_ok};

pub mod chunker;

/// The objects directory's name under `DIR/download` for a package served
/// over plain HTTP (`tls` false) or HTTPS only.
pub fn dir_name(tls: bool) -> &'static str {
    if tls { "objects-tls" } else { "objects" }
}

/// Write one chunk as `objects/AB/HEX` unless it is there (atomically).
fn put(objects: &Path, data: &[u8]) -> io::Result<Chunk> {
    let sha = sha256(data);
    let name = hex(&sha);
    let dir = objects.join(&name[..2]);
    let path = dir.join(&name);
    if !path.exists() {
        // The modes of the download directory (crate::downloads), whatever
        // the umask: `objects/` is public, `objects-tls/` the server's own.
        let public = objects.file_name().is_some_and(|n| n == dir_name(false));
        let (dir_mode, file_mode) = if public {
            (crate::downloads::PUBLIC_DIR_MODE, crate::downloads::PUBLIC_FILE_MODE)
        } else {
            (crate::downloads::PRIVATE_DIR_MODE, crate::downloads::PRIVATE_FILE_MODE)
        };
        for d in [objects, &dir] {
            if !d.exists() {
                fs::create_dir_all(d)?;
                fs::set_permissions(d, fs::Permissions::from_mode(dir_mode))?;
            }
        }
        let tmp = dir.join(format!(".{name}.tmp"));
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(file_mode))?;
        fs::rename(&tmp, &path)?;
    }
    Ok(Chunk { size: data.len() as u32, sha256: sha })
}

fn file_entry(objects: &Path, path: String, mode: u32, r: &mut dyn Read) -> io::Result<Entry> {
    let mut c = chunker::Chunker::new(r);
    let mut chunks = Vec::new();
    while let Some(data) = c.next_chunk()? {
        chunks.push(put(objects, &data)?);
    }
    Ok(Entry { path, mode: mode & 0o7777, chunks })
}

/// A member name as the tree lists it (no `./`, no trailing `/`), if the
/// agent would take it; `Some("")` for the root itself (`./`).
fn norm(name: &str) -> Option<String> {
    let n = name.trim_start_matches("./").trim_end_matches('/');
    match n {
        "" | "." => Some(String::new()),
        n => path_ok(n).then(|| n.to_string()),
    }
}

/// Cut `archive` (tar.gz or zip) into objects under `objects`; the tree of
/// its files, or `None` when it holds anything but files and directories.
pub fn publish(archive: &Path, objects: &Path) -> Result<Option<Tree>, String> {
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", archive.display());
    let mut head = [0u8; 2];
    File::open(archive).and_then(|mut f| f.read_exact(&mut head)).map_err(|e| err(&e))?;
    let f = File::open(archive).map_err(|e| err(&e))?;
    let mut entries = Vec::new();
    if head == [0x1f, 0x8b] {
        use tar::EntryType as T;
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
        for e in ar.entries().map_err(|e| err(&e))? {
            let mut e = e.map_err(|e| err(&e))?;
            let t = e.header().entry_type();
            let path = e.path().map_err(|e| err(&e))?.to_string_lossy().into_owned();
            let mode = e.header().mode().unwrap_or(0o644);
            let Some(path) = norm(&path) else { return Ok(None) };
            if path.is_empty() {
                continue; // the root directory
            }
            match t {
                T::Directory => entries.push(Entry { path, mode: DIR | (mode & 0o7777), chunks: vec![] }),
                T::Regular | T::Continuous | T::GNUSparse => {
                    entries.push(file_entry(objects, path, mode, &mut e).map_err(|e| err(&e))?)
                }
                T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => {}
                _ => return Ok(None),
            }
        }
    } else {
        let mut ar = zip::ZipArchive::new(f).map_err(|e| err(&e))?;
        for i in 0..ar.len() {
            let mut e = ar.by_index(i).map_err(|e| err(&e))?;
            let Some(path) = norm(e.name()) else { return Ok(None) };
            if path.is_empty() {
                continue;
            }
            let mode = e.unix_mode();
            if e.is_dir() {
                entries.push(Entry { path, mode: DIR | (mode.unwrap_or(0o755) & 0o7777), chunks: vec![] });
            } else if mode.is_some_and(|m| m & 0o170_000 == 0o120_000) {
                return Ok(None); // a symbolic link
            } else {
                entries.push(file_entry(objects, path, mode.unwrap_or(0o644), &mut e).map_err(|e| err(&e))?);
            }
        }
    }
    Ok(Some(Tree { entries }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_take_the_modes_of_their_kind_whatever_the_umask() {
        let t = std::env::temp_dir().join(format!("outpost-objects-modes-{}", std::process::id()));
        let _ = fs::remove_dir_all(&t);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        for (tls, dir_mode, file_mode) in [(false, 0o755, 0o644), (true, 0o700, 0o600)] {
            let objects = t.join(dir_name(tls));
            let c = put(&objects, b"some bytes").unwrap();
            let name = hex(&c.sha256);
            assert_eq!(mode(&objects), dir_mode, "{}", objects.display());
            assert_eq!(mode(&objects.join(&name[..2])), dir_mode);
            assert_eq!(mode(&objects.join(&name[..2]).join(&name)), file_mode, "tls {tls}");
        }
        fs::remove_dir_all(&t).unwrap();
    }

    #[test]
    fn an_archive_becomes_objects_written_once_and_a_tree() {
        let t = std::env::temp_dir().join(format!("outpost-objects-{}", std::process::id()));
        let _ = fs::remove_dir_all(&t);
        fs::create_dir_all(&t).unwrap();
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        let big: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let mut root = tar::Header::new_gnu();
        root.set_entry_type(tar::EntryType::Directory);
        root.set_size(0);
        root.set_mode(0o755);
        root.set_cksum();
        b.append_data(&mut root, "./", &b""[..]).unwrap(); // what `tar -C DIR .` writes first
        for (name, data) in [("./d/a", &big[..]), ("d/b", &big[..]), ("e", b"")] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o755);
            h.set_cksum();
            b.append_data(&mut h, name, data).unwrap();
        }
        fs::write(t.join("a.tar.gz"), b.into_inner().unwrap().finish().unwrap()).unwrap();
        let tree = publish(&t.join("a.tar.gz"), &t.join("objects")).unwrap().unwrap();
        assert_eq!(tree.entries.iter().map(|e| e.path.as_str()).collect::<Vec<_>>(), ["d/a", "d/b", "e"]);
        assert_eq!(tree.entries[0].chunks, tree.entries[1].chunks, "same content, same objects");
        assert_eq!(tree.entries[0].size(), big.len() as u64);
        assert_eq!(tree.entries[0].mode, 0o755);
        let mut n = 0;
        for c in &tree.entries[0].chunks {
            let name = hex(&c.sha256);
            assert_eq!(sha256(&fs::read(t.join("objects").join(&name[..2]).join(&name)).unwrap()), c.sha256);
            n += 1;
        }
        let files: usize =
            fs::read_dir(t.join("objects")).unwrap().map(|d| fs::read_dir(d.unwrap().path()).unwrap().count()).sum();
        assert_eq!(files, n, "each distinct chunk once");
        let _ = fs::remove_dir_all(&t);
    }
}
