//! Loading and checking the agent's configuration file (TOML), as
//! `outpost-server device add` writes it; the data types live in
//! [`crate::engine::config`], the one owner of the format. Unknown keys are
//! errors, so typos do not pass silently.
//!
//! The file names commands the agent runs as root (`notify_command`,
//! `reboot_command`) and may hold the device secret, so [`Config::load`]
//! refuses one that others could have written (see there), and makes one
//! with a secret that others can read 0600, with a warning: the agent keeps
//! working, the secret stops leaking, and the admin is told to replace it.

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use outpost_hal::linux::{GROUP_OTHER_WRITE, Untrusted, euid, resolve_trusted};

pub use crate::engine::config::{Agent, Config, DEFAULT_FRAGMENT_TRIES, Download, Protocol, RebootSetting, Server};
use crate::engine::digest::unhex;
use crate::engine::identity::Credentials;

/// A configuration that cannot be used.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read.
    Read(PathBuf, std::io::Error),
    /// The TOML is invalid or a key is unknown or missing.
    Parse(String),
    /// A value is out of its domain.
    Invalid(&'static str),
    /// Others could have written the file, or could replace it.
    Unsafe(Untrusted),
    /// The file holds a secret others can read (mode bits), and could not
    /// be made private.
    Exposed(PathBuf, u32, std::io::Error),
}

