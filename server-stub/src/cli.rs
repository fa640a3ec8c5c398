//! The command line: clap's types, and their conversions into the library's types.
//!
//! Only the shape of the command line lives here; what each command does is in `cmd/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use outpost_agent::engine::info::{Action, Notify, Proto};
use outpost_agent::engine::version::Version;
use outpost_server::files;
use outpost_server::package::{Spec, parse_size};
use outpost_server::servercert;

pub use crate::cli_fleet::*;
pub use crate::cli_ops::*;

#[derive(Parser)]
#[command(
    name = "outpost-server",
    version,
    about = "Publish packages to Outpost and OCS agents and track their status"
)]
pub struct Cli {
    /// More logging (repeatable); or OUTPOST_LOG=error|warn|info|debug|trace.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Create a server directory: CA, TLS certificate, signing key, database, server.toml.
    ///
    /// server.toml, state.db and the private keys are created 0600, keys/ and tls/ 0700.
    #[command(after_help = files::CA_KEY_HELP)]
    Init(InitArgs),
    /// Show the server certificate; issue it again for other names (--add-san, --remove-san)
    /// or as it is (`tls renew`).
    ///
    /// A running serve picks a new certificate up within 5 s, without a restart; it also renews
    /// the certificate by itself when due. Agents need no change: they trust the CA.
    #[command(after_help = files::CA_KEY_HELP)]
    Tls(TlsArgs),
    /// Manage packages.
    Package {
        #[command(subcommand)]
        cmd: PackageCmd,
    },
    /// Manage devices.
    Device {
        #[command(subcommand)]
        cmd: DeviceCmd,
    },
    /// Assign a package to one device, to every device or to a group (present and future), in waves.
    Assign(AssignArgs),
    /// Manage depots: more locations of DIR/download (a branch office's nginx, a CDN).
    Depot {
        #[command(subcommand)]
        cmd: DepotCmd,
    },
    /// Roll the package-signing key over (see docs/rollover.md).
    Keys {
        #[command(subcommand)]
        cmd: KeysCmd,
    },
    /// Roll the server's CA over (see docs/rollover.md).
    Ca {
        #[command(subcommand)]
        cmd: CaCmd,
    },
    /// Serve the control API and the packages until SIGINT/SIGTERM.
    ///
    /// At start, server.toml, state.db (and its -wal/-shm files), keys/ and tls/ and the
    /// private keys are made private to the server's user (0600, directories 0700) if
    /// others can read them, with a warning.
    #[command(after_help = files::CA_KEY_HELP)]
    Serve {
        #[arg(long)]
        dir: PathBuf,
        /// Listen for HTTPS here instead of [listen] https (several instances on one DIR
        /// and one PostgreSQL database, each on its own ports).
        #[arg(long, value_name = "HOST:PORT")]
        https: Option<String>,
        /// Listen for plain HTTP here instead of [listen] http.
        #[arg(long, value_name = "HOST:PORT")]
        http: Option<String>,
    },
    /// Clear a package's successful devices from the status (OCS "validate").
    Validate {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        package: u64,
    },
    /// Remove a package from devices (OCS "unaffect").
    Unaffect {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        package: u64,
        /// Only from devices not yet notified (else from every device, and the --all rule).
        #[arg(long)]
        not_notified: bool,
    },
    /// Move the server's state from DIR/state.db into an empty PostgreSQL database, then
    /// point server.toml at it ([database] url). Stop serve first; state.db is kept as state.db.migrated.
    Migrate {
        #[arg(long)]
        dir: PathBuf,
        /// Where the state is now (only sqlite).
        #[arg(long, value_name = "sqlite", value_parser = ["sqlite"])]
        from: String,
        /// Where it goes (only postgres).
        #[arg(long, value_name = "postgres", value_parser = ["postgres"])]
        to: String,
        /// The PostgreSQL database: postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE (it must
        /// exist and hold no device and no package). With a password, give it in the
        /// environment (OUTPOST_DATABASE_URL), not on the command line.
        #[arg(long, value_name = "URL", env = "OUTPOST_DATABASE_URL", hide_env_values = true)]
        database: String,
    },
    /// Show, per package, the counts the OCS console shows, every device's status, and blocked clients.
    Status {
        #[arg(long)]
        dir: PathBuf,
        /// Only this package.
        #[arg(long)]
        package: Option<u64>,
        /// Print a JSON array of {package, name, device, status, updated}
        /// (with --blocked: of {address, scope, identity, blocked_until, retry_after}).
        #[arg(long)]
        json: bool,
        /// Show only the clients blocked after too many authentication failures.
        #[arg(long)]
        blocked: bool,
    },
    /// Manage the administrators of the status page (/admin/ on the HTTPS listener).
    Admin {
        #[command(subcommand)]
        cmd: AdminCmd,
    },
    /// Manage groups of devices (static lists, or dynamic filters over their facts).
    Group {
        #[command(subcommand)]
        cmd: GroupCmd,
    },
    /// Resume or cancel a rollout (`assign --group … --waves`).
    Rollout {
        #[command(subcommand)]
        cmd: RolloutCmd,
    },
    /// Lift the blocks of a client (see `status --blocked`); the running server obeys at once.
    Unblock {
        #[arg(long)]
        dir: PathBuf,
        /// The client: an IPv4 address, or an IPv6 address or /64 (IPv6 clients are blocked by /64).
        #[arg(long, value_name = "ADDR")]
        address: String,
    },
    /// Write a package as one offline bundle (FILE.outpost): info, signed manifest and payload.
    ///
    /// `outpost-agent --config C install FILE.outpost` installs it with no network, verified
    /// exactly as a download; so does an agent whose `[agent] import_dir` holds it.
    Bundle(BundleArgs),
}

