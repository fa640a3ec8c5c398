//! Checking the info file's `DIGEST` over the whole archive (MD5 or SHA-1,
//! hex or base64), alongside the manifest's SHA-256.

use alloc::string::String;
use alloc::vec::Vec;
use md5::Digest as _;

use super::info::{DigestAlgo, DigestEncode, Info};

/// Incremental hashes of the reassembled archive.
pub struct ArchiveHasher {
    sha256: ring::digest::Context,
    legacy: Legacy,
}

enum Legacy {
    Md5(md5::Md5),
    Sha1(sha1::Sha1),
}

impl ArchiveHasher {
    /// Hash with SHA-256 and the info file's algorithm.
    pub fn new(algo: DigestAlgo) -> Self {
        let legacy = match algo {
            DigestAlgo::Md5 => Legacy::Md5(md5::Md5::new()),
            DigestAlgo::Sha1 => Legacy::Sha1(sha1::Sha1::new()),
        };
        Self { sha256: ring::digest::Context::new(&ring::digest::SHA256), legacy }
    }

    /// Feed the next bytes of the archive.
    pub fn update(&mut self, data: &[u8]) {
        self.sha256.update(data);
        match &mut self.legacy {
            Legacy::Md5(h) => h.update(data),
            Legacy::Sha1(h) => h.update(data),
        }
    }

    /// The SHA-256 and the legacy digest's raw bytes.
    pub fn finish(self) -> ([u8; 32], Vec<u8>) {
        let mut sha = [0; 32];
        sha.copy_from_slice(self.sha256.finish().as_ref());
        let legacy = match self.legacy {
            Legacy::Md5(h) => h.finalize().to_vec(),
            Legacy::Sha1(h) => h.finalize().to_vec(),
        };
        (sha, legacy)
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(H[(b >> 4) as usize] as char);
        s.push(H[(b & 15) as usize] as char);
    }
    s
}

/// Decode hex (either case). `None` on odd length or a non-hex character.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    let v = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    b.chunks(2).map(|p| Some(v(p[0])? << 4 | v(p[1])?)).collect()
}

/// Standard base64 without padding (Perl's `b64digest`).
pub fn base64_unpadded(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..=c.len() {
            s.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    s
}

/// Whether the raw `digest` matches the info file's `DIGEST` in its encoding.
/// Hex is compared without regard to case; base64 with or without padding.
pub fn info_digest_matches(info: &Info, digest: &[u8]) -> bool {
    let want = info.digest.trim();
    match info.digest_encode {
        DigestEncode::Hexa => want.eq_ignore_ascii_case(&hex(digest)),
        DigestEncode::Base64 => want.trim_end_matches('=') == base64_unpadded(digest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        assert_eq!(hex(&[0, 0xab, 0x10]), "00ab10");
        assert_eq!(unhex("00AB10"), Some(alloc::vec![0, 0xab, 0x10]));
        assert_eq!(unhex("0g"), None);
        assert_eq!(unhex("abc"), None);
        // RFC 4648 vectors, padding stripped.
        assert_eq!(base64_unpadded(b"f"), "Zg");
        assert_eq!(base64_unpadded(b"fo"), "Zm8");
        assert_eq!(base64_unpadded(b"foo"), "Zm9v");
        assert_eq!(base64_unpadded(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn md5_and_sha1_of_known_text() {
        let mut h = ArchiveHasher::new(DigestAlgo::Md5);
        h.update(b"abc");
        assert_eq!(hex(&h.finish().1), "900150983cd24fb0d6963f7d28e17f72");
        let mut h = ArchiveHasher::new(DigestAlgo::Sha1);
        h.update(b"ab");
        h.update(b"c");
        let (sha256, sha1) = h.finish();
        assert_eq!(hex(&sha1), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(hex(&sha256), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
