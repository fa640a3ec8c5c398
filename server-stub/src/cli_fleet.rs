//! The command line of fleet management: `device list`, `group …`,
//! `rollout …`, `package list/show/delete/check`, and `assign`'s rollout
//! options. The commands themselves are in `cmd/fleet.rs` and `cmd/catalog.rs`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use outpost_server::fleet::rollout::{parse_duration, parse_percent, parse_waves};

// No doc comment here: it would replace the subcommand's help text.
#[derive(Args)]
pub struct DeviceListArgs {
    #[arg(long)]
    pub dir: PathBuf,
    /// Only devices matching this filter (see README "Managing a fleet"), e.g.
    /// 'os = "linux" and tag = "site:lyon"', 'agent_version < "0.3"', 'last_contact > 7d'.
    #[arg(long = "where", value_name = "EXPR")]
    pub filter: Option<String>,
    /// Print a JSON array of devices with their facts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum GroupCmd {
    /// Create a group: static (devices added by hand), or dynamic with --where.
    Add {
        #[arg(long)]
        dir: PathBuf,
        /// Its name (A-Za-z0-9._-, 1 to 64).
        #[arg(long)]
        name: String,
        /// Dynamic: its members are the devices matching this filter, at every moment.
        #[arg(long = "where", value_name = "EXPR")]
        filter: Option<String>,
    },
    /// Add a device to a static group.
    AddDevice(GroupDeviceArgs),
    /// Remove a device from a static group.
    RemoveDevice(GroupDeviceArgs),
    /// List the groups and their members.
    List {
        #[arg(long)]
        dir: PathBuf,
    },
}

// No doc comment here: it would replace the subcommand's help text.
#[derive(Args)]
pub struct GroupDeviceArgs {
    #[arg(long)]
    pub dir: PathBuf,
    /// The group.
    #[arg(long)]
    pub name: String,
    /// The device.
    #[arg(long)]
    pub device: String,
}

#[derive(Subcommand)]
pub enum RolloutCmd {
    /// Start the next wave of a halted rollout.
    Resume(RolloutArgs),
    /// Stop a rollout; assignments it made that were not sent yet are withdrawn.
    Cancel(RolloutArgs),
}

// No doc comment here: it would replace the subcommand's help text.
#[derive(Args)]
pub struct RolloutArgs {
    #[arg(long)]
    pub dir: PathBuf,
    /// The rollout (see `status`).
    pub id: u64,
}

/// Cumulative percentages of `--waves` (one value for clap).
#[derive(Clone)]
pub struct Waves(pub Vec<u8>);

/// `assign --group`'s rollout options.
#[derive(Args)]
pub struct WaveArgs {
    /// With --group: cumulative shares of the group per wave, e.g. 5%,25%,100% (default: 100%).
    #[arg(long, value_name = "P%,…", requires = "group", value_parser = |s: &str| parse_waves(s).map(Waves))]
    pub waves: Option<Waves>,
    /// With --waves: a wave counts as finished this long after it started (30m, 1h, 2d)
    /// though devices have no result yet.
    #[arg(long, value_name = "DURATION", requires = "waves", value_parser = parse_duration)]
    pub wave_wait: Option<u64>,
    /// With --waves: the next wave does not start when more than this share of a wave's
    /// devices failed; the rollout halts (see `status`, `rollout resume`).
    #[arg(long, value_name = "P%", requires = "waves", value_parser = parse_percent)]
    pub halt_above: Option<u8>,
}

// No doc comment here: it would replace the subcommand's help text.
#[derive(Args)]
pub struct PackageIdArgs {
    #[arg(long)]
    pub dir: PathBuf,
    /// The package.
    pub id: u64,
}

// No doc comment here: it would replace the subcommand's help text.
#[derive(Args)]
pub struct PackageDeleteArgs {
    #[arg(long)]
    pub dir: PathBuf,
    /// The package.
    pub id: u64,
    /// Delete it even though it is assigned (its pending assignments are withdrawn).
    #[arg(long)]
    pub force: bool,
}

// No doc comment here: it would replace the subcommand's help text.
#[derive(Args)]
pub struct PackageListArgs {
    #[arg(long)]
    pub dir: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}
