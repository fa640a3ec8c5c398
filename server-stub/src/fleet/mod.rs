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

pub mod contact;
pub mod expr;
pub mod members;
pub mod pace;
pub mod rollout;
pub mod status;

use std::fmt;

/// Why a fleet command or evaluation failed.
#[derive(Debug)]
pub enum FleetError {
    /// The database failed.
    Db(crate::db::DbError),
    /// A filter does not parse (stored ones were checked when created).
    Expr(expr::ExprError),
    /// No group of that name.
    NoGroup(String),
    /// No rollout of that id.
    NoRollout(u64),
    /// The command does not apply (a message for the admin).
    Refused(String),
}

impl fmt::Display for FleetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Db(e) => write!(f, "state.db: {e}"),
            Self::Expr(e) => write!(f, "filter {e}"),
            Self::NoGroup(g) => write!(f, "no group {g:?}"),
            Self::NoRollout(r) => write!(f, "no rollout {r}"),
            Self::Refused(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for FleetError {}

impl From<crate::db::DbError> for FleetError {
    fn from(e: crate::db::DbError) -> Self {
        Self::Db(e)
    }
}

impl From<expr::ExprError> for FleetError {
    fn from(e: expr::ExprError) -> Self {
        Self::Expr(e)
    }
}
