//! Rebooting under a policy, and whether a user is logged in.

use crate::ErrorType;

/// When a reboot a package asked for may happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebootPolicy {
    /// Never reboot; the request is only logged.
    Never,
    /// Reboot when nobody is logged in; otherwise keep it pending.
    WhenIdle,
    /// Reboot as soon as the package's status is reported.
    Immediately,
}

/// What to do about a pending reboot now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebootDecision {
    /// Reboot now.
    Now,
    /// Keep it pending and look again later.
    Wait,
    /// Drop it (policy `never`).
    Drop,
}

/// Decide from the policy and whether a user is logged in (`None`: the
/// platform cannot tell, which counts as someone being there).
pub fn decide(policy: RebootPolicy, user_logged_in: Option<bool>) -> RebootDecision {
    match (policy, user_logged_in) {
        (RebootPolicy::Never, _) => RebootDecision::Drop,
        (RebootPolicy::Immediately, _) => RebootDecision::Now,
        (RebootPolicy::WhenIdle, Some(false)) => RebootDecision::Now,
        (RebootPolicy::WhenIdle, _) => RebootDecision::Wait,
    }
}

/// Reboot control.
pub trait Power: ErrorType {
    /// Reboot the machine (or, in a dry run, record that it would).
    fn reboot(&mut self) -> Result<(), Self::Error>;
    /// Whether a user is logged in; `None` where the platform cannot tell.
    fn user_logged_in(&mut self) -> Result<Option<bool>, Self::Error>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies() {
        assert_eq!(decide(RebootPolicy::Never, Some(false)), RebootDecision::Drop);
        assert_eq!(decide(RebootPolicy::Immediately, Some(true)), RebootDecision::Now);
        assert_eq!(decide(RebootPolicy::WhenIdle, Some(false)), RebootDecision::Now);
        assert_eq!(decide(RebootPolicy::WhenIdle, Some(true)), RebootDecision::Wait);
        assert_eq!(decide(RebootPolicy::WhenIdle, None), RebootDecision::Wait);
    }
}