/// The largest configuration read (bytes); a larger file is refused.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Mode bits that let group or others read.
const GROUP_OTHER_READ: u32 = 0o044;

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Read(p, e) => write!(f, "cannot read config {}: {e}", p.display()),
            Self::Parse(e) => write!(f, "invalid config: {e}"),
            Self::Invalid(what) => write!(f, "invalid config: {what}"),
            Self::Unsafe(e) => write!(
                f,
                "refusing config: {e}; it must belong to root or the agent's user and not be writable by group \
                 or others, under directories only they can write"
            ),
            Self::Exposed(p, mode, e) => write!(
                f,
                "config {} holds a secret that group or others can read (mode {:04o}) and cannot be made 0600: {e}",
                p.display(),
                mode & 0o7777
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Agent {
    /// `state_dir` as a path.
    pub fn state_path(&self) -> &Path {
        Path::new(&self.state_dir)
    }
}

impl Config {
    /// Read and check a configuration file. It is refused unless every
    /// directory and link on its path belongs to root or the agent's user and
    /// others cannot write those directories (sticky ones aside), and the file
    /// itself belongs to root or the agent's user and is not writable by group
    /// or others. If it holds a secret and group or others can read it, it is
    /// made 0600 with a warning ([`ConfigError::Exposed`] when that fails).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let real = resolve_trusted(path, true).map_err(ConfigError::Unsafe)?;
        let read_err = |e| ConfigError::Read(real.clone(), e);
        let file = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(&real).map_err(read_err)?;
        let m = file.metadata().map_err(read_err)?;
        let refuse = |why| Err(ConfigError::Unsafe(why));
        if !m.is_file() {
            return refuse(Untrusted::NotFile(real));
        } else if m.uid() != 0 && m.uid() != euid() {
            return refuse(Untrusted::Owner(real, m.uid()));
        } else if m.mode() & GROUP_OTHER_WRITE != 0 {
            return refuse(Untrusted::Writable(real, m.mode()));
        }
        let mut text = String::new();
        (&file).take(MAX_CONFIG_BYTES + 1).read_to_string(&mut text).map_err(read_err)?;
        if text.len() as u64 > MAX_CONFIG_BYTES {
            return Err(ConfigError::Invalid("the config is larger than 1 MiB"));
        }
        let c = Self::parse(&text)?;
        let holds_secrets = !c.server.secret.is_empty() || !c.server.client_key.is_empty();
        if holds_secrets && m.mode() & GROUP_OTHER_READ != 0 {
            let private = std::fs::Permissions::from_mode(0o600);
            file.set_permissions(private).map_err(|e| ConfigError::Exposed(real.clone(), m.mode(), e))?;
            log::warn!(
                target: "outpost",
                "config {} holds the device secret but group or others could read it (mode {:04o}); made it 0600: \
                 if anyone else could have read it, give the device a new secret (outpost-server device rotate)",
                real.display(),
                m.mode() & 0o7777
            );
        }
        Ok(c)
    }

    /// Parse and check configuration text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let c: Self = toml::from_str(text).map_err(|e| ConfigError::Parse(parse_error(text, &e)))?;
        c.pace()?;
        if crate::engine::moment::InstallMoment::parse(&c.agent.install).is_none() {
            return Err(ConfigError::Invalid("agent.install must be immediately, when_idle or at_startup"));
        }
        match c.server.protocol {
            Protocol::Outpost => {
                if !c.server.url.starts_with("https://") {
                    return Err(ConfigError::Invalid("server.url must start with https://"));
                }
                if !crate::engine::proto::valid_device_id(&c.server.device_id) {
                    return Err(ConfigError::Invalid("server.device_id has characters outside A-Za-z0-9._-"));
                }
                if c.server.secret.is_empty() {
                    return Err(ConfigError::Invalid("server.secret is required"));
                }
                c.signing_key()?;
                c.credentials()?;
            }
            Protocol::Ocs => {
                if !c.server.url.starts_with("https://") && !c.server.url.starts_with("http://") {
                    return Err(ConfigError::Invalid(
                        "server.url must be the OCS server's http(s)://…/ocsinventory URL",
                    ));
                }
            }
        }
        let known = |a: &String| ["launch", "execute", "store"].contains(&a.as_str());
        if c.agent.allowed_actions.as_ref().is_some_and(|v| !v.iter().all(known)) {
            return Err(ConfigError::Invalid("agent.allowed_actions: use \"launch\", \"execute\", \"store\""));
        }
        if c.agent.allowed_store_paths.as_ref().is_some_and(|v| v.iter().any(|p| !p.starts_with('/'))) {
            return Err(ConfigError::Invalid("agent.allowed_store_paths must be absolute directories"));
        }
        if c.agent.tags.len() > crate::engine::facts::MAX_TAGS
            || !c.agent.tags.iter().all(|t| crate::engine::facts::valid_tag(t))
        {
            return Err(ConfigError::Invalid("agent.tags: at most 32 tags of 1 to 128 bytes, no control characters"));
        }
        if c.agent.execution_timeout == 0 || c.agent.fragment_tries == Some(0) {
            return Err(ConfigError::Invalid("agent.execution_timeout and agent.fragment_tries must be > 0"));
        }
        Ok(c)
    }

    /// The bandwidth settings, checked.
    pub fn pace(&self) -> Result<super::pace::PaceConfig, ConfigError> {
        let windows = self
            .download
            .full_speed_windows
            .iter()
            .map(|w| crate::engine::throttle::Window::parse(w))
            .collect::<Option<Vec<_>>>()
            .ok_or(ConfigError::Invalid("download.full_speed_windows: use \"HH:MM-HH:MM\""))?;
        Ok(super::pace::PaceConfig {
            max_bandwidth: self.download.max_bandwidth,
            dynamic: self.download.dynamic_bandwidth,
            windows,
        })
    }

    /// The device's credentials as the configuration gives them: the secret,
    /// and the client certificate and key (DER) when both are set.
    pub fn credentials(&self) -> Result<Credentials, ConfigError> {
        let s = &self.server;
        let (cert, key) = match (s.client_cert.trim().is_empty(), s.client_key.trim().is_empty()) {
            (true, true) => (Vec::new(), Vec::new()),
            (false, false) => {
                let cert = rustls_pemfile::certs(&mut s.client_cert.as_bytes()).next().and_then(Result::ok);
                let key = rustls_pemfile::private_key(&mut s.client_key.as_bytes()).ok().flatten();
                match (cert, key) {
                    (Some(c), Some(rustls::pki_types::PrivateKeyDer::Pkcs8(k))) => {
                        (c.to_vec(), k.secret_pkcs8_der().to_vec())
                    }
                    (None, _) => return Err(ConfigError::Invalid("server.client_cert holds no PEM certificate")),
                    _ => return Err(ConfigError::Invalid("server.client_key holds no PEM (PKCS#8) private key")),
                }
            }
            _ => return Err(ConfigError::Invalid("server.client_cert and server.client_key go together")),
        };
        Ok(Credentials { secret: s.secret.clone(), cert, key })
    }

    /// The package-signing public key.
    pub fn signing_key(&self) -> Result<[u8; 32], ConfigError> {
        unhex(self.server.signing_key.trim())
            .and_then(|v| v.try_into().ok())
            .ok_or(ConfigError::Invalid("server.signing_key must be 64 hex digits"))
    }
}

