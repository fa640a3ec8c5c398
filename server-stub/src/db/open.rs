//! Opening the state database: `DIR/state.db` (SQLite, the default) or
//! the PostgreSQL database `[database] url` of `server.toml` names, with
//! the schema created if needed.

use std::path::Path;

use super::sql::{Backend, Conn, DbResult, Error};
use super::{Db, SCHEMA, console, credentials, depots, evict, fleet, guard, rollout};

/// The PostgreSQL schema (the SQLite one, in PostgreSQL's types).
const PG_SCHEMA: &str = include_str!("schema_pg.sql");

impl Db {
    /// Open `path` with SQLite (creating the schema if needed). A new
    /// database file is created mode 0600 (SQLite gives its `-wal` and
    /// `-shm` files the same mode); an existing one keeps its mode
    /// (`serve` tightens it, see [`crate::files`]).
    pub fn open(path: &Path) -> DbResult<Self> {
        if let Err(e) = crate::files::create_private(path) {
            return Err(Error::Other(format!("cannot create {}: {e}", path.display())));
        }
        let conn = rusqlite::Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let conn = Conn::sqlite(conn, Some(super::changes::file_of(path)));
        for schema in [
            SCHEMA,
            guard::SCHEMA,
            evict::SCHEMA,
            credentials::SCHEMA,
            depots::SCHEMA,
            console::SCHEMA,
            fleet::SCHEMA,
            rollout::SCHEMA,
        ] {
            conn.execute_batch(schema)?;
        }
        Ok(Self::with(conn))
    }

    /// Connect to the PostgreSQL database at `url` (creating the schema if
    /// needed, one instance at a time).
    ///
    /// The schema's DDL runs only when the database does not say it holds
    /// this version of it (`outpost_schema`): on every connection, its
    /// `CREATE INDEX IF NOT EXISTS` and `CREATE OR REPLACE TRIGGER` lock the
    /// tables one after the other, and a command opening its connection
    /// could deadlock with a request's transaction that took the same
    /// tables in another order.
    pub fn open_postgres(url: &str) -> DbResult<Self> {
        let conn = Conn::postgres(url)?;
        let version = pg_schema_version();
        let current = conn
            .query_row("SELECT version FROM outpost_schema", crate::params![], |r| r.get::<_, String>(0))
            .is_ok_and(|v| v == version);
        if !current {
            conn.execute_batch(&format!(
                "BEGIN;\n{PG_SCHEMA}\nCREATE TABLE IF NOT EXISTS outpost_schema(version TEXT NOT NULL);
                 DELETE FROM outpost_schema; INSERT INTO outpost_schema(version) VALUES ('{version}');\nCOMMIT;"
            ))?;
        }
        Ok(Self::with(conn))
    }

    /// The database of the server in `dir`: `[database] url` of its
    /// `server.toml` if set, else `DIR/state.db`. Errors say which.
    pub fn open_in(dir: &Path) -> Result<Self, String> {
        match database_url(dir)? {
            Some(url) => Self::open_postgres(&url).map_err(|e| format!("database {}: {e}", redact(&url))),
            None => Self::open(&dir.join("state.db")).map_err(|e| format!("state.db: {e}")),
        }
    }

    fn with(conn: Conn) -> Self {
        Self { conn, failures: guard::FailureCounts::default() }
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.conn.backend()
    }

    /// The connection, for what the typed methods do not cover (`migrate`).
    pub fn conn(&self) -> &Conn {
        &self.conn
    }
}

/// The version of [`PG_SCHEMA`]: its SHA-256, in hex.
fn pg_schema_version() -> String {
    outpost_agent::engine::digest::hex(&outpost_agent::engine::manifest::sha256(PG_SCHEMA.as_bytes()))
}

/// `[database] url` of `DIR/server.toml`, if the file is there and sets it.
fn database_url(dir: &Path) -> Result<Option<String>, String> {
    if !dir.join("server.toml").exists() {
        return Ok(None);
    }
    Ok(crate::config::ServerConfig::load(dir)?.database.url)
}

/// `url` without its password (`user:PASSWORD@`, or a `password=`
/// parameter), for messages and logs.
pub fn redact(url: &str) -> String {
    let mut out = match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
                None => url.to_string(),
            },
            None => url.to_string(),
        },
        None => url.to_string(),
    };
    while let Some(at) = out.find("password=").filter(|at| !out[at + 9..].starts_with("***")) {
        let start = at + "password=".len();
        let end = out[start..].find(['&', ' ']).map_or(out.len(), |e| start + e);
        out.replace_range(start..end, "***");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_a_url_is_never_shown() {
        assert_eq!(redact("postgres://outpost:s3cret@db:5432/outpost"), "postgres://outpost:***@db:5432/outpost");
        assert_eq!(redact("postgres://outpost@127.0.0.1/x"), "postgres://outpost@127.0.0.1/x");
        assert_eq!(redact("host=/run/postgresql user=x"), "host=/run/postgresql user=x");
        assert_eq!(
            redact("postgres://u@db/x?password=s3cret&sslmode=disable"),
            "postgres://u@db/x?password=***&sslmode=disable"
        );
        assert_eq!(redact("postgres://u:a@db/x?password=b"), "postgres://u:***@db/x?password=***");
    }

    /// Fails if a connection's opening runs the schema's DDL again: its
    /// `CREATE INDEX IF NOT EXISTS` waits for the table a request's
    /// transaction holds (and, taking tables in another order, deadlocked
    /// with one: `postgres: 40P01` in `tests/scale_out.rs`).
    #[test]
    fn on_postgres_opening_a_connection_waits_for_no_running_transaction() {
        let Some(url) = crate::db::test_db_url("open-locks") else { return };
        let first = Db::open_postgres(&url).expect("open");
        first
            .conn()
            .execute_batch("BEGIN; UPDATE devices SET last_seen = NULL; UPDATE assignments SET force = 0")
            .unwrap();
        let (done, opened) = std::sync::mpsc::channel();
        std::thread::spawn(move || done.send(Db::open_postgres(&url).map(|_| ()).map_err(|e| e.to_string())));
        let result = opened.recv_timeout(std::time::Duration::from_secs(10));
        first.conn().execute_batch("COMMIT").unwrap();
        assert!(matches!(result, Ok(Ok(()))), "a second connection opened beside a transaction: {result:?}");
    }
}
