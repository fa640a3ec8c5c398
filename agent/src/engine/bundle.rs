//! The offline bundle (`FILE.outpost`): one file holding a package's info
//! file, its signed manifest and its payload, for installs with no network
//! (a USB stick, a file share). `outpost-server bundle` writes it; the agent
//! reads it as a source of metadata and fragments, and verifies it exactly
//! as a download (the signature and digests are those of the manifest).
//!
//! ```text
//!  "OUTPOSTB" · version u8 (1) · package id u64 LE
//!  · info length u32 LE · info file        (at most MAX_INFO_LEN)
//!  · manifest length u32 LE · manifest     (at most MAX_MANIFEST_LEN)
//!  · payload length u64 LE · payload       (the fragments one after the other)
//!  · end of file
//! ```
//!
//! Everything before the payload is the head: at most [`MAX_HEAD`] bytes,
//! decoded from memory; the payload is read in place, fragment by fragment,
//! at the offsets the (verified) manifest gives.

use alloc::vec::Vec;
use core::fmt;

use super::limits::{MAX_INFO_LEN, MAX_MANIFEST_LEN};
use super::manifest::Manifest;

/// The first bytes of every bundle.
pub const MAGIC: &[u8; 8] = b"OUTPOSTB";
/// The format version written and read.
pub const VERSION: u8 = 1;
/// The longest head: magic, version, id, both sections and their lengths.
pub const MAX_HEAD: usize = 8 + 1 + 8 + 4 + MAX_INFO_LEN + 4 + MAX_MANIFEST_LEN + 8;
/// The largest payload a bundle may announce (1 TiB).
pub const MAX_PAYLOAD: u64 = 1 << 40;

/// Why bytes are not a bundle's head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleError {
    /// It does not start with [`MAGIC`].
    NotABundle,
    /// A format version this agent does not read.
    Version(u8),
    /// It ends inside the head.
    Truncated,
    /// A section is longer than its bound (which one).
    TooLong(&'static str),
    /// The file's size is not what its head says (cut or padded).
    Size,
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotABundle => f.write_str("not an Outpost bundle"),
            Self::Version(v) => write!(f, "bundle format version {v} is not supported"),
            Self::Truncated => f.write_str("bundle ends inside its head"),
            Self::TooLong(what) => write!(f, "bundle {what} is longer than allowed"),
            Self::Size => f.write_str("bundle size is not what its head says"),
        }
    }
}

/// A decoded head: the sections borrowed from the bytes read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head<'a> {
    /// The package id the bundle claims (checked against the manifest's).
    pub package: u64,
    /// The info file.
    pub info: &'a [u8],
    /// The signed manifest.
    pub manifest: &'a [u8],
    /// Bytes of payload after the head.
    pub payload_len: u64,
    /// Bytes of the head: where the payload starts.
    pub len: usize,
}

/// Reads `n` bytes at `*at`, moving it on.
fn take<'a>(b: &'a [u8], at: &mut usize, n: usize) -> Result<&'a [u8], BundleError> {
    let end = at.checked_add(n).filter(|e| *e <= b.len()).ok_or(BundleError::Truncated)?;
    let s = &b[*at..end];
    *at = end;
    Ok(s)
}

fn le(s: &[u8]) -> u64 {
    s.iter().rev().fold(0, |acc, b| (acc << 8) | u64::from(*b))
}

fn section<'a>(b: &'a [u8], at: &mut usize, max: usize, what: &'static str) -> Result<&'a [u8], BundleError> {
    let n = le(take(b, at, 4)?) as usize;
    if n > max {
        return Err(BundleError::TooLong(what));
    }
    take(b, at, n)
}

