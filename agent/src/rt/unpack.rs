//! Unpacking zip and tar.gz archives without ever writing outside the target.
//!
//! Every member name is checked here rather than trusted to a library: it
//! must be relative and free of `..`; no path is written through a symbolic
//! link; a symbolic link's target must stay inside the tree (checked
//! lexically from where the link sits); hard links must name a member inside;
//! device files, FIFOs and sockets are refused. Permission bits are kept
//! but for set-id and sticky bits, and group and other write unless the
//! package asks to keep them ([`UnpackBounds::keep_modes`]). Members and data
//! bytes are counted against the package's [`UnpackBounds`] (the numbers its
//! signed manifest records, or fixed ones); GNU sparse members are written
//! sparsely. Any violation aborts the whole unpack ([`UnpackError::Unsafe`],
//! [`UnpackError::OverBound`] → `ERR_BUILD`); the caller unpacks into a fresh
//! directory and throws it away on error.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Seek};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};

pub use crate::engine::plan::UnpackBounds;

mod budget;
use budget::Budget;

/// Why an archive was not unpacked.
#[derive(Debug)]
pub enum UnpackError {
    /// Neither gzip'ed tar nor zip.
    UnknownFormat,
    /// The archive is corrupt.
    Corrupt(String),
    /// A member would escape the directory or is of a refused kind.
    Unsafe(String),
    /// More members or data bytes than the package's bounds allow.
    OverBound(String),
    /// Writing failed (disk full, permissions…).
    Io(io::Error),
}

impl std::fmt::Display for UnpackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnknownFormat => f.write_str("archive is neither zip nor tar.gz"),
            Self::Corrupt(m) => write!(f, "corrupt archive: {m}"),
            Self::Unsafe(m) => write!(f, "refused archive member: {m}"),
            Self::OverBound(m) => write!(f, "archive over its unpack bounds: {m}"),
            Self::Io(e) => write!(f, "cannot write unpacked file: {e}"),
        }
    }
}

impl std::error::Error for UnpackError {}

impl From<io::Error> for UnpackError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// Archive kinds Outpost deploys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// gzip-compressed tar.
    TarGz,
    /// zip.
    Zip,
}

/// Recognise an archive by its first bytes.
pub fn detect(head: &[u8]) -> Option<Format> {
    if head.starts_with(&[0x1f, 0x8b]) {
        Some(Format::TarGz)
    } else if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        Some(Format::Zip)
    } else {
        None
    }
}

/// A member name made safe: its normal components, in order.
fn clean(name: &Path) -> Result<Vec<&std::ffi::OsStr>, UnpackError> {
    let mut out = Vec::new();
    for c in name.components() {
        match c {
            Component::Normal(s) => {
                if s.as_encoded_bytes().contains(&b'\\') {
                    return Err(UnpackError::Unsafe(format!("{}: backslash in name", name.display())));
                }
                out.push(s);
            }
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(UnpackError::Unsafe(format!("{}: '..' in path", name.display())));
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(UnpackError::Unsafe(format!("{}: absolute path", name.display())));
            }
        }
    }
    Ok(out)
}

/// Writes a tree under `root`, refusing anything that would leave it.
pub struct SafeTree {
    root: PathBuf,
    budget: Budget,
}

impl SafeTree {
    /// A tree rooted at `root`, which must exist, with the fixed bounds.
    pub fn new(root: &Path) -> Self {
        Self::bounded(root, UnpackBounds::UNSIGNED)
    }

    /// A tree rooted at `root`, which must exist, within `bounds`.
    pub fn bounded(root: &Path, bounds: UnpackBounds) -> Self {
        Self { root: root.to_owned(), budget: Budget::new(bounds) }
    }

    /// Members taken so far.
    pub fn count(&self) -> u64 {
        self.budget.members()
    }

