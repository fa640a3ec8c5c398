//! The database side of the server's guards: authentication failure
//! counters and blocks ([`crate::lockout`]), the per-client bucket of new
//! OCS DEVICEIDs ([`crate::ratelimit`]) and "log once" marks. Kept in SQLite
//! so that `status` and `unblock` see and change the running server's state.
//! Every table here is bounded: rows are forgotten once idle.
//!
//! Failure *counts* are kept in memory ([`FailureCounts`]): a wrong secret
//! costs no SQLite write under the one database lock. Only a block that
//! starts, and the trust a success earns, are written.

use std::collections::HashMap;

use super::sql::{Conn, OptionalExtension, Row};
use crate::params;

use super::{Backend, Db, DbResult, KIND_OCS};
use crate::lockout::{self, Client, Counter, Gate, Policy, Scope};
use crate::ratelimit::Bucket;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS auth_counters(
    client TEXT NOT NULL, scope TEXT NOT NULL, identity TEXT NOT NULL,
    failures INTEGER NOT NULL, window_start INTEGER NOT NULL, blocked_until INTEGER NOT NULL,
    last_success INTEGER NOT NULL, PRIMARY KEY(client, scope, identity));
CREATE TABLE IF NOT EXISTS ocs_new_devices(client TEXT PRIMARY KEY, units INTEGER NOT NULL, updated INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS log_marks(key TEXT PRIMARY KEY, until INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS devices_kind ON devices(kind);
";

/// The scope and identity of a client's address-wide row.
const ANY: &str = "*";

/// Failure counts held in memory at most; beyond, those whose window is
/// over are forgotten, and if every one is live, all of them.
const MAX_COUNTS: usize = 65_536;

/// A row's key: client, scope, identity.
type Key = (String, &'static str, String);

/// In-memory failure counts (failures, window start) per row.
#[derive(Debug, Default)]
pub struct FailureCounts(HashMap<Key, (u32, u64)>);

impl FailureCounts {
    /// Put the count of `key` into `c` (whose block comes from SQLite).
    fn load(&self, key: &Key, c: &mut Counter) {
        (c.failures, c.window_start) = self.0.get(key).copied().unwrap_or((0, 0));
    }

    /// Keep the count of `c` under `key`.
    fn store(&mut self, now: u64, policy: &Policy, key: Key, c: &Counter) {
        if c.failures == 0 {
            self.0.remove(&key);
            return;
        }
        if !self.0.contains_key(&key) && self.0.len() >= MAX_COUNTS {
            let live = |(f, start): &(u32, u64)| *f > 0 && now < start.saturating_add(policy.auth_failures_interval);
            self.0.retain(|_, v| live(v));
            if self.0.len() >= MAX_COUNTS {
                log::warn!(target: "outpost", "{MAX_COUNTS} live authentication failure counts: forgetting them all");
                self.0.clear();
            }
        }
        self.0.insert(key, (c.failures, c.window_start));
    }
}

/// What a failure did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Failure {
    /// It blocked the claimed identity from this client.
    pub claim_blocked: bool,
    /// It blocked the client's address (for identities not trusted there).
    pub address_blocked: bool,
}

/// One blocked row, for `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockRow {
    /// The client (`192.0.2.7`, `2001:db8::/64`).
    pub client: String,
    /// `api`, `ocs`, or `*` for the whole address.
    pub scope: String,
    /// The claimed identity, or `*` for the whole address.
    pub identity: String,
    /// End of the block (Unix seconds).
    pub blocked_until: u64,
}

/// The outcome of a DEVICEID's first contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    /// An OCS device already known.
    Known,
    /// Registered now.
    New,
    /// Registered now, in the place of a stale OCS device (see `db/evict.rs`).
    Evicted {
        /// The id of the device forgotten.
        evicted: String,
    },
    /// The id belongs to an Outpost device: an OCS client must not touch it.
    NotOcs,
    /// This client registered its share of new DEVICEIDs; retry after so many seconds.
    RateLimited {
        /// Seconds until the client may register one more.
        retry_after: u64,
    },
    /// The server holds its maximum of OCS devices, none of them stale.
    Full,
}

/// Limits on OCS devices (from `[ocs]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OcsLimits {
    /// New DEVICEIDs one client may register per hour (the bucket's size too).
    pub new_devices_per_hour: u32,
    /// OCS devices the server holds at most.
    pub max_devices: u64,
    /// Days without contact after which a device that never reported nor
    /// sent a history may be evicted for a new one; 0: never.
    pub stale_after_days: u32,
}

