//! Archive unpacking (tar.gz or zip, as a server or a man in the middle of a
//! broken signing key could send it): whatever the members say (absolute
//! paths, `..`, links that leave, writes through links, devices), nothing is
//! written outside the package directory, no link inside points outside it,
//! and nothing panics.
#![no_main]

use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use outpost_agent::rt::unpack::unpack;

/// `box/dest` is the package directory; `box/sentinel` must stay as it is.
fn sandbox() -> &'static Path {
    static BOX: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BOX.get_or_init(|| {
        let b = std::env::temp_dir().join(format!("outpost-fuzz-unpack-{}", std::process::id()));
        let _ = fs::remove_dir_all(&b);
        fs::create_dir_all(&b).expect("sandbox");
        fs::write(b.join("sentinel"), b"untouched").expect("sentinel");
        b
    })
}

/// Every path below `dir` (links not followed).
fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        out.push(p.clone());
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            walk(&p, out);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let b = sandbox();
    let dest = b.join("dest");
    let _ = fs::remove_dir_all(&dest);
    fs::create_dir_all(&dest).expect("dest");
    let _ = unpack(Cursor::new(data), &dest);

    let mut top: Vec<String> =
        fs::read_dir(b).expect("sandbox").flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    top.sort();
    assert_eq!(top, ["dest", "sentinel"], "something was written beside the package directory");
    assert_eq!(fs::read(b.join("sentinel")).expect("sentinel"), b"untouched");
    let root = fs::canonicalize(&dest).expect("dest");
    let mut all = Vec::new();
    walk(&dest, &mut all);
    for p in all {
        let meta = fs::symlink_metadata(&p).expect("listed");
        let t = meta.file_type();
        assert!(t.is_file() || t.is_dir() || t.is_symlink(), "{}: not a file, directory or link", p.display());
        if t.is_symlink() {
            if let Ok(real) = fs::canonicalize(&p) {
                assert!(real.starts_with(&root), "{} points outside: {}", p.display(), real.display());
            }
        }
    }
});
