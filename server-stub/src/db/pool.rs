//! The connections a `serve` process holds: one to SQLite (one writer; its
//! failure counts live in that one connection), several to PostgreSQL, so
//! that requests wait on the database's work, not on one another's round
//! trips. `lock` hands out a free connection, or waits for one.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{LockResult, Mutex, MutexGuard, TryLockError};

use super::{Backend, Db};

/// Connections to PostgreSQL per `serve` instance. With several instances,
/// PostgreSQL's `max_connections` (100 by default) must hold them all, and
/// the commands run beside them.
pub const POSTGRES_CONNECTIONS: usize = 4;

/// A server's database connections.
pub struct Pool {
    conns: Vec<Mutex<Db>>,
    next: AtomicUsize,
}

impl Pool {
    /// The database of the server in `dir` ([`Db::open_in`]): one
    /// connection to SQLite, `[database] connections` (default
    /// [`POSTGRES_CONNECTIONS`]) to PostgreSQL.
    pub fn open_in(dir: &Path) -> Result<Self, String> {
        let first = Db::open_in(dir)?;
        let n = match first.backend() {
            Backend::Postgres => {
                crate::config::ServerConfig::load(dir)?.database.connections.unwrap_or(POSTGRES_CONNECTIONS)
            }
            Backend::Sqlite => 1,
        };
        let mut conns = vec![Mutex::new(first)];
        while conns.len() < n {
            conns.push(Mutex::new(Db::open_in(dir)?));
        }
        Ok(Self::of(conns))
    }

    /// A pool of the given connections (at least one).
    pub fn of(conns: Vec<Mutex<Db>>) -> Self {
        assert!(!conns.is_empty(), "a pool needs a connection");
        Self { conns, next: AtomicUsize::new(0) }
    }

    /// How many connections it holds.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// A free connection, or, when all are busy, the next one in turn once
    /// it is free. An error only if a thread panicked holding it.
    pub fn lock(&self) -> LockResult<MutexGuard<'_, Db>> {
        for c in &self.conns {
            match c.try_lock() {
                Ok(g) => return Ok(g),
                Err(TryLockError::Poisoned(p)) => return Err(p),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len();
        self.conns[i].lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_connection_is_passed_over_for_a_free_one() {
        let pool = Pool::of(vec![Mutex::new(crate::db::test_db("pool1")), Mutex::new(crate::db::test_db("pool2"))]);
        let a = pool.lock().unwrap();
        let b = pool.lock().unwrap();
        assert!(!std::ptr::eq(&*a, &*b), "two requests at once get two connections");
        drop(a);
        let c = pool.lock().unwrap();
        assert!(!std::ptr::eq(&*c, &*b));
    }
}
