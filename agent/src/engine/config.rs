//! The agent's configuration as data: the one owner of its file format.
//!
//! The agent reads these types from TOML (`rt::config` loads and checks the
//! file); `outpost-server device add` builds a [`Config`] and serialises it,
//! so the two cannot drift apart. Values at their defaults are left out when
//! serialised, to keep the written file small. No IO here, no `std`: paths are
//! UTF-8 strings, as TOML has no other kind.

use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// How to reach and trust the server.
    pub server: Server,
    /// Local behaviour.
    pub agent: Agent,
    /// Bandwidth.
    #[serde(default, skip_serializing_if = "is_default")]
    pub download: Download,
}

/// `[download]`: how politely the agent uses the line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Download {
    /// Hard cap in bytes/s over everything the agent downloads (0: none).
    #[serde(default, skip_serializing_if = "is_default")]
    pub max_bandwidth: u64,
    /// Yield to other traffic: the interface's counters set a read rate,
    /// the queuing delay on the path sets the receive window.
    #[serde(default, skip_serializing_if = "is_default")]
    pub dynamic_bandwidth: bool,
    /// Daily full-speed windows in local time (`"18:00-07:00"`); outside
    /// them `max_bandwidth` applies. Empty: it applies all day.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub full_speed_windows: Vec<String>,
}

/// Which server the agent talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// outpost-server's control API (signed manifests).
    #[default]
    Outpost,
    /// An OCS Inventory NG server (`url` is its `/ocsinventory`).
    Ocs,
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// `outpost` (default) or `ocs`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub protocol: Protocol,
    /// `https://host:port` of the control API; with `ocs`, the server's
    /// `/ocsinventory` URL (http or https).
    pub url: String,
    /// This device's id (outpost; OCS mode makes its own DEVICEID).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub device_id: String,
    /// This device's secret, never logged (outpost only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub secret: String,
    /// Hex of the Ed25519 package-signing public key, 32 bytes (outpost only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub signing_key: String,
    /// Refuse packages without a signed manifest (`ERR_BAD_DIGEST`): with an
    /// OCS server, that is every package.
    #[serde(default, skip_serializing_if = "is_default")]
    pub require_signed: bool,
    /// PEM of the certificates trusted for the server, info files and HTTPS
    /// fragments: as CAs (a chain to any of them), or as the server's own
    /// certificate, pinned (`rt/http/pin.rs`).
    pub ca_cert: String,
    /// PEM of this device's client certificate, signed by the server's CA
    /// (`device add` writes it; outpost only). Presented on every TLS
    /// connection to a server that asks for one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client_cert: String,
    /// PEM (PKCS#8) of the client certificate's private key, never logged:
    /// like `secret`, it makes the file private (0600).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client_key: String,
}

/// `agent.execution_timeout` when not set (seconds).
pub const DEFAULT_EXECUTION_TIMEOUT: u64 = 7200;
/// `agent.poll_interval` when not set (seconds).
pub const DEFAULT_POLL_INTERVAL: u64 = 3600;
/// `agent.connect_timeout` when not set (seconds).
pub const DEFAULT_CONNECT_TIMEOUT: u64 = 10;
/// `agent.io_timeout` when not set (seconds).
pub const DEFAULT_IO_TIMEOUT: u64 = 60;
/// `agent.fragment_tries` in the Outpost protocol when not set.
pub const DEFAULT_FRAGMENT_TRIES: u32 = 5;

fn default_execution_timeout() -> u64 {
    DEFAULT_EXECUTION_TIMEOUT
}
fn default_poll_interval() -> u64 {
    DEFAULT_POLL_INTERVAL
}
fn default_connect_timeout() -> u64 {
    DEFAULT_CONNECT_TIMEOUT
}
fn default_io_timeout() -> u64 {
    DEFAULT_IO_TIMEOUT
}
fn default_checkpoint_bytes() -> u64 {
    crate::engine::download::DEFAULT_CHECKPOINT_BYTES
}
fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}
fn is_default_execution_timeout(v: &u64) -> bool {
    *v == DEFAULT_EXECUTION_TIMEOUT
}
fn is_default_poll_interval(v: &u64) -> bool {
    *v == DEFAULT_POLL_INTERVAL
}
fn is_default_connect_timeout(v: &u64) -> bool {
    *v == DEFAULT_CONNECT_TIMEOUT
}
fn is_default_io_timeout(v: &u64) -> bool {
    *v == DEFAULT_IO_TIMEOUT
}
fn is_default_checkpoint_bytes(v: &u64) -> bool {
    *v == default_checkpoint_bytes()
}

/// `agent.reboot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RebootSetting {
    /// Never reboot.
    Never,
    /// When nobody is logged in (the default).
    #[default]
    WhenIdle,
    /// As soon as the status is reported.
    Immediately,
}

