//! What `package list`, `package show` and `package delete` read and write.

use crate::params;

use super::{Db, DbResult, NOTIFIED, WAITING};

/// A package as `package list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PackageRow {
    /// Id.
    pub id: u64,
    /// Display name.
    pub name: String,
    /// `LAUNCH`, `EXECUTE` or `STORE`.
    pub action: String,
    /// Priority.
    pub priority: u8,
    /// Fragments.
    pub frags: u32,
    /// Archive bytes.
    pub size: u64,
    /// When it was added, RFC 3339.
    pub created: String,
    /// Fragments over HTTPS only.
    pub https: bool,
    /// When `package delete` removed it (RFC 3339).
    pub deleted: Option<String>,
    /// Assignments per status family: waiting, notified, success, errors.
    pub counts: [u64; 4],
    /// Whether an `--all` rule covers it.
    pub all: bool,
}

impl PackageRow {
    /// Whether it is assigned: an `--all` rule or an assignment without a result.
    pub fn assigned(&self) -> bool {
        self.all || self.counts[0] + self.counts[1] > 0
    }
}

impl Db {
    /// Every package, by id, with its counts.
    pub fn packages(&self) -> DbResult<Vec<PackageRow>> {
        let mut st = self.conn.prepare(
            "SELECT p.id, p.name, p.action, p.priority, p.frags, p.size, p.created, p.https, d.deleted,
             (SELECT COUNT(*) FROM assignments a WHERE a.package = p.id AND a.status = ?1),
             (SELECT COUNT(*) FROM assignments a WHERE a.package = p.id AND a.status = ?2),
             (SELECT COUNT(*) FROM assignments a WHERE a.package = p.id AND a.status LIKE 'SUCCESS%'),
             (SELECT COUNT(*) FROM assignments a WHERE a.package = p.id),
             EXISTS (SELECT 1 FROM assign_all x WHERE x.package = p.id)
             FROM packages p LEFT JOIN deleted_packages d ON d.id = p.id ORDER BY p.id",
        )?;
        st.query_map(params![WAITING, NOTIFIED], |r| {
            let n = |i| r.get::<_, i64>(i).map(|v| v.max(0) as u64);
            let (w, no, s, all) = (n(9)?, n(10)?, n(11)?, n(12)?);
            Ok(PackageRow {
                id: r.get::<_, i64>(0)? as u64,
                name: r.get(1)?,
                action: r.get(2)?,
                priority: r.get(3)?,
                frags: r.get(4)?,
                size: n(5)?,
                created: r.get(6)?,
                https: r.get(7)?,
                deleted: r.get(8)?,
                counts: [w, no, s, all.saturating_sub(w + no + s)],
                all: r.get(13)?,
            })
        })?
        .collect()
    }

    /// Mark a package deleted: its `--all` rule, its assignments without a
    /// result and its rollouts go; assignments with a result stay (the
    /// history of what was installed where). Returns the assignments withdrawn.
    pub fn delete_package(&mut self, id: u64) -> DbResult<usize> {
        let tx = self.conn.transaction()?;
        let id = id as i64;
        tx.execute(
            "INSERT INTO deleted_packages(id, deleted) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            params![id, crate::time::now_rfc3339()],
        )?;
        tx.execute("DELETE FROM assign_all WHERE package = ?1", [id])?;
        let n = tx.execute(
            "DELETE FROM assignments WHERE package = ?1 AND status IN (?2, ?3)",
            params![id, WAITING, NOTIFIED],
        )?;
        tx.execute("UPDATE rollouts SET state = 'cancelled', reason = 'package deleted' WHERE package = ?1", [id])?;
        tx.commit()?;
        Ok(n)
    }
}
