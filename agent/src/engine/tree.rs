//! A package's payload as content objects (`package add` for a package in
//! a line of versions): every file with its path, mode, size and the
//! SHA-256 of each of its chunks, in the signed manifest (its fourth
//! extension). An agent holding an earlier version of the same name fetches
//! only the chunks it lacks, from `objects/AB/SHA256HEX` beside the
//! fragments, and rebuilds the tree.
//!
//! Encoding (varints are LEB128, at most 10 bytes):
//!
//! ```text
//!  tree  = count (varint) | entry*
//!  entry = path length (varint) | path (UTF-8, '/'-separated) | mode (varint)
//!          | chunk count (varint) | (chunk size (varint) | SHA-256 (32 B))*
//! ```
//!
//! An entry whose mode has the directory type bits ([`DIR`]) is a
//! directory and has no chunks; every other is a regular file whose size is
//! the sum of its chunks'. The decoder refuses paths that are absolute,
//! empty, hold `.`, `..`, a backslash or NUL in a component, chunks of 0 or
//! more than [`MAX_CHUNK`] bytes, and more than [`MAX_ENTRIES`] entries.

use alloc::string::String;
use alloc::vec::Vec;

/// Mode bits of a directory entry (`S_IFDIR`).
pub const DIR: u32 = 0o040_000;
/// The largest chunk.
pub const MAX_CHUNK: u32 = 1024 * 1024;
/// The most entries a tree holds.
pub const MAX_ENTRIES: usize = 200_000;
/// The longest path.
pub const MAX_PATH: usize = 4096;

/// One chunk of a file: its size and SHA-256 (the object's name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// Bytes, 1 to [`MAX_CHUNK`].
    pub size: u32,
    /// SHA-256 of the bytes.
    pub sha256: [u8; 32],
}

/// A file or directory of the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative path, `/`-separated, checked.
    pub path: String,
    /// Mode bits ([`DIR`] for a directory; permission bits as in the archive).
    pub mode: u32,
    /// The file's chunks in order (none for a directory or an empty file).
    pub chunks: Vec<Chunk>,
}

impl Entry {
    /// Whether the entry is a directory.
    pub fn is_dir(&self) -> bool {
        self.mode & 0o170_000 == DIR
    }

    /// The file's size.
    pub fn size(&self) -> u64 {
        self.chunks.iter().map(|c| u64::from(c.size)).sum()
    }
}

/// The payload's files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    /// Entries in archive order (a directory before what it holds).
    pub entries: Vec<Entry>,
}

/// A tree that does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeError;

fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TreeError> {
        if n > self.0.len() {
            return Err(TreeError);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }

    fn var(&mut self, max: u64) -> Result<u64, TreeError> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = *self.take(1)?.first().ok_or(TreeError)?;
            v |= u64::from(b & 0x7f).checked_shl(7 * i).ok_or(TreeError)?;
            if b & 0x80 == 0 {
                return if v <= max { Ok(v) } else { Err(TreeError) };
            }
        }
        Err(TreeError)
    }
}

/// Whether `path` is relative and free of empty, `.` and `..` components,
/// backslashes and NUL.
pub fn path_ok(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= MAX_PATH
        && path.split('/').all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains(['\\', '\0']))
}

