use super::*;
use crate::db::NewPackage;
use outpost_agent::engine::facts::Facts;

fn db(name: &str) -> Db {
    let d = crate::db::test_db(name);
    d.add_package(&NewPackage { id: 7, name: "p", action: "EXECUTE", priority: 5, frags: 0, size: 0, https: false })
        .unwrap();
    d
}

fn tags(t: &[&str]) -> Facts {
    Facts { os: "linux".into(), tags: t.iter().map(|s| s.to_string()).collect(), ..Facts::default() }
}

fn status(d: &Db, dev: &str) -> Option<String> {
    d.status(Some(7)).unwrap().into_iter().find(|r| r.device == dev).map(|r| r.status)
}

#[test]
fn waves_parse_and_bad_ones_are_refused() {
    assert_eq!(parse_waves("5%,25%,100%").unwrap(), [5, 25, 100]);
    assert_eq!(parse_waves("100").unwrap(), [100]);
    for bad in ["", "5%,25%", "25%,5%,100%", "0%,100%", "101%", "x", "50%,50%,100%"] {
        assert!(parse_waves(bad).is_err(), "{bad}");
    }
    assert_eq!(parse_duration("1h"), Ok(3600));
    assert_eq!(parse_duration("90"), Ok(90));
    assert!(parse_duration("1y").is_err());
    assert_eq!(parse_percent("10%"), Ok(10));
}

#[test]
fn placement_is_stable_and_follows_the_shares() {
    let ids: Vec<String> = (0..20).map(|i| format!("pc{i}")).collect();
    let placed = place(7, &ids, &[5, 25, 100]);
    let per: Vec<usize> = (0..3).map(|w| placed.iter().filter(|(_, x)| *x == w).count()).collect();
    assert_eq!(per, [1, 4, 15]);
    // The same device lands in the same wave whatever else is in the group.
    let fewer: Vec<String> = ids.iter().filter(|d| *d != "pc3").cloned().collect();
    let first = |p: &[(String, usize)]| p.iter().find(|(_, w)| *w == 0).map(|(d, _)| d.clone());
    let again = place(7, &ids, &[5, 25, 100]);
    assert_eq!(placed, again);
    if first(&placed).as_deref() != Some("pc3") {
        assert_eq!(first(&place(7, &fewer, &[5, 25, 100])), first(&placed));
    }
}

#[test]
fn a_failing_first_wave_halts_the_rollout_and_resume_goes_on() {
    let mut d = db("halt");
    for i in 0..4 {
        d.add_device(&format!("pc{i}"), &[1; 32]).unwrap();
    }
    d.add_group("all", Some("os = \"linux\"")).unwrap();
    for i in 0..4 {
        d.record_contact(&format!("pc{i}"), Some(&tags(&[])), "127.0.0.1", 1000).unwrap();
    }
    let r = NewRollout { package: 7, group: "all", force: false, waves: &[50, 100], wave_wait: None, halt_above: 10 };
    let id = start(&mut d, &r, 1000).unwrap();
    let first: Vec<String> = d.status(Some(7)).unwrap().into_iter().map(|r| r.device).collect();
    assert_eq!(first.len(), 2, "the first wave only");
    d.poll(&first[0]).unwrap();
    d.report(&first[0], "a", 7, "SUCCESS").unwrap();
    evaluate(&mut d, 1001).unwrap();
    assert_eq!(d.rollout(id).unwrap().unwrap().state, RUNNING, "one device has no result yet");
    d.report(&first[1], "b", 7, "EXIT_CODE_3").unwrap();
    evaluate(&mut d, 1002).unwrap();
    let r = d.rollout(id).unwrap().unwrap();
    assert_eq!(r.state, HALTED);
    assert!(r.reason.contains("1 of 2 devices failed (50%)"), "{}", r.reason);
    assert_eq!(d.status(Some(7)).unwrap().len(), 2, "the second wave is not sent");
    let r = resume(&mut d, id, 1003).unwrap();
    assert_eq!((r.state.as_str(), r.wave), (RUNNING, 1));
    assert_eq!(d.status(Some(7)).unwrap().len(), 4);
}

