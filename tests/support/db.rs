//! The server's two state backends in the tests: SQLite (`DIR/state.db`, the
//! default) and PostgreSQL, chosen for a whole test run by the environment.
//!
//! ```text
//!  OUTPOST_TEST_POSTGRES=postgres://outpost@127.0.0.1:25432/postgres   (scripts/postgres start)
//!     │
//!     ├─ test_database() ── CREATE DATABASE t_<pid>_<n>_<nanos> ──► TestDatabase (DROPped on drop)
//!     │                                                                 │
//!     └─ Server::init ── outpost-server init --database <its URL> ◄─────┘
//!
//!  Server::sql_rows / sql_value / sql_execute ─► DIR/server.toml [database] url ? PostgreSQL
//!                                                                            : DIR/state.db
//! ```
//!
//! Unset (or empty), every server keeps its state in `DIR/state.db`.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

/// The environment variable that names the PostgreSQL cluster's base URL
/// (a database the role may connect to; new databases are made beside it).
pub const POSTGRES_ENV: &str = "OUTPOST_TEST_POSTGRES";

/// The base URL of the PostgreSQL cluster this run uses, if any.
fn base_url() -> Option<String> {
    std::env::var(POSTGRES_ENV).ok().filter(|u| !u.is_empty())
}

/// Whether this test run keeps the servers' state in PostgreSQL
/// (`OUTPOST_TEST_POSTGRES` is set).
pub fn backend_is_postgres() -> bool {
    base_url().is_some()
}

