//! The signed manifest: what the package-signing key vouches for.
//!
//! ```text
//!  "OPM1" | body length (u32 LE) | body (postcard Manifest) | Ed25519 signature (64 B)
//!  └──────────── signed bytes ──────────────────────────┘
//! ```
//!
//! The manifest binds the info file (its SHA-256), the whole archive
//! (SHA-256 and size) and every fragment (size and SHA-256). The agent runs
//! nothing whose info file or bytes are not covered by a valid signature.
//!
//! Extensions follow the format-1 fields inside the body, in a fixed order;
//! a decoder takes those it knows and ignores the rest (postcard stops at the
//! last field it reads), so agents of every version read every manifest:
//!
//! ```text
//!  body = format-1 fields | [Unpacked (size, members)
//!                            | [Validity (expires) | [Release (name, version, downgrade)
//!                            | [Objects (u32 LE length | engine::tree encoding)]]]]
//! ```
//!
//! A manifest without [`Unpacked`] (built before it existed) gets the fixed
//! bounds of [`crate::engine::limits`]. One without [`Validity`] never
//! expires; one past its expiry is refused (`ERR_EXPIRED`), so a frozen or
//! replayed control channel can withhold packages but not offer old ones
//! forever. One with a [`Release`] is refused (`ERR_DOWNGRADE`) where a
//! higher version of its name has run, unless it says a downgrade is
//! intended (see [`crate::engine::version`]).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use ring::signature::{ED25519, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

use super::limits::{MAX_FRAGMENTS, MAX_MANIFEST_LEN, MAX_PACKAGE_NAME_LEN};
use super::tree::Tree;
use super::version::Version;

/// Magic bytes that open every manifest.
pub const MAGIC: &[u8; 4] = b"OPM1";
/// Manifest body format understood by this code.
pub const FORMAT: u16 = 1;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// Flag: request a reboot after a successful action.
pub const FLAG_REBOOT: u32 = 1;
/// Flag: keep group- and world-write bits from the archive (`package add
/// --keep-modes`); without it they are dropped when unpacking.
pub const FLAG_KEEP_MODES: u32 = 2;

/// What the archive unpacks to, as `package add` counted it: the agent checks
/// free space for `size` and stops unpacking past either number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unpacked {
    /// Data bytes of every member (tar entries' sizes, zip entries' uncompressed sizes).
    pub size: u64,
    /// Members: every tar entry but extension headers; every zip entry.
    pub members: u64,
}

/// Until when the signature vouches for the package (`package add
/// --valid-days`, `package resign`): the second extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validity {
    /// Seconds since 1970 UTC from which the manifest is refused.
    pub expires: u64,
}

/// Which line of versions the package belongs to (`package add --name
/// NAME --version VERSION [--downgrade]`): the third extension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// The package name: 1 to [`MAX_PACKAGE_NAME_LEN`] bytes.
    pub name: String,
    /// Its version.
    pub version: Version,
    /// Installing it over a higher version of the same name is intended
    /// (`package add --downgrade`).
    pub downgrade: bool,
}

/// One fragment as published: its size and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FragmentEntry {
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the fragment's bytes.
    pub sha256: [u8; 32],
}

/// The signed description of a package. `Default` gives an empty one,
/// for struct literals that name only the fields they need.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Body format ([`FORMAT`]).
    pub format: u16,
    /// The package id (same as the info file's ID).
    pub package_id: u64,
    /// Version of this package's manifest, increasing when it is re-signed.
    pub version: u32,
    /// Creation time, seconds since 1970 UTC.
    pub created: u64,
    /// SHA-256 of the info file's exact bytes.
    pub info_sha256: [u8; 32],
    /// Size of the whole archive (sum of fragment sizes).
    pub archive_size: u64,
    /// SHA-256 of the whole archive.
    pub archive_sha256: [u8; 32],
    /// The fragments in order (`ID-1` first).
    pub fragments: Vec<FragmentEntry>,
    /// `FLAG_*` bits.
    pub flags: u32,
    /// Exit codes of the action that mean "installed, reboot required"
    /// (reported `SUCCESS_REBOOT_REQUIRED`, and a reboot is requested).
    pub reboot_exit_codes: Vec<i32>,
    /// The first extension (after the format-1 fields); `None` in manifests
    /// built before it existed.
    #[serde(skip)]
    pub unpacked: Option<Unpacked>,
    /// The second extension; `None`: the manifest never expires. Written
    /// only after an [`Unpacked`] (extensions keep their order).
    #[serde(skip)]
    pub expires: Option<u64>,
    /// The third extension; `None`: the package is in no line of versions.
    /// Written only after a [`Validity`].
    #[serde(skip)]
    pub release: Option<Release>,
    /// The fourth extension: the payload as content objects
    /// ([`crate::engine::tree`]); `None`: fragments only. Written only
    /// after a [`Release`] (the agent keeps objects per name).
    #[serde(skip)]
    pub tree: Option<Tree>,
}