    /// Resolve a member name; create its parent directories; refuse any
    /// existing symlink on the way. Returns the path and the clean parts.
    fn place(&self, name: &Path) -> Result<(PathBuf, usize), UnpackError> {
        let parts = clean(name)?;
        if parts.is_empty() {
            return Ok((self.root.clone(), 0));
        }
        let mut p = self.root.clone();
        for part in &parts[..parts.len() - 1] {
            p.push(part);
            match fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(UnpackError::Unsafe(format!("{}: path goes through a symbolic link", name.display())));
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(UnpackError::Unsafe(format!("{}: parent is not a directory", name.display())));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir(&p)?,
                Err(e) => return Err(e.into()),
            }
        }
        p.push(parts[parts.len() - 1]);
        Ok((p, parts.len()))
    }

    /// Remove whatever non-directory sits at `p` (a later member replaces an
    /// earlier one; removing a symlink never touches its target).
    fn clear(p: &Path) -> Result<(), UnpackError> {
        match fs::symlink_metadata(p) {
            Ok(m) if m.is_dir() => Err(UnpackError::Unsafe(format!("{}: replaces a directory", p.display()))),
            Ok(_) => Ok(fs::remove_file(p)?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Create a directory member.
    pub fn dir(&mut self, name: &Path, mode: Option<u32>) -> Result<(), UnpackError> {
        self.budget.member(name)?;
        let (p, depth) = self.place(name)?;
        if depth == 0 {
            return Ok(());
        }
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(UnpackError::Unsafe(format!("{}: directory over a file or link", name.display())));
            }
            Err(_) => fs::create_dir(&p)?,
        }
        if let Some(m) = mode {
            fs::set_permissions(&p, fs::Permissions::from_mode(self.budget.mode(m) | 0o700))?;
        }
        Ok(())
    }

    /// Create a regular file member from `data`.
    pub fn file(&mut self, name: &Path, mode: Option<u32>, data: &mut dyn Read) -> Result<(), UnpackError> {
        self.write_file(name, mode, data, false)
    }

    /// A regular file member; `sparse`: zeros become holes.
    fn write_file(
        &mut self,
        name: &Path,
        mode: Option<u32>,
        data: &mut dyn Read,
        sparse: bool,
    ) -> Result<(), UnpackError> {
        self.budget.member(name)?;
        let (p, depth) = self.place(name)?;
        if depth == 0 {
            return Err(UnpackError::Unsafe("file member with an empty name".into()));
        }
        Self::clear(&p)?;
        let mode = self.budget.mode(mode.unwrap_or(0o644));
        // create_new refuses to follow (or replace) anything at the path.
        let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&p)?;
        self.budget.copy(name, data, &mut f, sparse)?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        Ok(())
    }

    /// Create a symbolic link member whose target stays inside the tree.
    pub fn symlink(&mut self, name: &Path, target: &Path) -> Result<(), UnpackError> {
        self.budget.member(name)?;
        let (p, depth) = self.place(name)?;
        if depth == 0 {
            return Err(UnpackError::Unsafe("link member with an empty name".into()));
        }
        // Lexical check from the link's directory (depth - 1 levels below
        // root). `..` may only lead the target: after a name it would climb
        // out of whatever that name is, and a name may be (or later become)
        // a link itself (`d/up -> ..` and `x -> d/up/..` put `x` outside;
        // found by the `unpack` fuzz target's check). Leading `..`s climb
        // real directories only (place() refuses links on a member's path),
        // and names then only descend, so every link stays inside the tree.
        let mut level = depth as i64 - 1;
        let mut descended = false;
        for c in target.components() {
            match c {
                Component::Normal(_) => {
                    level += 1;
                    descended = true;
                }
                Component::CurDir => {}
                Component::ParentDir if descended => {
                    return Err(UnpackError::Unsafe(format!(
                        "{} -> {}: '..' after a name in a link target",
                        name.display(),
                        target.display()
                    )));
                }
                Component::ParentDir => {
                    level -= 1;
                    if level < 0 {
                        return Err(UnpackError::Unsafe(format!(
                            "{} -> {}: link leaves the package",
                            name.display(),
                            target.display()
                        )));
                    }
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(UnpackError::Unsafe(format!(
                        "{} -> {}: absolute link target",
                        name.display(),
                        target.display()
                    )));
                }
            }
        }
        if target.as_os_str().is_empty() {
            return Err(UnpackError::Unsafe(format!("{}: empty link target", name.display())));
        }
        Self::clear(&p)?;
        symlink(target, &p)?;
        Ok(())
    }

    /// Create a hard link member to an earlier regular-file member.
    pub fn hardlink(&mut self, name: &Path, target: &Path) -> Result<(), UnpackError> {
        self.budget.member(name)?;
        let (src, _) = self.place(target)?;
        let m = fs::symlink_metadata(&src)
            .map_err(|_| UnpackError::Unsafe(format!("{}: hard link to a missing member", name.display())))?;
        if !m.is_file() {
            return Err(UnpackError::Unsafe(format!("{}: hard link to a non-file", name.display())));
        }
        let (p, _) = self.place(name)?;
        Self::clear(&p)?;
        fs::hard_link(&src, &p)?;
        Ok(())
    }
}

