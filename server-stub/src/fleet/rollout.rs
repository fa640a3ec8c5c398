//! Rollouts: a package goes to a group in waves, as hawkBit does.
//!
//! `assign --group G --waves 5%,25%,100% [--wave-wait 1h] [--halt-above 10%]`
//! (without `--waves`: one wave of 100 %, never halted). When it starts,
//! the group's members are ranked by a hash of (package, device) and wave
//! *i* takes the first `ceil(p_i × n)` of them; a device that joins later
//! goes into the wave running then. A device keeps its wave.
//!
//! [`evaluate`] moves every rollout on: members of the waves reached get
//! the package (unless they have an assignment of it already); a member
//! that left the group before it was notified loses the assignment the
//! rollout made. When every member of the running wave has a result (or
//! `wave_wait` has passed since it started), the next wave starts if the
//! wave's error rate (members with an error result / members) is at most
//! `halt_above`; otherwise the rollout halts, with the reason, until
//! `rollout resume` (which starts the next wave) or `rollout cancel`. When
//! the last wave is through, the rollout is `done` (and its later members
//! still get the package).
//!
//! A device whose facts changed (or that is new) joins or leaves at that
//! contact ([`evaluate_device`]: a few statements per rollout). The whole
//! evaluation ([`evaluate`]: one pass over every device while a rollout
//! lives) runs when reports come, when a contact may change a group, every
//! second in `serve`, and in `status` and the group commands; paced by its
//! cost on a large fleet (`super::pace`). A `wave_wait` therefore ends
//! within about a second after it.

use std::collections::{BTreeMap, BTreeSet};

use super::FleetError;
use super::members::members;
use crate::db::{Db, MemberRow, NewRollout, RolloutRow, WAITING};

/// Most waves a rollout may have.
pub const MAX_WAVES: usize = 16;

/// A rollout's state names.
pub const RUNNING: &str = "running";
/// Stopped at a wave whose error rate was too high.
pub const HALTED: &str = "halted";
/// Every wave reached (new members still get the package).
pub const DONE: &str = "done";
/// Stopped by `rollout cancel` or `package delete`.
pub const CANCELLED: &str = "cancelled";

/// A percentage `0`..=`100`, written `N%` or `N`.
pub fn parse_percent(s: &str) -> Result<u8, String> {
    let t = s.trim();
    let d = t.strip_suffix('%').unwrap_or(t);
    d.parse::<u8>().ok().filter(|p| *p <= 100).ok_or_else(|| format!("{s:?} is not a percentage from 0% to 100%"))
}

/// `5%,25%,100%`: ascending cumulative shares, at most [`MAX_WAVES`], the last 100 %.
pub fn parse_waves(s: &str) -> Result<Vec<u8>, String> {
    let waves = s.split(',').map(parse_percent).collect::<Result<Vec<u8>, String>>()?;
    if waves.len() > MAX_WAVES {
        return Err(format!("at most {MAX_WAVES} waves"));
    }
    if waves.windows(2).any(|w| w[0] >= w[1]) || waves.first() == Some(&0) {
        return Err("waves must grow (5%,25%,100%): each a larger share of the group than the one before".into());
    }
    if waves.last() != Some(&100) {
        return Err("the last wave must be 100%".into());
    }
    Ok(waves)
}

/// A duration `N[s|m|h|d|w]` (no unit: seconds), in seconds.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let units = [('s', 1), ('m', 60), ('h', 3600), ('d', 86400), ('w', 7 * 86400)];
    let (d, mul) = units.iter().find_map(|(c, m)| s.strip_suffix(*c).map(|d| (d, *m))).unwrap_or((s, 1));
    d.parse::<u64>()
        .ok()
        .and_then(|v| v.checked_mul(mul))
        .ok_or_else(|| format!("{s:?} is not a duration (30s, 15m, 1h, 2d)"))
}

/// The stable rank key of a device in a package's rollouts.
pub fn rank_key(package: u64, device: &str) -> [u8; 32] {
    let mut m = package.to_be_bytes().to_vec();
    m.extend_from_slice(device.as_bytes());
    outpost_agent::engine::manifest::sha256(&m)
}

/// The wave of each of `members` for a rollout of `package` in `waves`.
pub fn place(package: u64, members: &[String], waves: &[u8]) -> Vec<(String, usize)> {
    let mut ranked: Vec<&String> = members.iter().collect();
    ranked.sort_by_key(|d| rank_key(package, d));
    let n = ranked.len();
    ranked
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            let wave = waves.iter().position(|p| i < (usize::from(*p) * n).div_ceil(100)).unwrap_or(waves.len() - 1);
            (d.clone(), wave)
        })
        .collect()
}