/// Why a manifest was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestError {
    /// Larger than [`MAX_MANIFEST_LEN`] or with more than [`MAX_FRAGMENTS`] fragments.
    TooLarge,
    /// Not a manifest (magic, length or encoding wrong).
    Malformed,
    /// A format this agent does not know.
    UnknownFormat(u16),
    /// The signature does not verify with the configured key.
    BadSignature,
    /// The fragment sizes do not add up to the archive size.
    Inconsistent,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge => f.write_str("manifest too large"),
            Self::Malformed => f.write_str("malformed manifest"),
            Self::UnknownFormat(v) => write!(f, "unknown manifest format {v}"),
            Self::BadSignature => f.write_str("manifest signature does not verify"),
            Self::Inconsistent => f.write_str("manifest fragment sizes do not add up"),
        }
    }
}

impl core::error::Error for ManifestError {}

impl Manifest {
    /// The bytes to sign: magic, length, postcard body.
    pub fn signed_bytes(&self) -> Vec<u8> {
        // Serialising plain data into a Vec cannot fail.
        let mut body = postcard::to_allocvec(self).unwrap_or_default();
        if let Some(u) = &self.unpacked {
            body.extend(postcard::to_allocvec(u).unwrap_or_default());
            if let Some(expires) = self.expires {
                body.extend(postcard::to_allocvec(&Validity { expires }).unwrap_or_default());
                if let Some(r) = &self.release {
                    body.extend(postcard::to_allocvec(r).unwrap_or_default());
                    if let Some(t) = &self.tree {
                        let t = t.encode();
                        body.extend_from_slice(&(t.len() as u32).to_le_bytes());
                        body.extend(t);
                    }
                }
            }
        }
        let mut out = Vec::with_capacity(8 + body.len() + SIGNATURE_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Encode with a signature made by `sign` over [`Manifest::signed_bytes`].
    pub fn encode_signed(&self, sign: impl FnOnce(&[u8]) -> [u8; SIGNATURE_LEN]) -> Vec<u8> {
        let mut out = self.signed_bytes();
        let sig = sign(&out);
        out.extend_from_slice(&sig);
        out
    }

    /// Decode `bytes` and check the signature with the Ed25519 `public_key`.
    pub fn decode_verified(bytes: &[u8], public_key: &[u8; 32]) -> Result<Self, ManifestError> {
        if bytes.len() > MAX_MANIFEST_LEN {
            return Err(ManifestError::TooLarge);
        }
        if bytes.len() < 8 + SIGNATURE_LEN || &bytes[..4] != MAGIC {
            return Err(ManifestError::Malformed);
        }
        let body_len = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
        if bytes.len() != 8 + body_len + SIGNATURE_LEN {
            return Err(ManifestError::Malformed);
        }
        let (signed, sig) = bytes.split_at(8 + body_len);
        UnparsedPublicKey::new(&ED25519, public_key).verify(signed, sig).map_err(|_| ManifestError::BadSignature)?;
        let body = &signed[8..];
        // The format field comes first: check it before decoding the rest.
        let (format, _) = postcard::take_from_bytes::<u16>(body).map_err(|_| ManifestError::Malformed)?;
        if format != FORMAT {
            return Err(ManifestError::UnknownFormat(format));
        }
        let (mut m, ext): (Self, _) = postcard::take_from_bytes(body).map_err(|_| ManifestError::Malformed)?;
        if !ext.is_empty() {
            let (u, later) = postcard::take_from_bytes(ext).map_err(|_| ManifestError::Malformed)?;
            m.unpacked = Some(u);
            if !later.is_empty() {
                let (v, later): (Validity, _) =
                    postcard::take_from_bytes(later).map_err(|_| ManifestError::Malformed)?;
                m.expires = Some(v.expires);
                if !later.is_empty() {
                    let (r, later): (Release, _) =
                        postcard::take_from_bytes(later).map_err(|_| ManifestError::Malformed)?;
                    if r.name.is_empty() || r.name.len() > MAX_PACKAGE_NAME_LEN {
                        return Err(ManifestError::Malformed);
                    }
                    m.release = Some(r);
                    if let Some((len, rest)) = later.split_first_chunk::<4>() {
                        let t = rest.get(..u32::from_le_bytes(*len) as usize).ok_or(ManifestError::Malformed)?;
                        m.tree = Some(Tree::decode(t).map_err(|_| ManifestError::Malformed)?);
                    }
                }
            }
        }
        if m.fragments.len() > MAX_FRAGMENTS {
            return Err(ManifestError::TooLarge);
        }
        let sum = m.fragments.iter().try_fold(0u64, |a, f| a.checked_add(f.size));
        if sum != Some(m.archive_size) || m.fragments.iter().any(|f| f.size == 0) {
            return Err(ManifestError::Inconsistent);
        }
        Ok(m)
    }

    /// [`Manifest::decode_verified`] with the first of `keys` that the
    /// signature verifies with (the keys an agent trusts during a key
    /// rollover, `engine::trust`); [`ManifestError::BadSignature`] if none.
    pub fn decode_verified_any(bytes: &[u8], keys: &[[u8; 32]]) -> Result<Self, ManifestError> {
        let mut got = Err(ManifestError::BadSignature);
        for k in keys {
            got = Self::decode_verified(bytes, k);
            if got != Err(ManifestError::BadSignature) {
                break;
            }
        }
        got
    }

    /// The archive size of a stored manifest, *without* checking its
    /// signature: for display only, never for decisions.
    pub fn decode_unverified_size(bytes: &[u8]) -> Option<u64> {
        Self::decode_unverified(bytes).map(|m| m.archive_size)
    }

    /// The format-1 fields of a manifest, signature unchecked: for showing
    /// what a stored manifest says (`outpost-agent status`), never for a
    /// decision.
    pub fn decode_unverified(bytes: &[u8]) -> Option<Self> {
        let body_len = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?) as usize;
        let body = bytes.get(8..8usize.checked_add(body_len)?)?;
        postcard::take_from_bytes::<Self>(body).ok().map(|(m, _)| m)
    }

    /// Offset of fragment `index` (0-based) in the archive.
    pub fn fragment_offset(&self, index: usize) -> u64 {
        self.fragments[..index.min(self.fragments.len())].iter().map(|f| f.size).sum()
    }

    /// Whether the manifest has expired at `now` (seconds since 1970 UTC).
    pub fn is_expired(&self, now: u64) -> bool {
        self.expires.is_some_and(|e| now >= e)
    }

    /// Whether a reboot is requested after a successful action.
    pub fn wants_reboot(&self) -> bool {
        self.flags & FLAG_REBOOT != 0
    }

    /// Whether group- and world-write bits from the archive are kept.
    pub fn keeps_modes(&self) -> bool {
        self.flags & FLAG_KEEP_MODES != 0
    }
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0; 32];
    out.copy_from_slice(d.as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    fn key() -> Ed25519KeyPair {
        Ed25519KeyPair::from_seed_unchecked(&[7; 32]).unwrap()
    }

    fn sample() -> Manifest {
        Manifest {
            format: FORMAT,
            package_id: 42,
            version: 1,
            created: 1_700_000_000,
            info_sha256: sha256(b"info"),
            archive_size: 5,
            archive_sha256: sha256(b"hello"),
            fragments: alloc::vec![
                FragmentEntry { size: 3, sha256: sha256(b"hel") },
                FragmentEntry { size: 2, sha256: sha256(b"lo") }
            ],
            flags: 0,
            reboot_exit_codes: alloc::vec![],
            unpacked: Some(Unpacked { size: 300, members: 2 }),
            expires: None,
            release: None,
            tree: None,
        }
    }

    fn encode(m: &Manifest) -> Vec<u8> {
        let k = key();
        m.encode_signed(|b| k.sign(b).as_ref().try_into().unwrap())
    }

    fn pk() -> [u8; 32] {
        key().public_key().as_ref().try_into().unwrap()
    }

    #[test]
    fn signed_manifest_round_trips() {
        let bytes = encode(&sample());
        let m = Manifest::decode_verified(&bytes, &pk()).unwrap();
        assert_eq!(m, sample());
        assert_eq!(m.fragment_offset(1), 3);
    }

    #[test]
    fn any_flipped_bit_or_other_key_is_refused() {
        let bytes = encode(&sample());
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            assert!(Manifest::decode_verified(&b, &pk()).is_err(), "byte {i}");
        }
        assert_eq!(Manifest::decode_verified(&bytes, &[9; 32]), Err(ManifestError::BadSignature));
        assert_eq!(Manifest::decode_verified_any(&bytes, &[[9; 32], pk()]), Ok(sample()), "any trusted key");
        assert_eq!(Manifest::decode_verified_any(&bytes, &[[9; 32]]), Err(ManifestError::BadSignature));
        assert_eq!(Manifest::decode_verified_any(&bytes, &[]), Err(ManifestError::BadSignature));
        for i in 0..bytes.len() {
            assert!(Manifest::decode_verified(&bytes[..i], &pk()).is_err());
        }
    }

