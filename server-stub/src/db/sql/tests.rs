use super::{Backend, Conn, Error, OptionalExtension};

fn conn() -> Conn {
    let c = Conn::sqlite(rusqlite::Connection::open_in_memory().unwrap());
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
