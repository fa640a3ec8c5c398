//! Lockout after repeated authentication failures, as opsi does it
//! (`max_auth_failures` within `auth_failures_interval` blocks the client for
//! `client_block_time`), shaped so that many devices behind one NAT address
//! do not share one fate. Sans-IO: every function takes `now` (Unix seconds);
//! failure counts live in the server's memory, blocks and trust in SQLite
//! ([`crate::db`]), so `outpost-server unblock` and `status` see and change
//! the running server's blocks.
//!
//! ```text
//!  request ─► Client (IPv4 address, or IPv6 /64) + Claim (device id; OCS Basic: `*`, see Scope::Ocs)
//!               │
//!               ├─ claim row blocked?                          ─► 429, secret not checked
//!               ├─ address row blocked and the claim not trusted ─► 429, secret not checked
//!               ├─ secret wrong ─► failure on the claim row (threshold max_auth_failures)
//!               │                  and on the address row (threshold max_address_auth_failures)
//!               └─ secret right ─► claim row: failures cleared, trusted from this client
//! ```
//!
//! Why two rows. A branch office puts hundreds of devices behind one NAT
//! address. Counting failures per (client, claimed identity) means guessing
//! one device's secret blocks only that identity from that address: its
//! neighbours, claiming their own identities, are not counted and not
//! blocked. Rotating through made-up identities is caught by the
//! address-wide row, whose threshold is ten times higher by default; even
//! then an identity that authenticated from that address within
//! [`TRUST_SECS`] stays admitted (and keeps its own per-identity limit), so
//! a bad client inside the branch cannot lock out the devices that work
//! there. An IPv6 client is counted by its /64, the unit one site gets,
//! so rotating addresses inside it buys nothing.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::cidr::Cidr;

/// How long a successful authentication from a client keeps that identity
/// admitted while the client's address is blocked: 30 days.
pub const TRUST_SECS: u64 = 30 * 24 * 3600;

/// A trusted row is refreshed at most this often (seconds), so a
/// successful poll usually costs no database write.
pub const TRUST_REFRESH_SECS: u64 = 24 * 3600;

/// `[security]` in `server.toml`: who may connect and use what (applied by
/// [`crate::access`]), and the lockout policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// Networks that may connect at all (opsi's `networks`); anyone else's
    /// connection is closed at accept, before TLS, and a forwarded client
    /// address outside them gets 403. Default: everywhere.
    pub networks: Vec<Cidr>,
    /// Networks that may use administrative routes (`/admin/…`; opsi's
    /// `admin-networks`). Default: loopback.
    pub admin_networks: Vec<Cidr>,
    /// Reverse proxies whose `X-Forwarded-For` / `Forwarded` headers are
    /// believed; from any other peer they are ignored. Default: none.
    pub trusted_proxies: Vec<Cidr>,
    /// Failures of one identity from one client, within the interval, that
    /// block that identity from that client (opsi's `max_auth_failures`).
    pub max_auth_failures: u32,
    /// The counting window, seconds (opsi's `auth_failures_interval`).
    pub auth_failures_interval: u64,
    /// How long a block lasts, seconds (opsi's `client_block_time`).
    pub client_block_time: u64,
    /// Failures from one client address, any identity, within the interval,
    /// that block the address for identities it has not authenticated before.
    pub max_address_auth_failures: u32,
    /// The control API (poll, report) wants each device's own client
    /// certificate (`device add` issues it) besides its secret: a stolen
    /// secret alone no longer works. Off, a certificate is still checked when
    /// one is presented, and devices without one (older agents) get in with
    /// their secret. Neither way concerns the OCS endpoint, info files,
    /// manifests or fragments: OCS agents have no client certificate.
    pub require_client_cert: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            networks: Cidr::everywhere(),
            admin_networks: Cidr::loopback(),
            trusted_proxies: Vec::new(),
            max_auth_failures: 10,
            auth_failures_interval: 120,
            client_block_time: 120,
            max_address_auth_failures: 100,
            require_client_cert: false,
        }
    }
}

impl Policy {
    /// Check what serde cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.networks.is_empty() {
            return Err("server.toml: security.networks is empty: no one could connect \
                        (everywhere is [\"0.0.0.0/0\", \"::/0\"])"
                .into());
        }
        if self.max_auth_failures == 0 || self.auth_failures_interval == 0 || self.client_block_time == 0 {
            return Err("server.toml: security.max_auth_failures, auth_failures_interval and client_block_time \
                        must be at least 1"
                .into());
        }
        if self.max_address_auth_failures < self.max_auth_failures {
            return Err("server.toml: security.max_address_auth_failures must be at least max_auth_failures".into());
        }
        Ok(())
    }
}

