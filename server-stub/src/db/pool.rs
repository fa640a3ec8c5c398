//! The connections a `serve` process holds: one to SQLite (one writer; its
//! failure counts live in that one connection), several to PostgreSQL, so
//! that requests wait on the database's work, not on one another's round
//! trips. `lock` hands out a free connection, or waits for the first one
//! freed, in order of arrival: never for one connection in particular,
//! which a long transaction may hold for seconds while the others come
//! free (polls of a PostgreSQL bench with 100,000 devices waited more than
//! 10 s so), and never passed over by threads that give one back and take
//! it again at once.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use super::{Backend, Db};

/// Connections to PostgreSQL per `serve` instance. With several instances,
/// PostgreSQL's `max_connections` (100 by default) must hold them all, and
/// the commands run beside them.
pub const POSTGRES_CONNECTIONS: usize = 4;

/// A server's database connections.
pub struct Pool {
    conns: Vec<Mutex<Db>>,
    /// Which connections are free, and who waits, in order of arrival.
    line: Mutex<Line>,
    freed: Condvar,
}

/// The free connections and the queue for them: first come, first served,
/// so that a thread that waits (a second's contacts) is not passed over
/// forever by poll workers that give a connection back and take it again.
#[derive(Default)]
struct Line {
    free: Vec<usize>,
    queue: std::collections::VecDeque<u64>,
    next_ticket: u64,
}

/// A connection taken from a [`Pool`], given back when dropped.
pub struct Pooled<'a> {
    // Fields drop in this order: the connection is free before waiters
    // are told so.
    db: MutexGuard<'a, Db>,
    _back: GiveBack<'a>,
}

/// Gives connection `.1` back to pool `.0` when dropped.
struct GiveBack<'a>(&'a Pool, usize);

impl Drop for GiveBack<'_> {
    fn drop(&mut self) {
        self.0.give_back(self.1);
    }
}

/// A thread panicked holding a connection: what it wrote may be half done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Poisoned;

impl fmt::Display for Poisoned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("database lock poisoned")
    }
}

impl std::error::Error for Poisoned {}

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
        let line = Line { free: (0..conns.len()).rev().collect(), ..Line::default() };
        Self { conns, line: Mutex::new(line), freed: Condvar::new() }
    }

    /// How many connections it holds.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// A free connection, or, when all are busy, the first one given back
    /// after those who waited before. An error only if a thread panicked
    /// holding one.
    pub fn lock(&self) -> Result<Pooled<'_>, Poisoned> {
        let mut line = self.line.lock().unwrap_or_else(PoisonError::into_inner);
        let i = if line.queue.is_empty()
            && let Some(i) = line.free.pop()
        {
            i
        } else {
            let ticket = line.next_ticket;
            line.next_ticket = line.next_ticket.wrapping_add(1);
            line.queue.push_back(ticket);
            loop {
                if line.queue.front() == Some(&ticket)
                    && let Some(i) = line.free.pop()
                {
                    line.queue.pop_front();
                    // The next in line may find another free.
                    self.freed.notify_all();
                    break i;
                }
                line = self.freed.wait(line).unwrap_or_else(PoisonError::into_inner);
            }
        };
        drop(line);
        let back = GiveBack(self, i);
        // Given to this thread alone: never contended.
        let db = self.conns[i].lock().map_err(|_| Poisoned)?;
        Ok(Pooled { db, _back: back })
    }

    /// Threads waiting for a connection now.
    pub fn waiting(&self) -> usize {
        self.line.lock().unwrap_or_else(PoisonError::into_inner).queue.len()
    }

    fn give_back(&self, i: usize) {
        self.line.lock().unwrap_or_else(PoisonError::into_inner).free.push(i);
        self.freed.notify_all();
    }
}

impl Deref for Pooled<'_> {
    type Target = Db;
    fn deref(&self) -> &Db {
        &self.db
    }
}

impl DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Db {
        &mut self.db
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

    #[test]
    fn one_who_gives_a_connection_back_and_asks_again_waits_behind_those_who_waited() {
        let pool = Pool::of(vec![Mutex::new(crate::db::test_db("pool5"))]);
        let order = Mutex::new(Vec::new());
        let held = pool.lock().unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                let _c = pool.lock().unwrap();
                order.lock().unwrap().push("waiter");
            });
            while pool.waiting() == 0 {
                std::thread::yield_now();
            }
            drop(held);
            let _again = pool.lock().unwrap();
            order.lock().unwrap().push("again");
        });
        assert_eq!(*order.lock().unwrap(), ["waiter", "again"], "first come, first served");
    }

    #[test]
    fn a_waiter_takes_the_first_connection_given_back_not_one_held_long() {
        let pool = Pool::of(vec![Mutex::new(crate::db::test_db("pool3")), Mutex::new(crate::db::test_db("pool4"))]);
        // One connection is held as long as a slow transaction, the other briefly.
        let long = pool.lock().unwrap();
        let brief = pool.lock().unwrap();
        let brief_at = &*brief as *const Db as usize;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            s.spawn(|| {
                let got = pool.lock().unwrap();
                let _ = tx.send(&*got as *const Db as usize);
            });
            while pool.waiting() == 0 {
                std::thread::yield_now();
            }
            drop(brief);
            let got = rx.recv_timeout(std::time::Duration::from_secs(10));
            drop(long);
            assert_eq!(got, Ok(brief_at), "the waiter had the connection given back, not the one still held");
        });
    }
}