/// Counts of one wave, over the group's members now.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct WaveCounts {
    /// Members in the wave.
    pub devices: u64,
    /// Not sent yet (or not assigned yet).
    pub waiting: u64,
    /// Sent, no result.
    pub notified: u64,
    /// `SUCCESS…`.
    pub success: u64,
    /// Any other result.
    pub errors: u64,
}

impl WaveCounts {
    /// Members with a result.
    pub fn finished(&self) -> u64 {
        self.success + self.errors
    }
    /// Errors per member, percent (0 for an empty wave).
    pub fn error_rate(&self) -> f64 {
        if self.devices == 0 { 0.0 } else { self.errors as f64 * 100.0 / self.devices as f64 }
    }
}

/// Per wave, the counts of the members in `current` (the group now).
pub fn counts(r: &RolloutRow, known: &[MemberRow], current: &BTreeSet<String>) -> Vec<WaveCounts> {
    let mut out = vec![WaveCounts::default(); r.waves.len()];
    for m in known.iter().filter(|m| current.contains(&m.device)) {
        let Some(c) = out.get_mut(m.wave) else { continue };
        c.devices += 1;
        match m.status.as_deref() {
            None | Some(WAITING) => c.waiting += 1,
            Some(crate::db::NOTIFIED) => c.notified += 1,
            Some(s) if s.starts_with("SUCCESS") => c.success += 1,
            Some(_) => c.errors += 1,
        }
    }
    out
}

/// Start a rollout of `r.package` to `r.group` at `now` and make the first
/// wave's assignments; its id.
pub fn start(db: &mut Db, r: &NewRollout<'_>, now: u64) -> Result<u64, FleetError> {
    let group = db.group(r.group)?.ok_or_else(|| FleetError::NoGroup(r.group.to_string()))?;
    let devices = db.devices_with_facts()?;
    let now_members: Vec<String> = members(db, &group, &devices, now)?.into_iter().collect();
    let id = db.add_rollout(r, now)?;
    for (d, wave) in place(r.package, &now_members, r.waves) {
        db.add_rollout_member(id, &d, wave)?;
    }
    evaluate(db, now)?;
    Ok(id)
}

/// Move every live rollout on at `now` (see the module's documentation).
pub fn evaluate(db: &mut Db, now: u64) -> Result<(), FleetError> {
    let rollouts = db.rollouts(true)?;
    if rollouts.is_empty() {
        return Ok(());
    }
    let devices = db.devices_with_facts()?;
    let mut groups = BTreeMap::new();
    for mut r in rollouts {
        let Some(group) = db.group(&r.group)? else { continue };
        if !groups.contains_key(&r.group) {
            groups.insert(r.group.clone(), members(db, &group, &devices, now)?);
        }
        let current = &groups[&r.group];
        let last = r.waves.len().saturating_sub(1);
        settle(db, &r, current, None)?;
        loop {
            assign_due(db, &r, current, None)?;
            if r.state != RUNNING {
                break;
            }
            let c = counts(&r, &db.rollout_members(r.id)?, current);
            let w = &c[r.wave.min(last)];
            let waited = r.wave_wait.is_some_and(|t| now >= r.wave_started.saturating_add(t));
            if w.finished() < w.devices && !waited {
                break;
            }
            if r.wave < last && w.errors * 100 > u64::from(r.halt_above) * w.devices {
                r.state = HALTED.into();
                r.reason = format!(
                    "wave {} of {}: {} of {} devices failed ({:.0}%), above --halt-above {}%",
                    r.wave + 1,
                    r.waves.len(),
                    w.errors,
                    w.devices,
                    w.error_rate(),
                    r.halt_above
                );
                log::warn!(target: "outpost", "rollout {} halted: {}", r.id, r.reason);
            } else if r.wave < last {
                r.wave += 1;
                r.wave_started = now;
                log::info!(target: "outpost", "rollout {}: wave {} of {} starts", r.id, r.wave + 1, r.waves.len());
            } else {
                r.state = DONE.into();
            }
            db.set_rollout(r.id, r.wave, r.wave_started, &r.state, &r.reason)?;
        }
    }
    Ok(())
}