// No doc comment here: it would replace the subcommand's help text.
#[derive(Args)]
pub struct InitArgs {
    #[arg(long)]
    pub dir: PathBuf,
    /// HTTPS listen address (control API, info, manifest), HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub https: String,
    /// HTTP listen address (fragments), HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub http: String,
    /// Name or IP the certificate is for (repeatable; default: the --https host).
    #[arg(long, value_name = "NAME")]
    pub san: Vec<String>,
    /// Where agents fetch fragments, HOST[:PORT]/PATH (default: the --http address + /download).
    #[arg(long, value_name = "HOST[:PORT]/PATH")]
    pub fragment_loc: Option<String>,
    /// Publish packages in PATH instead of DIR/download ([server] download_dir), made 0755
    /// with world-readable packages, so that a static server running as another user (nginx
    /// as www-data) can serve it while DIR stays 0700. Relative: under DIR.
    #[arg(long, value_name = "PATH")]
    pub download_dir: Option<PathBuf>,
    /// Keep the server's state in this PostgreSQL database ([database] url) instead of
    /// DIR/state.db: postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE. The database must
    /// exist; its tables are created. Several serve instances may share it. With a
    /// password, give it in the environment (OUTPOST_DATABASE_URL), not on the command
    /// line, where other users see it (ps).
    #[arg(long, value_name = "URL", env = "OUTPOST_DATABASE_URL", hide_env_values = true)]
    pub database: Option<String>,
    /// Use this existing CA (one PEM certificate) instead of making one: a root, or an
    /// intermediate (then give --ca-chain). It must be a CA allowed to sign certificates
    /// (basicConstraints CA:TRUE, keyUsage keyCertSign) and valid now.
    #[arg(long, value_name = "FILE", requires = "ca_key")]
    pub ca_cert: Option<PathBuf>,
    /// The private key of --ca-cert (unencrypted PKCS#8 PEM), copied to DIR/tls/ca-key.pem (0600).
    #[arg(long, value_name = "FILE", requires = "ca_cert")]
    pub ca_key: Option<PathBuf>,
    /// For an intermediate --ca-cert: the certificates above it, up to its root (PEM). Agents
    /// are given this file as their CA (give the root alone), so the root's key stays offline;
    /// the server sends its certificate with the intermediate.
    #[arg(long, value_name = "FILE", requires = "ca_cert")]
    pub ca_chain: Option<PathBuf>,
    /// Days the server certificate is valid; serve renews it before it ends.
    #[arg(long, value_name = "DAYS", default_value_t = servercert::DEFAULT_DAYS,
          value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub cert_days: u32,
}

// No doc comment here: it would replace the subcommand's help text.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct TlsArgs {
    #[command(subcommand)]
    pub cmd: Option<TlsCmd>,
    #[arg(long, required = true)]
    pub dir: Option<PathBuf>,
    /// Add a name (DNS name or IP address) to the server certificate (repeatable): it is
    /// issued again with the CA key, for the old names and these.
    #[arg(long, value_name = "NAME")]
    pub add_san: Vec<String>,
    /// Remove a name from the server certificate (repeatable).
    #[arg(long, value_name = "NAME")]
    pub remove_san: Vec<String>,
}

