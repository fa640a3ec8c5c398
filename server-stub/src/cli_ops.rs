//! The command line of operations: `bundle`, `admin …`, `keys …`, `ca …` and
//! `depot …`. The commands themselves are in `cmd/`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

// No doc comment here: it would replace the subcommand's help text.
#[derive(Args)]
pub struct BundleArgs {
    #[arg(long)]
    pub dir: PathBuf,
    #[arg(long)]
    pub package: u64,
    /// The bundle to write (replaced if it exists).
    #[arg(long, value_name = "FILE.outpost")]
    pub out: PathBuf,
}

#[derive(Subcommand)]
pub enum AdminCmd {
    /// Add an administrator (or give one a new password): prints a generated password, once.
    Add {
        #[arg(long)]
        dir: PathBuf,
        /// The name to log in with: 1 to 64 of A-Z a-z 0-9 . _ -
        #[arg(long, value_name = "NAME")]
        user: String,
    },
    /// Remove an administrator; its sessions end at once.
    Remove {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, value_name = "NAME")]
        user: String,
    },
}

#[derive(Subcommand)]
pub enum KeysCmd {
    /// Make a new package-signing key and publish it, vouched for by the old one.
    ///
    /// Agents learn it at their next poll. New packages (and `package resign`) are signed with
    /// the new key; packages signed with the old one keep verifying until the overlap ends.
    Rotate {
        #[arg(long)]
        dir: PathBuf,
        /// Days the old key stays trusted (at least 1; at least the longest --valid-days
        /// of the packages it signed, or resign them).
        #[arg(long, default_value_t = 90)]
        overlap_days: u32,
    },
}

#[derive(Subcommand)]
pub enum CaCmd {
    /// Step 1: make a new CA and publish it beside the one in use (nothing presents it yet).
    ///
    /// Agents learn it at their next poll, over a connection verified with the CA they trust.
    /// Wait until every agent has polled, then run `ca switch`.
    Rotate {
        #[arg(long)]
        dir: PathBuf,
        /// Years the new CA is valid.
        #[arg(long, default_value_t = 20)]
        valid_years: u32,
    },
    /// Step 2: issue the server a certificate from the new CA, for the same names; restart serve.
    ///
    /// Agents that have not polled since `ca rotate` cannot connect afterwards.
    Switch {
        #[arg(long)]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum DepotCmd {
    /// Add a depot (or change its networks): polls from devices in its networks list it, and
    /// agents fetch fragments from the best of the depots and --fragment-loc, over plain HTTP.
    Add {
        #[arg(long)]
        dir: PathBuf,
        /// Where the depot serves its copy of DIR/download, HOST[:PORT]/PATH (plain HTTP).
        #[arg(long, value_name = "HOST[:PORT]/PATH")]
        loc: String,
        /// The devices it serves, by address (default: every device).
        #[arg(long, value_name = "CIDR,...", value_delimiter = ',')]
        networks: Vec<outpost_server::cidr::Cidr>,
    },
    /// List the depots.
    List {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Remove a depot: polls stop listing it.
    Remove {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, value_name = "HOST[:PORT]/PATH")]
        loc: String,
    },
    /// Copy DIR/download into a depot's directory (local or mounted): each file whole and
    /// atomically (written beside, synced, renamed), files already there unchanged skipped.
    Sync {
        #[arg(long)]
        dir: PathBuf,
        /// The directory the depot's web server serves at its --loc.
        #[arg(long, value_name = "PATH")]
        to: PathBuf,
    },
}
