//! Pure decisions: in which order to deploy, whether to deploy at all, what
//! an action's outcome means, whether a package fits on the disk, and what
//! its archive may unpack to.

use outpost_hal::notify::{Answer, Notice, NoticeKind};

use super::info::Info;
use super::limits::{MAX_UNPACKED_BYTES, MAX_UNPACKED_MEMBERS};
use super::manifest::Manifest;
use super::proto::Offer;
use super::status::StatusCode;

/// Sort offers the way they are deployed: priority 0 first, then by
/// ascending priority, then by id (older packages first).
pub fn deploy_order(offers: &mut [Offer]) {
    offers.sort_by_key(|o| (o.priority, o.id));
}

/// Whether an offered package is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Download and run it.
    Deploy,
    /// Already installed and not forced: report `SUCCESS_ALREADY_SETUP`.
    AlreadySetup,
}

/// Decide for one package, offered by either protocol, given whether it is
/// forced and whether its id is in the history.
pub fn decide(force: bool, in_history: bool) -> Decision {
    if in_history && !force { Decision::AlreadySetup } else { Decision::Deploy }
}

/// The program a LAUNCH command line starts: its first word, which must be a
/// relative path inside the package (no `/` at the start, no `..`).
/// Unlike the OCS agent, a hyphen does not end the name.
pub fn launch_program(command: &str) -> Option<&str> {
    let first = command.split_ascii_whitespace().next()?;
    let first = first.strip_prefix("./").unwrap_or(first);
    let ok = !first.is_empty() && !first.starts_with('/') && first.split('/').all(|c| !c.is_empty() && c != "..");
    ok.then_some(first)
}

/// How an action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The process exited with this code.
    Exited(i32),
    /// The process was killed by a signal not sent by the agent.
    Signaled,
    /// The agent killed it at the execution timeout.
    TimedOut,
    /// The process could not be started (or the store copy failed to begin).
    NotStarted,
}

/// The status code reported for an outcome.
pub fn status_for(outcome: Outcome) -> StatusCode {
    status_with_reboot_codes(outcome, &[])
}

/// The status code for an outcome, where `reboot_codes` are exit codes the
/// package declares as "installed, reboot required".
pub fn status_with_reboot_codes(outcome: Outcome, reboot_codes: &[i32]) -> StatusCode {
    match outcome {
        Outcome::Exited(c) if c != 0 && reboot_codes.contains(&c) => StatusCode::SuccessRebootRequired,
        Outcome::Exited(c) => StatusCode::from_exit(c),
        Outcome::Signaled => StatusCode::ErrExecuteNoExitCode,
        Outcome::TimedOut => StatusCode::ErrExecuteTimeout,
        Outcome::NotStarted => StatusCode::ErrExecute,
    }
}

/// The question to ask before installing, if the package wants the user asked.
pub fn notice_before(info: &Info) -> Option<Notice<'_>> {
    info.notify.user.then(|| Notice {
        kind: NoticeKind::Before,
        package: info.id,
        text: &info.notify.text,
        countdown: info.notify.countdown.unwrap_or(0),
        can_abort: info.notify.can_abort,
        can_delay: info.notify.can_delay,
    })
}

/// The message to show after a successful install, if any (`NEED_DONE_ACTION`).
pub fn notice_done(info: &Info) -> Option<Notice<'_>> {
    info.notify.need_done_action.then(|| Notice {
        kind: NoticeKind::Done,
        package: info.id,
        text: &info.notify.need_done_action_text,
        countdown: 0,
        can_abort: false,
        can_delay: false,
    })
}

/// What an answer means for a package: abort and delay count only where
/// the package allows them (`NOTIFY_CAN_ABORT`, `NOTIFY_CAN_DELAY`).
pub fn honour(info: &Info, answer: Answer) -> Answer {
    match answer {
        Answer::Abort if info.notify.can_abort => Answer::Abort,
        Answer::Delay if info.notify.can_delay => Answer::Delay,
        _ => Answer::Proceed,
    }
}

/// Bytes kept free beside a package: 10 % of its size, at least 16 MiB.
pub fn space_margin(package_size: u64) -> u64 {
    (package_size / 10).max(16 << 20)
}

/// Whether `needed` more bytes fit into `available` with the margin.
pub fn fits(available: u64, needed: u64, package_size: u64) -> bool {
    needed.saturating_add(space_margin(package_size)) <= available
}

/// What unpacking one archive may write, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackBounds {
    /// Data bytes, at most (members' sizes as written).
    pub bytes: u64,
    /// Members, at most.
    pub members: u64,
    /// Keep group- and world-write bits (set-id and sticky bits never are).
    pub keep_modes: bool,
}

impl UnpackBounds {
    /// For an archive whose sizes nobody signed: the fixed bounds.
    pub const UNSIGNED: Self = Self { bytes: MAX_UNPACKED_BYTES, members: MAX_UNPACKED_MEMBERS, keep_modes: false };

    /// The permission bits kept from an archive member's mode.
    pub fn mode_mask(&self) -> u32 {
        if self.keep_modes { 0o777 } else { 0o755 }
    }
}

