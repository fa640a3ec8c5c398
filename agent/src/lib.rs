//! # outpost-agent
//!
//! The endpoint side of Outpost. Two layers:
//!
//! * [`engine`] — the sans-IO core (`no_std` + `alloc`): the OCS info file,
//!   the signed manifest, the control protocol, status codes, the resumable
//!   fragment fetcher, journal records and the pure deployment decisions.
//!   The server builds its packages with the same code.
//! * `rt` (feature `std`) — the runtime: configuration, HTTP/1.1 over TCP and
//!   rustls, the state directory, safe unpacking, running actions, the CLI.
//!   Two protocol front ends (`rt::agent` for Outpost's poll/report,
//!   `rt::ocs_mode` for OCS PROLOG/DOWNLOAD/INVENTORY) perform the actions of
//!   one lifecycle (`engine::deploy`) through one environment trait
//!   (`rt::env::Env`: clock, sleep, randomness, transport, user), so tests
//!   drive both production loops in virtual time.
//!
//! ```text
//!  server ──HTTPS──► poll reply, info, manifest ──► engine (verify, plan, deploy)
//!  CDN/nginx ─HTTP─► fragments ──► rt::fragment ──embedded-io Write──► engine::download
//!                                  ──► cache (durable, journal) ──► unpack ──► action
//!  status ◄──HTTPS── outbox (durable, acked once) ◄──────────────────────────────┘
//! ```
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

pub mod engine;

#[cfg(feature = "std")]
pub mod rt;