/// The client a failure is counted against: an IPv4 address, or the /64 of
/// an IPv6 address (IPv4-mapped IPv6 counts as IPv4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Client {
    /// One IPv4 address.
    V4(std::net::Ipv4Addr),
    /// An IPv6 /64 (the low 64 bits are zero).
    V6(Ipv6Addr),
}

impl Client {
    /// The client `ip` belongs to.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4),
                None => Self::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
            },
        }
    }

    /// Parse what `status` prints (`192.0.2.7`, `2001:db8::/64`) or any
    /// address inside the client.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let a = s.strip_suffix("/64").unwrap_or(s);
        a.parse::<IpAddr>().ok().filter(|ip| ip.is_ipv6() || a.len() == s.len()).map(Self::of)
    }
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4(a) => write!(f, "{a}"),
            Self::V6(a) => write!(f, "{a}/64"),
        }
    }
}

/// Which credential a claim is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The control API: `Authorization: Outpost <device> <secret>`.
    Api,
    /// The OCS endpoint's Basic credentials, counted and blocked per client
    /// address only: all OCS agents share one Basic secret and a DEVICEID is
    /// public, so counting per claimed DEVICEID would give a guesser
    /// `max_auth_failures` more tries for every DEVICEID it can name.
    Ocs,
    /// The status page's login (`crate::web`): an administrator's name and
    /// password, counted per claimed name like the control API.
    Admin,
}

impl Scope {
    /// The identity failures of a claim of `identity` are counted against:
    /// itself for the control API, `*` (the whole address) for OCS Basic.
    pub fn counted_identity(self, identity: &str) -> &str {
        match self {
            Self::Api | Self::Admin => identity,
            Self::Ocs => "*",
        }
    }

    /// Whether an identity that authenticated from a client stays admitted
    /// while the client's address is blocked: never for OCS Basic, whose
    /// identity proves nothing.
    pub fn trusts_identities(self) -> bool {
        self != Self::Ocs
    }

    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Ocs => "ocs",
            Self::Admin => "admin",
        }
    }
}

/// The failure counter of one row (a claim, or a whole client address).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counter {
    /// Failures in the current window.
    pub failures: u32,
    /// Start of the current window (Unix seconds).
    pub window_start: u64,
    /// Blocked while `now < blocked_until` (Unix seconds; 0: never).
    pub blocked_until: u64,
}

impl Counter {
    /// Whether the row blocks requests at `now`.
    pub fn is_blocked(&self, now: u64) -> bool {
        now < self.blocked_until
    }

    /// Seconds until the block ends (0 if none).
    pub fn retry_after(&self, now: u64) -> u64 {
        self.blocked_until.saturating_sub(now)
    }

    /// Count one failure at `now` against `threshold`. Returns whether this
    /// failure started a block. A window starts at its first failure and
    /// lasts `auth_failures_interval`; a block resets the count.
    pub fn fail(&mut self, policy: &Policy, threshold: u32, now: u64) -> bool {
        if self.failures == 0 || now >= self.window_start.saturating_add(policy.auth_failures_interval) {
            self.failures = 0;
            self.window_start = now;
        }
        self.failures = self.failures.saturating_add(1);
        if self.failures >= threshold && !self.is_blocked(now) {
            self.blocked_until = now.saturating_add(policy.client_block_time);
            self.failures = 0;
            return true;
        }
        false
    }

    /// Whether the row can be forgotten at `now`: no block, no live window.
    pub fn is_idle(&self, policy: &Policy, now: u64) -> bool {
        !self.is_blocked(now)
            && (self.failures == 0 || now >= self.window_start.saturating_add(policy.auth_failures_interval))
    }
}

/// What to do with a request before its secret is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Check the secret.
    Open,
    /// Refuse without checking: blocked for this many more seconds.
    Blocked {
        /// Seconds until the block ends.
        retry_after: u64,
    },
}

/// Decide for a claim whose row is `claim`, from a client whose
/// address-wide row is `address`; `trusted` says the claim authenticated
/// from this client within [`TRUST_SECS`].
pub fn gate(now: u64, claim: &Counter, address: &Counter, trusted: bool) -> Gate {
    if claim.is_blocked(now) {
        return Gate::Blocked { retry_after: claim.retry_after(now) };
    }
    if address.is_blocked(now) && !trusted {
        return Gate::Blocked { retry_after: address.retry_after(now) };
    }
    Gate::Open
}

