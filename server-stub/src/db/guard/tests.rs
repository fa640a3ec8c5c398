use super::*;

const T0: u64 = 1_800_000_000;

fn db(tag: &str) -> Db {
    crate::db::test_db(tag)
}

fn client(s: &str) -> Client {
    Client::parse(s).unwrap()
}

#[test]
fn a_guessed_identity_is_blocked_its_neighbours_are_not_and_unblock_lifts_it() {
    let mut d = db("lock");
    let p = Policy::default();
    let nat = client("198.51.100.1");
    for i in 0..9 {
        assert_eq!(d.auth_failed(T0 + i, &p, nat, Scope::Api, "victim").unwrap(), Failure::default());
    }
    let f = d.auth_failed(T0 + 9, &p, nat, Scope::Api, "victim").unwrap();
    assert!(f.claim_blocked && !f.address_blocked);
    assert_eq!(d.auth_gate(T0 + 10, nat, Scope::Api, "victim").unwrap(), Gate::Blocked { retry_after: 119 });
    assert_eq!(d.auth_gate(T0 + 10, nat, Scope::Api, "neighbour").unwrap(), Gate::Open);
    assert_eq!(d.auth_gate(T0 + 10, nat, Scope::Ocs, "victim").unwrap(), Gate::Open, "scopes are apart");
    assert_eq!(d.auth_gate(T0 + 10, client("203.0.113.9"), Scope::Api, "victim").unwrap(), Gate::Open);
    let rows = d.blocked(T0 + 10).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].client.as_str(), rows[0].identity.as_str()), ("198.51.100.1", "victim"));
    assert_eq!(d.unblock(T0 + 10, client("203.0.113.9")).unwrap(), 0);
    assert_eq!(d.unblock(T0 + 10, nat).unwrap(), 1);
    assert_eq!(d.auth_gate(T0 + 10, nat, Scope::Api, "victim").unwrap(), Gate::Open);
    assert!(d.blocked(T0 + 10).unwrap().is_empty());
}

#[test]
fn rotating_identities_blocks_the_address_but_not_devices_that_work_there() {
    let mut d = db("rotate");
    let p = Policy::default();
    let nat = client("198.51.100.2");
    let read = d.auth_gate_read(T0, nat, Scope::Api, "worker").unwrap();
    d.auth_succeeded(T0, nat, Scope::Api, "worker", &read).unwrap();
    let mut blocked = 0;
    for i in 0..100 {
        let f = d.auth_failed(T0 + 1, &p, nat, Scope::Api, &format!("made-up-{i}")).unwrap();
        assert!(!f.claim_blocked);
        blocked += usize::from(f.address_blocked);
    }
    assert_eq!(blocked, 1);
    assert!(matches!(d.auth_gate(T0 + 2, nat, Scope::Api, "newcomer").unwrap(), Gate::Blocked { .. }));
    assert_eq!(d.auth_gate(T0 + 2, nat, Scope::Api, "worker").unwrap(), Gate::Open, "trusted from here");
    assert_eq!(d.auth_gate(T0 + 121, nat, Scope::Api, "newcomer").unwrap(), Gate::Open);
}

#[test]
fn success_clears_failures_and_rows_are_forgotten_when_idle() {
    let mut d = db("idle");
    let p = Policy::default();
    let a = client("192.0.2.50");
    for _ in 0..9 {
        d.auth_failed(T0, &p, a, Scope::Ocs, "pc-2026-01-01-00-00-00").unwrap();
    }
    let read = d.auth_gate_read(T0, a, Scope::Ocs, "pc-2026-01-01-00-00-00").unwrap();
    d.auth_succeeded(T0, a, Scope::Ocs, "pc-2026-01-01-00-00-00", &read).unwrap();
    let f = d.auth_failed(T0 + 1, &p, a, Scope::Ocs, "pc-2026-01-01-00-00-00").unwrap();
    assert!(!f.claim_blocked, "the count started again");
    // A later failure from elsewhere prunes a's address row (idle) but keeps its trust.
    d.auth_failed(T0 + 1000, &p, client("192.0.2.51"), Scope::Api, "x").unwrap();
    let n: i64 =
        d.conn.query_row("SELECT COUNT(*) FROM auth_counters WHERE client = '192.0.2.50'", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 1, "only the trusted claim row is left");
}

#[test]
fn failures_are_counted_in_memory_and_only_blocks_written() {
    let mut d = db("memory");
    let p = Policy::default();
    let a = client("192.0.2.60");
    let rows = |d: &Db| -> i64 { d.conn.query_row("SELECT COUNT(*) FROM auth_counters", [], |r| r.get(0)).unwrap() };
    for i in 0..9 {
        d.auth_failed(T0 + i, &p, a, Scope::Api, "pc").unwrap();
    }
    if d.backend() == Backend::Postgres {
        assert_eq!(rows(&d), 2, "shared by instances: the claim's and the address's counts are written");
        return;
    }
    assert_eq!(rows(&d), 0, "nine failures, no row written");
    assert!(d.auth_failed(T0 + 9, &p, a, Scope::Api, "pc").unwrap().claim_blocked);
    assert_eq!(rows(&d), 1, "the block is");
    assert_eq!(d.blocked(T0 + 10).unwrap().len(), 1, "status sees it");
}

