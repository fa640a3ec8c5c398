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
    /// Lockout after repeated authentication failures (`[security]`).
    #[serde(default)]
    pub security: crate::lockout::Policy,
    /// Connection caps and timeouts (`[limits]`).
    #[serde(default)]
    pub limits: crate::limits::Limits,
    /// Where packages are published (`[server] download_dir`).
    #[serde(default, skip_serializing_if = "crate::downloads::Section::is_default")]
    pub server: crate::downloads::Section,
    /// Where the state is kept (`[database] url`; not set: `DIR/state.db`).
    #[serde(default, skip_serializing_if = "Database::is_default")]
    pub database: Database,
}

/// `[database]`: the state in PostgreSQL instead of `DIR/state.db`.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Database {
    /// `postgres://user[:password]@host[:port]/database`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Connections each `serve` holds to it (default
    /// [`crate::db::POSTGRES_CONNECTIONS`]; 1 to 64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<usize>,
}

impl Database {
    /// Not set (the table is then left out of `server.toml`).
    pub fn is_default(&self) -> bool {
        self.url.is_none() && self.connections.is_none()
    }
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("url", &self.url.as_deref().map(crate::db::redact))
            .field("connections", &self.connections)
            .finish()
    }
}

/// `[ocs]`: how OCS agents are served. OCS agents prove nothing but their
/// DEVICEID, so they are served only from `allow` networks, and optionally
/// only with HTTP Basic credentials.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ocs {
    /// Networks (CIDR) OCS agents may connect from, parsed when the file is
    /// read. Default: loopback only.
    pub allow: Vec<crate::cidr::Cidr>,
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
    /// New DEVICEIDs one client (IPv4 address or IPv6 /64) may register per
    /// hour; also how many at once. Beyond: 429. 0: none (known devices only).
    pub new_devices_per_hour: u32,
    /// OCS devices the server holds at most. A new DEVICEID beyond takes the
    /// place of a stale one (see `stale_after_days`), or gets 503.
    pub max_devices: u64,
    /// Days without contact after which an OCS device that never reported a
    /// status nor sent a download history may be evicted to make room for a
    /// new one at `max_devices`. 0: never evict.
    pub stale_after_days: u32,
    /// Packages an inventory's download history may list; beyond: 413.
    pub max_history: usize,
}

