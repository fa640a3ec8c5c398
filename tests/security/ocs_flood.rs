//! Item 2 (OCS part): an unauthenticated OCS client flooding the server with
//! made-up DEVICEIDs, and inventories with huge download histories. New
//! DEVICEIDs are bounded per client address (`[ocs] new_devices_per_hour`,
//! then 429) and in total (`[ocs] max_devices`); at the total a new DEVICEID
//! takes the place of a stale fake (no history, no report, not seen for
//! `[ocs] stale_after_days`), or gets 503 if there is none. A history longer
//! than `[ocs] max_history` gets 413 and is logged once.

use outpost_agent::engine::ocs::Request;
use outpost_tests::{Server, TempDir, text};

use crate::ocs_kind::{edit_config, ocs_post, prolog, report};

fn fake(i: u32) -> String {
    format!("fake{i}-2026-11-23-18-03-38")
}

/// A server where every device gets one package, so `status` lists them all.
fn server(t: &TempDir, edits: &[(&str, &str)]) -> Server {
    let mut srv = Server::init(t.join("srv"), &[]);
    let id = srv.package_add(&["--action", "execute", "--command", "true"]);
    let o = srv.cmd(&["assign", "--package", &id.to_string(), "--all"]);
    assert!(o.status.success(), "{}", text(&o));
    for (from, to) in edits {
        edit_config(&srv, from, to);
    }
    srv.start();
    srv
}

fn device_count(srv: &Server) -> usize {
    srv.statuses().len()
}

fn devices(srv: &Server) -> Vec<String> {
    let mut d: Vec<String> = srv.statuses().into_iter().map(|(_, d, _)| d).collect();
    d.sort();
    d
}

#[test]
fn a_flood_of_fake_deviceids_from_one_address_is_bounded() {
    let t = TempDir::new("sec-flood-rate");
    let srv = server(&t, &[("new_devices_per_hour = 100", "new_devices_per_hour = 5")]);
    for i in 0..5 {
        assert_eq!(ocs_post(&srv, &prolog(&fake(i)), None).0, 200, "device {i}");
    }
    for i in 5..40 {
        let (status, _, retry) = ocs_post(&srv, &prolog(&fake(i)), None);
        assert_eq!(status, 429, "device {i} is one too many from 127.0.0.1");
        assert!(retry.is_some_and(|r| r.parse::<u64>().is_ok_and(|s| s > 0)), "Retry-After");
    }
    assert_eq!(device_count(&srv), 5);
    assert_eq!(ocs_post(&srv, &prolog(&fake(0)), None).0, 200, "known devices are still served");
    let log = std::fs::read_to_string(srv.dir.join("serve.log")).unwrap_or_default();
    assert_eq!(log.matches("new DEVICEIDs; refusing more").count(), 1, "logged once: {log}");
}

#[test]
fn the_total_number_of_ocs_devices_is_bounded() {
    let t = TempDir::new("sec-flood-total");
    let srv = server(&t, &[("max_devices = 100000", "max_devices = 3")]);
    for i in 0..3 {
        assert_eq!(ocs_post(&srv, &prolog(&fake(i)), None).0, 200, "device {i}");
    }
    for i in 3..10 {
        assert_eq!(ocs_post(&srv, &prolog(&fake(i)), None).0, 503, "device {i} is past max_devices");
    }
    let inv = Request::Inventory { device_id: fake(99), history: vec![] }.to_xml();
    assert_eq!(ocs_post(&srv, &inv, None).0, 503, "an inventory cannot register one either");
    assert_eq!(device_count(&srv), 3);
}

#[test]
fn an_oversized_inventory_history_is_refused() {
    let t = TempDir::new("sec-flood-history");
    let srv = server(&t, &[]);
    let dev = fake(1);
    let history = |n: u64| Request::Inventory { device_id: dev.clone(), history: (1..=n).collect() }.to_xml();
    for _ in 0..3 {
        let (status, body, _) = ocs_post(&srv, &history(1_001), None);
        assert_eq!(status, 413, "{body}");
    }
    assert_eq!(device_count(&srv), 0, "nothing registered or stored");
    assert_eq!(ocs_post(&srv, &history(1_000), None).0, 200, "max_history entries are fine");
    let log = std::fs::read_to_string(srv.dir.join("serve.log")).unwrap_or_default();
    assert_eq!(log.matches("max_history is 1000").count(), 1, "logged once: {log}");
}

#[test]
fn a_full_device_table_makes_room_by_evicting_stale_fakes() {
    let t = TempDir::new("sec-flood-evict");
    let mut srv = server(&t, &[("max_devices = 100000", "max_devices = 3")]);
    // Two devices with a past: a download history, a reported status.
    for i in 0..3 {
        assert_eq!(ocs_post(&srv, &prolog(&fake(i)), None).0, 200, "device {i}");
    }
    let inv = Request::Inventory { device_id: fake(1), history: vec![424_242] }.to_xml();
    assert_eq!(ocs_post(&srv, &inv, None).0, 200);
    let package = srv.statuses()[0].0;
    assert_eq!(ocs_post(&srv, &report(&fake(2), package, "ERR_ABORTED"), None).0, 200);
    assert_eq!(ocs_post(&srv, &prolog(&fake(3)), None).0, 503, "no device is stale yet");

    // Time passes: the server reads the wall clock, so age the rows instead
    // (timestamps are RFC 3339 text), with the server stopped.
    assert!(srv.stop(), "server stopped cleanly");
    let aged =
        srv.sql_execute("UPDATE devices SET created = '2020-01-01T00:00:00Z', last_seen = '2020-01-01T00:00:00Z'");
    assert_eq!(aged, 3);
    srv.start();

    assert_eq!(ocs_post(&srv, &prolog(&fake(3)), None).0, 200, "the stale fake makes room");
    assert_eq!(devices(&srv), [fake(1), fake(2), fake(3)], "fake0 went, the devices with a past stayed");
    assert_eq!(ocs_post(&srv, &prolog(&fake(4)), None).0, 503, "none stale left: 503 as before");
    assert_eq!(ocs_post(&srv, &prolog(&fake(0)), None).0, 503, "the evicted id is a newcomer like any other");
    assert_eq!(device_count(&srv), 3);
    let log = std::fs::read_to_string(srv.dir.join("serve.log")).unwrap_or_default();
    assert_eq!(log.matches(&format!("evicted the stale OCS device {}", fake(0))).count(), 1, "{log}");
}
