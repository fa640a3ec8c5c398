//! The server's state in SQLite (`DIR/state.db`).
//!
//! Devices (with the SHA-256 of their secret, never the secret), packages,
//! assignments with their OCS status (`WAITING NOTIFICATION` → `NOTIFIED` →
//! the code the agent reported), `--all` assignments that cover future
//! devices, and the ids of reports already applied (duplicates are dropped).
//! What devices authenticate with (client certificates, rotations,
//! revocations) is in `credentials.rs`.

use crate::params;
use crate::time::now_rfc3339;

mod catalog;
pub mod changes;
mod console;
mod credentials;
mod depots;
mod evict;
mod fleet;
mod guard;
mod open;
mod pool;
mod reports;
mod rollout;
mod sql;
#[cfg(test)]
mod testdb;
#[cfg(test)]
pub(crate) use testdb::{test_db, test_db_many, test_db_pair, test_db_url};

pub use catalog::PackageRow;
pub use console::{AdminHash, DeviceRow, HistoryRow, PackageSummary, ProgressRow};
pub use credentials::{Change, Presented, Refusal, Verdict};
pub use depots::Depot;
pub use fleet::{DeviceRow as FleetDeviceRow, GroupRow, valid_group_name};
pub use guard::{BlockRow, Failure, GateRead, OcsLimits, Registration};
pub use open::redact;
pub use pool::{POSTGRES_CONNECTIONS, Pool};
pub use reports::ReportRow;
pub use rollout::{MemberRow, NewRollout, RolloutRow};
pub use sql::{
    Arg, Backend, Cell, Conn, DbResult, Error as DbError, FromCell, OptionalExtension, Params, Row, Stmt, ToArg, Tx,
};

/// Devices registered with `device add` (they authenticate with a secret).
pub const KIND_OUTPOST: &str = "outpost";
/// Devices that appeared through the OCS protocol (identified by DEVICEID only).
pub const KIND_OCS: &str = "ocs";

/// Status of an assignment not yet sent to its device.
pub const WAITING: &str = "WAITING NOTIFICATION";
/// Status of an assignment sent to its device, no result yet.
pub const NOTIFIED: &str = "NOTIFIED";

/// Open handle on the state database.
pub struct Db {
    conn: Conn,
    /// Authentication failures being counted (only blocks and trust are
    /// written to SQLite).
    failures: guard::FailureCounts,
}

/// One row of `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRow {
    /// Package id.
    pub package: u64,
    /// Package name.
    pub name: String,
    /// Device id.
    pub device: String,
    /// OCS status.
    pub status: String,
    /// Last change, RFC 3339.
    pub updated: String,
}

/// A package as recorded by `package add`.
#[derive(Debug, Clone)]
pub struct NewPackage<'a> {
    /// Id.
    pub id: u64,
    /// Display name.
    pub name: &'a str,
    /// `LAUNCH`, `EXECUTE` or `STORE`.
    pub action: &'a str,
    /// Priority.
    pub priority: u8,
    /// Fragment count.
    pub frags: u32,
    /// Archive size in bytes.
    pub size: u64,
    /// Fragments over HTTPS.
    pub https: bool,
}

/// A package offered to a device.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pending {
    /// Package id.
    pub package: u64,
    /// Priority.
    pub priority: u8,
    /// Forced re-deploy.
    pub force: bool,
    /// Fragments over HTTPS (`PROTO="HTTPS"`).
    pub https: bool,
    /// Told of at this poll for the first time (it was WAITING).
    pub new: bool,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS devices(
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, secret_sha256 BLOB, created TEXT NOT NULL, last_seen TEXT);
CREATE TABLE IF NOT EXISTS ocs_history(
    device TEXT NOT NULL REFERENCES devices(id), package INTEGER NOT NULL, PRIMARY KEY(device, package));
