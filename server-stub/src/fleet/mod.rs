//! Managing a fleet: devices' facts, groups (static lists and dynamic
//! filters), and rollouts of a package to a group in waves.
//!
//! ```text
//!  poll / PROLOG / INVENTORY ─► facts (db::fleet)      expr: the filter language
//!  assign --group G [--waves] ─► rollout ──┐            rollout: which wave runs,
//!  each poll, report and `status` ─────────┴─► evaluate  halts above the error rate
//!                                              └─► assignments for the device's wave
//! ```
//!
//! Nothing runs on a timer: a rollout moves on when it is looked at (a
//! device polls or reports, or `status` runs), which is when it matters.

pub mod expr;