fn to_i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// The counter and last success in columns `i..i + 4` of `r` (failures,
/// window start, blocked until, last success).
fn counter_at(r: &Row, i: usize) -> DbResult<(Counter, u64)> {
    let c = Counter {
        failures: u32::try_from(r.get::<_, i64>(i)?).unwrap_or(0),
        window_start: to_u(r.get(i + 1)?),
        blocked_until: to_u(r.get(i + 2)?),
    };
    Ok((c, to_u(r.get(i + 3)?)))
}

/// A counter row: the counter, its last success, whether it exists.
type Read = (Counter, u64, bool);

/// What [`Db::auth_gate_read`] decided and read.
#[derive(Debug, Clone, Copy)]
pub struct GateRead {
    /// Whether to check the secret.
    pub gate: Gate,
    claim: Read,
}

/// A claim's row and its client's address-wide row, in one query.
fn read_claim_and_address(conn: &Conn, client: &str, scope: &str, identity: &str) -> DbResult<(Read, Read)> {
    let mut st = conn.prepare_cached(
        // Two primary-key lookups (an OR here made PostgreSQL scan the table).
        "SELECT scope, identity, failures, window_start, blocked_until, last_success FROM auth_counters
         WHERE client = ?1 AND scope = ?2 AND identity = ?3
         UNION ALL
         SELECT scope, identity, failures, window_start, blocked_until, last_success FROM auth_counters
         WHERE client = ?1 AND scope = ?4 AND identity = ?4",
    )?;
    let rows = st.query_map(params![client, scope, identity, ANY], |r| {
        let (c, last) = counter_at(r, 2)?;
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, c, last))
    })?;
    let (mut claim, mut address) = ((Counter::default(), 0, false), (Counter::default(), 0, false));
    for row in rows {
        let (s, i, c, last) = row?;
        if s == scope && i == identity {
            claim = (c, last, true);
        } else {
            address = (c, last, true);
        }
    }
    Ok((claim, address))
}

/// PostgreSQL: a counter row, made if missing and locked until the end of
/// the transaction (`FOR UPDATE`).
fn lock_counter(tx: &Conn, (client, scope, identity): (&str, &str, &str)) -> DbResult<(Counter, u64)> {
    tx.execute(
        "INSERT INTO auth_counters(client, scope, identity, failures, window_start, blocked_until, last_success)
         VALUES (?1, ?2, ?3, 0, 0, 0, 0) ON CONFLICT DO NOTHING",
        params![client, scope, identity],
    )?;
    tx.query_row(
        "SELECT failures, window_start, blocked_until, last_success FROM auth_counters
         WHERE client = ?1 AND scope = ?2 AND identity = ?3 FOR UPDATE",
        params![client, scope, identity],
        |r| counter_at(r, 0),
    )
}

/// Forget idle rows, so the table holds only live blocks and trust.
fn forget_idle(tx: &Conn, now: u64, policy: &Policy) -> DbResult<()> {
    tx.execute(
        "DELETE FROM auth_counters WHERE blocked_until <= ?1 AND (failures = 0 OR window_start + ?2 <= ?1)
         AND (last_success = 0 OR last_success + ?3 <= ?1)",
        params![to_i(now), to_i(policy.auth_failures_interval), to_i(lockout::TRUST_SECS)],
    )?;
    Ok(())
}

fn write_counter(
    conn: &Conn,
    (client, scope, identity): (&str, &str, &str),
    c: &Counter,
    last_success: u64,
) -> DbResult<()> {
    conn.execute(
        "INSERT INTO auth_counters(client, scope, identity, failures, window_start, blocked_until, last_success)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT(client, scope, identity) DO UPDATE SET failures = ?4, window_start = ?5,
         blocked_until = ?6, last_success = ?7",
        params![client, scope, identity, c.failures, to_i(c.window_start), to_i(c.blocked_until), to_i(last_success)],
    )?;
    Ok(())
}

impl Db {
    /// Whether `identity` from `client` may have its secret checked at `now`.
    pub fn auth_gate(&self, now: u64, client: Client, scope: Scope, identity: &str) -> DbResult<Gate> {
        Ok(self.auth_gate_read(now, client, scope, identity)?.gate)
    }

    /// [`Db::auth_gate`], with what it read of the claim, for
    /// [`Db::auth_succeeded`] (a read fewer per request).
    pub fn auth_gate_read(&self, now: u64, client: Client, scope: Scope, identity: &str) -> DbResult<GateRead> {
        let c = client.to_string();
        let (claim, (address, _, _)) = read_claim_and_address(&self.conn, &c, scope.as_str(), identity)?;
        let trusted = scope.trusts_identities() && lockout::is_trusted(claim.1, now);
        Ok(GateRead { gate: lockout::gate(now, &claim.0, &address, trusted), claim })
    }