/// Move every live rollout on for `device` alone, at `now`: it joins the
/// rollouts of the groups it is in now (and gets their package if its wave
/// was reached) and loses what a rollout of a group it left had assigned it
/// and not sent. Waves do not move on ([`evaluate`] does that): a few
/// statements per rollout, not a pass over every device, so a device whose
/// facts changed is told at this same contact.
pub fn evaluate_device(db: &mut Db, device: &str, now: u64) -> Result<(), FleetError> {
    let rollouts = db.rollouts(true)?;
    if rollouts.is_empty() {
        return Ok(());
    }
    let Some(row) = db.device_with_facts(device)? else { return Ok(()) };
    for r in rollouts {
        let Some(group) = db.group(&r.group)? else { continue };
        let current: BTreeSet<String> =
            if super::members::contains(db, &group, &row, now)? { [row.id.clone()].into() } else { BTreeSet::new() };
        settle(db, &r, &current, Some(device))?;
        assign_due(db, &r, &current, Some(device))?;
    }
    Ok(())
}

/// Rollout `r`'s members (of `only` that device, or all) as the group is
/// now (`current`; of `only` alone if given): who joined goes into the
/// wave running, who left loses an assignment the rollout made and did not send.
fn settle(db: &mut Db, r: &RolloutRow, current: &BTreeSet<String>, only: Option<&str>) -> Result<(), FleetError> {
    let last = r.waves.len().saturating_sub(1);
    let known: BTreeMap<String, MemberRow> =
        member_rows(db, r.id, only)?.into_iter().map(|m| (m.device.clone(), m)).collect();
    let joined: Vec<&str> = current.iter().filter(|d| !known.contains_key(*d)).map(String::as_str).collect();
    db.add_rollout_members(r.id, &joined, r.wave.min(last))?;
    for m in known.values().filter(|m| m.ours && !current.contains(&m.device)) {
        if db.rollout_withdraw(r, &m.device, false)? {
            log::info!(target: "outpost", "rollout {}: {} left group {}; package {} withdrawn", r.id, m.device, r.group, r.package);
        }
    }
    Ok(())
}

/// A running or done rollout assigns its package to the members in
/// `current` (of `only` if given) whose wave was reached and that have no
/// assignment of it.
fn assign_due(db: &mut Db, r: &RolloutRow, current: &BTreeSet<String>, only: Option<&str>) -> Result<(), FleetError> {
    if r.state != RUNNING && r.state != DONE {
        return Ok(());
    }
    let members = member_rows(db, r.id, only)?;
    let due: Vec<&str> = members
        .iter()
        .filter(|m| m.wave <= r.wave && m.status.is_none() && !m.ours && current.contains(&m.device))
        .map(|m| m.device.as_str())
        .collect();
    db.rollout_assign_all(r, &due)?;
    Ok(())
}

fn member_rows(db: &Db, id: u64, only: Option<&str>) -> Result<Vec<MemberRow>, FleetError> {
    Ok(match only {
        Some(d) => db.rollout_member(id, d)?,
        None => db.rollout_members(id)?,
    })
}

/// `rollout resume`: a halted rollout starts its next wave at `now`.
pub fn resume(db: &mut Db, id: u64, now: u64) -> Result<RolloutRow, FleetError> {
    let r = db.rollout(id)?.ok_or(FleetError::NoRollout(id))?;
    if r.state != HALTED {
        return Err(FleetError::Refused(format!("rollout {id} is {}, not halted", r.state)));
    }
    let (wave, state) = if r.wave + 1 < r.waves.len() { (r.wave + 1, RUNNING) } else { (r.wave, DONE) };
    db.set_rollout(id, wave, now, state, "")?;
    evaluate(db, now)?;
    db.rollout(id)?.ok_or(FleetError::NoRollout(id))
}

/// `rollout cancel`: no more assignments; those not sent yet are withdrawn. Returns how many.
pub fn cancel(db: &mut Db, id: u64) -> Result<usize, FleetError> {
    let r = db.rollout(id)?.ok_or(FleetError::NoRollout(id))?;
    db.set_rollout(id, r.wave, r.wave_started, CANCELLED, "cancelled")?;
    let mut n = 0;
    for m in db.rollout_members(id)?.iter().filter(|m| m.ours) {
        n += usize::from(db.rollout_withdraw(&r, &m.device, false)?);
    }
    Ok(n)
}

#[cfg(test)]
mod tests;