impl Default for Ocs {
    fn default() -> Self {
        Self {
            allow: crate::cidr::Cidr::loopback(),
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
            new_devices_per_hour: 100,
            max_devices: 100_000,
            stale_after_days: 7,
            max_history: 1_000,
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

    /// Check what serde cannot (networks were parsed by serde already).
    pub fn validate(&self) -> Result<(), String> {
        for w in &self.agents.full_speed_windows {
            outpost_agent::engine::throttle::Window::parse(w)
                .ok_or_else(|| format!("server.toml: agents.full_speed_windows entry {w:?} is not HH:MM-HH:MM"))?;
        }
        let o = &self.ocs;
        if o.stale_after_days != 0 && u64::from(o.stale_after_days) * 24 <= u64::from(o.prolog_freq) {
            return Err(format!(
                "server.toml: ocs.stale_after_days = {} is not longer than prolog_freq = {} hours: \
                 devices would look stale between their contacts",
                o.stale_after_days, o.prolog_freq
            ));
        }
        if let Some(url) = &self.database.url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Err(format!("server.toml: database.url {:?} is not a postgres:// URL", crate::db::redact(url)));
        }
        if self.database.connections.is_some_and(|n| !(1..=64).contains(&n)) {
            return Err("server.toml: database.connections must be 1 to 64".into());
        }
        self.security.validate()
    }

    /// The download directory of the server in `dir` (`[server]
    /// download_dir`, default `DIR/download`).
    pub fn download_dir(&self, dir: &Path) -> std::path::PathBuf {
        self.server.download_dir(dir)
    }

    /// The TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cidr::Cidr;

    const BASE: &str = "[listen]\nhttps = \"127.0.0.1:1\"\nhttp = \"127.0.0.1:2\"\n[public]\nserver_url = \"https://h:1\"\n\
                        info_loc = \"h:1/download\"\nfragment_loc = \"h:2/download\"\n";

    #[test]
    fn older_files_get_the_guard_defaults_and_the_knobs_parse() {
        let old: ServerConfig = toml::from_str(BASE).unwrap();
        assert_eq!(old.security, crate::lockout::Policy::default());
        assert_eq!((old.ocs.new_devices_per_hour, old.ocs.max_devices, old.ocs.max_history), (100, 100_000, 1_000));
        assert_eq!(old.ocs.stale_after_days, 7);
        let text = format!(
            "{BASE}[ocs]\nnew_devices_per_hour = 5\nmax_devices = 7\nmax_history = 9\nstale_after_days = 0\n[security]\nmax_auth_failures = 3\n\
             auth_failures_interval = 4\nclient_block_time = 5\nmax_address_auth_failures = 6\n"
        );
        let c: ServerConfig = toml::from_str(&text).unwrap();
        c.validate().unwrap();
        assert_eq!((c.ocs.new_devices_per_hour, c.ocs.max_devices, c.ocs.max_history), (5, 7, 9));
        assert_eq!(c.ocs.stale_after_days, 0, "0: never evict");
        assert!(toml::from_str::<ServerConfig>(&c.to_toml()).unwrap().to_toml().contains("stale_after_days = 0"));
        let short: ServerConfig =
            toml::from_str(&format!("{BASE}[ocs]\nprolog_freq = 48\nstale_after_days = 2\n")).unwrap();
        assert!(short.validate().is_err(), "stale before the next PROLOG is due");
        let p = &c.security;
        assert_eq!((p.max_auth_failures, p.auth_failures_interval, p.client_block_time), (3, 4, 5));
        assert_eq!(p.max_address_auth_failures, 6);
        let back: ServerConfig = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(back.security, c.security, "init writes the table out");
        let bad: ServerConfig = toml::from_str(&format!("{BASE}[security]\nmax_auth_failures = 0\n")).unwrap();
        assert!(bad.validate().is_err());
        assert!(toml::from_str::<ServerConfig>(&format!("{BASE}[security]\nmax_failures = 3\n")).is_err());
    }

    #[test]
    fn network_policy_is_parsed_once_with_defaults_and_written_out() {
        let old: ServerConfig = toml::from_str(BASE).unwrap();
        let s = &old.security;
        assert_eq!((s.networks.clone(), s.admin_networks.clone()), (Cidr::everywhere(), Cidr::loopback()));
        assert!(s.trusted_proxies.is_empty());
        let text = old.to_toml();
        for line in [
            "networks = [\"0.0.0.0/0\", \"::/0\"]",
            "admin_networks = [\"127.0.0.0/8\", \"::1/128\"]",
            "trusted_proxies = []",
        ] {
            assert!(text.contains(line), "init writes {line:?}:\n{text}");
        }
        let set = format!(
            "{BASE}[security]\nnetworks = [\"10.0.0.0/8\", \"192.0.2.7\"]\nadmin_networks = [\"10.1.0.0/16\"]\n\
             trusted_proxies = [\"10.0.0.5\"]\n"
        );
        let c: ServerConfig = toml::from_str(&set).unwrap();
        c.validate().unwrap();
        assert_eq!(c.security.networks, vec!["10.0.0.0/8".parse().unwrap(), "192.0.2.7/32".parse().unwrap()]);
        assert_eq!(toml::from_str::<ServerConfig>(&c.to_toml()).unwrap().security, c.security);
        let bad = toml::from_str::<ServerConfig>(&format!("{BASE}[security]\ntrusted_proxies = [\"10.0.0.300\"]\n"));
        assert!(bad.unwrap_err().to_string().contains("\"10.0.0.300\" is not a CIDR network"));
        let none: ServerConfig = toml::from_str(&format!("{BASE}[security]\nnetworks = []\n")).unwrap();
        assert!(none.validate().unwrap_err().contains("no one could connect"));
    }
}