    /// Count a failed authentication of `identity` from `client` at `now`:
    /// on SQLite in memory, the rows written only when a block starts; on
    /// PostgreSQL, which several instances and connections share, in the
    /// rows themselves, locked while they change (concurrent failures
    /// must not count as one).
    pub fn auth_failed(
        &mut self,
        now: u64,
        policy: &Policy,
        client: Client,
        scope: Scope,
        identity: &str,
    ) -> DbResult<Failure> {
        let c = client.to_string();
        let claim_id = (c.as_str(), scope.as_str(), identity);
        let address_id = (c.as_str(), ANY, ANY);
        if self.conn.backend() == Backend::Postgres {
            return self.relaxed(|db| {
                let tx = db.conn.transaction()?;
                // Claim before address, in every transaction: no deadlock.
                let (mut claim, last_success) = lock_counter(&tx, claim_id)?;
                let (mut address, _) = lock_counter(&tx, address_id)?;
                let out = Failure {
                    claim_blocked: claim.fail(policy, policy.max_auth_failures, now),
                    address_blocked: address.fail(policy, policy.max_address_auth_failures, now),
                };
                write_counter(&tx, claim_id, &claim, last_success)?;
                write_counter(&tx, address_id, &address, 0)?;
                forget_idle(&tx, now, policy)?;
                tx.commit()?;
                Ok(out)
            });
        }
        let ((mut claim, last_success, _), (mut address, _, _)) =
            read_claim_and_address(&self.conn, &c, scope.as_str(), identity)?;
        let (claim_key, address_key) =
            ((c.clone(), scope.as_str(), identity.to_string()), (c.clone(), ANY, ANY.into()));
        self.failures.load(&claim_key, &mut claim);
        self.failures.load(&address_key, &mut address);
        let out = Failure {
            claim_blocked: claim.fail(policy, policy.max_auth_failures, now),
            address_blocked: address.fail(policy, policy.max_address_auth_failures, now),
        };
        self.failures.store(now, policy, claim_key, &claim);
        self.failures.store(now, policy, address_key, &address);
        if !out.claim_blocked && !out.address_blocked {
            return Ok(out);
        }
        let tx = self.conn.transaction()?;
        if out.claim_blocked {
            write_counter(&tx, claim_id, &claim, last_success)?;
        }
        if out.address_blocked {
            write_counter(&tx, address_id, &address, 0)?;
        }
        forget_idle(&tx, now, policy)?;
        tx.commit()?;
        Ok(out)
    }

    /// Record a successful authentication: the claim's failures are cleared
    /// and it is trusted from `client`. `read` is what the gate of the same
    /// request read ([`Db::auth_gate_read`]). Writes only when something
    /// changes or the trust is older than [`lockout::TRUST_REFRESH_SECS`].
    pub fn auth_succeeded(
        &mut self,
        now: u64,
        client: Client,
        scope: Scope,
        identity: &str,
        read: &GateRead,
    ) -> DbResult<()> {
        let c = client.to_string();
        let (claim, last_success, existed) = read.claim;
        self.failures.0.remove(&(c.clone(), scope.as_str(), identity.to_string()));
        let stale = now >= last_success.saturating_add(lockout::TRUST_REFRESH_SECS);
        if !existed || claim.failures > 0 || stale {
            // Losing this row to a power cut costs nothing (the next success
            // writes it again), so its commit does not wait for an fsync:
            // else every device's first poll of the day would. A block is
            // left as the row holds it now, not as `claim` read it: on
            // PostgreSQL another instance may have set one since.
            self.relaxed(|db| {
                db.conn.execute(
                    "INSERT INTO auth_counters(client, scope, identity, failures, window_start, blocked_until, last_success)
                     VALUES (?1, ?2, ?3, 0, 0, 0, ?4)
                     ON CONFLICT(client, scope, identity) DO UPDATE SET failures = 0, window_start = 0, last_success = ?4",
                    params![c, scope.as_str(), identity, to_i(now)],
                )
            })?;
        }
        Ok(())
    }

    /// Rows blocked at `now`, longest block first.
    pub fn blocked(&self, now: u64) -> DbResult<Vec<BlockRow>> {
        let mut st = self.conn.prepare(
            "SELECT client, scope, identity, blocked_until FROM auth_counters WHERE blocked_until > ?1
             ORDER BY blocked_until DESC, client, scope, identity",
        )?;
        st.query_map([to_i(now)], |r| {
            Ok(BlockRow { client: r.get(0)?, scope: r.get(1)?, identity: r.get(2)?, blocked_until: to_u(r.get(3)?) })
        })?
        .collect()
    }