/// `url` with its database (the path) replaced by `name`; a query string is kept.
fn with_database(url: &str, name: &str) -> String {
    let (url, query) = url.split_once('?').map_or((url, None), |(u, q)| (u, Some(q)));
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let authority_end = url[scheme_end..].find('/').map_or(url.len(), |i| scheme_end + i);
    let mut out = format!("{}/{name}", &url[..authority_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// The database named in `url` (its path, without a query string).
fn database_of(url: &str) -> &str {
    let url = url.split_once('?').map_or(url, |(u, _)| u);
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    url[scheme_end..].split_once('/').map_or("", |(_, db)| db)
}

fn connect(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).unwrap_or_else(|e| {
        panic!("cannot connect to PostgreSQL at {url} ({POSTGRES_ENV}; scripts/postgres start): {e}")
    })
}

/// A name no other test process or thread, in this run or an earlier one
/// against the same cluster, has used: `t_<pid>_<counter>_<nanoseconds>`.
#[allow(clippy::disallowed_methods)] // the wall clock only tells runs apart
fn fresh_name() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("t_{}_{}_{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst), nanos % 1_000_000_000_000)
}

/// An empty PostgreSQL database made for one test (or one server of it),
/// dropped (with its connections ended) when this value is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    base: String,
    name: String,
    url: String,
}

impl TestDatabase {
    /// `CREATE DATABASE name` (a copy of `template`, or an empty one) beside `base`.
    fn create(base: &str, template: Option<&str>) -> Self {
        let name = fresh_name();
        let sql = match template {
            Some(t) => format!("CREATE DATABASE {name} TEMPLATE {t}"),
            None => format!("CREATE DATABASE {name}"),
        };
        connect(base).batch_execute(&sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        Self { base: base.to_string(), url: with_database(base, &name), name }
    }

    /// Its URL, for `outpost-server init --database`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A new database holding a copy of this one's tables and rows (no
    /// server may be connected to this one meanwhile).
    pub fn copy(&self) -> Self {
        Self::create(&self.base, Some(&self.name))
    }

    /// Its URL through the cluster's Unix socket instead of 127.0.0.1, for a
    /// server in another network namespace (the filesystem is shared); `None`
    /// where the cluster has no socket.
    pub fn socket_url(&self) -> Option<String> {
        let mut c = connect(&self.base);
        let dirs: String = c.query_one("SHOW unix_socket_directories", &[]).ok()?.get(0);
        let dir = dirs.split(',').map(str::trim).find(|d| d.starts_with('/'))?;
        let encoded = dir.replace('%', "%25").replace('/', "%2F");
        let port: String = c.query_one("SHOW port", &[]).ok()?.get(0);
        let (scheme, rest) = self.url.split_once("://")?;
        let user = rest.split_once('@').map(|(u, _)| u)?;
        Some(format!("{scheme}://{user}@{encoded}:{port}/{}", self.name))
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // WITH (FORCE): a server killed mid-test may leave a backend behind for a moment.
        if let Ok(mut c) = postgres::Client::connect(&self.base, postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

/// A fresh, empty database when this run tests the PostgreSQL backend
/// (`OUTPOST_TEST_POSTGRES`), `None` on SQLite. [`crate::Server::init`] makes
/// one per server; a test that points several servers at one database makes
/// its own and passes `--database` itself.
pub fn test_database() -> Option<TestDatabase> {
    base_url().map(|base| TestDatabase::create(&base, None))
}

/// How one value of a result row reads, the same on both backends: integers
/// in decimal, blobs (`BLOB`, `BYTEA`) in lower-case hex, booleans `1` / `0`,
/// SQL NULL as [`NULL`].
pub type Value = String;

/// What SQL NULL reads as in [`Value`]s.
pub const NULL: &str = "NULL";

/// Where a server directory keeps its state: `DIR/server.toml`'s
/// `[database] url`, or `None` for `DIR/state.db`.
pub fn database_url(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("server.toml")).expect("DIR/server.toml");
    let table: toml::Table = text.parse().expect("DIR/server.toml is TOML");
    table.get("database")?.get("url")?.as_str().map(str::to_string)
}

fn sqlite(dir: &Path) -> rusqlite::Connection {
    let p = dir.join("state.db");
    assert!(p.exists(), "{} is missing", p.display());
    rusqlite::Connection::open(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn sqlite_value(v: rusqlite::types::ValueRef<'_>) -> Value {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => NULL.to_string(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) => f.to_string(),
        ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
        ValueRef::Blob(b) => outpost_agent::engine::digest::hex(b),
    }
}

fn pg_value(row: &postgres::Row, i: usize) -> Value {
    use postgres::types::Type;
    let t = row.columns()[i].type_();
    let value = match *t {
        Type::INT2 => row.get::<_, Option<i16>>(i).map(|v| v.to_string()),
        Type::INT4 => row.get::<_, Option<i32>>(i).map(|v| v.to_string()),
        Type::INT8 => row.get::<_, Option<i64>>(i).map(|v| v.to_string()),
        Type::FLOAT4 => row.get::<_, Option<f32>>(i).map(|v| v.to_string()),
        Type::FLOAT8 => row.get::<_, Option<f64>>(i).map(|v| v.to_string()),
        Type::BOOL => row.get::<_, Option<bool>>(i).map(|v| if v { "1" } else { "0" }.to_string()),
        Type::BYTEA => row.get::<_, Option<Vec<u8>>>(i).map(|v| outpost_agent::engine::digest::hex(&v)),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => row.get(i),
        _ => panic!("column {} is of type {t}: cast it to TEXT in the query", row.columns()[i].name()),
    };
    value.unwrap_or_else(|| NULL.to_string())
}

impl crate::Server {
    /// The rows of a query against this server's state, in whichever backend
    /// it uses (see [`Value`] for how values read). Write it in SQL both
    /// SQLite and PostgreSQL run: no `rowid`, no `?1` (inline the literals).
    pub fn sql_rows(&self, query: &str) -> Vec<Vec<Value>> {
        match database_url(&self.dir) {
            Some(url) => connect(&url)
                .query(query, &[])
                .unwrap_or_else(|e| panic!("{query} on {}: {e}", database_of(&url)))
                .iter()
                .map(|r| (0..r.len()).map(|i| pg_value(r, i)).collect())
                .collect(),
            None => {
                let db = sqlite(&self.dir);
                let mut st = db.prepare(query).unwrap_or_else(|e| panic!("{query}: {e}"));
                let n = st.column_count();
                st.query_map([], |r| (0..n).map(|i| r.get_ref(i).map(sqlite_value)).collect())
                    .and_then(|rows| rows.collect::<Result<Vec<Vec<Value>>, _>>())
                    .unwrap_or_else(|e| panic!("{query}: {e}"))
            }
        }
    }

    /// The one value of a query that returns one row of one column.
    pub fn sql_value(&self, query: &str) -> Value {
        let rows = self.sql_rows(query);
        match &rows[..] {
            [row] => match &row[..] {
                [v] => v.clone(),
                _ => panic!("{query}: one column expected, got {row:?}"),
            },
            _ => panic!("{query}: one row expected, got {rows:?}"),
        }
    }

    /// Run one statement that changes this server's state (stop the server
    /// first, as an administrator would); returns the number of rows it changed.
    pub fn sql_execute(&self, statement: &str) -> u64 {
        match database_url(&self.dir) {
            Some(url) => connect(&url).execute(statement, &[]).unwrap_or_else(|e| panic!("{statement} on {url}: {e}")),
            None => sqlite(&self.dir).execute(statement, []).unwrap_or_else(|e| panic!("{statement}: {e}")) as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_name_replaces_the_path_and_keeps_the_query() {
        let base = "postgres://outpost@127.0.0.1:55432/postgres";
        assert_eq!(with_database(base, "t_1"), "postgres://outpost@127.0.0.1:55432/t_1");
        assert_eq!(with_database("postgres://u@h:1", "t_1"), "postgres://u@h:1/t_1");
        assert_eq!(with_database("postgresql://u@h/p?connect_timeout=5", "x"), "postgresql://u@h/x?connect_timeout=5");
        assert_eq!(database_of("postgres://u@h:1/t_9?sslmode=disable"), "t_9");
    }

    /// The harness reads and writes both backends alike, and a copied
    /// server shares no state with the original. Runs on the backend of the
    /// run (`OUTPOST_TEST_POSTGRES`).
    #[test]
    fn both_backends_read_alike_and_a_copy_shares_nothing() {
        let t = crate::TempDir::new("sql-rows");
        let dir = t.join("srv");
        std::fs::create_dir(&dir).unwrap();
        let database = test_database();
        let toml = "[listen]\nhttps = \"127.0.0.1:1\"\n";
        match &database {
            Some(db) => {
                std::fs::write(dir.join("server.toml"), format!("{toml}[database]\nurl = \"{}\"\n", db.url())).unwrap();
                connect(db.url())
                    .batch_execute(
                        "CREATE TABLE t(n BIGINT, s TEXT, b BYTEA, z TEXT);
                         INSERT INTO t VALUES (1, 'one', '\\x00ff'::bytea, NULL), (-2, 'two', '\\x'::bytea, 'z')",
                    )
                    .unwrap();
            }
            None => {
                std::fs::write(dir.join("server.toml"), toml).unwrap();
                rusqlite::Connection::open(dir.join("state.db"))
                    .unwrap()
                    .execute_batch(
                        "CREATE TABLE t(n INTEGER, s TEXT, b BLOB, z TEXT);
                         INSERT INTO t VALUES (1, 'one', X'00ff', NULL), (-2, 'two', X'', 'z')",
                    )
                    .unwrap();
            }
        }
        let srv = crate::Server { dir, https_port: 1, http_port: 2, child: None, database };
        assert_eq!(
            srv.sql_rows("SELECT n, s, b, z, n > 0 FROM t ORDER BY n"),
            [["-2", "two", "", "z", "0"], ["1", "one", "00ff", NULL, "1"]]
        );
        assert_eq!(srv.sql_value("SELECT COUNT(*) FROM t"), "2");

        let copy = srv.copy_to(t.join("copy"));
        assert_eq!(copy.sql_execute("UPDATE t SET s = 'changed'"), 2);
        assert_eq!(copy.sql_value("SELECT COUNT(*) FROM t WHERE s = 'changed'"), "2");
        assert_eq!(srv.sql_value("SELECT COUNT(*) FROM t WHERE s = 'changed'"), "0", "the original is untouched");
        assert_eq!(database_url(&srv.dir).is_some(), backend_is_postgres());
        if let Some(db) = &srv.database {
            assert_ne!(database_url(&copy.dir).as_deref(), Some(db.url()));
        }
    }

    #[test]
    fn fresh_names_differ_and_are_plain_identifiers() {
        let (a, b) = (fresh_name(), fresh_name());
        assert_ne!(a, b);
        assert!(a.len() < 64 && a.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_'), "{a}");
    }
}