/// The bounds of a package: what its signed manifest recorded, or the fixed
/// ones (OCS servers have no manifest; older manifests did not record it).
pub fn unpack_bounds(manifest: Option<&Manifest>) -> UnpackBounds {
    let keep_modes = manifest.is_some_and(Manifest::keeps_modes);
    match manifest.and_then(|m| m.unpacked) {
        Some(u) => UnpackBounds { bytes: u.size, members: u.members, keep_modes },
        None => UnpackBounds { keep_modes, ..UnpackBounds::UNSIGNED },
    }
}

/// Bytes the unpacked tree will take: the recorded size, or the archive's
/// own size when none was recorded (what the space check assumed before).
pub fn unpacked_size(manifest: &Manifest) -> u64 {
    manifest.unpacked.map_or(manifest.archive_size, |u| u.size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec::Vec;

    fn offer(id: u64, priority: u8, force: bool) -> Offer {
        Offer { id, priority, force, info_loc: "a/b".to_string(), pack_loc: "a/b".to_string() }
    }

    #[test]
    fn priority_zero_first_then_ascending_then_id() {
        let mut v = alloc::vec![offer(3, 5, false), offer(1, 9, false), offer(2, 0, false), offer(0, 5, false)];
        deploy_order(&mut v);
        let ids: Vec<u64> = v.iter().map(|o| o.id).collect();
        assert_eq!(ids, [2, 0, 3, 1]);
    }

    #[test]
    fn history_unless_forced() {
        assert_eq!(decide(false, true), Decision::AlreadySetup);
        assert_eq!(decide(true, true), Decision::Deploy);
        assert_eq!(decide(false, false), Decision::Deploy);
    }

    #[test]
    fn launch_names_keep_hyphens_and_refuse_escapes() {
        assert_eq!(launch_program("my-setup.sh --quiet"), Some("my-setup.sh"));
        assert_eq!(launch_program("./bin/run-me"), Some("bin/run-me"));
        assert_eq!(launch_program("/bin/sh"), None);
        assert_eq!(launch_program("../x"), None);
        assert_eq!(launch_program("a//b"), None);
        assert_eq!(launch_program("   "), None);
    }

    #[test]
    fn answers_count_only_where_allowed() {
        let mut info =
            Info::parse(b"<DOWNLOAD ID=\"1\" PRI=\"5\" ACT=\"EXECUTE\" FRAGS=\"0\" COMMAND=\"true\" />").unwrap();
        assert!(notice_before(&info).is_none(), "NOTIFY_USER=0: nobody is asked");
        info.notify.user = true;
        assert_eq!(notice_before(&info).map(|n| n.kind), Some(NoticeKind::Before));
        assert_eq!(honour(&info, Answer::Abort), Answer::Proceed);
        assert_eq!(honour(&info, Answer::Delay), Answer::Proceed);
        info.notify.can_abort = true;
        info.notify.can_delay = true;
        assert_eq!(honour(&info, Answer::Abort), Answer::Abort);
        assert_eq!(honour(&info, Answer::Delay), Answer::Delay);
        assert!(notice_done(&info).is_none());
        info.notify.need_done_action = true;
        assert_eq!(notice_done(&info).map(|n| n.kind), Some(NoticeKind::Done));
    }

    #[test]
    fn outcomes_and_space() {
        assert_eq!(status_for(Outcome::Exited(3)).to_string(), "EXIT_CODE_3");
        assert_eq!(status_for(Outcome::Exited(0)), StatusCode::Success);
        assert_eq!(status_for(Outcome::TimedOut), StatusCode::ErrExecuteTimeout);
        assert_eq!(status_with_reboot_codes(Outcome::Exited(194), &[194]), StatusCode::SuccessRebootRequired);
        assert_eq!(status_with_reboot_codes(Outcome::Exited(3), &[194]), StatusCode::ExitCode(3));
        assert!(fits(100 << 20, 50 << 20, 50 << 20));
        assert!(!fits(60 << 20, 50 << 20, 50 << 20));
    }

    #[test]
    fn unpack_bounds_come_from_the_manifest_or_the_fixed_limits() {
        use crate::engine::manifest::{FLAG_KEEP_MODES, FORMAT, Unpacked};
        assert_eq!(unpack_bounds(None), UnpackBounds::UNSIGNED);
        assert_eq!(UnpackBounds::UNSIGNED.mode_mask(), 0o755);
        let mut m = Manifest {
            format: FORMAT,
            package_id: 1,
            version: 1,
            created: 0,
            info_sha256: [0; 32],
            archive_size: 10,
            archive_sha256: [0; 32],
            fragments: Vec::new(),
            flags: 0,
            reboot_exit_codes: Vec::new(),
            unpacked: None,
            expires: None,
            release: None,
            tree: None,
        };
        assert_eq!(unpack_bounds(Some(&m)), UnpackBounds::UNSIGNED);
        assert_eq!(unpacked_size(&m), 10);
        m.unpacked = Some(Unpacked { size: 5000, members: 3 });
        m.flags = FLAG_KEEP_MODES;
        let b = unpack_bounds(Some(&m));
        assert_eq!((b.bytes, b.members, b.mode_mask()), (5000, 3, 0o777));
        assert_eq!(unpacked_size(&m), 5000);
    }
}
