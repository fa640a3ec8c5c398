//! What the endpoint lets a server do (FusionInventory's advice: run the
//! agent in a mode where the server does not control what it executes).
//! `[agent] allowed_actions` names the actions a package may have
//! (`launch`, `execute`, `store`; unset: all), `allowed_store_paths` the
//! directories a `store` package may write under (unset: anywhere). A
//! package outside them ends `ERR_NOT_ALLOWED` at its metadata, before any
//! fragment is fetched: nothing of it runs or is written.

use alloc::string::String;

use super::info::{Action, Info};

/// The endpoint's limits on packages, as configured.
#[derive(Debug, Clone, Copy, Default)]
pub struct Allowed<'a> {
    /// Action names a package may have (`None`: every action).
    pub actions: Option<&'a [String]>,
    /// Directories a `store` package may write under (`None`: anywhere).
    pub store_paths: Option<&'a [String]>,
}

/// The action's name in `allowed_actions`.
pub fn action_name(a: Action) -> &'static str {
    match a {
        Action::Launch => "launch",
        Action::Execute => "execute",
        Action::Store => "store",
    }
}

/// Whether `dir` (absolute) is `prefix` or under it, compared by path
/// component; a `..` or `.` component in `dir` never is.
pub fn is_under(dir: &str, prefix: &str) -> bool {
    if !dir.starts_with('/') || dir.split('/').any(|c| c == ".." || c == ".") {
        return false;
    }
    let prefix = prefix.trim_end_matches('/');
    match dir.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.is_empty(),
        None => false,
    }
}

/// Why a package may not be deployed on this endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotAllowed {
    /// Its action (`launch`, `execute`, `store`) is not in `allowed_actions`.
    Action(&'static str),
    /// It stores to this directory, not under `allowed_store_paths`.
    StorePath(String),
}

impl core::fmt::Display for NotAllowed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Action(name) => write!(f, "its action {name} is not in agent.allowed_actions"),
            Self::StorePath(dir) => write!(f, "it stores to {dir:?}, not under agent.allowed_store_paths"),
        }
    }
}

impl core::error::Error for NotAllowed {}

/// `Ok` when the package may be deployed here, else why not.
pub fn check(info: &Info, allowed: Allowed<'_>) -> Result<(), NotAllowed> {
    let name = action_name(info.action);
    if let Some(actions) = allowed.actions
        && !actions.iter().any(|a| a == name)
    {
        return Err(NotAllowed::Action(name));
    }
    if info.action == Action::Store
        && let Some(paths) = allowed.store_paths
        && !paths.iter().any(|p| is_under(&info.target, p))
    {
        return Err(NotAllowed::StorePath(info.target.clone()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::string::ToString;
    use alloc::vec;

    fn info(action: &str, target: &str) -> Info {
        let attr = match action {
            "STORE" => format!("PATH=\"{target}\""),
            "LAUNCH" => format!("NAME=\"{target}\""),
            _ => format!("COMMAND=\"{target}\""),
        };
        let xml = format!(
            "<DOWNLOAD ID=\"1\" PRI=\"5\" ACT=\"{action}\" DIGEST=\"d41d8cd98f00b204e9800998ecf8427e\" PROTO=\"HTTP\" FRAGS=\"1\" DIGEST_ALGO=\"MD5\" DIGEST_ENCODE=\"Hexa\" {attr} NOTIFY_USER=\"0\" NOTIFY_TEXT=\"\" NOTIFY_COUNTDOWN=\"\" NOTIFY_CAN_ABORT=\"0\" NOTIFY_CAN_DELAY=\"0\" NEED_DONE_ACTION=\"0\" NEED_DONE_ACTION_TEXT=\"\" GARDEFOU=\"rien\" />"
        );
        Info::parse(xml.as_bytes()).unwrap()
    }

    #[test]
    fn only_the_allowed_actions_and_store_paths_pass() {
        let all = Allowed::default();
        assert!(check(&info("EXECUTE", "true"), all).is_ok(), "unset: everything");
        let store_only = ["store".to_string()];
        let a = Allowed { actions: Some(&store_only), store_paths: None };
        assert_eq!(check(&info("EXECUTE", "rm -rf /"), a), Err(NotAllowed::Action("execute")));
        assert!(check(&info("LAUNCH", "setup.sh"), a).is_err());
        assert!(check(&info("STORE", "/anywhere"), a).is_ok());
        let paths = vec!["/opt/apps/".to_string(), "/srv/data".to_string()];
        let p = Allowed { actions: None, store_paths: Some(&paths) };
        assert!(check(&info("STORE", "/opt/apps/x"), p).is_ok());
        assert!(check(&info("STORE", "/srv/data"), p).is_ok());
        assert!(check(&info("STORE", "/srv/database"), p).is_err(), "a component, not a string prefix");
        assert!(check(&info("STORE", "/opt/apps/../../etc"), p).is_err(), "no way out by ..");
        assert_eq!(check(&info("STORE", "/etc/cron.d"), p), Err(NotAllowed::StorePath("/etc/cron.d".into())));
        assert!(check(&info("EXECUTE", "true"), p).is_ok(), "store paths bound only store packages");
    }
}
