//! Rate limit for authentication-failure log lines, per client, in memory:
//! a client's first failure is logged, then at most one line every
//! [`QUIET_SECS`], carrying how many failures went unlogged in between. A
//! guessing client costs the log a line a minute, not a line a request.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::lockout::Client;

/// Seconds between two failure lines for one client.
pub const QUIET_SECS: u64 = 60;

/// Clients remembered at most; beyond (once quiet ones are forgotten), a
/// failure from a new client is not logged (blocks still are).
pub const MAX_CLIENTS: usize = 16_384;

/// Per-client marks.
#[derive(Debug, Default)]
pub struct FailureLog {
    clients: Mutex<HashMap<Client, Mark>>,
}

#[derive(Debug, Clone, Copy)]
struct Mark {
    /// No line before this (Unix seconds).
    quiet_until: u64,
    /// Failures not logged since the last line.
    unlogged: u64,
}

impl FailureLog {
    /// A failure from `client` at `now`: `Some(unlogged)` if it is to be
    /// logged (with the count of failures since the last line that were
    /// not), `None` to keep quiet.
    pub fn note(&self, now: u64, client: Client) -> Option<u64> {
        let mut map = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if !map.contains_key(&client) && map.len() >= MAX_CLIENTS {
            map.retain(|_, m| m.quiet_until > now || m.unlogged > 0);
            if map.len() >= MAX_CLIENTS {
                return None;
            }
        }
        let m = map.entry(client).or_insert(Mark { quiet_until: 0, unlogged: 0 });
        if now < m.quiet_until {
            m.unlogged += 1;
            return None;
        }
        let unlogged = m.unlogged;
        *m = Mark { quiet_until: now.saturating_add(QUIET_SECS), unlogged: 0 };
        Some(unlogged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_a_minute_per_client_with_the_count() {
        let log = FailureLog::default();
        let (a, b) = (Client::parse("192.0.2.1").unwrap(), Client::parse("192.0.2.2").unwrap());
        let t0 = 1_800_000_000;
        assert_eq!(log.note(t0, a), Some(0), "the first is logged");
        assert_eq!((1..1000).filter_map(|i| log.note(t0 + i % 60, a)).count(), 0, "then quiet for a minute");
        assert_eq!(log.note(t0 + 1, b), Some(0), "clients apart");
        assert_eq!(log.note(t0 + 60, a), Some(999), "a minute on: one line with the count");
        assert_eq!(log.note(t0 + 61, a), None);
    }
}
