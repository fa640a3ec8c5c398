//! Every capacity of the core, in one place. Exceeding one is a typed error.

/// Largest info file accepted, in bytes.
pub const MAX_INFO_LEN: usize = 64 * 1024;
/// Largest manifest accepted, in bytes (about 24 000 fragments).
pub const MAX_MANIFEST_LEN: usize = 1024 * 1024;
/// Most fragments one package may have.
pub const MAX_FRAGMENTS: usize = 20_000;
/// Largest control-API message (poll reply, report batch), in bytes.
pub const MAX_CONTROL_LEN: usize = 256 * 1024;
/// Most packages one poll reply may list.
pub const MAX_POLL_PACKAGES: usize = 1_000;
/// Most reports in one report request.
pub const MAX_REPORTS_PER_REQUEST: usize = 64;
/// Longest status code accepted, in bytes.
pub const MAX_STATUS_LEN: usize = 64;
/// Largest journal record, in bytes.
pub const MAX_RECORD_LEN: usize = 64 * 1024;