/// Decode the head at the start of `b` (the first [`MAX_HEAD`] bytes of a
/// file, or all of it when shorter). Every length is checked against its
/// bound before anything is taken.
pub fn decode_head(b: &[u8]) -> Result<Head<'_>, BundleError> {
    let mut at = 0;
    if b.len() < MAGIC.len() || &b[..MAGIC.len()] != MAGIC {
        return Err(BundleError::NotABundle);
    }
    at += MAGIC.len();
    let version = take(b, &mut at, 1)?[0];
    if version != VERSION {
        return Err(BundleError::Version(version));
    }
    let package = le(take(b, &mut at, 8)?);
    let info = section(b, &mut at, MAX_INFO_LEN, "info file")?;
    let manifest = section(b, &mut at, MAX_MANIFEST_LEN, "manifest")?;
    let payload_len = le(take(b, &mut at, 8)?);
    if payload_len > MAX_PAYLOAD {
        return Err(BundleError::TooLong("payload"));
    }
    Ok(Head { package, info, manifest, payload_len, len: at })
}

/// The head of a bundle of `package` (what [`decode_head`] reads back).
pub fn encode_head(package: u64, info: &[u8], manifest: &[u8], payload_len: u64) -> Result<Vec<u8>, BundleError> {
    if info.len() > MAX_INFO_LEN {
        return Err(BundleError::TooLong("info file"));
    }
    if manifest.len() > MAX_MANIFEST_LEN {
        return Err(BundleError::TooLong("manifest"));
    }
    if payload_len > MAX_PAYLOAD {
        return Err(BundleError::TooLong("payload"));
    }
    let mut out = Vec::with_capacity(33 + info.len() + manifest.len());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&package.to_le_bytes());
    for s in [info, manifest] {
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s);
    }
    out.extend_from_slice(&payload_len.to_le_bytes());
    Ok(out)
}

/// Where fragment `n` (1-based) of `m`'s archive lies in the payload:
/// its offset and size; `None` past the last.
pub fn fragment_span(m: &Manifest, n: usize) -> Option<(u64, u64)> {
    let f = m.fragments.get(n.checked_sub(1)?)?;
    let offset = m.fragments[..n - 1].iter().fold(0u64, |acc, e| acc.saturating_add(e.size));
    Some((offset, f.size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_round_trips_and_every_cut_is_refused() {
        let h = encode_head(42, b"<INFO/>", b"signed", 1000).unwrap();
        let d = decode_head(&h).unwrap();
        assert_eq!(d, Head { package: 42, info: b"<INFO/>", manifest: b"signed", payload_len: 1000, len: h.len() });
        // Payload bytes after the head are not part of it.
        let mut more = h.clone();
        more.extend_from_slice(b"payload");
        assert_eq!(decode_head(&more).unwrap().len, h.len());
        for cut in 0..h.len() {
            let e = decode_head(&h[..cut]).unwrap_err();
            assert!(matches!(e, BundleError::Truncated | BundleError::NotABundle), "{cut}: {e}");
        }
    }

    #[test]
    fn magic_version_and_bounds_are_checked() {
        let h = encode_head(1, b"i", b"m", 0).unwrap();
        let mut bad = h.clone();
        bad[0] = b'X';
        assert_eq!(decode_head(&bad), Err(BundleError::NotABundle));
        let mut v2 = h.clone();
        v2[8] = 2;
        assert_eq!(decode_head(&v2), Err(BundleError::Version(2)));
        // An info length past its bound is refused before anything is read.
        let mut long = h.clone();
        long[17..21].copy_from_slice(&(MAX_INFO_LEN as u32 + 1).to_le_bytes());
        assert_eq!(decode_head(&long), Err(BundleError::TooLong("info file")));
        let mut huge = h;
        let n = huge.len();
        huge[n - 8..].copy_from_slice(&(MAX_PAYLOAD + 1).to_le_bytes());
        assert_eq!(decode_head(&huge), Err(BundleError::TooLong("payload")));
        assert_eq!(encode_head(1, &[0; MAX_INFO_LEN + 1], b"", 0), Err(BundleError::TooLong("info file")));
    }
}
