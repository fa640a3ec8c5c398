//! What the status page (`crate::web`) keeps and reads: administrators
//! (PBKDF2 password hashes), their sessions (SHA-256 of the session id,
//! never the id), the download progress agents report with their polls,
//! and a bounded history of each device's status changes (kept by a
//! trigger on `assignments`, so no other statement has to remember it).

use super::sql::OptionalExtension;
use crate::params;

use super::{Db, DbResult, NOTIFIED, WAITING};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS admins(
    name TEXT PRIMARY KEY, salt BLOB NOT NULL, iterations INTEGER NOT NULL, hash BLOB NOT NULL, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS admin_sessions(
    id_sha256 BLOB PRIMARY KEY, admin TEXT NOT NULL, expires INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS progress(
    device TEXT NOT NULL, package INTEGER NOT NULL, held INTEGER NOT NULL, total INTEGER NOT NULL,
    rate INTEGER NOT NULL, at INTEGER NOT NULL, PRIMARY KEY(device, package));
CREATE TABLE IF NOT EXISTS status_history(
    device TEXT NOT NULL, package INTEGER NOT NULL, status TEXT NOT NULL, at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS status_history_by_device ON status_history(device);
CREATE TRIGGER IF NOT EXISTS status_history_insert AFTER INSERT ON assignments BEGIN
    INSERT INTO status_history(device, package, status, at) VALUES (NEW.device, NEW.package, NEW.status, NEW.updated);
END;
CREATE TRIGGER IF NOT EXISTS status_history_update AFTER UPDATE OF status ON assignments
    WHEN OLD.status IS NOT NEW.status BEGIN
    INSERT INTO status_history(device, package, status, at) VALUES (NEW.device, NEW.package, NEW.status, NEW.updated);
    DELETE FROM status_history WHERE device = NEW.device AND rowid <= (
        SELECT rowid FROM status_history WHERE device = NEW.device ORDER BY rowid DESC LIMIT 1 OFFSET 200);
    DELETE FROM progress WHERE device = NEW.device AND package = NEW.package;
END;
CREATE TRIGGER IF NOT EXISTS progress_forget AFTER DELETE ON assignments BEGIN
    DELETE FROM progress WHERE device = OLD.device AND package = OLD.package;
END;
";

/// Status changes kept per device (older ones are dropped).
pub const HISTORY_PER_DEVICE: usize = 200;

/// An administrator's stored password hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminHash {
    /// Random salt.
    pub salt: Vec<u8>,
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// PBKDF2-HMAC-SHA256 output.
    pub hash: Vec<u8>,
}

/// One package on the status page: the counts the OCS console shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageSummary {
    /// Id.
    pub id: u64,
    /// Display name.
    pub name: String,
    /// Priority (0 first).
    pub priority: u8,
    /// Archive size, bytes.
    pub size: u64,
    /// Assignments waiting notification.
    pub waiting: u64,
    /// Notified, no result yet.
    pub notified: u64,
    /// `SUCCESS…`.
    pub success: u64,
    /// Anything else.
    pub errors: u64,
}

/// One device's assignment of a package, with its progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRow {
    /// Package id.
    pub package: u64,
    /// Package name.
    pub name: String,
    /// Device id.
    pub device: String,
    /// OCS status.
    pub status: String,
    /// Last status change (RFC 3339).
    pub updated: String,
    /// Last poll (RFC 3339), if any.
    pub last_seen: Option<String>,
    /// Download progress last reported, if any.
    pub progress: Option<ProgressRow>,
}

/// Download progress as an agent reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgressRow {
    /// Bytes held.
    pub held: u64,
    /// Bytes in all.
    pub total: u64,
    /// Current rate, bytes/s.
    pub rate: u64,
    /// When reported (Unix seconds).
    pub at: u64,
}

/// One status change of a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRow {
    /// Package id.
    pub package: u64,
    /// The new status.
    pub status: String,
    /// When (RFC 3339).
    pub at: String,
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Store one progress row in `tx` if `package` is assigned to `device` and
/// still `NOTIFIED` (a report ends the download; its row is dropped).
fn put_one(tx: &super::Conn, device: &str, package: u64, p: &ProgressRow) -> DbResult<usize> {
    tx.execute(
        "INSERT INTO progress(device, package, held, total, rate, at)
         SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE EXISTS
             (SELECT 1 FROM assignments WHERE device = ?1 AND package = ?2 AND status = ?7)
         ON CONFLICT(device, package) DO UPDATE SET held = ?3, total = ?4, rate = ?5, at = ?6",
        params![device, i(package), i(p.held), i(p.total), i(p.rate), i(p.at), NOTIFIED],
    )
}

