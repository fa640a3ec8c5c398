//! Updates by content objects ([`crate::engine::tree`]): a package whose
//! signed manifest lists its files as chunks is fetched as only the chunks
//! this agent does not hold, then rebuilt.
//!
//! What the agent holds is the last tree it built for the package's name:
//! `STATE/objects/NAMEKEY/` keeps that tree's encoding (`tree`) and a hard
//! link to each of its files (`0`, `1`, …, by entry), so holding costs no
//! disk beyond the installed payload until that is dropped. A held chunk is
//! used only after its bytes match the new manifest's SHA-256 (the old tree
//! only says where to look). The missing chunks are a [`Layout`] of signed
//! fragments for the one download engine (journal, resume, throttle and
//! per-fragment digest as for fragments), fetched from
//! `LOCATION/objects/AB/SHA256HEX` (`objects-tls/` for HTTPS) into the
//! package's archive file, one after the other. The rebuild writes through
//! [`SafeTree`] (the unpacker's path and mode rules and bounds) and checks
//! each chunk's digest again as it copies it.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, FileExt};
use std::path::{Path, PathBuf};

use super::super::store::{Store, StoreError};
use super::super::unpack::{SafeTree, UnpackBounds, UnpackError};
use super::install::settle;
use crate::engine::digest::hex;
use crate::engine::download::{ARCHIVE, Fragments, Layout};
use crate::engine::limits::MAX_MANIFEST_LEN;
use crate::engine::manifest::{FragmentEntry, Manifest, sha256};
use crate::engine::status::StatusCode;
use crate::engine::tree::{Chunk, Tree};

/// Marks a package whose objects the server does not have: its fragments
/// are fetched instead.
pub(super) const NO_OBJECTS: &str = "no-objects";

/// Where a chunk's bytes are: in the held tree's file `.0` at `.1`
/// (`Some`), or in the archive at `.1` (`None`).
type Source = (Option<usize>, u64);

/// A package's update by objects: where every chunk comes from.
pub(super) struct Plan {
    held: PathBuf,
    /// The distinct chunks of the new tree and where each is (`u64::MAX`:
    /// nowhere yet). Looked up linearly: no sort code in the agent for a
    /// list of at most ~30,000 (a manifest's bound).
    chunks: Vec<([u8; 32], Source)>,
    /// The download of the missing chunks.
    pub(super) layout: Layout,
}

/// The directory holding what was last built for `name`.
fn held_dir(state: &Path, name: &str) -> PathBuf {
    state.join("objects").join(&hex(&sha256(name.as_bytes()))[..32])
}

/// `len` bytes of `file` at `at`, if their SHA-256 is `sha`.
fn read_checked(file: &File, at: u64, len: u32, sha: &[u8; 32]) -> Option<Vec<u8>> {
    let mut buf = vec![0; len as usize];
    file.read_exact_at(&mut buf, at).ok()?;
    (sha256(&buf) == *sha).then_some(buf)
}

/// The held tree for `name`, if any (bounded read; a hint only).
fn held_tree(held: &Path) -> Tree {
    let read = File::open(held.join("tree")).and_then(|f| {
        let mut b = Vec::new();
        f.take(MAX_MANIFEST_LEN as u64).read_to_end(&mut b).map(|_| b)
    });
    read.ok().and_then(|b| Tree::decode(&b).ok()).unwrap_or_default()
}

impl Plan {
    /// The plan for `m` (which has a tree and a release), from what is held.
    pub(super) fn new(state: &Path, m: &Manifest) -> Option<Self> {
        let (tree, release) = (m.tree.as_ref()?, m.release.as_ref()?);
        let held = held_dir(state, &release.name);
        let mut plan = Self { held, chunks: Vec::new(), layout: Layout::signed(m) };
        for c in tree.entries.iter().flat_map(|e| &e.chunks) {
            if plan.find(&c.sha256).is_none() {
                plan.chunks.push((c.sha256, (None, u64::MAX)));
            }
        }
        for (i, e) in held_tree(&plan.held).entries.iter().enumerate() {
            let Ok(f) = File::open(plan.held.join(i.to_string())) else { continue };
            let mut at = 0;
            for c in &e.chunks {
                if let Some(k) = plan.find(&c.sha256)
                    && plan.chunks[k].1.1 == u64::MAX
                    && read_checked(&f, at, c.size, &c.sha256).is_some()
                {
                    plan.chunks[k].1 = (Some(i), at);
                }
                at += u64::from(c.size);
            }
        }
        let mut missing = Vec::new();
        let mut key = m.archive_sha256.to_vec();
        let mut at = 0;
        for c in tree.entries.iter().flat_map(|e| &e.chunks) {
            let k = plan.find(&c.sha256)?;
            if plan.chunks[k].1.1 == u64::MAX {
                plan.chunks[k].1 = (None, at);
                missing.push(FragmentEntry { size: u64::from(c.size), sha256: c.sha256 });
                key.extend_from_slice(&c.sha256);
                at += u64::from(c.size);
            }
        }
        plan.layout = Layout { package: m.package_id, key: sha256(&key), fragments: Fragments::Signed(missing) };
        Some(plan)
    }

