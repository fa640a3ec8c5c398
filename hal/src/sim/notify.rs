//! A user who answers from a script.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::{ErrorKind, ErrorType};

/// A user who answers from a script, and a record of what was asked.
#[derive(Debug, Default)]
pub struct SimNotifier {
    answers: alloc::collections::VecDeque<crate::notify::Answer>,
    /// `(kind, package, text)` of every notice, in order.
    pub asked: Vec<(crate::notify::NoticeKind, u64, String)>,
}

impl SimNotifier {
    /// Answer with `answers` in turn, then `Proceed`.
    pub fn new(answers: &[crate::notify::Answer]) -> Self {
        Self { answers: answers.iter().copied().collect(), asked: Vec::new() }
    }
}

impl ErrorType for SimNotifier {
    type Error = ErrorKind;
}

impl crate::notify::Notifier for SimNotifier {
    fn ask(&mut self, n: &crate::notify::Notice<'_>) -> Result<crate::notify::Answer, ErrorKind> {
        self.asked.push((n.kind, n.package, n.text.to_string()));
        Ok(self.answers.pop_front().unwrap_or(crate::notify::Answer::Proceed))
    }
}