#[test]
fn a_wave_wait_moves_on_without_every_result() {
    let mut d = db("wait");
    for i in 0..2 {
        d.add_device(&format!("pc{i}"), &[1; 32]).unwrap();
    }
    d.add_group("g", None).unwrap();
    d.group_add_device("g", "pc0").unwrap();
    d.group_add_device("g", "pc1").unwrap();
    let r = NewRollout { package: 7, group: "g", force: false, waves: &[50, 100], wave_wait: Some(60), halt_above: 0 };
    let id = start(&mut d, &r, 1000).unwrap();
    evaluate(&mut d, 1059).unwrap();
    assert_eq!(d.rollout(id).unwrap().unwrap().wave, 0);
    evaluate(&mut d, 1060).unwrap();
    assert_eq!(d.rollout(id).unwrap().unwrap().wave, 1);
    assert_eq!(d.status(Some(7)).unwrap().len(), 2);
}

#[test]
fn dynamic_members_join_and_leave() {
    let mut d = db("dyn");
    d.add_device("a", &[1; 32]).unwrap();
    d.add_device("b", &[1; 32]).unwrap();
    d.record_contact("a", Some(&tags(&["kiosk"])), "127.0.0.1", 1000).unwrap();
    d.add_group("kiosks", Some("tag = \"kiosk\"")).unwrap();
    let r = NewRollout { package: 7, group: "kiosks", force: false, waves: &[100], wave_wait: None, halt_above: 100 };
    start(&mut d, &r, 1000).unwrap();
    assert_eq!(status(&d, "a").as_deref(), Some(WAITING));
    assert_eq!(status(&d, "b"), None);
    // b gains the tag: a future member gets the package.
    d.record_contact("b", Some(&tags(&["kiosk"])), "127.0.0.1", 1001).unwrap();
    evaluate(&mut d, 1001).unwrap();
    assert_eq!(status(&d, "b").as_deref(), Some(WAITING));
    // a loses it before it was notified: withdrawn.
    d.record_contact("a", Some(&tags(&[])), "127.0.0.1", 1002).unwrap();
    evaluate(&mut d, 1002).unwrap();
    assert_eq!(status(&d, "a"), None);
    // b was notified, then leaves: it keeps what it was sent.
    d.poll("b").unwrap();
    d.record_contact("b", Some(&tags(&[])), "127.0.0.1", 1003).unwrap();
    evaluate(&mut d, 1003).unwrap();
    assert_eq!(status(&d, "b").as_deref(), Some(crate::db::NOTIFIED));
}

#[test]
fn cancel_withdraws_what_was_not_sent() {
    let mut d = db("cancel");
    d.add_device("a", &[1; 32]).unwrap();
    d.add_group("g", None).unwrap();
    d.group_add_device("g", "a").unwrap();
    let r = NewRollout { package: 7, group: "g", force: false, waves: &[100], wave_wait: None, halt_above: 100 };
    let id = start(&mut d, &r, 1000).unwrap();
    assert_eq!(cancel(&mut d, id).unwrap(), 1);
    assert_eq!(status(&d, "a"), None);
    evaluate(&mut d, 1001).unwrap();
    assert_eq!(status(&d, "a"), None, "a cancelled rollout assigns nothing");
}

#[test]
fn a_contact_says_when_groups_may_have_changed() {
    let mut d = db("contact");
    d.add_device("pc1", &[0; 32]).unwrap();
    let mut f = tags(&["site:lyon"]);
    f.free = Some(100);
    assert!(d.record_contact("pc1", Some(&f), "127.0.0.1", 1000).unwrap(), "the first contact");
    f.free = Some(99);
    assert!(!d.record_contact("pc1", Some(&f), "127.0.0.1", 1001).unwrap(), "free space moves at every poll");
    assert!(!d.record_contact("pc1", None, "127.0.0.2", 1002).unwrap(), "no facts: nothing new");
    let f = tags(&["site:paris"]);
    assert!(d.record_contact("pc1", Some(&f), "127.0.0.1", 1003).unwrap(), "a tag changed");
}

