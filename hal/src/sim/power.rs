//! Power control that counts reboot requests.

use crate::{ErrorKind, ErrorType};

/// Power control that counts reboot requests.
#[derive(Debug, Default)]
pub struct SimPower {
    /// Reboots requested so far.
    pub reboots: u32,
    /// What `user_logged_in` answers.
    pub logged_in: Option<bool>,
}

impl ErrorType for SimPower {
    type Error = ErrorKind;
}

impl crate::power::Power for SimPower {
    fn reboot(&mut self) -> Result<(), ErrorKind> {
        self.reboots += 1;
        Ok(())
    }
    fn user_logged_in(&mut self) -> Result<Option<bool>, ErrorKind> {
        Ok(self.logged_in)
    }
}
