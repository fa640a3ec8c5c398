//! The sans-IO core: wire formats and decisions, no sockets, files or clocks.
//!
//! Builds without `std` (alloc only). Every function that depends on time
//! takes `now` (or a wall time) as an argument; randomness comes in as values.
//!
//! ```text
//!   bytes from network/disk ─► info / manifest / proto / journal decoders
//!                                      │
//!   runtime ──now, events──► fetch (per fragment) · backoff · plan ──► what to do next
//! ```

pub mod allow;
pub mod backoff;
pub mod bundle;
pub mod civil;
pub mod config;
pub mod deploy;
pub mod digest;
pub mod download;
pub mod facts;
pub mod fetch;
pub mod identity;
pub mod info;
pub mod journal;
pub mod limits;
pub mod manifest;
pub mod moment;
pub mod ocs;
pub mod ocs_sched;
pub mod plan;
pub mod proto;
pub mod refetch;
pub mod sources;
pub mod status;
pub mod throttle;
pub mod tree;
pub mod trust;
pub mod version;
pub mod x509;