#[test]
fn a_poll_records_its_contact_and_its_notified_marks_together_and_a_waiting_one_writes_nothing() {
    let mut d = db("contact-poll");
    d.add_device("pc1", &[0; 32]).unwrap();
    d.assign(7, Some("pc1"), false).unwrap();
    let f = tags(&["kiosk"]);
    let (changed, pending) = d.contact_and_poll("pc1", Some((Some(&f), "127.0.0.9", 1000))).unwrap();
    assert!(changed, "its first contact");
    assert_eq!(pending.iter().map(|p| (p.package, p.new)).collect::<Vec<_>>(), [(7, true)]);
    let (seen, address): (Option<String>, String) = d
        .conn()
        .query_row(
            "SELECT d.last_seen, f.address FROM devices d JOIN device_facts f ON f.device = d.id WHERE d.id = 'pc1'",
            crate::params![],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((seen.as_deref(), address.as_str()), (Some("1970-01-01T00:16:40Z"), "127.0.0.9"));
    let (changed, pending) = d.contact_and_poll("pc1", None).unwrap();
    assert!(!changed);
    assert_eq!(pending.iter().map(|p| (p.package, p.new)).collect::<Vec<_>>(), [(7, false)], "told before");
    let seen: Option<String> =
        d.conn().query_row("SELECT last_seen FROM devices WHERE id = 'pc1'", crate::params![], |r| r.get(0)).unwrap();
    assert_eq!(seen.as_deref(), Some("1970-01-01T00:16:40Z"), "a contact that waits is not written here");
    // A flush of an older contact leaves what a newer one wrote.
    d.record_contacts([("pc1", Some(Some(5)), "127.0.0.8", 999)]).unwrap();
    let row: (Option<String>, String, Option<i64>) = d
        .conn()
        .query_row(
            "SELECT d.last_seen, f.address, f.free FROM devices d JOIN device_facts f ON f.device = d.id WHERE d.id = 'pc1'",
            crate::params![],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((row.0.as_deref(), row.1.as_str(), row.2), (Some("1970-01-01T00:16:40Z"), "127.0.0.9", None));
    d.record_contacts([("pc1", Some(Some(5)), "127.0.0.8", 1001)]).unwrap();
    let free: Option<i64> = d
        .conn()
        .query_row("SELECT free FROM device_facts WHERE device = 'pc1'", crate::params![], |r| r.get(0))
        .unwrap();
    assert_eq!(free, Some(5), "a newer one is written, free space with it");
}

#[test]
fn one_device_joins_and_leaves_its_rollouts_without_a_pass_over_the_fleet() {
    let mut d = db("one-device");
    for i in 0..3 {
        d.add_device(&format!("pc{i}"), &[1; 32]).unwrap();
    }
    d.add_group("lyon", Some("tag = \"lyon\"")).unwrap();
    d.record_contact("pc0", Some(&tags(&["lyon"])), "127.0.0.1", 1000).unwrap();
    let r = NewRollout { package: 7, group: "lyon", force: false, waves: &[100], wave_wait: None, halt_above: 100 };
    start(&mut d, &r, 1000).unwrap();
    assert_eq!(status(&d, "pc0").as_deref(), Some(WAITING));

    // pc1 gains the tag: it joins at its own contact; pc2 (tagged too, not evaluated) does not.
    d.record_contact("pc1", Some(&tags(&["lyon"])), "127.0.0.1", 1001).unwrap();
    d.record_contact("pc2", Some(&tags(&["lyon"])), "127.0.0.1", 1001).unwrap();
    // pc0 loses it, unevaluated: its assignment stays until its own turn.
    d.record_contact("pc0", Some(&tags(&[])), "127.0.0.1", 1001).unwrap();
    evaluate_device(&mut d, "pc1", 1001).unwrap();
    assert_eq!(status(&d, "pc1").as_deref(), Some(WAITING), "joined at its contact");
    assert_eq!(status(&d, "pc2"), None, "only the device asked for");
    assert_eq!(status(&d, "pc0").as_deref(), Some(WAITING));
    evaluate_device(&mut d, "pc0", 1001).unwrap();
    assert_eq!(status(&d, "pc0"), None, "left before it was notified: withdrawn");
    evaluate_device(&mut d, "no-such-device", 1001).unwrap();

    // A halted rollout takes a new member into its wave and sends it nothing.
    let id = d.rollouts(true).unwrap()[0].id;
    d.set_rollout(id, 0, 1000, HALTED, "test").unwrap();
    evaluate_device(&mut d, "pc2", 1002).unwrap();
    assert_eq!(status(&d, "pc2"), None);
    assert!(d.rollout_members(id).unwrap().iter().any(|m| m.device == "pc2"));
    // And the whole pass agrees with what was done one device at a time.
    d.set_rollout(id, 0, 1000, RUNNING, "").unwrap();
    evaluate(&mut d, 1003).unwrap();
    let got: Vec<(String, String)> = d.status(Some(7)).unwrap().into_iter().map(|r| (r.device, r.status)).collect();
    assert_eq!(got, [("pc1".to_string(), WAITING.to_string()), ("pc2".to_string(), WAITING.to_string())]);
}