impl Db {
    /// Add or replace an administrator. Replacing (a new password) ends
    /// the sessions opened with the old one.
    pub fn put_admin(&mut self, name: &str, h: &AdminHash) -> DbResult<()> {
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM admin_sessions WHERE admin = ?1", [name])?;
        tx.execute(
            "INSERT INTO admins(name, salt, iterations, hash, created) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(name) DO UPDATE SET salt = ?2, iterations = ?3, hash = ?4",
            params![name, h.salt, h.iterations, h.hash, crate::time::now_rfc3339()],
        )?;
        tx.commit()
    }

    /// Remove an administrator and end its sessions; `false` if unknown.
    pub fn remove_admin(&mut self, name: &str) -> DbResult<bool> {
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM admin_sessions WHERE admin = ?1", [name])?;
        let n = tx.execute("DELETE FROM admins WHERE name = ?1", [name])?;
        tx.commit()?;
        Ok(n > 0)
    }

    /// An administrator's password hash.
    pub fn admin_hash(&self, name: &str) -> DbResult<Option<AdminHash>> {
        self.conn
            .query_row("SELECT salt, iterations, hash FROM admins WHERE name = ?1", [name], |r| {
                Ok(AdminHash { salt: r.get(0)?, iterations: r.get(1)?, hash: r.get(2)? })
            })
            .optional()
    }

    /// Record a session (by the SHA-256 of its id) until `expires`; sessions
    /// expired at `now` are dropped on the way.
    pub fn add_session(&mut self, id_sha256: &[u8; 32], admin: &str, expires: u64, now: u64) -> DbResult<()> {
        self.conn.execute("DELETE FROM admin_sessions WHERE expires <= ?1", [i(now)])?;
        self.conn.execute(
            "INSERT INTO admin_sessions(id_sha256, admin, expires) VALUES (?1, ?2, ?3)",
            params![&id_sha256[..], admin, i(expires)],
        )?;
        Ok(())
    }

    /// The administrator a live session belongs to. The id's hash is looked
    /// up by equality in SQLite: it is a hash of a 32-byte random value, so
    /// the lookup's timing tells nothing about a valid id.
    pub fn session_admin(&self, id_sha256: &[u8; 32], now: u64) -> DbResult<Option<String>> {
        self.conn
            .query_row(
                "SELECT s.admin FROM admin_sessions s JOIN admins a ON a.name = s.admin
                 WHERE s.id_sha256 = ?1 AND s.expires > ?2",
                params![&id_sha256[..], i(now)],
                |r| r.get(0),
            )
            .optional()
    }

    /// End a session.
    pub fn end_session(&mut self, id_sha256: &[u8; 32]) -> DbResult<()> {
        self.conn.execute("DELETE FROM admin_sessions WHERE id_sha256 = ?1", [&id_sha256[..]])?;
        Ok(())
    }

    /// Store the progress `device` reported with a poll, for the packages
    /// assigned to it (others are skipped); how many rows were stored. Like
    /// a poll's own writes it may be lost to a power cut without harm (the
    /// next poll says it again), so it does not wait for an fsync.
    pub fn put_progress(&mut self, device: &str, list: &[(u64, ProgressRow)]) -> DbResult<usize> {
        self.relaxed(|db| {
            let tx = db.conn.transaction()?;
            let mut n = 0;
            for (package, p) in list {
                n += put_one(&tx, device, *package, p)?;
            }
            tx.commit()?;
            Ok(n)
        })
    }

