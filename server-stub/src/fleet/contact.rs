//! What the server does with each contact of a device: record its facts
//! (an Outpost poll's `facts` line, an OCS agent's INVENTORY) and its
//! address and time; a device whose facts changed joins or leaves its
//! rollouts (`super::rollout::evaluate_device`) before it is told what to
//! install; the whole evaluation runs once a second ([`tick`]). A failure to record an OCS
//! contact is logged and does not fail the request; an Outpost poll's
//! contact shares its transaction with the poll's NOTIFIED marks
//! ([`poll`]), so a failure there fails the poll (`500`).

use std::net::IpAddr;

use outpost_agent::engine::facts::Facts;

use super::pace::Pace;
use crate::contacts::Contact;
use crate::db::{Db, DbResult, Pending};

/// Longest text read from an OCS value.
const MAX_VALUE: usize = outpost_agent::engine::facts::MAX_VALUE_LEN;

/// A device made contact from `address` at `now`, saying `facts` (or nothing new).
///
/// A contact that may change a group (a new device, facts that changed)
/// moves this device's rollouts on at once (a few statements per rollout);
/// the whole evaluation, which reads every device while a rollout lives,
/// runs once a second at most, off the request path ([`tick`]): polls come
/// by the thousand a second.
pub fn on_contact(db: &mut Db, device: &str, facts: Option<&Facts>, address: IpAddr, now: u64) {
    let r = db.record_contact(device, facts, &address.to_string(), now).map_err(super::FleetError::Db);
    if let Err(e) = r.and_then(|changed| on_change(db, device, changed, now)) {
        log::error!(target: "outpost", "fleet: device {device}: {e}");
    }
}

/// If the contact may have changed `device`'s groups (`changed`), it joins
/// or leaves rollouts now ([`super::rollout::evaluate_device`]); waves
/// move on at the next [`tick`].
fn on_change(db: &mut Db, device: &str, changed: bool, now: u64) -> Result<(), super::FleetError> {
    if changed {
        super::rollout::evaluate_device(db, device, now)?;
    }
    Ok(())
}

/// An Outpost device's poll, with its contact unless that waits
/// ([`crate::contacts`]): one transaction for both ([`Db::contact_and_poll`]);
/// if the contact may change a group, the device joins or leaves rollouts
/// and is told of what they assigned it at this same poll (waves move on
/// when the paced evaluation runs).
pub fn poll(db: &mut Db, device: &str, contact: Option<(Option<&Facts>, &str, u64)>) -> DbResult<Vec<Pending>> {
    let (changed, pending) = db.contact_and_poll(device, contact)?;
    let Some((_, _, now)) = contact else { return Ok(pending) };
    if let Err(e) = on_change(db, device, changed, now) {
        log::error!(target: "outpost", "fleet: device {device}: {e}");
    }
    if !changed {
        return Ok(pending);
    }
    let again = db.poll_device(device)?;
    // Marked NOTIFIED by the first read: still new to the device.
    Ok(again
        .into_iter()
        .map(|mut p| {
            p.new |= pending.iter().any(|q| q.package == p.package && q.new);
            p
        })
        .collect())
}

/// The contacts that waited ([`crate::contacts`]: none changes a group),
/// recorded in one transaction. Rollouts (a group's filter may read free
/// space, address or last contact) move on at the next [`tick`].
pub fn on_contacts(db: &mut Db, contacts: &[Contact]) {
    let addresses: Vec<String> = contacts.iter().map(|c| c.address.to_string()).collect();
    let rows = contacts.iter().zip(&addresses).map(|(c, a)| (c.device.as_str(), c.free, a.as_str(), c.now));
    if let Err(e) = db.record_contacts(rows) {
        log::error!(target: "outpost", "fleet: {} contacts: {e}", contacts.len());
    }
}

/// A second went by (`serve` calls this every second, on one thread of its
/// own): rollouts move on ([`super::rollout::evaluate`]: waves whose
/// results came or whose `--wave-wait` ran out, devices whose facts the
/// contacts of the last second changed), unless `pace` says the last
/// evaluation cost too much for another one yet.
pub fn tick(db: &mut Db, pace: &mut Pace, now: u64) {
    let start = crate::time::monotonic_now();
    pace.ask();
    if !pace.start(start) {
        return;
    }
    if let Err(e) = super::rollout::evaluate(db, now) {
        log::error!(target: "outpost", "fleet: {e}");
    }
    pace.ran(start, crate::time::monotonic_now().saturating_duration_since(start));
}