    /// Lift every block of `client` and clear its failure counts; returns
    /// how many rows were blocked at `now`. The running server sees it at
    /// its next request.
    pub fn unblock(&mut self, now: u64, client: Client) -> DbResult<usize> {
        let c = client.to_string();
        let tx = self.conn.transaction()?;
        let n: i64 = tx.query_row(
            "SELECT COUNT(*) FROM auth_counters WHERE client = ?1 AND blocked_until > ?2",
            params![c, to_i(now)],
            |r| r.get(0),
        )?;
        tx.execute("UPDATE auth_counters SET failures = 0, blocked_until = 0 WHERE client = ?1", [&c])?;
        tx.commit()?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// The kind of a device (`None`: unknown).
    pub fn device_kind(&self, id: &str) -> DbResult<Option<String>> {
        self.conn.query_row("SELECT kind FROM devices WHERE id = ?1", [id], |r| r.get(0)).optional()
    }

    /// Register a DEVICEID from `client` if it is new, within `limits`: the
    /// client's bucket is checked first (cheap), then the total; at the
    /// total, the stalest OCS device makes room if there is one.
    pub fn register_ocs_device(
        &mut self,
        now: u64,
        client: Client,
        limits: OcsLimits,
        id: &str,
    ) -> DbResult<Registration> {
        match self.device_kind(id)?.as_deref() {
            Some(KIND_OCS) => return Ok(Registration::Known),
            Some(_) => return Ok(Registration::NotOcs),
            None => {}
        }
        let c = client.to_string();
        let per_hour = limits.new_devices_per_hour;
        let tx = self.conn.transaction()?;
        if tx.backend() == Backend::Postgres {
            // Instances and connections register one at a time: the bucket
            // and the device count are read and written by one at once.
            tx.execute("SELECT pg_advisory_xact_lock(1869902704)", [])?;
        }
        let bucket = tx
            .query_row("SELECT units, updated FROM ocs_new_devices WHERE client = ?1", [&c], |r| {
                Ok(Bucket { units: to_u(r.get(0)?), updated: to_u(r.get(1)?) })
            })
            .optional()?;
        let existed = bucket.is_some();
        let bucket = match bucket.unwrap_or_else(|| Bucket::full(per_hour, now)).take(per_hour, now) {
            Ok(b) => b,
            Err(retry_after) => return Ok(Registration::RateLimited { retry_after }),
        };
        let count: i64 = tx.query_row("SELECT COUNT(*) FROM devices WHERE kind = ?1", [KIND_OCS], |r| r.get(0))?;
        let evicted = if to_u(count) >= limits.max_devices {
            match super::evict::evict_stalest(&tx, now, limits.stale_after_days)? {
                Some(evicted) => Some(evicted),
                None => return Ok(Registration::Full),
            }
        } else {
            None
        };
        if !super::insert_device(&tx, id, KIND_OCS, None, &crate::time::rfc3339(now))? {
            return Ok(Registration::Known);
        }
        if !existed {
            // A new client: forget the buckets that are full again (Bucket's refill, in SQL).
            tx.execute(
                "DELETE FROM ocs_new_devices WHERE units + (?1 - updated) * ?2 >= ?2 * ?3",
                params![to_i(now), per_hour, to_i(crate::ratelimit::UNIT)],
            )?;
        }
        tx.execute(
            "INSERT INTO ocs_new_devices(client, units, updated) VALUES (?1, ?2, ?3)
             ON CONFLICT(client) DO UPDATE SET units = ?2, updated = ?3",
            params![c, to_i(bucket.units), to_i(bucket.updated)],
        )?;
        tx.commit()?;
        Ok(evicted.map_or(Registration::New, |evicted| Registration::Evicted { evicted }))
    }

    /// "Log once": `true` (and a mark until `now + quiet`) if `key` was not
    /// logged within the last `quiet` seconds. Writes only when it says yes.
    pub fn should_log(&mut self, now: u64, key: &str, quiet: u64) -> DbResult<bool> {
        let until: Option<i64> =
            self.conn.query_row("SELECT until FROM log_marks WHERE key = ?1", [key], |r| r.get(0)).optional()?;
        if until.is_some_and(|u| to_u(u) > now) {
            return Ok(false);
        }
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM log_marks WHERE until <= ?1", [to_i(now)])?;
        tx.execute(
            "INSERT INTO log_marks(key, until) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET until = ?2",
            params![key, to_i(now.saturating_add(quiet))],
        )?;
        tx.commit()?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests;
