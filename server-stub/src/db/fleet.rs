//! The fleet's tables: each device's facts (what it said at its last poll,
//! PROLOG or INVENTORY), groups (a static list or a filter, `fleet::expr`)
//! and their static members, and packages deleted with `package delete`
//! (their row stays, so the history of what was installed where stays).

use super::sql::{OptionalExtension, Tx};
use crate::params;
use crate::time::rfc3339;

use super::{Db, DbResult, Pending};
use outpost_agent::engine::facts::Facts;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS device_facts(
    device TEXT PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
    host TEXT NOT NULL DEFAULT '', os TEXT NOT NULL DEFAULT '', os_version TEXT NOT NULL DEFAULT '',
    arch TEXT NOT NULL DEFAULT '', agent TEXT NOT NULL DEFAULT '', free INTEGER,
    tags TEXT NOT NULL DEFAULT '', address TEXT NOT NULL DEFAULT '', last_contact INTEGER);
CREATE TABLE IF NOT EXISTS fleet_groups(name TEXT PRIMARY KEY, filter TEXT, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS group_members(
    grp TEXT NOT NULL REFERENCES fleet_groups(name) ON DELETE CASCADE,
    device TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE, PRIMARY KEY(grp, device));
CREATE TABLE IF NOT EXISTS deleted_packages(id INTEGER PRIMARY KEY REFERENCES packages(id), deleted TEXT NOT NULL);
";

/// A device with its facts, as `device list` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceRow {
    /// Device id.
    pub id: String,
    /// `outpost` or `ocs`.
    pub kind: String,
    /// What it said about itself (defaults where it said nothing).
    pub facts: Facts,
    /// The address of its last request.
    pub address: String,
    /// Its last contact, seconds since 1970 (`None`: never).
    pub last_contact: Option<u64>,
}

/// A group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRow {
    /// Its name.
    pub name: String,
    /// The filter of a dynamic group (`None`: static).
    pub filter: Option<String>,
}

/// Whether `s` can name a group: 1 to 64 of `A-Za-z0-9._-`.
pub fn valid_group_name(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Whether `facts` may change `device`'s groups: it has no facts row yet,
/// or they differ from those recorded (free space aside: it moves at every
/// poll).
fn facts_changed(tx: &Tx<'_>, device: &str, facts: Option<&Facts>) -> DbResult<bool> {
    type Row = (String, String, String, String, String, String);
    let old: Option<Row> = tx
        .prepare_cached(
            "SELECT COALESCE(host, ''), COALESCE(os, ''), COALESCE(os_version, ''), COALESCE(arch, ''),
             COALESCE(agent, ''), COALESCE(tags, '') FROM device_facts WHERE device = ?1",
        )?
        .query_row([device], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
        .optional()?;
    Ok(match (&old, facts) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some((host, os, os_version, arch, agent, tags)), Some(f)) => {
            (host, os, os_version, arch, agent) != (&f.host, &f.os, &f.os_version, &f.arch, &f.agent)
                || !tags.split('\n').filter(|t| !t.is_empty()).eq(f.tags.iter().map(String::as_str))
        }
    })
}

/// Write one contact: the device's last contact, its address and, if it
/// sent them, its facts.
fn contact_in(tx: &Tx<'_>, device: &str, facts: Option<&Facts>, address: &str, now: u64) -> DbResult<()> {
    tx.prepare_cached("UPDATE devices SET last_seen = ?1 WHERE id = ?2")?.execute(params![rfc3339(now), device])?;
    match facts {
        None => tx
            .prepare_cached(
                "INSERT INTO device_facts(device, address, last_contact) SELECT id, ?2, ?3 FROM devices WHERE id = ?1
                 ON CONFLICT(device) DO UPDATE SET address = ?2, last_contact = ?3",
            )?
            .execute(params![device, address, to_i(now)])?,
        Some(f) => tx
            .prepare_cached(
                "INSERT INTO device_facts(device, address, last_contact, host, os, os_version, arch, agent, free, tags)
                 SELECT id, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10 FROM devices WHERE id = ?1
                 ON CONFLICT(device) DO UPDATE SET address = ?2, last_contact = ?3, host = ?4, os = ?5,
                 os_version = ?6, arch = ?7, agent = ?8, free = ?9, tags = ?10",
            )?
            .execute(params![
                device,
                address,
                to_i(now),
                f.host,
                f.os,
                f.os_version,
                f.arch,
                f.agent,
                f.free.map(to_i),
                f.tags.join("\n")
            ])?,
    };
    Ok(())
}