/// A TOML error's message, after the line it points at when it points at one.
fn parse_error(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(at) => {
            let before = text.as_bytes().get(..at.start).unwrap_or(text.as_bytes());
            format!("line {}: {}", before.iter().filter(|&&b| b == b'\n').count() + 1, e.message())
        }
        None => e.message().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[server]
url = "https://127.0.0.1:8443"
device_id = "pc-1"
secret = "s"
ca_cert = "pem"
signing_key = "0000000000000000000000000000000000000000000000000000000000000000"
[agent]
state_dir = "/tmp/x"
"#;

    #[test]
    fn defaults_and_checks() {
        let c = Config::parse(GOOD).unwrap();
        assert_eq!(c.agent.execution_timeout, 7200);
        assert!(Config::parse(&GOOD.replace("https://", "http://")).is_err());
        assert!(Config::parse(&GOOD.replace("state_dir", "state_dri")).is_err());
        assert!(Config::parse(&GOOD.replace("\"0000", "\"zz00")).is_err());
        assert!(Config::parse("not toml [").is_err());
        let dup = Config::parse(&GOOD.replace("secret = \"s\"", "secret = \"s\"\nsecret = \"t\"")).unwrap_err();
        assert_eq!(dup.to_string(), "invalid config: line 6: duplicate key", "the line of the second key");
        assert!(Config::parse(&GOOD.replace("secret = \"s\"", "")).is_err(), "outpost needs a secret");
        let paced = format!("{GOOD}[download]\nmax_bandwidth = 1000\nfull_speed_windows = [\"18:00-07:00\"]\n");
        assert_eq!(Config::parse(&paced).unwrap().pace().unwrap().windows.len(), 1);
        assert!(Config::parse(&paced.replace("18:00", "25:00")).is_err());
    }

    #[test]
    fn ocs_mode_needs_no_secret_or_key() {
        let ocs = "[server]\nprotocol = \"ocs\"\nurl = \"http://ocs.example/ocsinventory\"\nca_cert = \"pem\"\n[agent]\nstate_dir = \"/x\"\n";
        let c = Config::parse(ocs).unwrap();
        assert_eq!(c.server.protocol, Protocol::Ocs);
        assert!(!c.server.require_signed);
        assert!(Config::parse(&ocs.replace("http://", "ftp://")).is_err());
        assert!(Config::parse(&ocs.replace("\"ocs\"", "\"smb\"")).is_err());
    }

    #[test]
    fn allowed_actions_and_store_paths_are_checked_at_load() {
        let with = |extra: &str| Config::parse(&format!("{GOOD}{extra}\n"));
        let c = with("allowed_actions = [\"store\"]\nallowed_store_paths = [\"/opt/apps\"]").unwrap();
        assert_eq!(c.agent.allowed_actions.as_deref(), Some(&["store".to_string()][..]));
        assert!(with("allowed_actions = [\"run-anything\"]").is_err(), "an unknown action");
        assert!(with("allowed_store_paths = [\"opt/apps\"]").is_err(), "a relative directory");
    }

    #[test]
    fn tags_are_checked_at_load() {
        let with = |extra: &str| Config::parse(&format!("{GOOD}{extra}\n"));
        assert_eq!(with("tags = [\"site:lyon\", \"kiosk\"]").unwrap().agent.tags, ["site:lyon", "kiosk"]);
        assert!(with("tags = [\"\"]").is_err(), "an empty tag");
        assert!(with("tags = [\"a\\nb\"]").is_err(), "a control character");
        let many: Vec<String> = (0..33).map(|i| format!("\"t{i}\"")).collect();
        assert!(with(&format!("tags = [{}]", many.join(","))).is_err(), "33 tags");
    }
}
