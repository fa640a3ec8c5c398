//! Item 9, unpack bombs: archives tiny on the wire that unpack to gigabytes
//! of real blocks (GNU sparse members), to a flood of members, or past the
//! size their signed manifest records; and members whose mode bits would
//! make installed files world-writable or set-id.
#![allow(clippy::disallowed_methods)] // real processes and files

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use outpost_agent::engine::manifest::{Manifest, Unpacked};
use outpost_agent::engine::plan::{UnpackBounds, unpack_bounds};
use outpost_agent::rt::unpack::{UnpackError, unpack_bounded};
use outpost_tests::{Member, Server, TempDir, agent, targz, text};

const GIB: u64 = 1 << 30;

/// A tar.gz with one GNU sparse member of `real` bytes: a hole, then 512
/// bytes of data at the end. On the wire it is a few hundred bytes.
fn sparse_bomb(real: u64) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.set_path("disk.img").unwrap();
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::GNUSparse);
    h.set_size(512);
    let g = h.as_gnu_mut().unwrap();
    g.sparse[0].offset = octal12(real - 512);
    g.sparse[0].numbytes = octal12(512);
    g.realsize = octal12(real);
    h.set_cksum();
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let mut b = tar::Builder::new(gz);
    b.append(&h, &[b'x'; 512][..]).unwrap();
    b.into_inner().unwrap().finish().unwrap()
}

fn octal12(v: u64) -> [u8; 12] {
    let s = format!("{v:011o}\0");
    s.as_bytes().try_into().unwrap()
}

/// A tar.gz of `n` empty files.
fn many_members(n: usize) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let mut b = tar::Builder::new(gz);
    for i in 0..n {
        let mut h = tar::Header::new_gnu();
        h.set_path(format!("f{i}")).unwrap();
        h.set_mode(0o644);
        h.set_size(0);
        h.set_cksum();
        b.append(&h, &[][..]).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

fn signed_bounds(size: u64, members: u64) -> UnpackBounds {
    let m = Manifest { unpacked: Some(Unpacked { size, members }), ..outpost_tests::manifest_of(&[], 1) };
    unpack_bounds(Some(&m))
}

fn blocks_under(dir: &Path) -> u64 {
    fs::read_dir(dir).unwrap().map(|e| e.unwrap().metadata().unwrap().blocks() * 512).sum()
}

#[test]
fn a_sparse_tar_gz_bomb_writes_no_real_blocks() {
    let t = TempDir::new("sec-sparse");
    let bomb = sparse_bomb(GIB);
    assert!(bomb.len() < 400, "{} bytes on the wire", bomb.len());
    // No signed size (an OCS server, an older manifest): the fixed bounds.
    let dir = t.join("out");
    fs::create_dir_all(&dir).unwrap();
    unpack_bounded(std::io::Cursor::new(&bomb), &dir, UnpackBounds::UNSIGNED).unwrap();
    assert_eq!(fs::metadata(dir.join("disk.img")).unwrap().len(), GIB);
    let real = blocks_under(&dir);
    assert!(real < 1 << 20, "a 1 GiB sparse member took {real} bytes of real blocks");
    // Signed smaller than it unpacks to: stopped, whatever the blocks.
    let dir = t.join("signed");
    fs::create_dir_all(&dir).unwrap();
    let e = unpack_bounded(std::io::Cursor::new(&bomb), &dir, signed_bounds(1 << 20, 10)).unwrap_err();
    assert!(matches!(e, UnpackError::OverBound(_)), "{e}");
}

#[test]
fn a_many_member_bomb_stops_at_the_bound() {
    let t = TempDir::new("sec-members");
    let bomb = many_members(100_000);
    assert!(bomb.len() < 1 << 20, "{} bytes on the wire", bomb.len());
    // Signed for 1,000 members: the 1,001st stops the unpack.
    let dir = t.join("signed");
    fs::create_dir_all(&dir).unwrap();
    let e = unpack_bounded(std::io::Cursor::new(&bomb), &dir, signed_bounds(0, 1_000)).unwrap_err();
    assert!(matches!(&e, UnpackError::OverBound(m) if m.contains("more than 1000 members")), "{e}");
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 1_000);
    // Unsigned: the fixed bound (65,536) stops the 100,000.
    let dir = t.join("unsigned");
    fs::create_dir_all(&dir).unwrap();
    let e = unpack_bounded(std::io::Cursor::new(&bomb), &dir, UnpackBounds::UNSIGNED).unwrap_err();
    assert!(matches!(e, UnpackError::OverBound(_)), "{e}");
    assert!(fs::read_dir(&dir).unwrap().count() <= 65_536);
}

#[test]
fn an_archive_over_its_signed_size_stops_unpacking() {
    let t = TempDir::new("sec-size");
    // 64 MiB of zeros: 64 KiB gzip'ed.
    let big = vec![0u8; 64 << 20];
    let arc = targz(&[Member::File("a.bin", &big, 0o644)]);
    assert!(arc.len() < 128 << 10);
    let dir = t.join("out");
    fs::create_dir_all(&dir).unwrap();
    let e = unpack_bounded(std::io::Cursor::new(&arc), &dir, signed_bounds(1 << 20, 10)).unwrap_err();
    assert!(matches!(&e, UnpackError::OverBound(m) if m.contains("more than 1048576 bytes")), "{e}");
    assert!(blocks_under(&dir) <= 2 << 20, "stopped near the bound");
}

/// Through the real server and agent: `package add` records what the archive
/// unpacks to; world-writable and set-id bits are dropped unless the package
/// is added with `--keep-modes` (set-id bits never survive).
#[test]
fn world_writable_and_setuid_members_lose_those_bits() {
    let t = TempDir::new("sec-modes");
    let mut srv = Server::init(t.join("srv"), &[]);
    let mark = t.join("modes");
    let script = format!("#!/bin/sh\nstat -c '%n %a' ww suid >> {}\n", mark.display());
    let arc = targz(&[
        Member::File("run.sh", script.as_bytes(), 0o755),
        Member::File("ww", b"x", 0o777),
        Member::File("suid", b"y", 0o4755),
    ]);
    let path = t.join("m.tar.gz");
    fs::File::create(&path).unwrap().write_all(&arc).unwrap();
    let p = path.to_str().unwrap();
    let plain = srv.package_add(&["--file", p, "--action", "launch", "--command", "run.sh"]);
    let kept = srv.package_add(&["--file", p, "--action", "launch", "--command", "run.sh", "--keep-modes"]);
    let cfg = srv.device_add("pc-1", t.path());
    srv.assign(plain, "pc-1", &[]);
    srv.start();
    let o = agent(&cfg, &["run", "--once"], &[]);
    assert_eq!(srv.status_of(plain, "pc-1"), "SUCCESS", "{}", text(&o));
    srv.assign(kept, "pc-1", &[]);
    let o = agent(&cfg, &["run", "--once"], &[]);
    assert_eq!(srv.status_of(kept, "pc-1"), "SUCCESS", "{}", text(&o));
    let modes = fs::read_to_string(&mark).unwrap();
    assert_eq!(modes.lines().collect::<Vec<_>>(), ["ww 755", "suid 755", "ww 777", "suid 755"], "{modes}");
}
