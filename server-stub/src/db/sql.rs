//! One SQL connection, to SQLite or to PostgreSQL, with one interface.
//!
//! The server's statements are written once, in the SQL both understand
//! (`INSERT … ON CONFLICT`, `COALESCE`, `RETURNING`, `?N` parameters); this
//! file is the only one that knows which backend runs them:
//!
//! ```text
//!   db/*.rs ── execute / query_row / query_map (?N, Arg) ──► Conn
//!                                                            ├─ Lite: rusqlite, statements cached
//!                                                            └─ Pg:   postgres, ?N → $N, statements cached
//! ```
//!
//! Rows come back as owned [`Cell`]s read through [`Row::get`], so a
//! caller's code is the same for both. Values are converted by the type
//! the database declares (an `INT4` parameter takes an `i64` that fits, a
//! `BOOL` column reads as an integer), which keeps PostgreSQL's strict
//! typing out of the callers.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

/// Which database a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded default, `DIR/state.db`.
    Sqlite,
    /// A PostgreSQL server shared by several `serve` instances.
    Postgres,
}

/// A database error.
#[derive(Debug)]
pub enum Error {
    /// From SQLite.
    Sqlite(rusqlite::Error),
    /// From PostgreSQL (or the connection to it).
    Postgres(postgres::Error),
    /// A query that must return a row returned none.
    NoRows,
    /// A column held a value the caller cannot take.
    Type {
        /// Column index.
        column: usize,
        /// What the caller asked for.
        want: &'static str,
    },
    /// Anything else (opening, configuration).
    Other(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(e) => write!(f, "{e}"),
            Self::Postgres(e) => match e.as_db_error() {
                Some(d) => write!(f, "postgres: {}: {}", d.code().code(), d.message()),
                None => write!(f, "postgres: {e}"),
            },
            Self::NoRows => f.write_str("query returned no rows"),
            Self::Type { column, want } => write!(f, "column {column} is not {want}"),
            Self::Other(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for Error {}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::QueryReturnedNoRows => Self::NoRows,
            e => Self::Sqlite(e),
        }
    }
}

impl From<postgres::Error> for Error {
    fn from(e: postgres::Error) -> Self {
        Self::Postgres(e)
    }
}

/// A database result.
pub type DbResult<T> = Result<T, Error>;

/// `query_row(…).optional()`: no row is `None`, not an error.
pub trait OptionalExtension<T> {
    /// `Ok(None)` for [`Error::NoRows`].
    fn optional(self) -> DbResult<Option<T>>;
}

impl<T> OptionalExtension<T> for DbResult<T> {
    fn optional(self) -> DbResult<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(Error::NoRows) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

mod values;
pub use values::{Arg, Cell, FromCell, Params, Row, ToArg};

mod pg;

/// Statements kept prepared per PostgreSQL connection (SQLite's own cache
/// holds as many); beyond, the cache starts again.
const STATEMENT_CACHE: usize = 128;

/// One connection.
pub struct Conn {
    inner: Inner,
}

enum Inner {
    Lite(Lite),
    Pg(Box<RefCell<pg::PgConn>>),
}

/// A SQLite connection, with what [`super::changes`] needs: whether
/// commits wait for the disk now, and the file that says a change was made.
struct Lite {
    conn: rusqlite::Connection,
    durable: std::cell::Cell<bool>,
    /// The caller tells the answers kept which devices the commits
    /// concern ([`Conn::set_told`]).
    told: std::cell::Cell<bool>,
    changes: Option<PathBuf>,
}

impl Lite {
    /// After a statement that committed (or one inside a transaction,
    /// which its commit reports): if it changed rows (`before`: SQLite's
    /// count before it) and waited for the disk, the epoch moves on.
    fn wrote(&self, before: u64) -> DbResult<()> {
        let c = &self.conn;
        if self.durable.get() && c.is_autocommit() && c.total_changes() != before {
            super::changes::changed(self.changes.as_deref(), self.told.get()).map_err(Error::Other)?;
        }
        Ok(())
    }
}

impl Conn {
    /// A SQLite connection; `changes`: the file that tells a server of
    /// changes made from another process ([`super::changes`]).
    pub fn sqlite(conn: rusqlite::Connection, changes: Option<PathBuf>) -> Self {
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Self {
            inner: Inner::Lite(Lite { conn, durable: std::cell::Cell::new(true), told: Default::default(), changes }),
        }
    }

