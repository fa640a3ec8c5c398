//! One module per command, or per group of small commands that work on the same thing.
//!
//! `status`, `unblock` and `serve` need no code of their own here: `main` calls
//! `admin` and `serve` in the library directly.

pub mod admin;
pub mod assign;
pub mod bundle;
pub mod catalog;
pub mod depot;
pub mod device;
pub mod fleet;
pub mod init;
pub mod package;
pub mod rollover;
pub mod tls;

use std::path::Path;

use outpost_server::db::Db;

/// Opens the server's database (`DIR/state.db`, or `[database] url`), with
/// the message every command gives when it cannot.
fn open_db(dir: &Path) -> Result<Db, String> {
    Db::open_in(dir)
}