#[derive(Subcommand)]
pub enum TlsCmd {
    /// Issue the server certificate again now: same names, a new key, a new validity period.
    Renew {
        #[arg(long)]
        dir: PathBuf,
        /// Days it is valid (default: as long as the current one).
        #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u32).range(1..=3650))]
        days: Option<u32>,
    },
}

// Parsed once per process: the size of its variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum PackageCmd {
    /// Build a package from an archive (zip or tar.gz); prints its ID.
    Add(PackageAddArgs),
    /// Sign a package's manifest again with a new expiry (0 days: withdraw it).
    Resign(PackageResignArgs),
    /// List the packages with their assignment counts.
    List(PackageListArgs),
    /// Show a package: info, manifest, locations, assignments, counts.
    Show(PackageIdArgs),
    /// Delete a package: its files and pending assignments (the history of installs stays).
    Delete(PackageDeleteArgs),
    /// Fetch info, manifest and every fragment from every location devices are told to use,
    /// and verify them against the signed digests.
    Check(PackageIdArgs),
}

// No doc comment here: it would replace the subcommand's help text.
#[derive(Args)]
pub struct PackageResignArgs {
    #[arg(long)]
    pub dir: PathBuf,
    /// The package.
    #[arg(long)]
    pub id: u64,
    /// Days from now the manifest stays valid (0: expired at once).
    #[arg(long, default_value_t = 90)]
    pub valid_days: u32,
}

// No doc comment here: it would replace the subcommand's help text.
#[derive(Args)]
pub struct PackageAddArgs {
    #[arg(long)]
    pub dir: PathBuf,
    #[command(flatten)]
    pub spec: SpecArgs,
}

// What `package add` builds, everything but the server directory; becomes a `Spec`.
#[derive(Args)]
pub struct SpecArgs {
    /// The archive (without it, only --action execute is allowed).
    #[arg(long)]
    file: Option<PathBuf>,
    #[arg(long, value_enum)]
    action: ActionArg,
    /// launch: the command line, whose first word is a file in the archive; execute: a shell command line.
    #[arg(long)]
    command: Option<String>,
    /// store: the destination directory.
    #[arg(long)]
    path: Option<String>,
    /// 0 (first) to 10.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u8).range(0..=10))]
    priority: u8,
    /// Fragment size (K/M suffixes).
    #[arg(long, default_value = "1M", value_parser = parse_size)]
    frag_size: u64,
    /// Fragment transport.
    #[arg(long, value_enum, default_value = "http")]
    proto: ProtoArg,
    /// Display name; with --version, also the package's name in its line of versions (signed, 1 to 64 bytes).
    #[arg(long)]
    name: Option<String>,
    /// Dotted numbers (1.10.2, compared as numbers): with --name, ties packages into a line of versions; agents
    /// refuse a version older than one of the same name they ran (ERR_DOWNGRADE). The payload is also published
    /// as content objects (DIR/download/objects/): agents holding an earlier version fetch only what changed.
    #[arg(long, value_name = "VERSION", requires = "name", value_parser = |s: &str| Version::parse(s))]
    version: Option<Version>,
    /// This version is meant to replace a higher one of the same --name (signed: agents then accept it).
    #[arg(long, alias = "allow-downgrade", requires = "version")]
    downgrade: bool,
    /// Ask agents to reboot after a successful install (under their reboot policy).
    #[arg(long)]
    reboot: bool,
    /// An exit code meaning "installed, reboot required" (repeatable): reported
    /// SUCCESS_REBOOT_REQUIRED, and a reboot is requested.
    #[arg(long, value_name = "N")]
    reboot_exit_code: Vec<i32>,
    /// Keep group- and world-write bits of archive members (agents drop them otherwise).
    #[arg(long)]
    keep_modes: bool,
    /// Days the signed manifest is valid; agents refuse it afterwards (ERR_EXPIRED) until `package resign`.
    #[arg(long, default_value_t = 90)]
    valid_days: u32,
    #[command(flatten)]
    notify: NotifyArgs,
}

