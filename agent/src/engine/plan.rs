//! Pure decisions: in which order to deploy, whether to deploy at all, what
//! an action's outcome means, and whether a package fits on the disk.

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

/// Decide for one offer given whether its id is in the history.
pub fn decide(offer: &Offer, in_history: bool) -> Decision {
    if in_history && !offer.force { Decision::AlreadySetup } else { Decision::Deploy }
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
    match outcome {
        Outcome::Exited(c) => StatusCode::from_exit(c),
        Outcome::Signaled => StatusCode::ErrExecuteNoExitCode,
        Outcome::TimedOut => StatusCode::ErrExecuteTimeout,
        Outcome::NotStarted => StatusCode::ErrExecute,
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
        assert_eq!(decide(&offer(1, 5, false), true), Decision::AlreadySetup);
        assert_eq!(decide(&offer(1, 5, true), true), Decision::Deploy);
        assert_eq!(decide(&offer(1, 5, false), false), Decision::Deploy);
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
    fn outcomes_and_space() {
        assert_eq!(status_for(Outcome::Exited(3)).to_string(), "EXIT_CODE_3");
        assert_eq!(status_for(Outcome::Exited(0)), StatusCode::Success);
        assert_eq!(status_for(Outcome::TimedOut), StatusCode::ErrExecuteTimeout);
        assert!(fits(100 << 20, 50 << 20, 50 << 20));
        assert!(!fits(60 << 20, 50 << 20, 50 << 20));
    }
}