/// Unpack `archive` (zip or tar.gz, detected from its first bytes) into the
/// existing, empty directory `dest`, within the fixed bounds. Returns the
/// number of members.
pub fn unpack<R: Read + Seek>(archive: R, dest: &Path) -> Result<u64, UnpackError> {
    unpack_bounded(archive, dest, UnpackBounds::UNSIGNED)
}

/// [`unpack`] within `bounds`: past them the unpack stops with
/// [`UnpackError::OverBound`].
pub fn unpack_bounded<R: Read + Seek>(mut archive: R, dest: &Path, bounds: UnpackBounds) -> Result<u64, UnpackError> {
    let mut head = [0u8; 4];
    let n = archive.read(&mut head)?;
    archive.rewind()?;
    let mut tree = SafeTree::bounded(dest, bounds);
    match detect(&head[..n]).ok_or(UnpackError::UnknownFormat)? {
        Format::TarGz => unpack_tar(archive, &mut tree)?,
        Format::Zip => unpack_zip(archive, &mut tree)?,
    }
    Ok(tree.count())
}

fn unpack_tar(r: impl Read, tree: &mut SafeTree) -> Result<(), UnpackError> {
    use tar::EntryType as T;
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(r));
    let corrupt = |e: io::Error| UnpackError::Corrupt(e.to_string());
    for entry in ar.entries().map_err(corrupt)? {
        let mut e = entry.map_err(corrupt)?;
        let name = e.path().map_err(corrupt)?.into_owned();
        let mode = e.header().mode().ok();
        match e.header().entry_type() {
            T::Regular | T::Continuous => tree.file(&name, mode, &mut e)?,
            T::GNUSparse => tree.write_file(&name, mode, &mut e, true)?,
            T::Directory => tree.dir(&name, mode)?,
            T::Symlink => {
                let target = e
                    .link_name()
                    .map_err(corrupt)?
                    .ok_or_else(|| UnpackError::Corrupt("link without target".into()))?;
                tree.symlink(&name, &target)?
            }
            T::Link => {
                let target = e
                    .link_name()
                    .map_err(corrupt)?
                    .ok_or_else(|| UnpackError::Corrupt("link without target".into()))?;
                tree.hardlink(&name, &target)?
            }
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => {}
            other => {
                return Err(UnpackError::Unsafe(format!("{}: refused member type {other:?}", name.display())));
            }
        }
    }
    Ok(())
}

