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
//!
//! ```text
//!  server ──HTTPS──► poll reply, info, manifest ──► engine (verify, plan)
//!  CDN/nginx ─HTTP─► fragments ──► engine::fetch ──► cache (durable) ──► unpack ──► action
//!  status ◄──HTTPS── outbox (durable, acked once) ◄──────────────────────────────┘
//! ```
#![cfg_attr(not(feature = "std"), no_std)]

extern crate alloc;

pub mod engine;

#[cfg(feature = "std")]
pub mod rt;
