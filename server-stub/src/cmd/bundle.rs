//! `bundle`: one file (`FILE.outpost`) holding a package's info file, signed
//! manifest and payload, for installs with no network (`outpost-agent
//! install FILE`, or an agent's `import_dir`). The format is the agent's
//! (`outpost_agent::engine::bundle`); the agent verifies the bundle exactly
//! as a download, so it needs no protection of its own in transit.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use outpost_agent::engine::bundle::encode_head;
use outpost_agent::engine::limits::{MAX_INFO_LEN, MAX_MANIFEST_LEN};
use outpost_agent::engine::manifest::Manifest;

use crate::cli::BundleArgs;

/// Reads `p`, refusing one longer than `max` bytes.
fn read_bounded(p: &Path, max: usize) -> Result<Vec<u8>, String> {
    let len = fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?.len();
    if len > max as u64 {
        return Err(format!("{}: larger than {max} bytes", p.display()));
    }
    fs::read(p).map_err(|e| format!("{}: {e}", p.display()))
}

/// Writes the bundle of `a.package` to `a.out` (through a temporary file
/// beside it, renamed when complete).
pub fn run(a: BundleArgs) -> Result<(), String> {
    let id = a.package;
    let cfg = outpost_server::config::ServerConfig::load(&a.dir)?;
    let pkg = cfg.download_dir(&a.dir).join(id.to_string());
    let info = read_bounded(&pkg.join("info"), MAX_INFO_LEN)?;
    let manifest_bytes = read_bounded(&pkg.join("manifest"), MAX_MANIFEST_LEN)?;
    let m = Manifest::decode_unverified(&manifest_bytes)
        .ok_or_else(|| format!("package {id}: its manifest does not decode"))?;
    let head = encode_head(id, &info, &manifest_bytes, m.archive_size).map_err(|e| e.to_string())?;
    let tmp = a.out.with_extension("outpost.tmp");
    let write = || -> io::Result<()> {
        let mut out = io::BufWriter::new(File::create(&tmp)?);
        out.write_all(&head)?;
        for (i, f) in m.fragments.iter().enumerate() {
            let p = pkg.join(format!("{id}-{}", i + 1));
            let n = io::copy(&mut File::open(&p)?, &mut out)?;
            if n != f.size {
                let why = format!("{}: {n} bytes, its manifest says {}", p.display(), f.size);
                return Err(io::Error::new(io::ErrorKind::InvalidData, why));
            }
        }
        out.into_inner().map_err(io::IntoInnerError::into_error)?.sync_all()?;
        fs::rename(&tmp, &a.out)
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(format!("{}: {e}", a.out.display()));
    }
    println!(
        "{}: package {id}, {} fragment(s), {} bytes of payload",
        a.out.display(),
        m.fragments.len(),
        m.archive_size
    );
    Ok(())
}