fn unpack_zip<R: Read + Seek>(r: R, tree: &mut SafeTree) -> Result<(), UnpackError> {
    const S_IFMT: u32 = 0o170000;
    const S_IFLNK: u32 = 0o120000;
    const S_IFREG: u32 = 0o100000;
    const S_IFDIR: u32 = 0o040000;
    let corrupt = |e: zip::result::ZipError| UnpackError::Corrupt(e.to_string());
    let mut ar = zip::ZipArchive::new(r).map_err(corrupt)?;
    for i in 0..ar.len() {
        let mut f = ar.by_index(i).map_err(corrupt)?;
        let name = PathBuf::from(f.name());
        let mode = f.unix_mode();
        let kind = mode.map(|m| m & S_IFMT).filter(|k| *k != 0);
        if f.is_dir() || kind == Some(S_IFDIR) {
            tree.dir(&name, mode)?;
        } else if kind == Some(S_IFLNK) {
            let mut target = String::new();
            f.by_ref().take(4096).read_to_string(&mut target)?;
            tree.symlink(&name, Path::new(&target))?;
        } else if kind.is_none() || kind == Some(S_IFREG) {
            tree.file(&name, mode, &mut f)?;
        } else {
            return Err(UnpackError::Unsafe(format!("{}: refused member type", name.display())));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("outpost-unpack-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(d.join("in")).unwrap();
        d
    }

    #[test]
    fn names_are_cleaned() {
        assert!(clean(Path::new("../x")).is_err());
        assert!(clean(Path::new("/etc/passwd")).is_err());
        assert!(clean(Path::new("a/../../x")).is_err());
        assert!(clean(Path::new("a\\b")).is_err());
        assert_eq!(clean(Path::new("./a/b")).unwrap().len(), 2);
    }

    #[test]
    fn links_that_leave_are_refused_and_nothing_is_written_outside() {
        let d = tmp("links");
        let root = d.join("in");
        let mut t = SafeTree::new(&root);
        t.symlink(Path::new("sub/ok"), Path::new("../file")).unwrap();
        assert!(t.symlink(Path::new("sub/bad"), Path::new("../../out")).is_err());
        assert!(t.symlink(Path::new("abs"), Path::new("/tmp")).is_err());
        // A link to outside made by other means is never written through.
        symlink(&d, root.join("esc")).unwrap();
        let err = t.file(Path::new("esc/evil"), None, &mut &b"x"[..]).unwrap_err();
        assert!(matches!(err, UnpackError::Unsafe(_)), "{err}");
        assert!(!d.join("evil").exists());
        // A file member replacing a link replaces the link, not its target.
        fs::write(d.join("target"), b"keep").unwrap();
        symlink(d.join("target"), root.join("f")).unwrap();
        t.file(Path::new("f"), Some(0o4755), &mut &b"new"[..]).unwrap();
        assert_eq!(fs::read(d.join("target")).unwrap(), b"keep");
        assert_eq!(fs::metadata(root.join("f")).unwrap().permissions().mode() & 0o7777, 0o755);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_link_through_a_link_cannot_climb_out() {
        // Caught by the `unpack` fuzz target's check: `d/up -> ..` is the root, so
        // `x -> d/up/..` would be the root's parent, though each looks
        // inside on its own. Either order of the two links.
        for first_the_climber in [false, true] {
            let d = tmp("chain");
            let root = d.join("in");
            let mut t = SafeTree::new(&root);
            if first_the_climber {
                assert!(t.symlink(Path::new("x"), Path::new("d/up/..")).is_err());
            }
            t.dir(Path::new("d"), None).unwrap();
            t.symlink(Path::new("d/up"), Path::new("..")).unwrap();
            assert!(t.symlink(Path::new("x"), Path::new("d/up/..")).is_err());
            assert!(t.symlink(Path::new("y"), Path::new("d/./up/../..")).is_err());
            // Leading `..`s and names that only descend stay allowed.
            t.symlink(Path::new("d/e/back"), Path::new("../../d/up")).unwrap();
            assert!(fs::canonicalize(root.join("d/e/back")).unwrap().starts_with(fs::canonicalize(&root).unwrap()));
            assert!(!root.join("x").exists() && fs::symlink_metadata(root.join("x")).is_err());
            fs::remove_dir_all(&d).unwrap();
        }
    }

    #[test]
    fn unknown_format_is_refused() {
        let e = unpack(io::Cursor::new(b"plain text".to_vec()), Path::new("/nonexistent")).unwrap_err();
        assert!(matches!(e, UnpackError::UnknownFormat));
    }
}