    #[test]
    fn manifests_without_the_unpacked_extension_still_decode_and_old_agents_skip_it() {
        let old = Manifest { unpacked: None, ..sample() };
        let bytes = encode(&old);
        assert_eq!(Manifest::decode_verified(&bytes, &pk()), Ok(old.clone()));
        // What an agent from before the extension reads from a new manifest:
        // the format-1 fields, with the extension left over.
        let new = encode(&sample());
        let body = &new[8..new.len() - SIGNATURE_LEN];
        let (seen, rest) = postcard::take_from_bytes::<Manifest>(body).unwrap();
        assert_eq!(seen, old);
        assert_eq!(postcard::from_bytes::<Unpacked>(rest).unwrap(), Unpacked { size: 300, members: 2 });
        // Later extensions are ignored; a broken one is refused.
        let mut later = old.signed_bytes();
        later.extend(postcard::to_allocvec(&Unpacked { size: 300, members: 2 }).unwrap());
        later.extend([7, 1, b'a', 1, 2, 0, 7, 7]); // a Validity (expires 7), a Release (a 2), then a fourth extension
        let len = (later.len() - 8) as u32;
        later[4..8].copy_from_slice(&len.to_le_bytes());
        let k = key();
        later.extend_from_slice(k.sign(&later).as_ref());
        let a2 = Release { name: "a".into(), version: Version::parse("2").unwrap(), downgrade: false };
        assert_eq!(
            Manifest::decode_verified(&later, &pk()),
            Ok(Manifest { expires: Some(7), release: Some(a2), ..sample() })
        );
        let mut broken = old.signed_bytes();
        broken.push(0xff);
        let len = (broken.len() - 8) as u32;
        broken[4..8].copy_from_slice(&len.to_le_bytes());
        broken.extend_from_slice(k.sign(&broken).as_ref());
        assert_eq!(Manifest::decode_verified(&broken, &pk()), Err(ManifestError::Malformed));
    }