    /// Every package with the OCS console's counts, by id.
    pub fn package_summaries(&self) -> DbResult<Vec<PackageSummary>> {
        let mut st = self.conn.prepare(
            "SELECT p.id, p.name, p.priority, p.size,
                 COALESCE(SUM(CASE WHEN a.status = ?1 THEN 1 ELSE 0 END), 0),
                 COALESCE(SUM(CASE WHEN a.status = ?2 THEN 1 ELSE 0 END), 0),
                 COALESCE(SUM(CASE WHEN a.status LIKE 'SUCCESS%' THEN 1 ELSE 0 END), 0),
                 COALESCE(SUM(CASE WHEN a.status NOT IN (?1, ?2) AND a.status NOT LIKE 'SUCCESS%' THEN 1 ELSE 0 END), 0)
             FROM packages p LEFT JOIN assignments a ON a.package = p.id GROUP BY p.id ORDER BY p.id",
        )?;
        st.query_map([WAITING, NOTIFIED], |r| {
            Ok(PackageSummary {
                id: u(r.get(0)?),
                name: r.get(1)?,
                priority: r.get(2)?,
                size: u(r.get(3)?),
                waiting: u(r.get(4)?),
                notified: u(r.get(5)?),
                success: u(r.get(6)?),
                errors: u(r.get(7)?),
            })
        })?
        .collect()
    }

    /// Assignments with progress and last contact, of one package or of
    /// one device.
    pub fn device_rows(&self, package: Option<u64>, device: Option<&str>) -> DbResult<Vec<DeviceRow>> {
        let mut st = self.conn.prepare(
            "SELECT a.package, p.name, a.device, a.status, a.updated, d.last_seen,
                 g.held, g.total, g.rate, g.at, f.last_contact
             FROM assignments a JOIN packages p ON p.id = a.package JOIN devices d ON d.id = a.device
             LEFT JOIN progress g ON g.device = a.device AND g.package = a.package
             LEFT JOIN device_facts f ON f.device = a.device
             WHERE (CAST(?1 AS BIGINT) IS NULL OR a.package = ?1) AND (CAST(?2 AS TEXT) IS NULL OR a.device = ?2)
             ORDER BY a.package, a.device",
        )?;
        st.query_map(params![package.map(i), device], |r| {
            let held: Option<i64> = r.get(6)?;
            Ok(DeviceRow {
                package: u(r.get(0)?),
                name: r.get(1)?,
                device: r.get(2)?,
                status: r.get(3)?,
                updated: r.get(4)?,
                last_seen: last_seen(r.get(5)?, r.get(10)?),
                progress: match held {
                    Some(h) => {
                        Some(ProgressRow { held: u(h), total: u(r.get(7)?), rate: u(r.get(8)?), at: u(r.get(9)?) })
                    }
                    None => None,
                },
            })
        })?
        .collect()
    }

    /// A device's last poll (RFC 3339): `None` for an unknown device,
    /// `Some(None)` for one that never polled.
    pub fn device_last_seen(&self, id: &str) -> DbResult<Option<Option<String>>> {
        self.conn
            .query_row(
                "SELECT d.last_seen, f.last_contact FROM devices d LEFT JOIN device_facts f ON f.device = d.id
                 WHERE d.id = ?1",
                [id],
                |r| Ok(last_seen(r.get(0)?, r.get(1)?)),
            )
            .optional()
    }

    /// A device's status changes, newest first.
    pub fn device_history(&self, device: &str) -> DbResult<Vec<HistoryRow>> {
        let mut st = self
            .conn
            .prepare("SELECT package, status, at FROM status_history WHERE device = ?1 ORDER BY rowid DESC LIMIT ?2")?;
        st.query_map(params![device, HISTORY_PER_DEVICE as i64], |r| {
            Ok(HistoryRow { package: u(r.get(0)?), status: r.get(1)?, at: r.get(2)? })
        })?
        .collect()
    }

    /// Devices registered, and blocked rows, for the metrics.
    pub fn device_count(&self) -> DbResult<u64> {
        self.conn.query_row("SELECT COUNT(*) FROM devices", [], |r| r.get::<_, i64>(0)).map(u)
    }
}

