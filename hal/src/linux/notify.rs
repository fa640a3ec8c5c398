//! The notification hook on Linux: a configurable command, or nobody.
//!
//! The command gets the notice in its environment (`OUTPOST_NOTIFY_KIND`
//! = `before`|`done`, `OUTPOST_NOTIFY_PACKAGE`, `OUTPOST_NOTIFY_TEXT`,
//! `OUTPOST_NOTIFY_COUNTDOWN`, `OUTPOST_NOTIFY_CAN_ABORT`,
//! `OUTPOST_NOTIFY_CAN_DELAY`) and answers with the first word it prints:
//! `proceed`, `abort` or `delay`. Anything else, a failure, or no answer
//! within the countdown plus [`GRACE`] means proceed. Without a command
//! (a headless machine), the countdown is waited out and the answer is proceed.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::IoError;
use crate::ErrorType;
use crate::notify::{Answer, Notice, NoticeKind, Notifier};

/// Extra seconds the command gets beyond the countdown.
pub const GRACE: Duration = Duration::from_secs(30);

/// Runs `command` (through `/bin/sh -c`) to ask, or waits out the countdown.
#[derive(Debug, Clone, Default)]
pub struct CommandNotifier {
    command: Option<String>,
}

impl CommandNotifier {
    /// A notifier running `command`, or headless with `None`.
    pub fn new(command: Option<String>) -> Self {
        Self { command }
    }
}

impl ErrorType for CommandNotifier {
    type Error = IoError;
}

fn parse_answer(out: &str) -> Answer {
    match out.split_whitespace().next().map(str::to_ascii_lowercase).as_deref() {
        Some("abort") => Answer::Abort,
        Some("delay") => Answer::Delay,
        _ => Answer::Proceed,
    }
}

impl Notifier for CommandNotifier {
    #[allow(clippy::disallowed_methods)] // runtime glue: waits in real time
    fn ask(&mut self, n: &Notice<'_>) -> Result<Answer, IoError> {
        let countdown = Duration::from_secs(n.countdown.into());
        let Some(cmd) = &self.command else {
            if n.kind == NoticeKind::Before {
                std::thread::sleep(countdown);
            }
            return Ok(Answer::Proceed);
        };
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(cmd)
            .env(
                "OUTPOST_NOTIFY_KIND",
                match n.kind {
                    NoticeKind::Before => "before",
                    NoticeKind::Done => "done",
                    NoticeKind::Reboot => "reboot",
                },
            )
            .env("OUTPOST_NOTIFY_PACKAGE", n.package.to_string())
            .env("OUTPOST_NOTIFY_TEXT", n.text)
            .env("OUTPOST_NOTIFY_COUNTDOWN", n.countdown.to_string())
            .env("OUTPOST_NOTIFY_CAN_ABORT", if n.can_abort { "1" } else { "0" })
            .env("OUTPOST_NOTIFY_CAN_DELAY", if n.can_delay { "1" } else { "0" })
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let deadline = Instant::now() + countdown + GRACE;
        loop {
            if child.try_wait()?.is_some() {
                break;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Ok(Answer::Proceed);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut out = String::new();
        if let Some(mut o) = child.stdout.take() {
            o.by_ref().take(4096).read_to_string(&mut out)?;
        }
        Ok(parse_answer(&out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(kind: NoticeKind) -> Notice<'static> {
        Notice { kind, package: 7, text: "Install now?", countdown: 0, can_abort: true, can_delay: false }
    }

    #[test]
    fn the_command_answers_through_its_output() {
        let mut n = CommandNotifier::new(Some("echo abort".into()));
        assert_eq!(n.ask(&notice(NoticeKind::Before)).unwrap(), Answer::Abort);
        let script = "[ \"$OUTPOST_NOTIFY_TEXT\" = 'Install now?' ] && [ $OUTPOST_NOTIFY_PACKAGE = 7 ] && echo Delay";
        let mut n = CommandNotifier::new(Some(script.into()));
        assert_eq!(n.ask(&notice(NoticeKind::Before)).unwrap(), Answer::Delay);
        let mut n = CommandNotifier::new(Some("echo whatever; exit 3".into()));
        assert_eq!(n.ask(&notice(NoticeKind::Before)).unwrap(), Answer::Proceed);
    }

    #[test]
    fn headless_proceeds() {
        let mut n = CommandNotifier::new(None);
        assert_eq!(n.ask(&notice(NoticeKind::Before)).unwrap(), Answer::Proceed);
    }
}
