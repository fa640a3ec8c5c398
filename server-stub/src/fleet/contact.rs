//! What the server does with each contact of a device: record its facts
//! (an Outpost poll's `facts` line, an OCS agent's INVENTORY) and its
//! address and time, then move rollouts on (`super::rollout::evaluate`),
//! before the device is told what to install. A failure here is logged and
//! does not fail the poll.

use std::net::IpAddr;

use outpost_agent::engine::facts::Facts;

use crate::db::Db;

/// Longest text read from an OCS value.
const MAX_VALUE: usize = outpost_agent::engine::facts::MAX_VALUE_LEN;

/// A device made contact from `address` at `now`, saying `facts` (or nothing new).
pub fn on_contact(db: &mut Db, device: &str, facts: Option<&Facts>, address: IpAddr, now: u64) {
    let r = db.record_contact(device, facts, &address.to_string(), now).map_err(super::FleetError::Db);
    if let Err(e) = r.and_then(|()| super::rollout::evaluate(db, now)) {
        log::error!(target: "outpost", "fleet: device {device}: {e}");
    }
}

/// Reports came in: rollouts may move on.
pub fn after_reports(db: &mut Db, now: u64) {
    if let Err(e) = super::rollout::evaluate(db, now) {
        log::error!(target: "outpost", "fleet: {e}");
    }
}

/// The facts an OCS agent's INVENTORY gives (`CONTENT/HARDWARE`: NAME,
/// OSNAME, OSVERSION, ARCH; `CONTENT/VERSIONCLIENT`; the `ACCOUNTINFO`
/// values as tags, `TAG=lyon` as `lyon`); `None` if it is not an inventory
/// within the bounds of [`outpost_agent::engine::ocs::scan`].
pub fn ocs_inventory_facts(xml: &str) -> Option<Facts> {
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
    Some(Facts {
        host: hw_text("NAME"),
        os: hw_text("OSNAME"),
        os_version: hw_text("OSVERSION"),
        arch: hw_text("ARCH"),
        agent: text(content, "VERSIONCLIENT"),
        free: None,
        tags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ocs_inventory_gives_host_os_arch_agent_and_tags() {
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<REQUEST><CONTENT>\
            <HARDWARE><NAME>kiosk-3</NAME><OSNAME>Debian GNU/Linux 12</OSNAME><OSVERSION>6.1.0-18-amd64</OSVERSION>\
            <ARCH>x86_64</ARCH></HARDWARE><ACCOUNTINFO><KEYNAME>TAG</KEYNAME><KEYVALUE>site:lyon</KEYVALUE></ACCOUNTINFO>\
            <VERSIONCLIENT>OCS-NG_unified_unix_agent_v2.10.0</VERSIONCLIENT></CONTENT>\
            <DEVICEID>kiosk-3-2026-01-01-00-00-00</DEVICEID><QUERY>INVENTORY</QUERY></REQUEST>";
        let f = ocs_inventory_facts(xml).unwrap();
        assert_eq!((f.host.as_str(), f.os.as_str(), f.arch.as_str()), ("kiosk-3", "Debian GNU/Linux 12", "x86_64"));
        assert_eq!(f.os_version, "6.1.0-18-amd64");
        assert_eq!(f.agent, "OCS-NG_unified_unix_agent_v2.10.0");
        assert_eq!(f.tags, ["site:lyon"]);
        assert_eq!(ocs_inventory_facts("<REQUEST><QUERY>PROLOG</QUERY></REQUEST>"), None);
        assert_eq!(ocs_inventory_facts("<REQUEST><CONTENT>"), None);
    }
}
