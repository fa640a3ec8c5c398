//! The process's limit on open descriptors (`RLIMIT_NOFILE`), through
//! `getrlimit(2)` and `setrlimit(2)`. A server raises its soft limit to the
//! hard one at start, so that the connections it caps, not the default soft
//! limit (often 1024), decide how many clients it holds.
#![allow(unsafe_code)]

use super::IoError;

/// Limits on open descriptors, counted in descriptors
/// (`RLIM_INFINITY` reads as `u64::MAX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NofileLimit {
    /// The limit in force.
    pub soft: u64,
    /// The most the soft limit may be raised to without privilege.
    pub hard: u64,
}

/// The current descriptor limits.
pub fn nofile_limit() -> Result<NofileLimit, IoError> {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `rl` is a valid, writable `rlimit` for the call's duration.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return Err(IoError(std::io::Error::last_os_error()));
    }
    Ok(NofileLimit { soft: rl.rlim_cur, hard: rl.rlim_max })
}

/// Raise the soft descriptor limit to the hard one, and return the limits
/// now in force. An infinite hard limit is not a value the kernel takes for
/// the soft one (it is capped by `fs.nr_open`): the soft limit then stays.
pub fn raise_nofile_limit() -> Result<NofileLimit, IoError> {
    let now = nofile_limit()?;
    if now.soft >= now.hard || now.hard == libc::RLIM_INFINITY {
        return Ok(now);
    }
    let rl = libc::rlimit { rlim_cur: now.hard, rlim_max: now.hard };
    // SAFETY: `rl` is a valid `rlimit`, only read by the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) } != 0 {
        return Err(IoError(std::io::Error::last_os_error()));
    }
    nofile_limit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let before = nofile_limit().unwrap();
        assert!(before.soft <= before.hard);
        let after = raise_nofile_limit().unwrap();
        assert_eq!(after.hard, before.hard);
        if before.hard != libc::RLIM_INFINITY {
            assert_eq!(after.soft, before.hard);
        }
    }
}
