//! `DIR/server.toml`: listen addresses and the public locations agents use.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// The server's configuration file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Where to listen.
    pub listen: Listen,
    /// What agents are told.
    pub public: Public,
    /// Agent behaviour the server decides.
    #[serde(default)]
    pub agents: Agents,
    /// The OCS Inventory NG endpoint (`POST /ocsinventory`).
    #[serde(default)]
    pub ocs: Ocs,
}

/// `[ocs]`: how OCS agents are served. OCS agents prove nothing but their
/// DEVICEID, so they are served only from `allow` networks, and optionally
/// only with HTTP Basic credentials.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ocs {
    /// Networks (CIDR) OCS agents may connect from. Default: loopback only.
    pub allow: Vec<String>,
    /// Require these Basic credentials (the OCS agent's --user/--password/--realm).
    pub basic_auth: Option<BasicAuth>,
    /// Ask agents for an inventory (`RESPONSE=SEND`) so their history is known.
    pub request_inventory: bool,
    /// `PROLOG_FREQ` in hours.
    pub prolog_freq: u32,
    /// `FRAG_LATENCY` seconds.
    pub frag_latency: u32,
    /// `CYCLE_LATENCY` seconds.
    pub cycle_latency: u32,
    /// `PERIOD_LATENCY` seconds.
    pub period_latency: u32,
    /// `PERIOD_LENGTH` cycles (≥ the largest priority, so every package gets slots).
    pub period_length: u32,
    /// `TIMEOUT` days.
    pub timeout: u32,
    /// `EXECUTION_TIMEOUT` minutes.
    pub execution_timeout: u32,
}

impl Default for Ocs {
    fn default() -> Self {
        Self {
            allow: vec!["127.0.0.0/8".into(), "::1/128".into()],
            basic_auth: None,
            request_inventory: false,
            prolog_freq: 12,
            // Bandwidth is the throttle's job, not sleeps: no latencies.
            frag_latency: 0,
            cycle_latency: 0,
            period_latency: 0,
            period_length: 10,
            timeout: 30,
            execution_timeout: 120,
        }
    }
}

/// `[ocs.basic_auth]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// User name.
    pub user: String,
    /// Password (kept in server.toml, which is private to the server).
    pub password: String,
    /// Realm announced in the 401; the OCS agent's --realm must match it.
    pub realm: String,
}

/// `[listen]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// HTTPS listener (control API, info, manifest), `HOST:PORT`.
    pub https: String,
    /// HTTP listener (fragments), `HOST:PORT`.
    pub http: String,
}

/// `[public]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Public {
    /// The control API URL written into agent configurations.
    pub server_url: String,
    /// `host[:port]/path` where agents fetch `ID/info` and `ID/manifest` over HTTPS.
    pub info_loc: String,
    /// `host[:port]/path` where agents fetch `ID/ID-n` fragments.
    pub fragment_loc: String,
}

/// `[agents]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agents {
    /// Seconds between polls.
    #[serde(default = "default_poll_interval")]
    pub poll_interval: u32,
    /// Bandwidth cap for every agent, bytes/s (0: none). Agents can only be stricter.
    #[serde(default)]
    pub max_bandwidth: u64,
    /// Full-speed windows (`HH:MM-HH:MM`, agents' local time); outside them the cap applies.
    #[serde(default)]
    pub full_speed_windows: Vec<String>,
}

fn default_poll_interval() -> u32 {
    3600
}

impl Default for Agents {
    fn default() -> Self {
        Self { poll_interval: default_poll_interval(), max_bandwidth: 0, full_speed_windows: Vec::new() }
    }
}

impl ServerConfig {
    /// Read `DIR/server.toml`.
    pub fn load(dir: &Path) -> Result<Self, String> {
        let p = dir.join("server.toml");
        let text = std::fs::read_to_string(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
        let cfg: Self = toml::from_str(&text).map_err(|e| format!("{}: {}", p.display(), e.message()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Check what serde cannot: the OCS networks parse.
    pub fn validate(&self) -> Result<(), String> {
        for w in &self.agents.full_speed_windows {
            outpost_agent::engine::throttle::Window::parse(w)
                .ok_or_else(|| format!("server.toml: agents.full_speed_windows entry {w:?} is not HH:MM-HH:MM"))?;
        }
        for a in &self.ocs.allow {
            crate::cidr::Cidr::parse(a)
                .ok_or_else(|| format!("server.toml: ocs.allow entry {a:?} is not a CIDR network"))?;
        }
        Ok(())
    }

    /// The TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }
}
