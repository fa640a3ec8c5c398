//! The runtime: everything that touches the world (feature `std`).
//!
//! Thin glue around [`crate::engine`]: it reads clocks and files, opens
//! sockets, spawns processes, and feeds what it sees to the core.

pub mod action;
pub mod agent;
pub mod config;
pub mod http;
pub mod logger;
pub mod store;
pub mod unpack;