    /// Connect to PostgreSQL at `url` (`postgres://user[:password]@host[:port]/db`).
    pub fn postgres(url: &str) -> DbResult<Self> {
        Ok(Self { inner: Inner::Pg(Box::new(RefCell::new(pg::PgConn::connect(url)?))) })
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        match self.inner {
            Inner::Lite(_) => Backend::Sqlite,
            Inner::Pg(_) => Backend::Postgres,
        }
    }

    /// The SQLite connection, for what only SQLite has (pragmas, query plans).
    pub fn as_sqlite(&self) -> Option<&rusqlite::Connection> {
        match &self.inner {
            Inner::Lite(c) => Some(&c.conn),
            Inner::Pg(_) => None,
        }
    }

    /// Run a statement; the number of rows it changed.
    pub fn execute(&self, sql: &str, params: impl Params) -> DbResult<usize> {
        let args = params.args();
        match &self.inner {
            Inner::Lite(c) => {
                let before = c.conn.total_changes();
                let n = c.conn.prepare_cached(sql)?.execute(rusqlite::params_from_iter(args.iter()))?;
                c.wrote(before)?;
                Ok(n)
            }
            Inner::Pg(c) => c.borrow_mut().execute(sql, &args),
        }
    }

    /// Every row of a query.
    pub fn query_all(&self, sql: &str, params: impl Params) -> DbResult<Vec<Row>> {
        let args = params.args();
        match &self.inner {
            Inner::Lite(c) => {
                let before = c.conn.total_changes();
                let mut st = c.conn.prepare_cached(sql)?;
                let n = st.column_count();
                let mut rows = st.query(rusqlite::params_from_iter(args.iter()))?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    out.push(values::lite_row(r, n)?);
                }
                drop(rows);
                // `INSERT … RETURNING` writes through a query.
                c.wrote(before)?;
                Ok(out)
            }
            Inner::Pg(c) => c.borrow_mut().query(sql, &args),
        }
    }

    /// The first row of a query through `f`; [`Error::NoRows`] if none.
    pub fn query_row<T>(&self, sql: &str, params: impl Params, f: impl FnOnce(&Row) -> DbResult<T>) -> DbResult<T> {
        let rows = self.query_all(sql, params)?;
        f(rows.first().ok_or(Error::NoRows)?)
    }

    /// A statement to run (prepared, and cached, when it runs).
    pub fn prepare(&self, sql: &str) -> DbResult<Stmt<'_>> {
        Ok(Stmt { conn: self, sql: sql.to_string() })
    }

    /// As [`Conn::prepare`]: every statement is cached.
    pub fn prepare_cached(&self, sql: &str) -> DbResult<Stmt<'_>> {
        self.prepare(sql)
    }

    /// Run several statements without parameters (a schema).
    pub fn execute_batch(&self, sql: &str) -> DbResult<()> {
        match &self.inner {
            Inner::Lite(c) => {
                let before = c.conn.total_changes();
                c.conn.execute_batch(sql)?;
                c.wrote(before)
            }
            Inner::Pg(c) => c.borrow_mut().batch(sql),
        }
    }

    /// Begin a transaction; it rolls back unless [`Tx::commit`] is called.
    pub fn transaction(&self) -> DbResult<Tx<'_>> {
        let before = match &self.inner {
            Inner::Lite(c) => {
                c.conn.execute_batch("BEGIN")?;
                c.conn.total_changes()
            }
            Inner::Pg(c) => {
                c.borrow_mut().begin()?;
                0
            }
        };
        Ok(Tx { conn: self, open: true, before })
    }

    fn end(&self, commit: bool, before: u64) -> DbResult<()> {
        match &self.inner {
            Inner::Lite(c) => {
                c.conn.execute_batch(if commit { "COMMIT" } else { "ROLLBACK" })?;
                if commit { c.wrote(before) } else { Ok(()) }
            }
            Inner::Pg(c) => c.borrow_mut().end(commit),
        }
    }

    /// Whether commits wait until the data is on disk (the default), or
    /// not (SQLite `synchronous = NORMAL` in WAL mode; PostgreSQL
    /// `synchronous_commit = off`, set with the `BEGIN` of a transaction
    /// or, for a write outside one, on the session, only when it changes):
    /// for writes a power cut may lose without harm.
    pub fn set_durable(&self, durable: bool) -> DbResult<()> {
        match &self.inner {
            Inner::Lite(c) => {
                // Set first: a failure to go back to durable commits must
                // not leave the epoch still (it moves on too often, never
                // too seldom).
                c.durable.set(durable);
                let sql = if durable { "PRAGMA synchronous = FULL" } else { "PRAGMA synchronous = NORMAL" };
                c.conn.prepare_cached(sql)?.execute([])?;
                Ok(())
            }
            Inner::Pg(c) => {
                c.borrow_mut().durable = durable;
                Ok(())
            }
        }
    }
}

