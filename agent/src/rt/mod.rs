//! The runtime: everything that touches the world (feature `std`).
//!
//! Thin glue around [`crate::engine`]: it reads clocks and files, opens
//! sockets, spawns processes, and feeds what it sees to the core.

pub mod action;
pub mod agent;
pub mod cache;
pub mod config;
pub(crate) mod drive;
pub mod env;
pub mod facts;
pub(crate) mod fragment;
pub mod http;
pub mod identity;
pub mod logger;
pub mod ocs_mode;
pub mod pace;
pub mod progress;
pub mod status;
pub mod store;
pub mod unpack;
pub mod wake;

/// The runtime's only way to wait (the core never sleeps).
#[allow(clippy::disallowed_methods)]
pub fn sleep(d: std::time::Duration) {
    std::thread::sleep(d);
}
