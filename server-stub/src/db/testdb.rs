//! A fresh database for a unit test: SQLite in a temporary file, or, when
//! `OUTPOST_TEST_POSTGRES` holds a base URL (`scripts/postgres start`
//! prints it), a new PostgreSQL database, so that the same tests check both
//! backends.

use std::sync::atomic::{AtomicU32, Ordering};

use super::Db;

static NEXT: AtomicU32 = AtomicU32::new(0);

fn name(tag: &str) -> String {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("u_{tag}_{}_{n}", std::process::id()).replace(|c: char| !c.is_ascii_alphanumeric(), "_")
}

/// With `OUTPOST_TEST_POSTGRES`: the URL of a new, empty database.
fn postgres_db(name: &str) -> Option<String> {
    let base = std::env::var("OUTPOST_TEST_POSTGRES").ok()?;
    let admin = super::Conn::postgres(&base).expect("OUTPOST_TEST_POSTGRES reachable");
    admin.execute_batch(&format!("DROP DATABASE IF EXISTS {name}")).expect("drop database");
    admin.execute_batch(&format!("CREATE DATABASE {name}")).expect("create database");
    let (head, _) = base.rsplit_once('/').expect("a URL ending in /DATABASE");
    Some(format!("{head}/{name}"))
}

/// The URL of a new PostgreSQL database; `None` without
/// `OUTPOST_TEST_POSTGRES`.
pub(crate) fn test_db_url(tag: &str) -> Option<String> {
    postgres_db(&name(tag))
}

/// Two connections to one new PostgreSQL database (two instances of the
/// server); `None` without `OUTPOST_TEST_POSTGRES`.
pub(crate) fn test_db_pair(tag: &str) -> Option<(Db, Db)> {
    let url = postgres_db(&name(tag))?;
    Some((Db::open_postgres(&url).expect("open"), Db::open_postgres(&url).expect("open")))
}

/// `n` connections to one new PostgreSQL database; `None` without
/// `OUTPOST_TEST_POSTGRES`.
pub(crate) fn test_db_many(tag: &str, n: usize) -> Option<Vec<Db>> {
    let url = postgres_db(&name(tag))?;
    Some((0..n).map(|_| Db::open_postgres(&url).expect("open")).collect())
}

/// A new, empty database named after `tag`.
pub(crate) fn test_db(tag: &str) -> Db {
    let name = name(tag);
    if let Some(url) = postgres_db(&name) {
        return Db::open_postgres(&url).expect("open the test database");
    }
    let p = std::env::temp_dir().join(format!("outpost-{name}.db"));
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", p.display()));
    }
    Db::open(&p).expect("open the test database")
}
