//! Signals to process groups.
#![allow(unsafe_code)]

/// SIGKILL the process group led by `pid`. Only call it while that leader is
/// alive and not yet reaped, so the group id cannot have been reused. Our own
/// group (0) and every process (1) are never signalled.
pub fn kill_group(pid: u32) {
    let Ok(pgid) = i32::try_from(pid) else { return };
    if pgid <= 1 {
        return;
    }
    // SAFETY: kill(2) with a negative pid signals a process group; it has no
    // memory-safety preconditions.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    #[test]
    fn the_whole_group_dies_and_nothing_else() {
        let mut leader = Command::new("sh").args(["-c", "sleep 30 & wait"]).process_group(0).spawn().unwrap();
        super::kill_group(leader.id());
        let status = leader.wait().unwrap();
        assert!(!status.success(), "the leader was killed");
        super::kill_group(0);
        super::kill_group(1);
    }
}
