use super::{Backend, Conn, Error, OptionalExtension};

fn conn() -> Conn {
    let c = Conn::sqlite(rusqlite::Connection::open_in_memory().unwrap(), None);
    c.execute_batch("CREATE TABLE t(k TEXT PRIMARY KEY, n INTEGER, b BLOB, f INTEGER NOT NULL DEFAULT 0)").unwrap();
    c
}

#[test]
fn values_go_in_and_come_out_by_type() {
    let c = conn();
    assert_eq!(c.backend(), Backend::Sqlite);
    let n = c.execute("INSERT INTO t(k, n, b, f) VALUES (?1, ?2, ?3, ?4)", crate::params!["a", 7u64, [1u8, 2], true]);
    assert_eq!(n.unwrap(), 1);
    let (k, v, b, f): (String, u64, Vec<u8>, bool) = c
        .query_row("SELECT k, n, b, f FROM t WHERE k = ?1", ["a"], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap();
    assert_eq!((k.as_str(), v, b.as_slice(), f), ("a", 7, &[1u8, 2][..], true));
    let none: Option<i64> = c.query_row("SELECT n FROM t WHERE k = 'zz'", [], |r| r.get(0)).optional().unwrap();
    assert_eq!(none, None);
    let null: Option<i64> = c.query_row("SELECT NULL", [], |r| r.get(0)).unwrap();
    assert_eq!(null, None);
    assert!(matches!(c.query_row("SELECT k FROM t", [], |r| r.get::<_, i64>(0)), Err(Error::Type { column: 0, .. })));
    assert!(matches!(c.query_row("SELECT k FROM t WHERE 0", [], |r| r.get::<_, String>(0)), Err(Error::NoRows)));
}

#[test]
fn a_transaction_dropped_uncommitted_rolls_back() {
    let c = conn();
    {
        let tx = c.transaction().unwrap();
        tx.execute("INSERT INTO t(k) VALUES ('x')", []).unwrap();
    }
    let tx = c.transaction().unwrap();
    tx.execute("INSERT INTO t(k) VALUES ('y')", []).unwrap();
    tx.commit().unwrap();
    let mut st = c.prepare("SELECT k FROM t ORDER BY k").unwrap();
    let keys: Vec<String> = st.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(keys, ["y"]);
}

#[test]
fn durability_is_switched_and_back() {
    let c = conn();
    let sync = |c: &Conn| c.query_row("PRAGMA synchronous", [], |r| r.get::<_, i64>(0)).unwrap();
    c.set_durable(false).unwrap();
    assert_eq!(sync(&c), 1, "NORMAL");
    c.set_durable(true).unwrap();
    assert_eq!(sync(&c), 2, "FULL");
}

#[test]
fn on_postgres_a_relaxed_write_outside_a_transaction_leaves_the_next_durable_ones_durable() {
    let Some((db, _)) = crate::db::test_db_pair("durable") else {
        eprintln!("skipped: needs OUTPOST_TEST_POSTGRES");
        return;
    };
    let c = db.conn();
    c.execute_batch("CREATE TABLE t(k TEXT PRIMARY KEY)").unwrap();
    let show = |c: &Conn| c.query_row("SHOW synchronous_commit", [], |r| r.get::<_, String>(0)).unwrap();
    c.set_durable(false).unwrap();
    c.execute("INSERT INTO t(k) VALUES ('relaxed')", []).unwrap();
    assert_eq!(show(c), "off", "the relaxed write committed without waiting");
    let tx = c.transaction().unwrap();
    assert_eq!(show(&tx), "off", "and so does a relaxed transaction");
    drop(tx);
    c.set_durable(true).unwrap();
    let tx = c.transaction().unwrap();
    assert_eq!(show(&tx), "on", "a durable transaction waits, whatever the session says");
    tx.commit().unwrap();
    c.execute("INSERT INTO t(k) VALUES ('durable')", []).unwrap();
    assert_eq!(show(c), "on", "a durable write outside a transaction waits too");
}
