//! Status codes reported for a package: the OCS code set, as strings on the wire.

use alloc::format;
use alloc::string::{String, ToString};
use core::fmt;

/// The final (or acknowledgement) code of one package on one device.
///
/// `Display` gives the exact OCS wire form (`SUCCESS`, `EXIT_CODE_3`, …);
/// [`StatusCode::parse`] accepts any code, keeping unknown ones verbatim so a
/// server records exactly what arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusCode {
    /// The action ran and exited 0.
    Success,
    /// The package is in the agent's history and was not forced.
    SuccessAlreadySetup,
    /// Installed; the action's exit code said a reboot is required.
    SuccessRebootRequired,
    /// The action exited with this non-zero code.
    ExitCode(i32),
    /// The info file (or manifest) could not be fetched.
    ErrDownloadInfo,
    /// A fragment could not be fetched after the allowed tries.
    ErrDownloadPack,
    /// A digest or signature did not match.
    ErrBadDigest,
    /// The info file's ID does not match the package.
    ErrBadId,
    /// The info file or manifest is malformed.
    ErrBadParam,
    /// The archive could not be unpacked safely.
    ErrBuild,
    /// The action could not be started.
    ErrExecute,
    /// The action ran longer than the execution timeout and was killed.
    ErrExecuteTimeout,
    /// The action was killed by a signal, so there is no exit code.
    ErrExecuteNoExitCode,
    /// Not enough disk space for the package.
    ErrOutOfSpace,
    /// The package did not finish before its deadline.
    ErrTimeout,
    /// The user aborted.
    ErrAborted,
    /// An earlier run of the action was interrupted; it is not run again.
    ErrDoneFailed,
    /// The endpoint does not allow this package (`agent.allowed_actions`,
    /// `agent.allowed_store_paths`); nothing of it ran or was written.
    ErrNotAllowed,
    /// The package's signed manifest has expired (`package resign` renews it).
    ErrExpired,
    /// A higher version of the package's name has run here and its signed
    /// manifest does not say a downgrade is intended; nothing of it ran.
    ErrDowngrade,
    /// Any other code, verbatim.
    Other(String),
}

impl StatusCode {
    /// Parse a wire code. Never fails: unknown codes become [`StatusCode::Other`].
    pub fn parse(s: &str) -> Self {
        match s {
            "SUCCESS" => Self::Success,
            "SUCCESS_ALREADY_SETUP" => Self::SuccessAlreadySetup,
            "SUCCESS_REBOOT_REQUIRED" => Self::SuccessRebootRequired,
            "ERR_DOWNLOAD_INFO" => Self::ErrDownloadInfo,
            "ERR_DOWNLOAD_PACK" => Self::ErrDownloadPack,
            "ERR_BAD_DIGEST" => Self::ErrBadDigest,
            "ERR_BAD_ID" => Self::ErrBadId,
            "ERR_BAD_PARAM" => Self::ErrBadParam,
            "ERR_BUILD" => Self::ErrBuild,
            "ERR_EXECUTE" => Self::ErrExecute,
            "ERR_EXECUTE_TIMEOUT" => Self::ErrExecuteTimeout,
            "ERR_EXECUTE_NO_EXIT_CODE" => Self::ErrExecuteNoExitCode,
            "ERR_OUT_OF_SPACE" => Self::ErrOutOfSpace,
            "ERR_TIMEOUT" => Self::ErrTimeout,
            "ERR_ABORTED" => Self::ErrAborted,
            "ERR_DONE_FAILED" => Self::ErrDoneFailed,
            "ERR_NOT_ALLOWED" => Self::ErrNotAllowed,
            "ERR_EXPIRED" => Self::ErrExpired,
            "ERR_DOWNGRADE" => Self::ErrDowngrade,
            _ => match s.strip_prefix("EXIT_CODE_").and_then(|n| n.parse().ok()) {
                Some(n) if n != 0 => Self::ExitCode(n),
                _ => Self::Other(s.to_string()),
            },
        }
    }

    /// The code for an action that exited with `code`.
    pub fn from_exit(code: i32) -> Self {
        if code == 0 { Self::Success } else { Self::ExitCode(code) }
    }

    /// True for codes the OCS console counts as success (`SUCCESS*`).
    pub fn is_success(&self) -> bool {
        self.to_string().starts_with("SUCCESS")
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Self::Success => "SUCCESS",
            Self::SuccessAlreadySetup => "SUCCESS_ALREADY_SETUP",
            Self::SuccessRebootRequired => "SUCCESS_REBOOT_REQUIRED",
            Self::ExitCode(n) => return f.write_str(&format!("EXIT_CODE_{n}")),
            Self::ErrDownloadInfo => "ERR_DOWNLOAD_INFO",
            Self::ErrDownloadPack => "ERR_DOWNLOAD_PACK",
            Self::ErrBadDigest => "ERR_BAD_DIGEST",
            Self::ErrBadId => "ERR_BAD_ID",
            Self::ErrBadParam => "ERR_BAD_PARAM",
            Self::ErrBuild => "ERR_BUILD",
            Self::ErrExecute => "ERR_EXECUTE",
            Self::ErrExecuteTimeout => "ERR_EXECUTE_TIMEOUT",
            Self::ErrExecuteNoExitCode => "ERR_EXECUTE_NO_EXIT_CODE",
            Self::ErrOutOfSpace => "ERR_OUT_OF_SPACE",
            Self::ErrTimeout => "ERR_TIMEOUT",
            Self::ErrAborted => "ERR_ABORTED",
            Self::ErrDoneFailed => "ERR_DONE_FAILED",
            Self::ErrNotAllowed => "ERR_NOT_ALLOWED",
            Self::ErrExpired => "ERR_EXPIRED",
            Self::ErrDowngrade => "ERR_DOWNGRADE",
            Self::Other(s) => s,
        };
        f.write_str(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for s in
            ["SUCCESS", "EXIT_CODE_3", "EXIT_CODE_-1", "ERR_BUILD", "SUCCESS_REBOOT_REQUIRED", "ERR_UNZIP", "SUCCESS_3"]
        {
            assert_eq!(StatusCode::parse(s).to_string(), s);
        }
        assert_eq!(StatusCode::parse("EXIT_CODE_3"), StatusCode::ExitCode(3));
        assert_eq!(StatusCode::parse("ERR_DOWNGRADE").to_string(), "ERR_DOWNGRADE");
        assert_eq!(StatusCode::from_exit(0), StatusCode::Success);
        assert!(StatusCode::parse("SUCCESS_3").is_success());
        assert!(!StatusCode::ExitCode(3).is_success());
    }
}
