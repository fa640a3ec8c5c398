//! Signals that interrupt blocking system calls. A process that handles a
//! signal without `SA_RESTART` (libFuzzer's timer, a host application's own
//! handler) sees `EINTR` from a read, a write or a connect that was waiting:
//! code that blocks must retry those, and this module lets a test make them
//! happen on purpose.
#![allow(unsafe_code)]

use std::os::unix::thread::JoinHandleExt;
use std::thread::JoinHandle;

use super::IoError;

extern "C" fn ignore(_: libc::c_int) {}

/// Handle `SIGUSR2` with a handler that does nothing and does not restart
/// system calls: from now on, [`interrupt`] makes a blocked call in the
/// thread it names fail with `EINTR`. Process-wide; meant for tests.
pub fn interrupt_with_sigusr2() -> Result<(), IoError> {
    // SAFETY: a zeroed `sigaction` is valid (empty mask, no flags); the
    // handler is an `extern "C"` function that touches nothing.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = ignore as extern "C" fn(libc::c_int) as usize;
    sa.sa_flags = 0; // no SA_RESTART: blocked calls return EINTR
    // SAFETY: `sa` is a valid action for the call's duration; the old action
    // is not asked for.
    if unsafe { libc::sigaction(libc::SIGUSR2, &sa, std::ptr::null_mut()) } != 0 {
        return Err(IoError(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Send `SIGUSR2` to the thread of `t` (see [`interrupt_with_sigusr2`]).
pub fn interrupt<T>(t: &JoinHandle<T>) -> Result<(), IoError> {
    // SAFETY: the handle keeps the thread joinable, so its pthread_t is live.
    match unsafe { libc::pthread_kill(t.as_pthread_t(), libc::SIGUSR2) } {
        0 => Ok(()),
        e => Err(IoError(std::io::Error::from_raw_os_error(e))),
    }
}
