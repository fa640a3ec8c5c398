//! Rollouts (`assign --group`, `fleet::rollout`): one row per rollout with
//! its waves and where it stands, each device's wave (fixed when the device
//! is first seen in the group), and which assignments a rollout made (so
//! only those are withdrawn when a device leaves its group). The decisions
//! are `fleet::rollout`'s; this file only reads and writes.

use super::sql::OptionalExtension;
use crate::params;

use super::{Db, DbResult, NOTIFIED, WAITING};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS rollouts(
    id INTEGER PRIMARY KEY, package INTEGER NOT NULL REFERENCES packages(id), grp TEXT NOT NULL,
    force INTEGER NOT NULL, waves TEXT NOT NULL, wave_wait INTEGER, halt_above INTEGER NOT NULL,
    wave INTEGER NOT NULL, wave_started INTEGER NOT NULL, state TEXT NOT NULL, reason TEXT NOT NULL,
    created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rollout_members(
    rollout INTEGER NOT NULL REFERENCES rollouts(id), device TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    wave INTEGER NOT NULL, PRIMARY KEY(rollout, device));
CREATE TABLE IF NOT EXISTS rollout_assigned(
    rollout INTEGER NOT NULL REFERENCES rollouts(id), device TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    PRIMARY KEY(rollout, device));
";

/// A rollout as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutRow {
    /// Id.
    pub id: u64,
    /// The package.
    pub package: u64,
    /// The group.
    pub group: String,
    /// Deploy even where installed.
    pub force: bool,
    /// Cumulative share of the group each wave reaches, percent (last: 100).
    pub waves: Vec<u8>,
    /// Seconds after which a wave counts as finished though devices are left.
    pub wave_wait: Option<u64>,
    /// Error rate (percent) above which the next wave does not start.
    pub halt_above: u8,
    /// The running wave (0-based).
    pub wave: usize,
    /// When it started, seconds since 1970.
    pub wave_started: u64,
    /// `running`, `halted`, `done` or `cancelled`.
    pub state: String,
    /// Why it halted.
    pub reason: String,
}

/// A rollout's settings, for [`Db::add_rollout`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRollout<'a> {
    /// The package.
    pub package: u64,
    /// The group.
    pub group: &'a str,
    /// Deploy even where installed.
    pub force: bool,
    /// Cumulative percentages, ascending, the last 100.
    pub waves: &'a [u8],
    /// See [`RolloutRow::wave_wait`].
    pub wave_wait: Option<u64>,
    /// See [`RolloutRow::halt_above`].
    pub halt_above: u8,
}

/// One member's assignment in a rollout: its wave and status (`None`: not assigned yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRow {
    /// Device.
    pub device: String,
    /// Its wave.
    pub wave: usize,
    /// Its status for the package.
    pub status: Option<String>,
    /// Whether this rollout made the assignment.
    pub ours: bool,
}

