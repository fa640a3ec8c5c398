//! What `status` shows of the fleet, as data a page can render too:
//! groups with their member counts, and rollouts with each wave's counts
//! and error rate. [`fleet_status`] moves rollouts on first (evaluation is
//! lazy, see [`super::rollout`]).

use super::FleetError;
use super::members::members;
use super::rollout::{WaveCounts, counts, evaluate};
use crate::db::Db;

/// A group and how many devices are in it now.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GroupStatus {
    /// Name.
    pub name: String,
    /// The filter of a dynamic group (`None`: static).
    pub filter: Option<String>,
    /// Members now.
    pub members: usize,
}

/// One wave of a rollout.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WaveStatus {
    /// Cumulative share of the group, percent.
    pub percent: u8,
    /// Counts over its members now.
    #[serde(flatten)]
    pub counts: WaveCounts,
    /// Errors per member, percent.
    pub error_rate: f64,
}

/// A rollout.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RolloutStatus {
    /// Id (for `rollout resume` / `cancel`).
    pub id: u64,
    /// Package.
    pub package: u64,
    /// Group.
    pub group: String,
    /// `running`, `halted`, `done` or `cancelled`.
    pub state: String,
    /// Why it halted.
    pub reason: String,
    /// The wave reached (1-based).
    pub wave: usize,
    /// Error rate above which it halts, percent.
    pub halt_above: u8,
    /// Its waves.
    pub waves: Vec<WaveStatus>,
}

/// The fleet's part of `status`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FleetStatus {
    /// Every group.
    pub groups: Vec<GroupStatus>,
    /// Every rollout, oldest first.
    pub rollouts: Vec<RolloutStatus>,
}

/// Groups and rollouts at `now`, after moving rollouts on.
pub fn fleet_status(db: &mut Db, now: u64) -> Result<FleetStatus, FleetError> {
    evaluate(db, now)?;
    let devices = db.devices_with_facts()?;
    let mut groups = Vec::new();
    let mut sets = std::collections::BTreeMap::new();
    for g in db.groups()? {
        let m = members(db, &g, &devices, now)?;
        groups.push(GroupStatus { name: g.name.clone(), filter: g.filter.clone(), members: m.len() });
        sets.insert(g.name, m);
    }
    let mut rollouts = Vec::new();
    for r in db.rollouts(false)? {
        let empty = Default::default();
        let current = sets.get(&r.group).unwrap_or(&empty);
        let c = counts(&r, &db.rollout_members(r.id)?, current);
        let waves = r
            .waves
            .iter()
            .zip(c)
            .map(|(p, counts)| WaveStatus { percent: *p, error_rate: counts.error_rate(), counts })
            .collect();
        rollouts.push(RolloutStatus {
            id: r.id,
            package: r.package,
            group: r.group,
            state: r.state,
            reason: r.reason,
            wave: r.wave + 1,
            halt_above: r.halt_above,
            waves,
        });
    }
    Ok(FleetStatus { groups, rollouts })
}

impl FleetStatus {
    /// The text `status` prints (nothing without groups and rollouts).
    pub fn render(&self) -> String {
        let mut s = String::new();
        if !self.groups.is_empty() {
            s.push_str(&format!("{:<24} {:>8}  FILTER\n", "GROUP", "MEMBERS"));
            for g in &self.groups {
                s.push_str(&format!(
                    "{:<24} {:>8}  {}\n",
                    g.name,
                    g.members,
                    g.filter.as_deref().unwrap_or("(static)")
                ));
            }
            s.push('\n');
        }
        for r in &self.rollouts {
            s.push_str(&format!(
                "ROLLOUT {} package {} to group {}: {}, wave {} of {} (halts above {}%){}\n",
                r.id,
                r.package,
                r.group,
                r.state,
                r.wave,
                r.waves.len(),
                r.halt_above,
                if r.reason.is_empty() { String::new() } else { format!(": {}", r.reason) }
            ));
            s.push_str(&format!(
                "  {:<6} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10}\n",
                "WAVE", "SHARE", "DEVICES", "WAITING", "NOTIFIED", "SUCCESS", "ERRORS", "ERROR RATE"
            ));
            for (i, w) in r.waves.iter().enumerate() {
                let c = &w.counts;
                s.push_str(&format!(
                    "  {:<6} {:>5}% {:>8} {:>8} {:>8} {:>8} {:>8} {:>9.0}%\n",
                    i + 1,
                    w.percent,
                    c.devices,
                    c.waiting,
                    c.notified,
                    c.success,
                    c.errors,
                    w.error_rate
                ));
            }
        }
        if !self.rollouts.is_empty() {
            s.push('\n');
        }
        s
    }
}