CREATE TABLE IF NOT EXISTS packages(
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, action TEXT NOT NULL, priority INTEGER NOT NULL,
    frags INTEGER NOT NULL, size INTEGER NOT NULL, created TEXT NOT NULL, https INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS assign_all(
    package INTEGER PRIMARY KEY REFERENCES packages(id), force INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS assignments(
    package INTEGER NOT NULL REFERENCES packages(id), device TEXT NOT NULL REFERENCES devices(id),
    status TEXT NOT NULL, updated TEXT NOT NULL, force INTEGER NOT NULL,
    PRIMARY KEY(package, device));
DROP INDEX IF EXISTS assignments_by_device;
CREATE INDEX IF NOT EXISTS assignments_of_device ON assignments(device);
CREATE TABLE IF NOT EXISTS reports(
    device TEXT NOT NULL, report_id TEXT NOT NULL, received TEXT NOT NULL,
    PRIMARY KEY(device, report_id));
";

/// A poll's statements. Each finds the device's rows through the
/// `assignments_of_device` index, so a poll costs the same with ten devices
/// or a hundred thousand (the primary key starts with the package).
const POLL_IN_HISTORY: &str = "UPDATE assignments SET status = 'SUCCESS_ALREADY_IN_HISTORY', updated = ?1
     WHERE device = ?2 AND force = 0 AND status IN (?3, ?4)
     AND package IN (SELECT package FROM ocs_history WHERE device = ?2)";
const POLL_PENDING: &str = "SELECT a.package, p.priority, a.force, p.https, a.status FROM assignments a
     JOIN packages p ON p.id = a.package
     WHERE a.device = ?1 AND a.status IN (?2, ?3) ORDER BY p.priority, a.package";
const POLL_NOTIFY: &str = "UPDATE assignments SET status = ?1, updated = ?2 WHERE device = ?3 AND status = ?4";

/// A device's assignments to tell it of (`POLL_PENDING`), `new` if still
/// WAITING.
fn pending_rows(conn: &Conn, device: &str) -> DbResult<Vec<Pending>> {
    let mut st = conn.prepare_cached(POLL_PENDING)?;
    st.query_map(params![device, WAITING, NOTIFIED], |r| {
        Ok(Pending {
            package: r.get::<_, i64>(0)? as u64,
            priority: r.get(1)?,
            force: r.get(2)?,
            https: r.get(3)?,
            new: r.get::<_, String>(4)? == WAITING,
        })
    })?
    .collect()
}

/// [`Db::poll`] in the caller's transaction `tx`.
pub(crate) fn poll_tx(tx: &Tx<'_>, device: &str, ocs_history: bool) -> DbResult<Vec<Pending>> {
    let now = now_rfc3339();
    if ocs_history {
        tx.prepare_cached(POLL_IN_HISTORY)?.execute(params![now, device, WAITING, NOTIFIED])?;
    }
    let rows = pending_rows(tx, device)?;
    // Only a device told of something new has rows to mark.
    if rows.iter().any(|p| p.new) {
        tx.prepare_cached(POLL_NOTIFY)?.execute(params![NOTIFIED, now, device, WAITING])?;
    }
    Ok(rows)
}

impl Db {
    /// Register an Outpost device; `false` if the id exists. Applies `--all` packages.
    /// Without a client certificate: see [`Db::add_device_with_cert`].
    pub fn add_device(&mut self, id: &str, secret_sha256: &[u8; 32]) -> DbResult<bool> {
        self.add_device_with_cert(id, secret_sha256, None)
    }

    /// The stored secret hash of an Outpost device (OCS devices have none).
    pub fn device_secret(&self, id: &str) -> DbResult<Option<Vec<u8>>> {
        let v: Option<Option<Vec<u8>>> = self
            .conn
            .query_row("SELECT secret_sha256 FROM devices WHERE id = ?1 AND kind = ?2", [id, KIND_OUTPOST], |r| {
                r.get(0)
            })
            .optional()?;
        Ok(v.flatten())
    }

    /// Replace the download history an OCS agent sent in its inventory.
    /// `Ok(false)`, and nothing written, unless `device` is an OCS device.
    pub fn set_history(&mut self, device: &str, ids: &[u64]) -> DbResult<bool> {
        let tx = self.conn.transaction()?;
        if !is_ocs(&tx, device)? {
            return Ok(false);
        }
        tx.execute("DELETE FROM ocs_history WHERE device = ?1", [device])?;
        for id in ids {
            tx.execute(
                "INSERT INTO ocs_history(device, package) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                params![device, *id as i64],
            )?;
        }
        tx.commit()?;
        Ok(true)
    }

    /// Apply an OCS status report (no report id: OCS has none). Returns
    /// whether an assignment was updated; only an OCS device's can be.
    pub fn report_ocs(&mut self, device: &str, package: u64, status: &str) -> DbResult<bool> {
        Ok(self.conn.execute(
            "UPDATE assignments SET status = ?1, updated = ?2, force = 0 WHERE device = ?3 AND package = ?4
             AND device IN (SELECT id FROM devices WHERE kind = ?5)",
            params![status, now_rfc3339(), device, package as i64, KIND_OCS],
        )? > 0)
    }

    /// `validate`: forget the assignments of `package` that succeeded.
    pub fn validate(&mut self, package: u64) -> DbResult<usize> {
        self.conn.execute("DELETE FROM assignments WHERE package = ?1 AND status LIKE 'SUCCESS%'", [package as i64])
    }

    /// `unaffect`: remove assignments of `package`; only those not yet
    /// notified with `not_notified`, else all of them and its `--all` rule.
    pub fn unaffect(&mut self, package: u64, not_notified: bool) -> DbResult<usize> {
        let tx = self.conn.transaction()?;
        let n = if not_notified {
            tx.execute("DELETE FROM assignments WHERE package = ?1 AND status = ?2", params![package as i64, WAITING])?
        } else {
            tx.execute("DELETE FROM assign_all WHERE package = ?1", [package as i64])?;
            tx.execute("DELETE FROM assignments WHERE package = ?1", [package as i64])?
        };
        tx.commit()?;
        Ok(n)
    }

    /// Record a package.
    pub fn add_package(&self, p: &NewPackage<'_>) -> DbResult<()> {
        self.conn.execute(
            "INSERT INTO packages(id, name, action, priority, frags, size, created, https)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![p.id as i64, p.name, p.action, p.priority, p.frags, p.size as i64, now_rfc3339(), p.https],
        )?;
        Ok(())
    }

    /// Largest package id so far.
    pub fn max_package_id(&self) -> DbResult<u64> {
        let v: Option<i64> = self.conn.query_row("SELECT MAX(id) FROM packages", [], |r| r.get(0))?;
        Ok(v.unwrap_or(0) as u64)
    }

    /// Whether a package exists (and was not deleted).
    pub fn has_package(&self, id: u64) -> DbResult<bool> {
        let sql = "SELECT 1 FROM packages WHERE id = ?1 AND id NOT IN (SELECT id FROM deleted_packages)";
        Ok(self.conn.query_row(sql, [id as i64], |_| Ok(())).optional()?.is_some())
    }

    /// Whether package `id` was published with its fragments over HTTPS
    /// only (`PROTO=HTTPS`); `false` for an unknown one.
    pub fn package_is_https(&self, id: u64) -> DbResult<bool> {
        Ok(self.package_https(id)?.unwrap_or(false))
    }

    /// [`Db::package_is_https`], `None` for a package that does not exist.
    pub fn package_https(&self, id: u64) -> DbResult<Option<bool>> {
        let q =
            self.conn.prepare_cached("SELECT https FROM packages WHERE id = ?1")?.query_row([id as i64], |r| r.get(0));
        q.optional()
    }

    /// Whether a device exists.
    pub fn has_device(&self, id: &str) -> DbResult<bool> {
        Ok(self.conn.query_row("SELECT 1 FROM devices WHERE id = ?1", [id], |_| Ok(())).optional()?.is_some())
    }

    /// Assign a package to one device (or, with `None`, to every device now
    /// and later). Re-assigning resets the status to WAITING NOTIFICATION.
    pub fn assign(&mut self, package: u64, device: Option<&str>, force: bool) -> DbResult<usize> {
        let tx = self.conn.transaction()?;
        let now = now_rfc3339();
        let n = match device {
            Some(d) => tx.execute(
                "INSERT INTO assignments(package, device, status, updated, force) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(package, device) DO UPDATE SET status = ?3, updated = ?4, force = ?5",
                params![package as i64, d, WAITING, now, force],
            )?,
            None => {
                tx.execute(
                    "INSERT INTO assign_all(package, force) VALUES (?1, ?2)
                     ON CONFLICT(package) DO UPDATE SET force = ?2",
                    params![package as i64, force],
                )?;
                tx.execute(
                    "INSERT INTO assignments(package, device, status, updated, force)
                     SELECT ?1, id, ?2, ?3, ?4 FROM devices WHERE true ON CONFLICT DO NOTHING",
                    params![package as i64, WAITING, now, force],
                )?
            }
        };
        tx.commit()?;
        Ok(n)
    }

    /// What a device must deploy now; marks WAITING ones NOTIFIED. Packages
    /// an OCS agent listed in its history are not sent again unless forced:
    /// they are marked `SUCCESS_ALREADY_IN_HISTORY`, as the OCS server does.
    pub fn poll(&mut self, device: &str) -> DbResult<Vec<Pending>> {
        // What a poll writes (NOTIFIED) may be lost to a power cut without
        // harm: the device is told again. So its commit does not wait for
        // an fsync; the next durable commit (a report, an assignment) syncs
        // it with its own. (The last contact is [`Db::record_contact`]'s.)
        self.relaxed(|db| db.poll_in(device, true))
    }

    /// [`Db::poll`] for an Outpost device, which has no OCS history to
    /// look at: a statement fewer (a round trip fewer on PostgreSQL). A
    /// device with nothing new to be told of (nearly every poll) costs one
    /// read and no transaction.
    pub fn poll_device(&mut self, device: &str) -> DbResult<Vec<Pending>> {
        let rows = pending_rows(&self.conn, device)?;
        if !rows.iter().any(|p| p.new) {
            return Ok(rows);
        }
        self.relaxed(|db| db.poll_in(device, false))
    }

    /// Run `f` with commits that do not wait for an fsync (SQLite's
    /// `synchronous = NORMAL` in WAL mode: durable at the next checkpoint or
    /// the next durable commit), for writes a power cut may lose without
    /// harm (a poll's NOTIFIED and last contact, a device's facts, a
    /// lockout trust row): else every poll would wait for the disk.
    pub(crate) fn relaxed<T>(&mut self, f: impl FnOnce(&mut Self) -> DbResult<T>) -> DbResult<T> {
        self.conn.set_durable(false)?;
        let out = f(self);
        self.conn.set_durable(true)?;
        out
    }

    /// Run `f`, whose durable commits leave the epoch of the answers kept
    /// ([`changes`]) where it is when this process serves: the caller
    /// tells those answers itself which devices the commits concern
    /// ([`crate::poll_cache::PollCache::reported`]), after them and before
    /// it answers anyone.
    pub(crate) fn told<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> T {
        /// Back to the epoch even if `f` panics (the group commit goes on
        /// after a panic).
        struct Reset<'a>(&'a mut Db);
        impl Drop for Reset<'_> {
            fn drop(&mut self) {
                self.0.conn.set_told(false);
            }
        }
        self.conn.set_told(true);
        let reset = Reset(self);
        f(reset.0)
    }

    pub(crate) fn poll_in(&mut self, device: &str, ocs_history: bool) -> DbResult<Vec<Pending>> {
        let tx = self.conn.transaction()?;
        let rows = poll_tx(&tx, device, ocs_history)?;
        tx.commit()?;
        Ok(rows)
    }

    /// Every assignment, optionally of one package.
    pub fn status(&self, package: Option<u64>) -> DbResult<Vec<StatusRow>> {
        let mut st = self.conn.prepare(
            "SELECT a.package, p.name, a.device, a.status, a.updated FROM assignments a
             JOIN packages p ON p.id = a.package WHERE CAST(?1 AS BIGINT) IS NULL OR a.package = ?1
             ORDER BY a.package, a.device",
        )?;
        st.query_map([package.map(|p| p as i64)], |r| {
            Ok(StatusRow {
                package: r.get::<_, i64>(0)? as u64,
                name: r.get(1)?,
                device: r.get(2)?,
                status: r.get(3)?,
                updated: r.get(4)?,
            })
        })?
        .collect()
    }
}