fn to_i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Db {
    /// Record a contact of `device` from `address` at `now`, with the facts
    /// it sent (`None`: keep the facts it sent before), and its last contact
    /// (`devices.last_seen`).
    /// Not durable at once (`Db::relaxed`): a power cut may lose the
    /// last contact, which the next one writes again. Returns whether
    /// group membership may have changed: the device had no facts row yet,
    /// or `facts` differ from those recorded (free space aside: it moves at
    /// every poll).
    pub fn record_contact(&mut self, device: &str, facts: Option<&Facts>, address: &str, now: u64) -> DbResult<bool> {
        self.relaxed(|db| {
            let tx = db.conn.transaction()?;
            let changed = facts_changed(&tx, device, facts)?;
            contact_in(&tx, device, facts, address, now)?;
            tx.commit()?;
            Ok(changed)
        })
    }

    /// An Outpost device's poll with its contact: [`Db::record_contact`]
    /// (unless `contact` is `None`: it waits, [`crate::contacts`]) and
    /// [`Db::poll_device`] in one transaction, or none when there is
    /// nothing to write. Returns whether groups may have changed, and what
    /// to tell the device of.
    pub fn contact_and_poll(
        &mut self,
        device: &str,
        contact: Option<(Option<&Facts>, &str, u64)>,
    ) -> DbResult<(bool, Vec<Pending>)> {
        let Some((facts, address, now)) = contact else { return Ok((false, self.poll_device(device)?)) };
        self.relaxed(|db| {
            let tx = db.conn.transaction()?;
            let changed = facts_changed(&tx, device, facts)?;
            contact_in(&tx, device, facts, address, now)?;
            let pending = super::poll_tx(&tx, device, false)?;
            tx.commit()?;
            Ok((changed, pending))
        })
    }

    /// [`Db::record_contact`] for many contacts whose facts are those last
    /// recorded but for free space (`Some(free)` if they sent facts,
    /// [`crate::contacts`]), in one transaction: one commit for the polls
    /// of a second, and no reads. A row a newer contact wrote meanwhile is
    /// left as it is.
    pub fn record_contacts<'a>(
        &mut self,
        contacts: impl IntoIterator<Item = (&'a str, Option<Option<u64>>, &'a str, u64)>,
    ) -> DbResult<()> {
        self.relaxed(|db| {
            let tx = db.conn.transaction()?;
            // `devices.last_seen` is left as it is: readers take the later
            // of it and `last_contact` (`console::last_seen`), and a second's
            // contacts write one table, not two.
            for (device, free, address, now) in contacts {
                tx.prepare_cached(
                    "INSERT INTO device_facts(device, address, last_contact, free) SELECT id, ?2, ?3, ?4 FROM devices WHERE id = ?1
                     ON CONFLICT(device) DO UPDATE SET address = ?2, last_contact = ?3,
                     free = CASE WHEN ?5 = 1 THEN ?4 ELSE device_facts.free END
                     WHERE device_facts.last_contact IS NULL OR device_facts.last_contact < ?3",
                )?
                .execute(params![device, address, to_i(now), free.flatten().map(to_i), i64::from(free.is_some())])?;
            }
            tx.commit()
        })
    }

    /// Every device with its facts, by id.
    pub fn devices_with_facts(&self) -> DbResult<Vec<DeviceRow>> {
        self.facts_where("ORDER BY d.id", &[])
    }

    /// One device with its facts (`None`: no such device).
    pub fn device_with_facts(&self, id: &str) -> DbResult<Option<DeviceRow>> {
        Ok(self.facts_where("WHERE d.id = ?1", params![id])?.pop())
    }

    fn facts_where(&self, tail: &str, args: &[&dyn super::ToArg]) -> DbResult<Vec<DeviceRow>> {
        let mut st = self.conn.prepare(&format!(
            "SELECT d.id, d.kind, f.host, f.os, f.os_version, f.arch, f.agent, f.free, f.tags, f.address,
             f.last_contact FROM devices d LEFT JOIN device_facts f ON f.device = d.id {tail}"
        ))?;
        st.query_map(args, |r| {
            let s = |i| r.get::<_, Option<String>>(i).map(Option::unwrap_or_default);
            let tags = s(8)?;
            Ok(DeviceRow {
                id: r.get(0)?,
                kind: r.get(1)?,
                facts: Facts {
                    host: s(2)?,
                    os: s(3)?,
                    os_version: s(4)?,
                    arch: s(5)?,
                    agent: s(6)?,
                    free: r.get::<_, Option<i64>>(7)?.map(|v| v.max(0) as u64),
                    tags: tags.split('\n').filter(|t| !t.is_empty()).map(str::to_string).collect(),
                },
                address: s(9)?,
                last_contact: r.get::<_, Option<i64>>(10)?.map(|v| v.max(0) as u64),
            })
        })?
        .collect()
    }

    /// Create a group (dynamic with a `filter`); `false` if the name exists.
    pub fn add_group(&mut self, name: &str, filter: Option<&str>) -> DbResult<bool> {
        Ok(self.conn.execute(
            "INSERT INTO fleet_groups(name, filter, created) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            params![name, filter, crate::time::now_rfc3339()],
        )? > 0)
    }

    /// A group by name.
    pub fn group(&self, name: &str) -> DbResult<Option<GroupRow>> {
        self.conn
            .query_row("SELECT name, filter FROM fleet_groups WHERE name = ?1", [name], |r| {
                Ok(GroupRow { name: r.get(0)?, filter: r.get(1)? })
            })
            .optional()
    }

    /// Every group, by name.
    pub fn groups(&self) -> DbResult<Vec<GroupRow>> {
        let mut st = self.conn.prepare("SELECT name, filter FROM fleet_groups ORDER BY name")?;
        st.query_map([], |r| Ok(GroupRow { name: r.get(0)?, filter: r.get(1)? }))?.collect()
    }

    /// Add a device to a static group; `false` if it was there.
    pub fn group_add_device(&mut self, group: &str, device: &str) -> DbResult<bool> {
        Ok(self.conn.execute(
            "INSERT INTO group_members(grp, device) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            params![group, device],
        )? > 0)
    }

    /// Remove a device from a static group; `false` if it was not there.
    pub fn group_remove_device(&mut self, group: &str, device: &str) -> DbResult<bool> {
        Ok(self.conn.execute("DELETE FROM group_members WHERE grp = ?1 AND device = ?2", params![group, device])? > 0)
    }

    /// Whether `device` is in the static group `group`.
    pub fn group_has_device(&self, group: &str, device: &str) -> DbResult<bool> {
        Ok(self
            .conn
            .query_row("SELECT 1 FROM group_members WHERE grp = ?1 AND device = ?2", params![group, device], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// The members of a static group, by id.
    pub fn group_static_members(&self, group: &str) -> DbResult<Vec<String>> {
        let mut st = self.conn.prepare("SELECT device FROM group_members WHERE grp = ?1 ORDER BY device")?;
        st.query_map([group], |r| r.get(0))?.collect()
    }

    /// Whether `package delete` removed this package.
    pub fn package_deleted(&self, id: u64) -> DbResult<bool> {
        Ok(self
            .conn
            .query_row("SELECT 1 FROM deleted_packages WHERE id = ?1", [to_i(id)], |_| Ok(()))
            .optional()?
            .is_some())
    }
}