    #[test]
    fn the_expiry_is_signed_and_a_manifest_without_one_never_expires() {
        let m = Manifest { expires: Some(1_800_000_000), ..sample() };
        let got = Manifest::decode_verified(&encode(&m), &pk()).unwrap();
        assert_eq!(got.expires, Some(1_800_000_000));
        assert!(!got.is_expired(1_799_999_999) && got.is_expired(1_800_000_000));
        assert!(!sample().is_expired(u64::MAX), "no Validity: never expires");
        // What an agent from before the expiry reads: the same package.
        let bytes = encode(&m);
        let body = &bytes[8..bytes.len() - SIGNATURE_LEN];
        let (seen, rest) = postcard::take_from_bytes::<Manifest>(body).unwrap();
        assert_eq!(seen, Manifest { unpacked: None, expires: None, ..sample() });
        assert_eq!(postcard::take_from_bytes::<Unpacked>(rest).unwrap().0, Unpacked { size: 300, members: 2 });
    }

    fn release(downgrade: bool) -> Manifest {
        let version = Version::parse("1.10.2").unwrap();
        let release = Some(Release { name: "app".into(), version, downgrade });
        Manifest { expires: Some(1_800_000_000), release, ..sample() }
    }

    #[test]
    fn name_version_and_the_downgrade_flag_are_signed() {
        for downgrade in [false, true] {
            let m = release(downgrade);
            assert_eq!(Manifest::decode_verified(&encode(&m), &pk()), Ok(m));
        }
        // The flag is the Release's last byte, just before the signature:
        // flipping it (to claim a downgrade is intended) breaks the signature.
        let mut bytes = encode(&release(false));
        let flag = bytes.len() - SIGNATURE_LEN - 1;
        assert_eq!(bytes[flag], 0);
        bytes[flag] = 1;
        assert_eq!(Manifest::decode_verified(&bytes, &pk()), Err(ManifestError::BadSignature));
        // What an agent from before the Release reads: the same package, in no line.
        let new = encode(&release(true));
        let body = &new[8..new.len() - SIGNATURE_LEN];
        let (seen, rest) = postcard::take_from_bytes::<Manifest>(body).unwrap();
        assert_eq!(seen, Manifest { unpacked: None, expires: None, release: None, ..sample() });
        let (_, rest) = postcard::take_from_bytes::<Unpacked>(rest).unwrap();
        assert_eq!(postcard::take_from_bytes::<Validity>(rest).unwrap().0, Validity { expires: 1_800_000_000 });
        // Without a Validity before it, no Release is written.
        assert_eq!(
            Manifest::decode_verified(&encode(&Manifest { expires: None, ..release(false) }), &pk()),
            Ok(sample())
        );
    }

