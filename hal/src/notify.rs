//! Asking the user before (and telling them after) an install: the OCS
//! NOTIFY_* and NEED_DONE_ACTION* fields go through this hook.

use crate::ErrorType;

/// When the user is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    /// Before the action runs (`NOTIFY_*`): the answer decides.
    Before,
    /// After it ran (`NEED_DONE_ACTION*`): informational.
    Done,
    /// A package is cached and installs at the next start: a restart is
    /// wanted (informational; the reboot policy decides).
    Reboot,
}

/// What the user is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notice<'a> {
    /// Before or after the action.
    pub kind: NoticeKind,
    /// Package id.
    pub package: u64,
    /// The text.
    pub text: &'a str,
    /// Seconds before the default (proceed) applies.
    pub countdown: u32,
    /// The user may abort.
    pub can_abort: bool,
    /// The user may delay.
    pub can_delay: bool,
}

/// The user's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Go on (also the answer when nobody answers within the countdown).
    Proceed,
    /// Do not install.
    Abort,
    /// Ask again at the next poll.
    Delay,
}

/// Asks the user.
pub trait Notifier: ErrorType {
    /// Show `notice` and wait for the answer (at most about its countdown).
    fn ask(&mut self, notice: &Notice<'_>) -> Result<Answer, Self::Error>;
}

impl<T: Notifier + ?Sized> Notifier for &mut T {
    fn ask(&mut self, notice: &Notice<'_>) -> Result<Answer, Self::Error> {
        (**self).ask(notice)
    }
}