/// A device's last contact (RFC 3339): the later of `devices.last_seen`
/// (written with a contact that is recorded at once: a device's first,
/// changed facts, an OCS agent's) and `device_facts.last_contact` (every
/// contact, also those written a second at a time, `crate::contacts`).
fn last_seen(seen: Option<String>, contact: Option<i64>) -> Option<String> {
    let contact = contact.filter(|c| *c > 0).map(|c| crate::time::rfc3339(c as u64));
    seen.into_iter().chain(contact).max()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::NewPackage;

    fn db() -> Db {
        crate::db::test_db("console")
    }

    #[test]
    fn counts_progress_and_history() {
        let mut d = db();
        d.add_device("a", &[1; 32]).unwrap();
        d.add_device("b", &[1; 32]).unwrap();
        let p = NewPackage { id: 7, name: "p", action: "STORE", priority: 3, frags: 1, size: 10, https: false };
        d.add_package(&p).unwrap();
        d.assign(7, None, false).unwrap();
        d.poll("a").unwrap();
        d.report("a", "r1", 7, "SUCCESS").unwrap();
        d.poll("b").unwrap();
        d.record_contact("b", None, "127.0.0.1", 1_000_000).unwrap();
        let s = &d.package_summaries().unwrap()[0];
        assert_eq!((s.waiting, s.notified, s.success, s.errors), (0, 1, 1, 0));
        let pr = ProgressRow { held: 5, total: 10, rate: 2, at: 99 };
        assert_eq!(d.put_progress("b", &[(7, pr), (8, pr)]).unwrap(), 1, "8 is not assigned: not stored");
        assert_eq!(d.put_progress("a", &[(7, pr)]).unwrap(), 0, "a reported 7 already");
        let rows = d.device_rows(Some(7), None).unwrap();
        assert_eq!(rows[1].progress, Some(pr));
        assert!(rows[1].last_seen.is_some());
        assert!(matches!(d.device_last_seen("b").unwrap(), Some(Some(_))));
        assert_eq!(d.device_last_seen("nope").unwrap(), None);
        // A contact written a second at a time updates `device_facts` only:
        // it is the last one seen all the same.
        let later = 4_000_000_000;
        d.record_contacts([("b", None, "127.0.0.1", later)]).unwrap();
        let seen = Some(Some(crate::time::rfc3339(later)));
        assert_eq!(d.device_last_seen("b").unwrap(), seen);
        assert_eq!(Some(d.device_rows(Some(7), Some("b")).unwrap()[0].last_seen.clone()), seen);
        d.report("b", "r2", 7, "SUCCESS").unwrap();
        assert_eq!(d.device_rows(Some(7), None).unwrap()[1].progress, None, "the report ends the download");
        let h: Vec<String> = d.device_history("a").unwrap().into_iter().map(|h| h.status).collect();
        assert_eq!(h, ["SUCCESS", NOTIFIED, WAITING]);
    }

    #[test]
    fn history_is_bounded_per_device() {
        let mut d = db();
        d.add_device("a", &[1; 32]).unwrap();
        let p = NewPackage { id: 7, name: "p", action: "STORE", priority: 3, frags: 1, size: 10, https: false };
        d.add_package(&p).unwrap();
        d.assign(7, Some("a"), false).unwrap();
        for n in 0..(HISTORY_PER_DEVICE + 20) {
            d.report("a", &format!("r{n}"), 7, &format!("EXIT_CODE_{n}")).unwrap();
        }
        let h = d.device_history("a").unwrap();
        let kept: i64 = d.conn.query_row("SELECT COUNT(*) FROM status_history", [], |r| r.get(0)).unwrap();
        assert_eq!(kept, HISTORY_PER_DEVICE as i64, "older changes dropped");
        assert_eq!(h[0].status, format!("EXIT_CODE_{}", HISTORY_PER_DEVICE + 19));
    }

    #[test]
    fn sessions_expire_and_end_with_their_admin() {
        let mut d = db();
        let h = AdminHash { salt: vec![1], iterations: 1, hash: vec![2] };
        d.put_admin("root", &h).unwrap();
        assert_eq!(d.admin_hash("root").unwrap(), Some(h));
        d.add_session(&[9; 32], "root", 100, 50).unwrap();
        assert_eq!(d.session_admin(&[9; 32], 99).unwrap().as_deref(), Some("root"));
        assert_eq!(d.session_admin(&[9; 32], 100).unwrap(), None, "expired");
        assert_eq!(d.session_admin(&[8; 32], 50).unwrap(), None);
        d.put_admin("root", &AdminHash { salt: vec![3], iterations: 1, hash: vec![4] }).unwrap();
        assert_eq!(d.session_admin(&[9; 32], 60).unwrap(), None, "a new password ends the old sessions");
        d.add_session(&[9; 32], "root", 100, 50).unwrap();
        assert!(d.remove_admin("root").unwrap());
        assert_eq!(d.session_admin(&[9; 32], 60).unwrap(), None, "removed admin: no session");
    }
}