#[test]
fn new_deviceids_are_bounded_per_client_and_in_total() {
    let mut d = db("flood");
    let lim = OcsLimits { new_devices_per_hour: 3, max_devices: 5, stale_after_days: 7 };
    let (a, b) = (client("192.0.2.1"), client("192.0.2.2"));
    let id = |i: u32| format!("fake{i}-2026-01-01-00-00-00");
    for i in 0..3 {
        assert_eq!(d.register_ocs_device(T0, a, lim, &id(i)).unwrap(), Registration::New);
    }
    assert_eq!(d.register_ocs_device(T0, a, lim, &id(3)).unwrap(), Registration::RateLimited { retry_after: 1200 });
    assert_eq!(d.register_ocs_device(T0, a, lim, &id(0)).unwrap(), Registration::Known, "known ids still pass");
    for i in 10..12 {
        assert_eq!(d.register_ocs_device(T0, b, lim, &id(i)).unwrap(), Registration::New);
    }
    assert_eq!(d.register_ocs_device(T0, b, lim, &id(12)).unwrap(), Registration::Full);
    assert_eq!(d.register_ocs_device(T0 + 1200, a, lim, &id(3)).unwrap(), Registration::Full);
    assert_eq!(d.device_kind(&id(12)).unwrap(), None);
}

#[test]
fn log_once_per_quiet_period() {
    let mut d = db("log");
    assert!(d.should_log(T0, "k", 60).unwrap());
    assert!(!d.should_log(T0 + 59, "k", 60).unwrap());
    assert!(d.should_log(T0 + 59, "other", 60).unwrap());
    assert!(d.should_log(T0 + 60, "k", 60).unwrap());
}

#[test]
fn instances_sharing_a_database_count_one_guesser_together() {
    let Some((mut one, mut two)) = crate::db::test_db_pair("shared") else {
        eprintln!("skipped: needs OUTPOST_TEST_POSTGRES (SQLite has one instance per database)");
        return;
    };
    let p = Policy::default();
    let a = client("192.0.2.61");
    for i in 0..5 {
        assert!(!one.auth_failed(T0 + i, &p, a, Scope::Api, "pc").unwrap().claim_blocked);
    }
    for i in 5..9 {
        assert!(!two.auth_failed(T0 + i, &p, a, Scope::Api, "pc").unwrap().claim_blocked);
    }
    assert!(two.auth_failed(T0 + 9, &p, a, Scope::Api, "pc").unwrap().claim_blocked, "the tenth, on either");
    let gate = one.auth_gate(T0 + 10, a, Scope::Api, "pc").unwrap();
    assert!(matches!(gate, Gate::Blocked { .. }), "and the other sees the block: {gate:?}");
}

#[test]
fn concurrent_failures_on_shared_connections_each_count() {
    let Some(conns) = crate::db::test_db_many("concurrent", 4) else {
        eprintln!("skipped: needs OUTPOST_TEST_POSTGRES (SQLite has one connection per server)");
        return;
    };
    let p = &Policy { max_auth_failures: 40, ..Policy::default() };
    let a = client("192.0.2.62");
    // 4 connections, 10 failures each, at once: the 40th blocks.
    let blocked = std::thread::scope(|s| {
        let workers: Vec<_> = conns
            .into_iter()
            .map(|mut d| {
                s.spawn(move || {
                    (0..10).filter(|_| d.auth_failed(T0, p, a, Scope::Api, "pc").unwrap().claim_blocked).count()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum::<usize>()
    });
    assert_eq!(blocked, 1, "exactly the 40th failure started the block: none was lost");
}

#[test]
fn concurrent_registrations_on_shared_connections_keep_the_bucket() {
    let Some(conns) = crate::db::test_db_many("register", 4) else {
        eprintln!("skipped: needs OUTPOST_TEST_POSTGRES (SQLite has one connection per server)");
        return;
    };
    let lim = OcsLimits { new_devices_per_hour: 5, max_devices: 1000, stale_after_days: 7 };
    let a = client("192.0.2.63");
    let new = std::thread::scope(|s| {
        let workers: Vec<_> = conns
            .into_iter()
            .enumerate()
            .map(|(w, mut d)| {
                s.spawn(move || {
                    (0..5)
                        .filter(|i| {
                            let id = format!("fake{w}{i}-2026-01-01-00-00-00");
                            d.register_ocs_device(T0, a, lim, &id).unwrap() == Registration::New
                        })
                        .count()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum::<usize>()
    });
    assert_eq!(new, 5, "20 new DEVICEIDs at once from one client, 5 an hour allowed");
}