    /// The index of chunk `sha` in `chunks`.
    fn find(&self, sha: &[u8; 32]) -> Option<usize> {
        self.chunks.iter().position(|c| c.0 == *sha)
    }

    /// Where the chunk `sha` is.
    fn source(&self, sha: &[u8; 32]) -> Source {
        self.find(sha).map_or((None, u64::MAX), |k| self.chunks[k].1)
    }

    /// Build `tree` in `dir` (fresh) from what is held and `archive`, within
    /// `bounds`; then hold it for the next version (`keep`).
    pub(super) fn rebuild(
        &self,
        tree: &Tree,
        archive: &Path,
        dir: &Path,
        bounds: UnpackBounds,
        keep: bool,
    ) -> Result<u64, UnpackError> {
        let archive = File::open(archive).ok();
        let mut out = SafeTree::bounded(dir, bounds);
        for e in &tree.entries {
            let name = Path::new(&e.path);
            if e.is_dir() {
                out.dir(name, Some(e.mode & 0o7777))?;
            } else {
                let mut r =
                    Chunks { plan: self, chunks: &e.chunks, archive: archive.as_ref(), buf: Vec::new(), pos: 0 };
                out.file(name, Some(e.mode & 0o7777), &mut r)?;
            }
        }
        if keep { self.hold(tree, dir) } else { self.drop_held() }.map_err(UnpackError::Io)?;
        Ok(out.count())
    }

    /// Replace what is held for the name by hard links to `dir`'s files.
    fn hold(&self, tree: &Tree, dir: &Path) -> io::Result<()> {
        let next = self.held.with_extension("next");
        let _ = fs::remove_dir_all(&next);
        // Private, like the rest of STATE (what is held is only a hint: every
        // chunk is checked against the next manifest before use).
        fs::DirBuilder::new().recursive(true).mode(0o700).create(&next)?;
        for (i, e) in tree.entries.iter().enumerate() {
            if !e.is_dir() {
                fs::hard_link(dir.join(&e.path), next.join(i.to_string()))?;
            }
        }
        fs::write(next.join("tree"), tree.encode())?;
        self.drop_held()?;
        fs::rename(&next, &self.held)
    }

    /// Forget what is held for the name.
    fn drop_held(&self) -> io::Result<()> {
        match fs::remove_dir_all(&self.held) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// The object path for fragment `n` (1-based) of an objects layout.
pub(crate) fn object_path(dir: &str, layout: &Layout, n: usize) -> Option<String> {
    let Fragments::Signed(f) = &layout.fragments else { return None };
    let h = hex(&f.get(n.checked_sub(1)?)?.sha256);
    Some(format!("{dir}/{}/{h}", &h[..2]))
}

/// A file's bytes, chunk after chunk, each checked against its digest.
struct Chunks<'a> {
    plan: &'a Plan,
    chunks: &'a [Chunk],
    archive: Option<&'a File>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for Chunks<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            let Some((c, rest)) = self.chunks.split_first() else { return Ok(0) };
            self.chunks = rest;
            let (from, at) = self.plan.source(&c.sha256);
            let held = from.and_then(|f| File::open(self.plan.held.join(f.to_string())).ok());
            let file = held.as_ref().or(self.archive);
            self.buf = file.and_then(|f| read_checked(f, at, c.size, &c.sha256)).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, format!("object {} missing or damaged", hex(&c.sha256)))
            })?;
            self.pos = 0;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Rebuild package `id`'s `tree` by `plan` into its `unpack` directory, as
