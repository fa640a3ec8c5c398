//! Connection limits: what `[limits]` in `server.toml` says, and the gate
//! that counts open connections, in all and per client address, so that no
//! client can hold every connection or descriptor the server has.
//!
//! ```text
//!  accept ─► Gate::admit(peer) ─► Ticket (dropped with the connection)
//!                 └─ over a cap ─► refused at once: 503 on HTTP, closed on HTTPS
//! ```

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

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
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_connections: 4096, max_connections_per_address: 256, write_timeout: 60, idle_timeout: 15 }
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
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Full => "connection cap reached",
            Self::AddressFull => "connection cap for this address reached",
        })
    }
}

/// Counts open connections against the caps.
#[derive(Debug)]
pub struct Gate {
    total_cap: usize,
    per_address_cap: usize,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    /// Only addresses with open connections (so at most `total_cap` entries).
    per_address: HashMap<IpAddr, usize>,
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct Ticket {
    gate: Arc<Gate>,
    key: IpAddr,
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
    /// A gate holding at most `total_cap` connections, `per_address_cap`
    /// from one client.
    pub fn new(total_cap: usize, per_address_cap: usize) -> Arc<Self> {
        Arc::new(Self { total_cap, per_address_cap: per_address_cap.max(1), counts: Mutex::default() })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        // The counts stay consistent whatever panicked while holding them.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admit a connection from `peer`, or say which cap it would exceed.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Ticket, Refusal> {
        let key = client_key(peer);
        let mut c = self.counts();
        if c.total >= self.total_cap {
            return Err(Refusal::Full);
        }
        let mine = c.per_address.entry(key).or_insert(0);
        if *mine >= self.per_address_cap {
            return Err(Refusal::AddressFull);
        }
        *mine += 1;
        c.total += 1;
        Ok(Ticket { gate: self.clone(), key })
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
        let a1 = gate.admit(ip("192.0.2.1")).unwrap();
        let _a2 = gate.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(gate.admit(ip("192.0.2.1")).unwrap_err(), Refusal::AddressFull);
        let _b = gate.admit(ip("192.0.2.2")).unwrap();
        assert_eq!(gate.admit(ip("192.0.2.3")).unwrap_err(), Refusal::Full);
        assert_eq!(gate.open(), 3);
        drop(a1);
        assert_eq!(gate.open(), 2);
        let _a3 = gate.admit(ip("192.0.2.1")).unwrap();
    }

    #[test]
    fn an_ipv6_client_counts_by_its_slash_64() {
        let gate = Gate::new(10, 1);
        let _a = gate.admit(ip("2001:db8:1:2::1")).unwrap();
        assert_eq!(gate.admit(ip("2001:db8:1:2:ffff::9")).unwrap_err(), Refusal::AddressFull);
        let _b = gate.admit(ip("2001:db8:1:3::1")).unwrap();
        let _c = gate.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(gate.admit(ip("::ffff:192.0.2.1")).unwrap_err(), Refusal::AddressFull, "IPv4-mapped is IPv4");
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
        assert!(toml::from_str::<Limits>("max_conections = 5").is_err(), "typos are refused");
    }
}
