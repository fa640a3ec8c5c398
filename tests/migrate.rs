//! `outpost-server migrate --from sqlite --to postgres` (issue 15): an
//! installation that deployed on SQLite moves to PostgreSQL with its
//! devices, statuses and history; its agents go on without a change; a
//! second migration, or one into a database that holds a server, is refused.
//!
//! Runs where PostgreSQL is (`OUTPOST_TEST_POSTGRES`, set by `scripts/test`
//! after `scripts/postgres start`); else it says it is skipped.

use std::fs;

use outpost_tests::{Member, Server, TempDir, agent, random_bytes, targz, test_database, text};

#[test]
fn an_installation_moves_from_sqlite_to_postgres_with_its_history_and_its_agents_go_on() {
    let Some(db) = test_database() else {
        eprintln!("skipped: needs PostgreSQL (OUTPOST_TEST_POSTGRES)");
        return;
    };
    let t = TempDir::new("migrate");
    let mut srv = Server::init_sqlite(t.join("srv"));
    let cfg = srv.device_add("pc1", t.path());
    fs::write(t.join("a.tar.gz"), targz(&[Member::File("a.bin", &random_bytes(4096, 1), 0o644)])).unwrap();
    let first = srv.store_package(t.join("a.tar.gz").to_str().unwrap(), t.join("a").to_str().unwrap(), &[]);
    srv.assign(first, "pc1", &[]);
    let o = srv.cmd(&["depot", "add", "--loc", "depot.example.org/outpost", "--networks", "192.0.2.0/24"]);
    assert!(o.status.success(), "{}", text(&o));
    srv.start();
    let o = agent(&cfg, &["run", "--once"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(srv.status_of(first, "pc1"), "SUCCESS");
    assert!(srv.stop());
    let before = srv.cmd(&["status", "--json"]);

    let o = srv.cmd(&["migrate", "--from", "sqlite", "--to", "postgres", "--database", db.url()]);
    assert!(o.status.success(), "migrate: {}", text(&o));
    assert!(text(&o).contains("server.toml now uses it"), "{}", text(&o));
    assert!(fs::read_to_string(srv.dir.join("server.toml")).unwrap().contains(db.url()));
    assert!(!srv.dir.join("state.db").exists(), "nothing opens the old state by itself any more");
    assert!(srv.dir.join("state.db.migrated").exists(), "it is kept for a way back");
    assert_eq!(srv.cmd(&["status", "--json"]).stdout, before.stdout, "the same statuses, now from PostgreSQL");
    let history = srv.sql_rows(&format!("SELECT status FROM status_history WHERE package = {first} ORDER BY rowid"));
    let history: Vec<&str> = history.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(history, ["WAITING NOTIFICATION", "NOTIFIED", "SUCCESS"], "the history came along, once");
    let depots = srv.cmd(&["depot", "list"]);
    assert!(text(&depots).contains("depot.example.org/outpost"), "{}", text(&depots));

    let again = srv.cmd(&["migrate", "--from", "sqlite", "--to", "postgres", "--database", db.url()]);
    assert!(!again.status.success() && text(&again).contains("already"), "{}", text(&again));

    // The agent goes on against the server on PostgreSQL: the first package
    // is not sent again, a new one deploys.
    fs::write(t.join("b.tar.gz"), targz(&[Member::File("b.bin", &random_bytes(4096, 2), 0o644)])).unwrap();
    let second = srv.store_package(t.join("b.tar.gz").to_str().unwrap(), t.join("b").to_str().unwrap(), &[]);
    srv.assign(second, "pc1", &[]);
    srv.start();
    let o = agent(&cfg, &["run", "--once"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(srv.status_of(second, "pc1"), "SUCCESS");
    assert_eq!(srv.status_of(first, "pc1"), "SUCCESS");
    assert!(text(&o).contains("1 package(s) finished"), "only the new package: {}", text(&o));
    assert!(srv.stop());

    // A database that holds a server already is not merged into.
    let other = Server::init_sqlite(t.join("other"));
    let o = other.cmd(&["migrate", "--from", "sqlite", "--to", "postgres", "--database", db.url()]);
    assert!(!o.status.success() && text(&o).contains("empty"), "{}", text(&o));
    assert!(!fs::read_to_string(other.dir.join("server.toml")).unwrap().contains("[database]"));
}
