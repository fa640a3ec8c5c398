//! # outpost-server
//!
//! Publishes packages in the OCS Inventory NG layout and tells devices what
//! to install. Built on the agent's sans-IO core for every wire format
//! (info file, manifest, control protocol, status codes).
//!
//! ```text
//!  package add ─► DIR/download/ID/{info, manifest, ID-1..ID-N}   (static files)
//!                       │ HTTPS: control API, info, manifest
//!                       │ HTTP:  fragments (or nginx / a CDN from the same dir)
//!  serve ◄──── poll / report ──── outpost-agent
//!    └─► SQLite (DIR/state.db), or PostgreSQL ([database] url) shared by
//!        several serve instances: devices, packages, assignments, statuses
//! ```

pub mod access;
pub mod admin;
pub mod agent_config;
pub mod api;
pub mod auth;
pub mod check;
pub mod cidr;
pub mod config;
pub mod contacts;
pub mod ct;
pub mod db;
pub mod depot;
pub mod downloads;
pub mod every_second;
pub mod faillog;
pub mod files;
pub mod fleet;
pub mod group_commit;
pub mod http;
pub mod limits;
pub mod lockout;
pub mod metrics;
pub mod migrate;
pub mod objects;
pub mod ocs;
pub mod out;
pub mod package;
pub mod pki;
pub mod poll_cache;
pub mod ratelimit;
pub mod rollover;
pub mod sendfile;
pub mod serve;
pub mod servercert;
pub mod stall;
pub mod time;
pub mod web;
pub mod workers;