impl RebootSetting {
    /// The HAL policy.
    pub fn policy(self) -> outpost_hal::power::RebootPolicy {
        match self {
            Self::Never => outpost_hal::power::RebootPolicy::Never,
            Self::WhenIdle => outpost_hal::power::RebootPolicy::WhenIdle,
            Self::Immediately => outpost_hal::power::RebootPolicy::Immediately,
        }
    }
}

/// `[agent]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Agent {
    /// Where the agent keeps its cache, journal and history.
    pub state_dir: String,
    /// Seconds an action may run before it is killed (ERR_EXECUTE_TIMEOUT).
    #[serde(default = "default_execution_timeout", skip_serializing_if = "is_default_execution_timeout")]
    pub execution_timeout: u64,
    /// Seconds between polls when the server does not say.
    #[serde(default = "default_poll_interval", skip_serializing_if = "is_default_poll_interval")]
    pub poll_interval: u64,
    /// Seconds to wait for a TCP/TLS connection.
    #[serde(default = "default_connect_timeout", skip_serializing_if = "is_default_connect_timeout")]
    pub connect_timeout: u64,
    /// Seconds without a byte before a transfer is abandoned.
    #[serde(default = "default_io_timeout", skip_serializing_if = "is_default_io_timeout")]
    pub io_timeout: u64,
    /// Failed tries of one fragment (without progress) before giving up for
    /// this run (default 5); in OCS mode, failed slots in a row before the
    /// package ends `ERR_DOWNLOAD_PACK` (default 10, as the OCS agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fragment_tries: Option<u32>,
    /// Bytes received between two checkpoints of a download: at most this
    /// much is fetched again after a power cut (flash wear: one small
    /// journal write per checkpoint).
    #[serde(default = "default_checkpoint_bytes", skip_serializing_if = "is_default_checkpoint_bytes")]
    pub checkpoint_bytes: u64,
    /// Bytes the cache of downloaded, not yet installed packages may hold
    /// (0: no cap). Over it, packages not offered now are evicted, least
    /// recently used first.
    #[serde(default, skip_serializing_if = "is_default")]
    pub cache_max_size: u64,
    /// When a reboot a package asks for may happen: `never`, `when_idle`
    /// (nobody logged in) or `immediately`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub reboot: RebootSetting,
    /// Command that reboots (default: the reboot system call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reboot_command: Option<String>,
    /// Instead of rebooting, append a line to this file (trials and tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reboot_dry_run: Option<String>,
    /// Command that asks the user about packages with NOTIFY_USER (see
    /// `outpost_hal::linux::CommandNotifier`); none: proceed after the countdown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_command: Option<String>,
    /// Actions a package may have: `launch`, `execute`, `store` (unset:
    /// all). Others end `ERR_NOT_ALLOWED` before anything is fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_actions: Option<Vec<String>>,
    /// Absolute directories a `store` package may write under (unset:
    /// anywhere). Others end `ERR_NOT_ALLOWED` before anything is fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_store_paths: Option<Vec<String>>,
    /// Free-form tags sent with the device's facts at each poll
    /// (`["site:lyon", "kiosk"]`), for the server's groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// A directory scanned for offline bundles (`*.outpost`) at every
    /// cycle; each is installed once (`rt/agent/bundle.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import_dir: Option<String>,
    /// When a cached, verified package is installed: `immediately` (or
    /// empty), `when_idle` or `at_startup` ([`super::moment::InstallMoment`]).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub install: String,
}

impl Agent {
    /// `install`, parsed (checked when the configuration is loaded).
    pub fn install_moment(&self) -> super::moment::InstallMoment {
        super::moment::InstallMoment::parse(&self.install).unwrap_or_default()
    }

    /// The endpoint's limits on packages ([`super::allow`]).
    pub fn allowed(&self) -> super::allow::Allowed<'_> {
        super::allow::Allowed {
            actions: self.allowed_actions.as_deref(),
            store_paths: self.allowed_store_paths.as_deref(),
        }
    }
}

impl Agent {
    /// The `[agent]` section with `state_dir` and every other key at its default.
    pub fn new(state_dir: String) -> Self {
        Self {
            state_dir,
            execution_timeout: DEFAULT_EXECUTION_TIMEOUT,
            poll_interval: DEFAULT_POLL_INTERVAL,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            io_timeout: DEFAULT_IO_TIMEOUT,
            fragment_tries: None,
            checkpoint_bytes: default_checkpoint_bytes(),
            cache_max_size: 0,
            reboot: RebootSetting::WhenIdle,
            reboot_command: None,
            reboot_dry_run: None,
            notify_command: None,
            allowed_actions: None,
            allowed_store_paths: None,
            tags: Vec::new(),
            import_dir: None,
            install: String::new(),
        }
    }
}