impl Conn {
    /// Whether the durable commits from now on are told to the answers
    /// kept by their caller, device by device, rather than by the epoch
    /// (`changes::changed`). PostgreSQL keeps no answers.
    pub fn set_told(&self, told: bool) {
        if let Inner::Lite(c) = &self.inner {
            c.told.set(told);
        }
    }
}

/// A statement of a connection.
pub struct Stmt<'c> {
    conn: &'c Conn,
    sql: String,
}

impl Stmt<'_> {
    /// Run it; the number of rows changed.
    pub fn execute(&mut self, params: impl Params) -> DbResult<usize> {
        self.conn.execute(&self.sql, params)
    }

    /// Its first row through `f`.
    pub fn query_row<T>(&mut self, params: impl Params, f: impl FnOnce(&Row) -> DbResult<T>) -> DbResult<T> {
        self.conn.query_row(&self.sql, params, f)
    }

    /// Every row through `f`, as an iterator of results (read at once).
    pub fn query_map<T>(
        &mut self,
        params: impl Params,
        mut f: impl FnMut(&Row) -> DbResult<T>,
    ) -> DbResult<std::vec::IntoIter<DbResult<T>>> {
        let rows = self.conn.query_all(&self.sql, params)?;
        Ok(rows.iter().map(&mut f).collect::<Vec<_>>().into_iter())
    }
}

/// An open transaction; rolled back when dropped uncommitted.
pub struct Tx<'c> {
    conn: &'c Conn,
    open: bool,
    /// SQLite's count of changed rows when it began.
    before: u64,
}

impl Tx<'_> {
    /// Commit it.
    pub fn commit(mut self) -> DbResult<()> {
        let r = self.conn.end(true, self.before);
        // A COMMIT that failed leaves the transaction open: `Drop` rolls it
        // back, so the connection is not left inside it.
        self.open = r.is_err();
        r
    }
}

impl std::ops::Deref for Tx<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.conn
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self.conn.end(false, self.before);
        }
    }
}

/// Statements cached by their text, at most `cap`; past it, the cache
/// starts again (the hot statements come back at once).
pub(crate) struct Cache<V> {
    map: HashMap<String, V>,
    cap: usize,
}

impl<V: Clone> Cache<V> {
    pub(crate) fn new(cap: usize) -> Self {
        Self { map: HashMap::new(), cap }
    }

    pub(crate) fn get(&self, sql: &str) -> Option<V> {
        self.map.get(sql).cloned()
    }

    pub(crate) fn put(&mut self, sql: &str, v: V) {
        if self.map.len() >= self.cap {
            self.map.clear();
        }
        self.map.insert(sql.to_string(), v);
    }
}

#[cfg(test)]
mod tests;
