//! Rebooting on Linux: `reboot(2)`, a configured command, or a dry run that
//! only appends a line to a file. Logged-in users from utmp.
#![allow(unsafe_code)]

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::IoError;
use crate::ErrorType;
use crate::power::Power;

/// How the machine is rebooted.
#[derive(Debug, Clone)]
pub enum RebootMethod {
    /// The `reboot(2)` system call (needs CAP_SYS_BOOT), after `sync(2)`.
    Syscall,
    /// A command run through `/bin/sh -c` (e.g. `systemctl reboot`).
    Command(String),
    /// Append "reboot requested" to this file instead (tests, trials).
    DryRun(PathBuf),
}

/// Linux power control.
#[derive(Debug, Clone)]
pub struct LinuxPower {
    method: RebootMethod,
    utmp: PathBuf,
}

impl LinuxPower {
    /// Reboot with `method`; users from `/var/run/utmp`.
    pub fn new(method: RebootMethod) -> Self {
        Self { method, utmp: PathBuf::from("/var/run/utmp") }
    }

    /// Read logged-in users from another utmp file.
    pub fn with_utmp(mut self, utmp: &Path) -> Self {
        self.utmp = utmp.to_owned();
        self
    }
}

/// Size of `struct utmp` on Linux (glibc, all 64-bit and 32-bit ABIs).
const UTMP_SIZE: usize = 384;
/// `ut_type` of a logged-in user.
const USER_PROCESS: i32 = 7;

/// Whether a utmp image holds a `USER_PROCESS` record.
pub fn utmp_has_user(image: &[u8]) -> bool {
    image.chunks_exact(UTMP_SIZE).any(|r| i32::from_ne_bytes([r[0], r[1], r[2], r[3]]) == USER_PROCESS)
}

impl ErrorType for LinuxPower {
    type Error = IoError;
}

impl Power for LinuxPower {
    fn reboot(&mut self) -> Result<(), IoError> {
        match &self.method {
            RebootMethod::DryRun(path) => {
                let mut f = OpenOptions::new().append(true).create(true).open(path)?;
                writeln!(f, "reboot requested")?;
                Ok(())
            }
            RebootMethod::Command(cmd) => {
                let st = Command::new("/bin/sh").arg("-c").arg(cmd).status()?;
                if st.success() { Ok(()) } else { Err(IoError(io::Error::other(format!("{cmd:?} exited with {st}")))) }
            }
            RebootMethod::Syscall => {
                // SAFETY: sync(2) and reboot(2) take no pointers; reboot
                // only returns on failure (e.g. EPERM).
                let rc = unsafe {
                    libc::sync();
                    libc::reboot(libc::LINUX_REBOOT_CMD_RESTART)
                };
                Err(IoError(if rc == 0 { io::Error::other("reboot returned") } else { io::Error::last_os_error() }))
            }
        }
    }

    fn user_logged_in(&mut self) -> Result<Option<bool>, IoError> {
        match fs::read(&self.utmp) {
            Ok(image) => Ok(Some(utmp_has_user(&image))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utmp_records_and_dry_run() {
        let mut image = vec![0u8; UTMP_SIZE * 3];
        image[0..4].copy_from_slice(&2i32.to_ne_bytes()); // BOOT_TIME
        image[UTMP_SIZE..UTMP_SIZE + 4].copy_from_slice(&8i32.to_ne_bytes()); // DEAD_PROCESS
        assert!(!utmp_has_user(&image));
        image[2 * UTMP_SIZE..2 * UTMP_SIZE + 4].copy_from_slice(&USER_PROCESS.to_ne_bytes());
        assert!(utmp_has_user(&image));

        let dir = std::env::temp_dir().join(format!("outpost-power-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("utmp"), &image[..2 * UTMP_SIZE]).unwrap();
        let mut p = LinuxPower::new(RebootMethod::DryRun(dir.join("log"))).with_utmp(&dir.join("utmp"));
        assert_eq!(p.user_logged_in().unwrap(), Some(false));
        p.reboot().unwrap();
        assert_eq!(fs::read_to_string(dir.join("log")).unwrap(), "reboot requested\n");
        let mut none = LinuxPower::new(RebootMethod::Command("exit 1".into())).with_utmp(&dir.join("missing"));
        assert_eq!(none.user_logged_in().unwrap(), None);
        assert!(none.reboot().is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
