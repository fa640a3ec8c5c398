//! Connection limits: what `[limits]` in `server.toml` says, and the gate
//! that counts open connections, in all and per client address, so that no
//! client can hold every connection or descriptor the server has.
//!
//! ```text
//!  accept ─► Gate::admit(peer, side) ─► Ticket (dropped with the connection)
//!                 └─ over a cap ─► refused at once: 503 on HTTP, closed on HTTPS
//! ```
//!
//! Plain HTTP (the WAN-facing fragment and OCS listener) may hold at most
//! [`PLAIN_SHARE_PERCENT`] of the total, so a flood of slow plain-HTTP
//! clients always leaves room for the HTTPS control API.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::serve::Side;

/// The part of the total cap, in percent, that plain HTTP connections may
/// hold; the rest is kept for HTTPS.
pub const PLAIN_SHARE_PERCENT: usize = 75;

/// Descriptors kept for everything but connections: listeners, the database
/// and its journal, the reactor, the signal pipe, standard streams.
pub const RESERVED_FDS: u64 = 32;
/// Descriptors one connection may hold: its socket and the file it serves.
pub const FDS_PER_CONNECTION: u64 = 2;
/// OCS requests handled at once (each may inflate to 8 MiB and parse it);
/// more wait their turn without holding a thread.
pub const MAX_OCS_IN_FLIGHT: usize = 4;
/// First pause after a failed `accept` (at the descriptor limit the kernel
/// keeps the connection queued, and retrying at once spins a core).
pub const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest pause between `accept` retries.
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// `[limits]`: how many connections the server holds and how long it waits
/// on a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Connections held at once, both listeners together; lowered at start
    /// to what the descriptor limit allows.
    pub max_connections: usize,
    /// Connections held at once for one client address (an IPv6 client
    /// counts by its /64). Many devices behind one NAT share an address:
    /// keep this above the number of them that download at the same time.
    pub max_connections_per_address: usize,
    /// Seconds a response may make no progress (a client that stopped
    /// reading) before the connection is dropped.
    pub write_timeout: u64,
    /// Seconds a kept-alive connection may wait for its next request.
    pub idle_timeout: u64,
    /// Bytes a second a response must average over each `write_timeout`
    /// seconds once its first `write_timeout` seconds have passed; a client
    /// that reads slower is dropped. 0: no minimum.
    pub min_send_rate: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            max_connections_per_address: 256,
            write_timeout: 60,
            idle_timeout: 15,
            min_send_rate: 1024,
        }
    }
}

impl Limits {
    /// The total cap for a soft descriptor limit of `nofile`: at most
    /// `max_connections`, and never more than the descriptors left once
    /// [`RESERVED_FDS`] are kept (at least one).
    pub fn connection_cap(&self, nofile: u64) -> usize {
        let by_fds = nofile.saturating_sub(RESERVED_FDS) / FDS_PER_CONNECTION;
        usize::try_from(by_fds).unwrap_or(usize::MAX).min(self.max_connections).max(1)
    }

    /// [`Self::write_timeout`] as a duration.
    pub fn write_timeout(&self) -> Duration {
        Duration::from_secs(self.write_timeout.max(1))
    }

    /// [`Self::idle_timeout`] as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout.max(1))
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The server holds its total cap.
    Full,
    /// This client address holds its cap.
    AddressFull,
    /// Plain HTTP holds its share of the total cap.
    PlainFull,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Full => "connection cap reached",
            Self::AddressFull => "connection cap for this address reached",
            Self::PlainFull => "connection cap for plain HTTP reached",
        })
    }
}