/// Whether a claim that last succeeded at `last_success` (0: never) is
/// trusted at `now`.
pub fn is_trusted(last_success: u64, now: u64) -> bool {
    last_success != 0 && now < last_success.saturating_add(TRUST_SECS)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000;

    #[test]
    fn ten_failures_within_the_interval_block_for_the_block_time() {
        let p = Policy::default();
        let mut c = Counter::default();
        for i in 0..9 {
            assert!(!c.fail(&p, p.max_auth_failures, T0 + i * 10), "failure {}", i + 1);
        }
        assert!(!c.is_blocked(T0 + 90));
        assert!(c.fail(&p, p.max_auth_failures, T0 + 100), "the tenth blocks");
        assert!(c.is_blocked(T0 + 100) && c.is_blocked(T0 + 219));
        assert_eq!(c.retry_after(T0 + 200), 20);
        assert!(!c.is_blocked(T0 + 220), "client_block_time later it is over");
    }

    #[test]
    fn failures_spread_wider_than_the_interval_never_block() {
        let p = Policy::default();
        let mut c = Counter::default();
        for i in 0..100 {
            // Nine per window, then a quiet interval.
            let t = T0 + (i / 9) * 121 + (i % 9);
            assert!(!c.fail(&p, p.max_auth_failures, t));
        }
        assert!(c.is_idle(&p, T0 + 12 * 121));
    }

    #[test]
    fn the_policy_is_configurable() {
        let p = Policy { max_auth_failures: 3, auth_failures_interval: 5, client_block_time: 7, ..Policy::default() };
        let mut c = Counter::default();
        assert!(!c.fail(&p, 3, T0) && !c.fail(&p, 3, T0 + 1));
        assert!(!c.fail(&p, 3, T0 + 5), "the window of T0 is over: this is the first of a new one");
        assert!(!c.fail(&p, 3, T0 + 6) && c.fail(&p, 3, T0 + 7));
        assert_eq!(c.blocked_until, T0 + 14);
    }

    #[test]
    fn a_blocked_claim_is_refused_even_when_trusted() {
        let mut claim = Counter::default();
        let p = Policy::default();
        for _ in 0..10 {
            claim.fail(&p, 10, T0);
        }
        assert_eq!(gate(T0 + 1, &claim, &Counter::default(), true), Gate::Blocked { retry_after: 119 });
    }

    #[test]
    fn an_address_block_spares_identities_that_worked_from_there() {
        let p = Policy::default();
        let mut address = Counter::default();
        let started: Vec<bool> = (0..100).map(|i| address.fail(&p, p.max_address_auth_failures, T0 + i)).collect();
        assert_eq!(started.iter().filter(|b| **b).count(), 1, "blocked once, at the 100th");
        let claim = Counter::default();
        assert_eq!(gate(T0 + 100, &claim, &address, false), Gate::Blocked { retry_after: 119 });
        assert_eq!(gate(T0 + 100, &claim, &address, is_trusted(T0 - 3600, T0 + 100)), Gate::Open);
        assert!(!is_trusted(T0 - TRUST_SECS, T0), "trust expires");
        assert!(!is_trusted(0, T0), "never succeeded");
        assert_eq!(gate(T0 + 220, &claim, &address, false), Gate::Open);
    }

    #[test]
    fn clients_are_ipv4_addresses_or_ipv6_slash_64s() {
        let a = Client::of("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = Client::of("2001:db8:1:2:bbbb::9".parse().unwrap());
        assert_eq!(a, b, "one /64, one client");
        assert_eq!(a.to_string(), "2001:db8:1:2::/64");
        assert_eq!(Client::parse("2001:db8:1:2::/64"), Some(a));
        assert_eq!(Client::parse("2001:db8:1:2::77"), Some(a));
        assert_eq!(Client::of("::ffff:192.0.2.7".parse().unwrap()).to_string(), "192.0.2.7");
        assert_eq!(Client::parse(" 192.0.2.7 "), Some(Client::V4("192.0.2.7".parse().unwrap())));
        assert_eq!(Client::parse("192.0.2.7/64"), None);
        assert_eq!(Client::parse("example.org"), None);
    }

    #[test]
    fn the_policy_is_validated() {
        assert!(Policy::default().validate().is_ok());
        assert!(Policy { max_auth_failures: 0, ..Policy::default() }.validate().is_err());
        assert!(Policy { max_address_auth_failures: 5, ..Policy::default() }.validate().is_err());
        assert!(Policy { networks: Vec::new(), ..Policy::default() }.validate().is_err(), "no one could connect");
        assert!(Policy { admin_networks: Vec::new(), ..Policy::default() }.validate().is_ok(), "no admin routes");
    }
}