impl Tree {
    /// The encoding above.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put(&mut out, self.entries.len() as u64);
        for e in &self.entries {
            put(&mut out, e.path.len() as u64);
            out.extend_from_slice(e.path.as_bytes());
            put(&mut out, u64::from(e.mode));
            put(&mut out, e.chunks.len() as u64);
            for c in &e.chunks {
                put(&mut out, u64::from(c.size));
                out.extend_from_slice(&c.sha256);
            }
        }
        out
    }

    /// Decode and check a whole encoding (nothing may follow).
    pub fn decode(bytes: &[u8]) -> Result<Self, TreeError> {
        let mut r = Reader(bytes);
        let n = r.var(MAX_ENTRIES as u64)? as usize;
        // Each entry takes at least 4 bytes: bound the allocation by the input.
        let mut entries = Vec::with_capacity(n.min(bytes.len() / 4));
        for _ in 0..n {
            let len = r.var(MAX_PATH as u64)? as usize;
            let path = core::str::from_utf8(r.take(len)?).map_err(|_| TreeError)?;
            if !path_ok(path) {
                return Err(TreeError);
            }
            let mode = r.var(u64::from(u32::MAX))? as u32;
            let count = r.var(r.0.len() as u64 / 33)? as usize;
            let mut chunks = Vec::with_capacity(count);
            for _ in 0..count {
                let size = r.var(u64::from(MAX_CHUNK))? as u32;
                let sha256 = r.take(32)?.try_into().map_err(|_| TreeError)?;
                if size == 0 {
                    return Err(TreeError);
                }
                chunks.push(Chunk { size, sha256 });
            }
            let e = Entry { path: path.into(), mode, chunks };
            if e.is_dir() && !e.chunks.is_empty() {
                return Err(TreeError);
            }
            entries.push(e);
        }
        if !r.0.is_empty() {
            return Err(TreeError);
        }
        Ok(Self { entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn sample() -> Tree {
        let c = |size, b| Chunk { size, sha256: [b; 32] };
        Tree {
            entries: vec![
                Entry { path: "bin".into(), mode: DIR | 0o755, chunks: vec![] },
                Entry { path: "bin/app".into(), mode: 0o755, chunks: vec![c(65_536, 1), c(MAX_CHUNK, 2)] },
                Entry { path: "empty".into(), mode: 0o644, chunks: vec![] },
            ],
        }
    }

    #[test]
    fn a_tree_round_trips_and_sizes_add_up() {
        let t = sample();
        assert_eq!(Tree::decode(&t.encode()), Ok(t.clone()));
        assert!(t.entries[0].is_dir() && !t.entries[1].is_dir());
        assert_eq!(t.entries[1].size(), 65_536 + u64::from(MAX_CHUNK));
        assert_eq!(Tree::decode(&Tree::default().encode()), Ok(Tree::default()));
    }

    #[test]
    fn escaping_or_odd_paths_are_refused() {
        for bad in ["../x", "a/../b", "/etc/passwd", "a//b", "./a", "a/", "", "a\\b", "a\0b", ".."] {
            let mut t = sample();
            t.entries[1].path = bad.into();
            assert_eq!(Tree::decode(&t.encode()), Err(TreeError), "{bad:?}");
        }
        let mut t = sample();
        t.entries[1].path = "a".repeat(MAX_PATH + 1);
        assert_eq!(Tree::decode(&t.encode()), Err(TreeError));
    }

    #[test]
    fn truncated_trailing_oversized_or_empty_chunks_are_refused() {
        let bytes = sample().encode();
        for i in 0..bytes.len() {
            assert_eq!(Tree::decode(&bytes[..i]), Err(TreeError), "cut at {i}");
        }
        let mut more = bytes;
        more.push(0);
        assert_eq!(Tree::decode(&more), Err(TreeError), "trailing byte");
        for size in [0, MAX_CHUNK + 1] {
            let mut t = sample();
            t.entries[1].chunks[0].size = size;
            assert_eq!(Tree::decode(&t.encode()), Err(TreeError), "chunk of {size}");
        }
        let mut t = sample();
        t.entries[0].chunks.push(Chunk { size: 1, sha256: [0; 32] });
        assert_eq!(Tree::decode(&t.encode()), Err(TreeError), "a directory with data");
        // A huge count with no bytes behind it neither allocates nor decodes.
        assert_eq!(Tree::decode(&[0xff, 0xff, 0xff, 0xff, 0x0f]), Err(TreeError));
        assert_eq!(Tree::decode(&[0x80; 11]), Err(TreeError));
    }
}