    #[test]
    fn a_release_without_a_name_or_with_a_long_one_or_a_bad_version_is_refused() {
        let k = key();
        let sign = |m: &Manifest| m.encode_signed(|b| k.sign(b).as_ref().try_into().unwrap());
        let mut m = release(false);
        let ok = "n".repeat(MAX_PACKAGE_NAME_LEN);
        m.release.as_mut().unwrap().name = ok.clone();
        assert!(Manifest::decode_verified(&sign(&m), &pk()).is_ok());
        for name in [String::new(), ok + "n"] {
            m.release.as_mut().unwrap().name = name;
            assert_eq!(Manifest::decode_verified(&sign(&m), &pk()), Err(ManifestError::Malformed));
        }
        // A Release whose version has no part.
        let mut bytes = Manifest { release: None, ..release(false) }.signed_bytes();
        bytes.extend([1, b'a', 0, 0]);
        let len = (bytes.len() - 8) as u32;
        bytes[4..8].copy_from_slice(&len.to_le_bytes());
        bytes.extend_from_slice(k.sign(&bytes).as_ref());
        assert_eq!(Manifest::decode_verified(&bytes, &pk()), Err(ManifestError::Malformed));
    }

    #[test]
    fn the_object_tree_is_signed_and_agents_before_it_read_the_same_package() {
        use crate::engine::tree::{Chunk, Entry};
        let chunk = Chunk { size: 5, sha256: sha256(b"hello") };
        let tree = Tree { entries: alloc::vec![Entry { path: "a/b".into(), mode: 0o644, chunks: alloc::vec![chunk] }] };
        let m = Manifest { tree: Some(tree), ..release(false) };
        let bytes = encode(&m);
        assert_eq!(Manifest::decode_verified(&bytes, &pk()), Ok(m.clone()));
        // Without a Release before it, no tree is written.
        let bare = Manifest { release: None, ..m.clone() };
        assert_eq!(Manifest::decode_verified(&encode(&bare), &pk()).unwrap().tree, None);
        // A bad tree (here a path with `..`) is refused even when signed.
        let mut evil = m.clone();
        evil.tree.as_mut().unwrap().entries[0].path = "../b".into();
        assert_eq!(Manifest::decode_verified(&encode(&evil), &pk()), Err(ManifestError::Malformed));
        // A length past the end is refused too.
        let k = key();
        let mut cut = m.signed_bytes();
        cut.truncate(cut.len() - 1);
        let len = (cut.len() - 8) as u32;
        cut[4..8].copy_from_slice(&len.to_le_bytes());
        cut.extend_from_slice(k.sign(&cut).as_ref());
        assert_eq!(Manifest::decode_verified(&cut, &pk()), Err(ManifestError::Malformed));
    }

    #[test]
    fn inconsistent_sizes_are_refused_even_when_signed() {
        let mut m = sample();
        m.archive_size = 6;
        assert_eq!(Manifest::decode_verified(&encode(&m), &pk()), Err(ManifestError::Inconsistent));
    }
}