/// The OCS user-notification fields of the info file.
#[derive(Args)]
struct NotifyArgs {
    /// Ask the user before installing (NOTIFY_USER).
    #[arg(long)]
    notify_user: bool,
    /// The question (NOTIFY_TEXT).
    #[arg(long, default_value = "")]
    notify_text: String,
    /// Seconds before the install proceeds without an answer (NOTIFY_COUNTDOWN).
    #[arg(long)]
    notify_countdown: Option<u32>,
    /// The user may abort (NOTIFY_CAN_ABORT): the device reports ERR_ABORTED.
    #[arg(long)]
    notify_can_abort: bool,
    /// The user may delay (NOTIFY_CAN_DELAY): asked again at the next poll.
    #[arg(long)]
    notify_can_delay: bool,
    /// Tell the user when the install is done (NEED_DONE_ACTION).
    #[arg(long)]
    need_done_action: bool,
    /// What to tell them (NEED_DONE_ACTION_TEXT).
    #[arg(long, default_value = "")]
    need_done_action_text: String,
}

#[derive(Subcommand)]
pub enum DeviceCmd {
    /// Register a device and write its ready-to-run agent configuration (mode 0600), with its
    /// secret and a client certificate signed by the server's CA (when tls/ca-key.pem is here).
    #[command(after_help = files::CA_KEY_HELP)]
    Add(DeviceAddArgs),
    /// Refuse a device's secret and client certificate from now on (the running server too).
    Revoke(DeviceArgs),
    /// Give a device a new secret and client certificate, delivered with its next poll over its
    /// verified channel; the old ones work until it uses the new ones.
    #[command(after_help = files::CA_KEY_HELP)]
    Rotate(DeviceArgs),
    /// List the devices with their facts (last poll, PROLOG or INVENTORY).
    List(DeviceListArgs),
}

// No doc comment here: it would replace the subcommand's help text.
#[derive(Args)]
pub struct DeviceArgs {
    #[arg(long)]
    pub dir: PathBuf,
    /// The device.
    #[arg(long)]
    pub id: String,
}

// No doc comment here: it would replace the subcommand's help text.
#[derive(Args)]
pub struct DeviceAddArgs {
    #[arg(long)]
    pub dir: PathBuf,
    /// Device id (A-Za-z0-9._-).
    #[arg(long)]
    pub id: String,
    /// Where to write the agent's TOML configuration.
    #[arg(long, value_name = "OUT.toml")]
    pub agent_config: PathBuf,
    /// The agent's state directory on the device.
    #[arg(long, default_value = "/var/lib/outpost-agent")]
    pub state_dir: PathBuf,
}

#[derive(Args)]
#[group(required = true, multiple = false, id = "target")]
pub struct Target {
    /// One device.
    #[arg(long)]
    pub device: Option<String>,
    /// Every device, present and future.
    #[arg(long)]
    pub all: bool,
    /// The members of a group, present and future (see `group`).
    #[arg(long, value_name = "NAME")]
    pub group: Option<String>,
}

#[derive(Args)]
pub struct AssignArgs {
    #[arg(long)]
    pub dir: PathBuf,
    #[arg(long)]
    pub package: u64,
    #[command(flatten)]
    pub target: Target,
    /// Deploy even where the package is already installed.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub waves: WaveArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum ActionArg {
    Launch,
    Execute,
    Store,
}

#[derive(Clone, Copy, ValueEnum)]
enum ProtoArg {
    Http,
    Https,
}

impl From<ActionArg> for Action {
    fn from(a: ActionArg) -> Self {
        match a {
            ActionArg::Launch => Action::Launch,
            ActionArg::Execute => Action::Execute,
            ActionArg::Store => Action::Store,
        }
    }
}

impl From<ProtoArg> for Proto {
    fn from(p: ProtoArg) -> Self {
        match p {
            ProtoArg::Http => Proto::Http,
            ProtoArg::Https => Proto::Https,
        }
    }
}

impl From<NotifyArgs> for Notify {
    fn from(n: NotifyArgs) -> Self {
        Notify {
            user: n.notify_user,
            text: n.notify_text,
            countdown: n.notify_countdown,
            can_abort: n.notify_can_abort,
            can_delay: n.notify_can_delay,
            need_done_action: n.need_done_action,
            need_done_action_text: n.need_done_action_text,
        }
    }
}

impl From<SpecArgs> for Spec {
    fn from(s: SpecArgs) -> Self {
        Spec {
            file: s.file,
            action: s.action.into(),
            command: s.command,
            path: s.path,
            priority: s.priority,
            frag_size: s.frag_size,
            proto: s.proto.into(),
            name: s.name,
            version: s.version,
            downgrade: s.downgrade,
            reboot: s.reboot,
            reboot_exit_codes: s.reboot_exit_code,
            notify: s.notify.into(),
            keep_modes: s.keep_modes,
            valid_days: s.valid_days,
        }
    }
}