fn to_i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Db {
    /// Record a rollout, running its first wave from `now`; its id.
    pub fn add_rollout(&mut self, r: &NewRollout<'_>, now: u64) -> DbResult<u64> {
        let waves: Vec<String> = r.waves.iter().map(u8::to_string).collect();
        self.conn.query_row(
            "INSERT INTO rollouts(package, grp, force, waves, wave_wait, halt_above, wave, wave_started, state,
             reason, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, 'running', '', ?8) RETURNING id",
            params![
                to_i(r.package),
                r.group,
                r.force,
                waves.join(","),
                r.wave_wait.map(to_i),
                r.halt_above,
                to_i(now),
                crate::time::now_rfc3339()
            ],
            |r| r.get::<_, u64>(0),
        )
    }

    /// Every rollout (`live`: all but cancelled ones), oldest first.
    pub fn rollouts(&self, live: bool) -> DbResult<Vec<RolloutRow>> {
        let mut st = self.conn.prepare(
            "SELECT id, package, grp, force, waves, wave_wait, halt_above, wave, wave_started, state, reason
             FROM rollouts WHERE ?1 = 0 OR state != 'cancelled' ORDER BY id",
        )?;
        st.query_map([live], |r| {
            let waves: String = r.get(4)?;
            Ok(RolloutRow {
                id: r.get::<_, i64>(0)? as u64,
                package: r.get::<_, i64>(1)? as u64,
                group: r.get(2)?,
                force: r.get(3)?,
                waves: waves.split(',').filter_map(|w| w.parse().ok()).collect(),
                wave_wait: r.get::<_, Option<i64>>(5)?.map(|v| v.max(0) as u64),
                halt_above: r.get(6)?,
                wave: r.get::<_, i64>(7)?.max(0) as usize,
                wave_started: r.get::<_, i64>(8)?.max(0) as u64,
                state: r.get(9)?,
                reason: r.get(10)?,
            })
        })?
        .collect()
    }

    /// One rollout.
    pub fn rollout(&self, id: u64) -> DbResult<Option<RolloutRow>> {
        Ok(self.rollouts(false)?.into_iter().find(|r| r.id == id))
    }

    /// Move a rollout: its wave, when that started, state and reason.
    pub fn set_rollout(&mut self, id: u64, wave: usize, started: u64, state: &str, reason: &str) -> DbResult<()> {
        self.conn.execute(
            "UPDATE rollouts SET wave = ?2, wave_started = ?3, state = ?4, reason = ?5 WHERE id = ?1",
            params![to_i(id), wave as i64, to_i(started), state, reason],
        )?;
        Ok(())
    }

    /// The rollout's members so far with their waves and statuses.
    pub fn rollout_members(&self, id: u64) -> DbResult<Vec<MemberRow>> {
        self.members_where(id, None)
    }

    /// [`Db::rollout_members`] of `device` alone (none or one).
    pub fn rollout_member(&self, id: u64, device: &str) -> DbResult<Vec<MemberRow>> {
        self.members_where(id, Some(device))
    }

    fn members_where(&self, id: u64, device: Option<&str>) -> DbResult<Vec<MemberRow>> {
        let one = if device.is_some() { "AND m.device = ?2" } else { "" };
        let mut st = self.conn.prepare(&format!(
            "SELECT m.device, m.wave, a.status, o.device IS NOT NULL FROM rollout_members m
             JOIN rollouts r ON r.id = m.rollout
             LEFT JOIN assignments a ON a.package = r.package AND a.device = m.device
             LEFT JOIN rollout_assigned o ON o.rollout = m.rollout AND o.device = m.device
             WHERE m.rollout = ?1 {one} ORDER BY m.device"
        ))?;
        let id = to_i(id);
        let mut args: Vec<&dyn super::ToArg> = vec![&id];
        if let Some(d) = &device {
            args.push(d);
        }
        st.query_map(&args[..], |r| {
            Ok(MemberRow {
                device: r.get(0)?,
                wave: r.get::<_, i64>(1)?.max(0) as usize,
                status: r.get(2)?,
                ours: r.get(3)?,
            })
        })?
        .collect()
    }

    /// Place a device in a wave of a rollout (once: a device keeps its wave).
    pub fn add_rollout_member(&mut self, id: u64, device: &str, wave: usize) -> DbResult<()> {
        self.add_rollout_members(id, &[device], wave)
    }

    /// Place `devices` in a wave of a rollout, in one transaction (one
    /// fsync for a whole fleet joining a group, not one each).
    pub fn add_rollout_members(&mut self, id: u64, devices: &[&str], wave: usize) -> DbResult<()> {
        if devices.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction()?;
        {
            let mut st = tx.prepare_cached(
                "INSERT INTO rollout_members(rollout, device, wave) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            )?;
            for d in devices {
                st.execute(params![to_i(id), *d, wave as i64])?;
            }
        }
        tx.commit()
    }

    /// Assign the rollout's package to `device` unless it already has an
    /// assignment of it; `true` if this made one.
    pub fn rollout_assign(&mut self, r: &RolloutRow, device: &str) -> DbResult<bool> {
        Ok(self.rollout_assign_all(r, &[device])? > 0)
    }

    /// [`Db::rollout_assign`] for each of `devices`, in one transaction: how
    /// many assignments this made.
    pub fn rollout_assign_all(&mut self, r: &RolloutRow, devices: &[&str]) -> DbResult<usize> {
        if devices.is_empty() {
            return Ok(0);
        }
        let tx = self.conn.transaction()?;
        let now = crate::time::now_rfc3339();
        let mut made = 0;
        {
            let mut assign = tx.prepare_cached(
                "INSERT INTO assignments(package, device, status, updated, force) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
            )?;
            let mut ours = tx.prepare_cached(
                "INSERT INTO rollout_assigned(rollout, device) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            )?;
            for d in devices {
                if assign.execute(params![to_i(r.package), *d, WAITING, now, r.force])? > 0 {
                    ours.execute(params![to_i(r.id), *d])?;
                    made += 1;
                }
            }
        }
        tx.commit()?;
        Ok(made)
    }

    /// Withdraw the assignment rollout `r` made to `device` if it was not
    /// sent yet (`all`: also if it was sent and no result came); `true` if
    /// one was withdrawn.
    pub fn rollout_withdraw(&mut self, r: &RolloutRow, device: &str, all: bool) -> DbResult<bool> {
        let tx = self.conn.transaction()?;
        let n = tx.execute(
            "DELETE FROM assignments WHERE package = ?1 AND device = ?2 AND (status = ?3 OR (?4 AND status = ?5))
             AND EXISTS (SELECT 1 FROM rollout_assigned WHERE rollout = ?6 AND device = ?2)",
            params![to_i(r.package), device, WAITING, all, NOTIFIED, to_i(r.id)],
        )?;
        if n > 0 {
            tx.execute("DELETE FROM rollout_assigned WHERE rollout = ?1 AND device = ?2", params![to_i(r.id), device])?;
        }
        tx.commit()?;
        Ok(n > 0)
    }

    /// The newest rollout of a package to a group that is not cancelled.
    pub fn live_rollout_of(&self, package: u64, group: &str) -> DbResult<Option<u64>> {
        self.conn
            .query_row(
                "SELECT MAX(id) FROM rollouts WHERE package = ?1 AND grp = ?2 AND state != 'cancelled'",
                params![to_i(package), group],
                |r| r.get::<_, Option<i64>>(0),
            )
            .optional()
            .map(|v| v.flatten().map(|v| v as u64))
    }
}
