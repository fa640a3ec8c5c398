//! Durable writes on a real filesystem: data → fsync → rename → fsync(dir).
//! No write or read here follows a symbolic link at the file's own name.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::{Error, ErrorKind};

/// An `std::io::Error` with a HAL [`ErrorKind`].
#[derive(Debug)]
pub struct IoError(pub io::Error);

impl core::fmt::Display for IoError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for IoError {}

impl From<io::Error> for IoError {
    fn from(e: io::Error) -> Self {
        Self(e)
    }
}

impl Error for IoError {
    fn kind(&self) -> ErrorKind {
        match self.0.kind() {
            io::ErrorKind::NotFound => ErrorKind::NotFound,
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => ErrorKind::StorageFull,
            io::ErrorKind::TimedOut => ErrorKind::TimedOut,
            io::ErrorKind::Unsupported => ErrorKind::Unsupported,
            _ => ErrorKind::Io,
        }
    }
}

/// fsync a directory, so that renames and creations in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Read the whole file at `path`, refusing (`ELOOP`) to follow a symbolic
/// link at `path` itself.
pub fn read_nofollow(path: &Path) -> io::Result<Vec<u8>> {
    let mut f = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path)?;
    let mut v = Vec::new();
    f.read_to_end(&mut v)?;
    Ok(v)
}

/// Why [`open_regular_nofollow`] gave no file.
#[derive(Debug)]
pub enum OpenRegularError {
    /// It cannot be opened or examined.
    Io(io::Error),
    /// It is a symbolic link, a FIFO, a device, a directory or a socket.
    NotRegular,
}

impl core::fmt::Display for OpenRegularError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Io(e) => e.fmt(f),
            Self::NotRegular => f.write_str("not a regular file (a link, a FIFO or a device); skipped"),
        }
    }
}

/// Open `path` for reading only if it is a regular file: `O_NOFOLLOW` (a
/// link at `path` is refused, `ELOOP`), `O_NONBLOCK` (opening a FIFO with
/// no writer does not block; a device is never waited on), `O_CLOEXEC`
/// (std sets it), then `fstat` of the open descriptor. Regular files
/// ignore `O_NONBLOCK`, so reads block as usual.
pub fn open_regular_nofollow(path: &Path) -> Result<File, OpenRegularError> {
    let f = match OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path) {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(OpenRegularError::NotRegular),
        Err(e) => return Err(OpenRegularError::Io(e)),
    };
    if !f.metadata().map_err(OpenRegularError::Io)?.is_file() {
        return Err(OpenRegularError::NotRegular);
    }
    Ok(f)
}

/// A new file at `path`, mode 0600: `O_CREAT|O_EXCL|O_NOFOLLOW`, so nothing
/// already there (a file, a link to one) is opened or followed.
fn create_private(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).mode(0o600).custom_flags(libc::O_NOFOLLOW).open(path)
}

/// Replace `path` with `data`: write `path.tmp`, fsync it, rename over
/// `path`, fsync the parent directory. A crash leaves the old or the new file.
/// The temporary is created afresh (mode 0600) and never through a link: one
/// left by a crash, or planted, is unlinked first; the rename replaces a link
/// at `path` instead of writing through it.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or_else(|| Path::new("."));
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(".tmp");
    let tmp = parent.join(tmp_name);
    {
        let mut f = match create_private(&tmp) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                fs::remove_file(&tmp)?;
                create_private(&tmp)?
            }
            r => r?,
        };
        f.write_all(data)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    sync_dir(parent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linux::space_of;

    fn tempdir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("outpost-hal-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn only_regular_files_open_and_never_through_a_link_or_a_fifo() {
        let d = tempdir("regular");
        fs::write(d.join("f"), b"x").unwrap();
        assert!(open_regular_nofollow(&d.join("f")).is_ok());
        std::os::unix::fs::symlink(d.join("f"), d.join("link")).unwrap();
        assert!(matches!(open_regular_nofollow(&d.join("link")), Err(OpenRegularError::NotRegular)));
        assert!(matches!(open_regular_nofollow(&d), Err(OpenRegularError::NotRegular)));
        assert!(matches!(open_regular_nofollow(Path::new("/dev/null")), Err(OpenRegularError::NotRegular)));
        // A FIFO with no writer: refused at once, not waited on.
        let made = std::process::Command::new("mkfifo").arg(d.join("fifo")).status();
        if made.is_ok_and(|s| s.success()) {
            assert!(matches!(open_regular_nofollow(&d.join("fifo")), Err(OpenRegularError::NotRegular)));
        }
        assert!(matches!(open_regular_nofollow(&d.join("none")), Err(OpenRegularError::Io(_))));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp() {
        let d = tempdir("atomic");
        let p = d.join("state");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert!(!d.join("state.tmp").exists());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn write_atomic_follows_no_planted_link() {
        use std::os::unix::fs::{PermissionsExt, symlink};
        let d = tempdir("nofollow");
        let victim = d.join("victim");
        fs::write(&victim, b"keep").unwrap();
        symlink(&victim, d.join("state.tmp")).unwrap();
        symlink(&victim, d.join("state")).unwrap();
        assert_eq!(read_nofollow(&d.join("state")).unwrap_err().raw_os_error(), Some(libc::ELOOP));
        write_atomic(&d.join("state"), b"new").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"keep", "neither link was written through");
        assert_eq!(read_nofollow(&d.join("state")).unwrap(), b"new");
        assert_eq!(fs::metadata(d.join("state")).unwrap().permissions().mode() & 0o777, 0o600);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn statvfs_reports_space() {
        let s = space_of(Path::new("/")).unwrap();
        assert!(s.total > 0 && s.available <= s.total);
        assert!(space_of(Path::new("/nonexistent/really")).is_err());
    }
}
