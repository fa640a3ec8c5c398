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
}

fn default_poll_interval() -> u32 {
    3600
}

impl Default for Agents {
    fn default() -> Self {
        Self { poll_interval: default_poll_interval() }
    }
}

impl ServerConfig {
    /// Read `DIR/server.toml`.
    pub fn load(dir: &Path) -> Result<Self, String> {
        let p = dir.join("server.toml");
        let text = std::fs::read_to_string(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {}", p.display(), e.message()))
    }

    /// The TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }
}