/// Whether `id` is a device of the OCS kind.
fn is_ocs(conn: &Conn, id: &str) -> DbResult<bool> {
    Ok(conn
        .query_row("SELECT 1 FROM devices WHERE id = ?1 AND kind = ?2", [id, KIND_OCS], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Insert a device in `tx`, created at `now` (RFC 3339), applying `--all`
/// packages; `false` if the id exists.
fn insert_device(tx: &Conn, id: &str, kind: &str, secret_sha256: Option<&[u8]>, now: &str) -> DbResult<bool> {
    let n = tx.execute(
        "INSERT INTO devices(id, kind, secret_sha256, created) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
        params![id, kind, secret_sha256, now],
    )?;
    if n == 0 {
        return Ok(false);
    }
    tx.execute(
        "INSERT INTO assignments(package, device, status, updated, force)
         SELECT package, ?1, ?2, ?3, force FROM assign_all WHERE true ON CONFLICT DO NOTHING",
        params![id, WAITING, now],
    )?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(id: u64, action: &'static str, priority: u8, frags: u32, size: u64) -> NewPackage<'static> {
        NewPackage { id, name: "p", action, priority, frags, size, https: false }
    }

    fn db() -> Db {
        test_db("db")
    }

    #[test]
    fn lifecycle_waiting_notified_code_and_duplicates() {
        let mut d = db();
        assert!(d.add_device("pc1", &[1; 32]).unwrap());
        assert!(!d.add_device("pc1", &[2; 32]).unwrap());
        d.add_package(&pkg(10, "EXECUTE", 5, 1, 100)).unwrap();
        d.assign(10, Some("pc1"), false).unwrap();
        assert_eq!(d.status(None).unwrap()[0].status, WAITING);
        assert_eq!(d.poll("pc1").unwrap().len(), 1);
        assert_eq!(d.status(None).unwrap()[0].status, NOTIFIED);
        assert!(d.report("pc1", "r1", 10, "EXIT_CODE_3").unwrap());
        assert!(!d.report("pc1", "r1", 10, "SUCCESS").unwrap(), "duplicate report id is dropped");
        assert_eq!(d.status(Some(10)).unwrap()[0].status, "EXIT_CODE_3");
        assert!(d.poll("pc1").unwrap().is_empty());
    }

    #[test]
    fn ocs_devices_history_validate_unaffect() {
        let mut d = db();
        let dev = "pc-2026-01-01-00-00-00";
        d.add_package(&pkg(20, "EXECUTE", 5, 1, 1)).unwrap();
        d.add_package(&pkg(21, "EXECUTE", 5, 1, 1)).unwrap();
        d.assign(20, None, false).unwrap();
        let lim = OcsLimits { new_devices_per_hour: 10, max_devices: 10, stale_after_days: 7 };
        let client = crate::lockout::Client::parse("192.0.2.7").unwrap();
        let reg = |d: &mut Db, id: &str| d.register_ocs_device(1_800_000_000, client, lim, id).unwrap();
        assert_eq!(reg(&mut d, dev), Registration::New);
        assert_eq!(reg(&mut d, dev), Registration::Known, "idempotent");
        assert_eq!(d.device_secret(dev).unwrap(), None, "OCS devices cannot use the Outpost API");
        d.add_device("outpost-pc", &[1; 32]).unwrap();
        assert_eq!(reg(&mut d, "outpost-pc"), Registration::NotOcs, "no take-over");
        d.assign(21, Some(dev), false).unwrap();
        assert!(d.set_history(dev, &[21]).unwrap());
        let p: Vec<u64> = d.poll(dev).unwrap().into_iter().map(|p| p.package).collect();
        assert_eq!(p, [20], "package 21 is in the agent's history");
        assert!(d.report_ocs(dev, 20, "SUCCESS").unwrap());
        d.assign(20, Some("outpost-pc"), false).unwrap();
        assert!(!d.report_ocs("outpost-pc", 20, "SUCCESS").unwrap(), "an OCS report cannot touch an Outpost device");
        assert!(!d.set_history("outpost-pc", &[20]).unwrap(), "nor plant its history");
        assert_eq!(d.poll("outpost-pc").unwrap().len(), 1, "20 still pending for outpost-pc");
        assert_eq!(d.validate(20).unwrap(), 1);
        assert_eq!(d.unaffect(21, true).unwrap(), 0, "21 is not WAITING any more");
        assert_eq!(d.unaffect(20, false).unwrap(), 1, "outpost-pc's assignment of 20");
        d.add_device("late", &[1; 32]).unwrap();
        assert!(d.status(Some(20)).unwrap().is_empty(), "--all rule removed too");
    }

    #[test]
    fn assign_all_covers_future_devices() {
        let mut d = db();
        d.add_device("a", &[1; 32]).unwrap();
        d.add_package(&pkg(11, "STORE", 5, 1, 1)).unwrap();
        d.assign(11, None, false).unwrap();
        d.add_device("b", &[1; 32]).unwrap();
        let devs: Vec<String> = d.status(None).unwrap().into_iter().map(|r| r.device).collect();
        assert_eq!(devs, ["a", "b"]);
    }

    #[test]
    fn a_poll_finds_its_rows_through_an_index_not_a_scan() {
        let d = db();
        for sql in [POLL_IN_HISTORY, POLL_PENDING, POLL_NOTIFY] {
            let Some(lite) = d.conn.as_sqlite() else {
                eprintln!("skipped: SQLite's query plans (PostgreSQL plans small test tables as scans anyway)");
                return;
            };
            let mut st = lite.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let n = st.parameter_count();
            let args: Vec<&dyn rusqlite::ToSql> = (0..n).map(|_| &"x" as &dyn rusqlite::ToSql).collect();
            let plan: Vec<String> =
                st.query_map(args.as_slice(), |r| r.get::<_, String>(3)).unwrap().collect::<Result<_, _>>().unwrap();
            let scans: Vec<&String> =
                plan.iter().filter(|l| l.starts_with("SCAN a") || l.contains("SCAN assignments")).collect();
            assert!(scans.is_empty(), "{sql}\nscans every assignment: {plan:?}");
        }
    }

    #[test]
    fn reports_stay_durable_after_a_poll_that_was_not() {
        let mut d = db();
        d.add_device("pc1", &[1; 32]).unwrap();
        d.add_package(&pkg(10, "EXECUTE", 5, 1, 100)).unwrap();
        d.assign(10, Some("pc1"), false).unwrap();
        let sync = |d: &Db| match d.backend() {
            Backend::Sqlite => d.conn.query_row("PRAGMA synchronous", [], |r| r.get::<_, i64>(0)).unwrap() == 2,
            Backend::Postgres => {
                d.conn.query_row("SHOW synchronous_commit", [], |r| r.get::<_, String>(0)).unwrap() == "on"
            }
        };
        assert!(sync(&d), "FULL / on");
        assert_eq!(d.poll("pc1").unwrap().len(), 1);
        assert!(sync(&d), "a report after a poll is synced before it is acknowledged");
        assert!(d.report("pc1", "r1", 10, "SUCCESS").unwrap());
    }
}
