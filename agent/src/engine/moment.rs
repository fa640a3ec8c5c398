//! When a package that is all cached and verified is installed
//! (`[agent] install`), decided from the moment configured, whether this is
//! the agent's start, and whether a user is logged in (sans-IO: the runtime
//! asks utmp, as the reboot policy does).
//!
//! ```text
//!  immediately ─► now
//!  when_idle   ─► now when nobody is logged in (unknown counts as someone)
//!  at_startup  ─► now at the agent's start (before its first poll, from the
//!                 cache); else wait, and ask for a restart once
//! ```

/// `agent.install` (kept as text in the configuration, parsed by [`InstallMoment::parse`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InstallMoment {
    /// As soon as it is cached and verified (the default).
    #[default]
    Immediately,
    /// When nobody is logged in.
    WhenIdle,
    /// At the agent's next start, from the cache, before anything else.
    AtStartup,
}

impl InstallMoment {
    /// `immediately` (or empty), `when_idle` or `at_startup`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "" | "immediately" => Some(Self::Immediately),
            "when_idle" => Some(Self::WhenIdle),
            "at_startup" => Some(Self::AtStartup),
            _ => None,
        }
    }
}

/// What to do with a package that is all cached and verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Install it now.
    Now,
    /// Keep it cached until nobody is logged in.
    UntilIdle,
    /// Keep it cached until the agent's next start; ask for a restart.
    UntilStart,
}

/// Decide for `moment`, at the agent's start or not, with a user logged in
/// or not (`None`: the platform cannot tell, which counts as someone).
pub fn decide(moment: InstallMoment, at_start: bool, user_logged_in: Option<bool>) -> Gate {
    match moment {
        InstallMoment::Immediately => Gate::Now,
        InstallMoment::WhenIdle if user_logged_in == Some(false) => Gate::Now,
        InstallMoment::WhenIdle => Gate::UntilIdle,
        InstallMoment::AtStartup if at_start => Gate::Now,
        InstallMoment::AtStartup => Gate::UntilStart,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configured_text_parses() {
        assert_eq!(InstallMoment::parse(""), Some(InstallMoment::Immediately));
        assert_eq!(InstallMoment::parse("immediately"), Some(InstallMoment::Immediately));
        assert_eq!(InstallMoment::parse("when_idle"), Some(InstallMoment::WhenIdle));
        assert_eq!(InstallMoment::parse("at_startup"), Some(InstallMoment::AtStartup));
        assert_eq!(InstallMoment::parse("At_Startup"), None);
    }

    #[test]
    fn each_moment_installs_only_when_it_is_due() {
        use InstallMoment::*;
        for user in [None, Some(true), Some(false)] {
            for start in [false, true] {
                assert_eq!(decide(Immediately, start, user), Gate::Now);
                let idle = if user == Some(false) { Gate::Now } else { Gate::UntilIdle };
                assert_eq!(decide(WhenIdle, start, user), idle, "{start} {user:?}");
                let at = if start { Gate::Now } else { Gate::UntilStart };
                assert_eq!(decide(AtStartup, start, user), at, "{start} {user:?}");
            }
        }
    }
}