/// Counts open connections against the caps.
#[derive(Debug)]
pub struct Gate {
    total_cap: usize,
    plain_cap: usize,
    per_address_cap: usize,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    /// Plain HTTP connections among them.
    plain: usize,
    /// Only addresses with open connections (so at most `total_cap` entries).
    per_address: HashMap<IpAddr, usize>,
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct Ticket {
    gate: Arc<Gate>,
    key: IpAddr,
    plain: bool,
}

/// What counts as one client: an IPv4 address (IPv4-mapped ones included),
/// or an IPv6 /64, which one subscriber gets whole.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl Gate {
    /// A gate holding at most `total_cap` connections,
    /// [`PLAIN_SHARE_PERCENT`] of them plain HTTP, `per_address_cap` from
    /// one client.
    pub fn new(total_cap: usize, per_address_cap: usize) -> Arc<Self> {
        let plain_cap = (total_cap.saturating_mul(PLAIN_SHARE_PERCENT) / 100).max(1);
        Arc::new(Self { total_cap, plain_cap, per_address_cap: per_address_cap.max(1), counts: Mutex::default() })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        // The counts stay consistent whatever panicked while holding them.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admit a connection from `peer` on `side`'s listener, or say which cap
    /// it would exceed.
    pub fn admit(self: &Arc<Self>, peer: IpAddr, side: Side) -> Result<Ticket, Refusal> {
        let key = client_key(peer);
        let plain = side == Side::Http;
        let mut c = self.counts();
        if c.total >= self.total_cap {
            return Err(Refusal::Full);
        }
        if plain && c.plain >= self.plain_cap {
            return Err(Refusal::PlainFull);
        }
        let mine = c.per_address.entry(key).or_insert(0);
        if *mine >= self.per_address_cap {
            return Err(Refusal::AddressFull);
        }
        *mine += 1;
        c.total += 1;
        c.plain += usize::from(plain);
        Ok(Ticket { gate: self.clone(), key, plain })
    }

    /// The total cap.
    pub fn total_cap(&self) -> usize {
        self.total_cap
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.counts().total
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut c = self.gate.counts();
        c.total = c.total.saturating_sub(1);
        c.plain = c.plain.saturating_sub(usize::from(self.plain));
        if let Some(n) = c.per_address.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                c.per_address.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn caps_hold_in_all_and_per_address_and_free_on_drop() {
        let gate = Gate::new(3, 2);
        let a1 = gate.admit(ip("192.0.2.1"), Side::Https).unwrap();
        let _a2 = gate.admit(ip("192.0.2.1"), Side::Https).unwrap();
        assert_eq!(gate.admit(ip("192.0.2.1"), Side::Https).unwrap_err(), Refusal::AddressFull);
        let _b = gate.admit(ip("192.0.2.2"), Side::Https).unwrap();
        assert_eq!(gate.admit(ip("192.0.2.3"), Side::Https).unwrap_err(), Refusal::Full);
        assert_eq!(gate.open(), 3);
        drop(a1);
        assert_eq!(gate.open(), 2);
        let _a3 = gate.admit(ip("192.0.2.1"), Side::Https).unwrap();
    }

    #[test]
    fn plain_http_holds_at_most_its_share_and_https_the_rest() {
        let gate = Gate::new(8, 100);
        let plain: Vec<_> = (0..6).map(|i| gate.admit(ip(&format!("192.0.2.{i}")), Side::Http).unwrap()).collect();
        assert_eq!(gate.admit(ip("192.0.2.99"), Side::Http).unwrap_err(), Refusal::PlainFull);
        let _s1 = gate.admit(ip("192.0.2.99"), Side::Https).unwrap();
        let _s2 = gate.admit(ip("192.0.2.98"), Side::Https).unwrap();
        assert_eq!(gate.admit(ip("192.0.2.97"), Side::Https).unwrap_err(), Refusal::Full);
        drop(plain);
        let _p = gate.admit(ip("192.0.2.99"), Side::Http).unwrap();
    }

    #[test]
    fn an_ipv6_client_counts_by_its_slash_64() {
        let gate = Gate::new(10, 1);
        let _a = gate.admit(ip("2001:db8:1:2::1"), Side::Https).unwrap();
        assert_eq!(gate.admit(ip("2001:db8:1:2:ffff::9"), Side::Https).unwrap_err(), Refusal::AddressFull);
        let _b = gate.admit(ip("2001:db8:1:3::1"), Side::Https).unwrap();
        let _c = gate.admit(ip("192.0.2.1"), Side::Https).unwrap();
        assert_eq!(
            gate.admit(ip("::ffff:192.0.2.1"), Side::Https).unwrap_err(),
            Refusal::AddressFull,
            "IPv4-mapped is IPv4"
        );
    }

    #[test]
    fn the_total_cap_follows_the_descriptor_limit() {
        let l = Limits::default();
        assert_eq!(l.connection_cap(1_048_576), 4096);
        assert_eq!(l.connection_cap(1024), (1024 - 32) / 2);
        assert_eq!(l.connection_cap(10), 1);
        assert_eq!(l.connection_cap(u64::MAX), 4096);
    }

    #[test]
    fn limits_read_from_toml_with_defaults() {
        let l: Limits = toml::from_str("write_timeout = 5").unwrap();
        assert_eq!(l, Limits { write_timeout: 5, ..Limits::default() });
        assert_eq!(Limits::default().min_send_rate, 1024);
        assert!(toml::from_str::<Limits>("max_conections = 5").is_err(), "typos are refused");
    }
}
