//! `migrate --from sqlite --to postgres`: move an installation's state from
//! `DIR/state.db` into a PostgreSQL database, then point `server.toml` at it.
//!
//! ```text
//!   state.db ──(every table, every row, in foreign-key order)──► PostgreSQL, one transaction
//!            └─ row counts compared per table ─► [database] url in server.toml
//! ```
//!
//! The target must be empty (no device, no package): nothing is merged.
//! `state.db` is kept as it was, renamed `state.db.migrated` (a way back,
//! that nothing opens by itself). The copy holds SQLite's write lock, so a
//! `serve` still running cannot write what the copy would miss (stop it
//! first). Each table is read whole into memory before it is written.

use std::path::Path;

use crate::config::ServerConfig;
use crate::db::{Arg, Db, redact};

/// The tables, parents before children. `status_history` comes after
/// `assignments`, whose inserts add history rows through the trigger: those
/// are replaced by the copied history.
pub const TABLES: [&str; 24] = [
    "devices",
    "packages",
    "ocs_history",
    "assign_all",
    "assignments",
    "reports",
    "auth_counters",
    "ocs_new_devices",
    "log_marks",
    "device_certs",
    "rotations",
    "revoked_devices",
    "depots",
    "admins",
    "admin_sessions",
    "progress",
    "status_history",
    "device_facts",
    "fleet_groups",
    "group_members",
    "deleted_packages",
    "rollouts",
    "rollout_members",
    "rollout_assigned",
];

/// Identity columns whose sequence must continue after the copied ids.
const SEQUENCES: [(&str, &str); 2] = [("rollouts", "id"), ("status_history", "rowid")];

/// Copy `dir`'s SQLite state into the PostgreSQL database at `url` and set
/// `[database] url`; the rows copied per table.
pub fn sqlite_to_postgres(dir: &Path, url: &str) -> Result<Vec<(&'static str, usize)>, String> {
    let mut cfg = ServerConfig::load(dir)?;
    if cfg.database.url.is_some() {
        return Err(format!("{}: [database] url is set already: this server is on PostgreSQL", dir.display()));
    }
    let path = dir.join("state.db");
    if !path.exists() {
        return Err(format!("{}: no such file", path.display()));
    }
    let from = Db::open(&path).map_err(|e| format!("state.db: {e}"))?;
    let shown = redact(url);
    let to = Db::open_postgres(url).map_err(|e| format!("database {shown}: {e}"))?;
    let pg = to.conn();
    let count = |t: &str| -> Result<i64, String> {
        pg.query_row(&format!("SELECT COUNT(*) FROM {t}"), [], |r| r.get(0)).map_err(|e| format!("{shown}: {e}"))
    };
    if count("devices")? + count("packages")? > 0 {
        return Err(format!("database {shown} holds devices or packages already: migrate needs an empty one"));
    }
    let lite = from.conn().as_sqlite().ok_or("state.db is not SQLite")?;
    // One snapshot of every table, and no writer meanwhile (a serve still
    // running gets "database is locked" instead of writing what the copy
    // would miss).
    lite.execute_batch("BEGIN IMMEDIATE").map_err(|e| format!("state.db: {e} (is serve still running?)"))?;
    let tx = pg.transaction().map_err(|e| format!("{shown}: {e}"))?;
    let mut copied = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        let err = |e: &dyn std::fmt::Display| format!("copying {table}: {e}");
        let mut columns: Vec<String> = {
            let st = lite.prepare(&format!("SELECT * FROM {table}")).map_err(|e| err(&e))?;
            st.column_names().into_iter().map(str::to_string).collect()
        };
        if table == "status_history" {
            columns.insert(0, "rowid".into());
            tx.execute("DELETE FROM status_history", []).map_err(|e| err(&e))?;
        }
        let list = columns.join(", ");
        let rows = from.conn().query_all(&format!("SELECT {list} FROM {table}"), []).map_err(|e| err(&e))?;
        let marks: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
        let insert = format!("INSERT INTO {table}({list}) VALUES ({})", marks.join(", "));
        for row in &rows {
            let args: Vec<Arg<'_>> = row.cells().iter().map(crate::db::Cell::as_arg).collect();
            tx.execute(&insert, args.as_slice()).map_err(|e| err(&e))?;
        }
        copied.push((table, rows.len()));
    }
    for (table, column) in SEQUENCES {
        tx.execute_batch(&format!(
            "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), COALESCE(MAX({column}), 0) + 1, false) \
             FROM {table}"
        ))
        .map_err(|e| format!("{table}: {e}"))?;
    }
    for (table, n) in &copied {
        let there = usize::try_from(
            tx.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get::<_, i64>(0))
                .map_err(|e| format!("{table}: {e}"))?,
        )
        .unwrap_or(0);
        if there != *n {
            return Err(format!("{table}: {n} rows read, {there} in {shown}: nothing migrated"));
        }
    }
    tx.commit().map_err(|e| format!("{shown}: {e}"))?;
    let _ = lite.execute_batch("ROLLBACK");
    drop(from);
    // state.db is kept for a way back, under a name nothing opens by
    // itself: a server.toml that lost its [database] table must not bring
    // the old state back to life silently.
    for ext in ["", "-wal", "-shm"] {
        let (old, new) = (dir.join(format!("state.db{ext}")), dir.join(format!("state.db.migrated{ext}")));
        if old.exists() {
            std::fs::rename(&old, &new).map_err(|e| format!("{}: {e}", old.display()))?;
        }
    }
    cfg.database.url = Some(url.to_string());
    let (next, path) = (dir.join("server.toml.new"), dir.join("server.toml"));
    let _ = std::fs::remove_file(&next);
    crate::pki::write_private(&next, cfg.to_toml().as_bytes()).and_then(|()| std::fs::rename(&next, &path)).map_err(
        |e| format!("the data is in {shown}, but server.toml could not be rewritten ({e}): set [database] url"),
    )?;
    Ok(copied)
}