/// [`super::install::verify_and_unpack`] unpacks an archive: `Some(code)`
/// on failure (`ERR_BUILD` also for a chunk damaged on this disk since it
/// was checked), with nothing left unpacked.
pub(super) fn unpack(
    store: &Store,
    id: u64,
    plan: &Plan,
    tree: &Tree,
    bounds: UnpackBounds,
    keep: bool,
) -> Result<Option<StatusCode>, StoreError> {
    let dir = store.package_dir(id);
    let (tmp, done) = (dir.join("unpack.tmp"), dir.join("unpack"));
    let io_err = |e: io::Error| StoreError::Io(tmp.clone(), e);
    for d in [&tmp, &done] {
        if d.exists() {
            fs::remove_dir_all(d).map_err(io_err)?;
        }
    }
    fs::create_dir_all(&tmp).map_err(io_err)?;
    settle(id, &tmp, &done, plan.rebuild(tree, &dir.join(ARCHIVE), &tmp, bounds, keep))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::manifest::Release;
    use crate::engine::tree::Entry;
    use crate::engine::version::Version;

    fn manifest(files: &[(&str, &[&[u8]])]) -> Manifest {
        let entries = files
            .iter()
            .map(|(path, chunks)| Entry {
                path: (*path).into(),
                mode: 0o644,
                chunks: chunks.iter().map(|c| Chunk { size: c.len() as u32, sha256: sha256(c) }).collect(),
            })
            .collect();
        let release = Release { name: "app".into(), version: Version::parse("1").unwrap(), downgrade: false };
        Manifest { package_id: 9, release: Some(release), tree: Some(Tree { entries }), ..Manifest::default() }
    }

    fn missing(p: &Plan) -> Vec<u64> {
        let Fragments::Signed(f) = &p.layout.fragments else { panic!() };
        f.iter().map(|e| e.size).collect()
    }

    #[test]
    fn only_chunks_not_held_or_held_with_other_bytes_are_fetched_and_the_tree_is_rebuilt() {
        let t = std::env::temp_dir().join(format!("outpost-plan-{}", std::process::id()));
        let _ = fs::remove_dir_all(&t);
        let (a, b, c) = (&[1u8; 10][..], &[2u8; 20][..], &[3u8; 30][..]);
        // Nothing held: every distinct chunk once, the repeated one once.
        let v1 = manifest(&[("x", &[a, b]), ("d/y", &[b, c])]);
        let p = Plan::new(&t, &v1).unwrap();
        assert_eq!(missing(&p), [10, 20, 30]);
        // The download brought them: rebuild, and hold the tree.
        let pkg = t.join("pkg");
        fs::create_dir_all(pkg.join("out")).unwrap();
        fs::write(pkg.join(ARCHIVE), [a, b, c].concat()).unwrap();
        let tree = v1.tree.as_ref().unwrap();
        p.rebuild(tree, &pkg.join(ARCHIVE), &pkg.join("out"), UnpackBounds::UNSIGNED, true).unwrap();
        assert_eq!(fs::read(pkg.join("out/d/y")).unwrap(), [b, c].concat());
        // Version 2 under other names: only the new chunk; one held chunk
        // whose bytes changed on disk is fetched again, not trusted.
        let d = &[4u8; 40][..];
        let v2 = manifest(&[("renamed", &[a, b, c]), ("z", &[d])]);
        assert_eq!(missing(&Plan::new(&t, &v2).unwrap()), [40]);
        fs::remove_file(pkg.join("out/x")).unwrap(); // the link stays
        let mut y = fs::read(pkg.join("out/d/y")).unwrap();
        y[25] ^= 1; // in c
        fs::write(pkg.join("out/d/y"), y).unwrap(); // the same inode as the held file
        assert_eq!(missing(&Plan::new(&t, &v2).unwrap()), [30, 40]);
        // A chunk in neither place fails the rebuild; nothing is trusted.
        fs::write(pkg.join(ARCHIVE), [c, d].concat()).unwrap();
        let p2 = Plan::new(&t, &v2).unwrap();
        fs::create_dir_all(pkg.join("out2")).unwrap();
        p2.rebuild(v2.tree.as_ref().unwrap(), &pkg.join(ARCHIVE), &pkg.join("out2"), UnpackBounds::UNSIGNED, false)
            .unwrap();
        assert_eq!(fs::read(pkg.join("out2/renamed")).unwrap(), [a, b, c].concat());
        assert!(!held_dir(&t, "app").exists(), "not kept: the held tree is dropped");
        fs::write(pkg.join(ARCHIVE), [a, a].concat()).unwrap();
        let p3 = Plan::new(&t, &v2).unwrap();
        fs::create_dir_all(pkg.join("out3")).unwrap();
        let r =
            p3.rebuild(v2.tree.as_ref().unwrap(), &pkg.join(ARCHIVE), &pkg.join("out3"), UnpackBounds::UNSIGNED, true);
        assert!(r.is_err(), "damaged objects are refused");
        let _ = fs::remove_dir_all(&t);
    }
}
