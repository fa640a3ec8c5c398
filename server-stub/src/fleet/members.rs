//! Who is in a group now: the static list, or every device whose facts
//! match the dynamic group's filter at this moment.

use std::collections::BTreeSet;

use super::FleetError;
use super::expr::{Expr, Subject};
use crate::db::{Db, FleetDeviceRow as DeviceRow, GroupRow};

/// How an expression sees a device at `now` (seconds since 1970).
pub fn subject(d: &DeviceRow, now: u64) -> Subject<'_> {
    Subject {
        id: &d.id,
        kind: &d.kind,
        host: &d.facts.host,
        os: &d.facts.os,
        os_version: &d.facts.os_version,
        arch: &d.facts.arch,
        agent_version: &d.facts.agent,
        address: &d.address,
        free: d.facts.free,
        age: d.last_contact.map(|t| now.saturating_sub(t)),
        tags: &d.facts.tags,
    }
}

/// The devices of `devices` that match `filter` at `now`.
pub fn matching<'d>(devices: &'d [DeviceRow], filter: &Expr, now: u64) -> Vec<&'d DeviceRow> {
    devices.iter().filter(|d| filter.matches(&subject(d, now))).collect()
}

/// The members of `group` now, given every device and its facts.
pub fn members(db: &Db, group: &GroupRow, devices: &[DeviceRow], now: u64) -> Result<BTreeSet<String>, FleetError> {
    Ok(match &group.filter {
        None => db.group_static_members(&group.name)?.into_iter().collect(),
        Some(f) => matching(devices, &Expr::parse(f)?, now).into_iter().map(|d| d.id.clone()).collect(),
    })
}

/// Whether `device` is in `group` now: [`members`] for one device.
pub fn contains(db: &Db, group: &GroupRow, device: &DeviceRow, now: u64) -> Result<bool, FleetError> {
    Ok(match &group.filter {
        None => db.group_has_device(&group.name, &device.id)?,
        Some(f) => Expr::parse(f)?.matches(&subject(device, now)),
    })
}