/// The facts an OCS agent's INVENTORY gives (`CONTENT/HARDWARE`: NAME,
/// OSNAME, OSVERSION, ARCH or else `CPUS/CPUARCH`; the agent version from
/// `CONTENT/VERSIONCLIENT` or else the request's `user_agent`; the
/// `ACCOUNTINFO` values as tags, `TAG=lyon` as `lyon`); `None` if it is not
/// an inventory within the bounds of [`outpost_agent::engine::ocs::scan`].
pub fn ocs_inventory_facts(xml: &str, user_agent: Option<&str>) -> Option<Facts> {
    outpost_agent::engine::ocs::scan::scan(xml).ok()?;
    let doc = roxmltree::Document::parse(xml).ok()?;
    let content = doc.root_element().children().find(|n| n.has_tag_name("CONTENT"))?;
    let text = |n: roxmltree::Node<'_, '_>, name: &str| -> String {
        let v = n.attribute(name).or_else(|| n.children().find(|c| c.has_tag_name(name)).and_then(|c| c.text()));
        v.unwrap_or("").trim().chars().filter(|c| !c.is_control()).take(MAX_VALUE).collect()
    };
    let hw = content.children().find(|n| n.has_tag_name("HARDWARE"));
    let hw_text = |name| hw.map(|h| text(h, name)).unwrap_or_default();
    let tags = content
        .children()
        .filter(|n| n.has_tag_name("ACCOUNTINFO"))
        .map(|a| text(a, "KEYVALUE"))
        .filter(|t| outpost_agent::engine::facts::valid_tag(t))
        .take(outpost_agent::engine::facts::MAX_TAGS)
        .collect();
    let mut arch = hw_text("ARCH");
    if arch.is_empty() {
        arch = content.children().find(|n| n.has_tag_name("CPUS")).map(|c| text(c, "CPUARCH")).unwrap_or_default();
    }
    let mut agent = text(content, "VERSIONCLIENT");
    if agent.is_empty() {
        agent = user_agent.unwrap_or("").chars().filter(|c| !c.is_control()).take(MAX_VALUE).collect();
    }
    Some(Facts {
        host: hw_text("NAME"),
        os: hw_text("OSNAME"),
        os_version: hw_text("OSVERSION"),
        arch,
        agent,
        free: None,
        tags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_that_joins_a_group_is_told_at_that_poll_without_a_whole_evaluation() {
        let mut db = crate::db::test_db("contact-paced");
        let p =
            crate::db::NewPackage { id: 9, name: "p", action: "EXECUTE", priority: 5, frags: 0, size: 0, https: false };
        db.add_package(&p).unwrap();
        db.add_device("pc0", &[1; 32]).unwrap();
        db.add_group("lyon", Some("tag = \"lyon\"")).unwrap();
        let r = crate::db::NewRollout {
            package: 9,
            group: "lyon",
            force: false,
            waves: &[100],
            wave_wait: None,
            halt_above: 100,
        };
        super::super::rollout::start(&mut db, &r, 1000).unwrap();
        let facts = |t: &[&str]| Facts {
            os: "linux".into(),
            tags: t.iter().map(|s| s.to_string()).collect(),
            ..Facts::default()
        };
        // No whole evaluation runs here: the device alone is moved on.
        let before = poll(&mut db, "pc0", Some((Some(&facts(&[])), "127.0.0.1", 1000))).unwrap();
        assert!(before.is_empty());
        let got = poll(&mut db, "pc0", Some((Some(&facts(&["lyon"])), "127.0.0.1", 1001))).unwrap();
        assert_eq!(got.iter().map(|p| (p.package, p.new)).collect::<Vec<_>>(), [(9, true)], "told at this poll");
        let gone = poll(&mut db, "pc0", Some((Some(&facts(&[])), "127.0.0.1", 1002))).unwrap();
        assert_eq!(gone.len(), 1, "sent already: a rollout withdraws only what it has not sent");
    }

    #[test]
    fn an_ocs_inventory_gives_host_os_arch_agent_and_tags() {
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<REQUEST><CONTENT>\
            <HARDWARE><NAME>kiosk-3</NAME><OSNAME>Debian GNU/Linux 12</OSNAME><OSVERSION>6.1.0-18-amd64</OSVERSION>\
            <ARCH>x86_64</ARCH></HARDWARE><ACCOUNTINFO><KEYNAME>TAG</KEYNAME><KEYVALUE>site:lyon</KEYVALUE></ACCOUNTINFO>\
            <VERSIONCLIENT>OCS-NG_unified_unix_agent_v2.10.0</VERSIONCLIENT></CONTENT>\
            <DEVICEID>kiosk-3-2026-01-01-00-00-00</DEVICEID><QUERY>INVENTORY</QUERY></REQUEST>";
        let f = ocs_inventory_facts(xml, Some("ignored")).unwrap();
        assert_eq!((f.host.as_str(), f.os.as_str(), f.arch.as_str()), ("kiosk-3", "Debian GNU/Linux 12", "x86_64"));
        assert_eq!(f.os_version, "6.1.0-18-amd64");
        assert_eq!(f.agent, "OCS-NG_unified_unix_agent_v2.10.0");
        assert_eq!(f.tags, ["site:lyon"]);
        assert_eq!(ocs_inventory_facts("<REQUEST><QUERY>PROLOG</QUERY></REQUEST>", None), None);
        // As the Unix agent 2.10 writes it: the architecture in CPUS, the version in User-Agent.
        let real = "<REQUEST><CONTENT><CPUS><CPUARCH>x86_64</CPUARCH></CPUS><HARDWARE><NAME>vm</NAME></HARDWARE>\
            </CONTENT></REQUEST>";
        let f = ocs_inventory_facts(real, Some("OCS-NG_unified_unix_agent_v2.10.0")).unwrap();
        assert_eq!((f.arch.as_str(), f.agent.as_str()), ("x86_64", "OCS-NG_unified_unix_agent_v2.10.0"));
        assert_eq!(ocs_inventory_facts("<REQUEST><CONTENT>", None), None);
    }
}
