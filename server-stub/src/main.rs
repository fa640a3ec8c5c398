//! `outpost-server`: publish packages, register devices, assign, serve, report.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use outpost_agent::engine::digest::hex;
use outpost_agent::engine::info::{Action, Notify, Proto};
use outpost_agent::engine::manifest::sha256;
use outpost_agent::engine::proto::{valid_device_id, valid_location};
use outpost_server::config::{Agents, Listen, Public, ServerConfig};
use outpost_server::db::Db;
use outpost_server::package::{self, Spec, parse_size};
use outpost_server::{admin, files, pki, serve};
use ring::rand::SecureRandom;

#[derive(Parser)]
#[command(
    name = "outpost-server",
    version,
    about = "Publish packages to Outpost and OCS agents and track their status"
)]
struct Cli {
    /// More logging (repeatable); or OUTPOST_LOG=error|warn|info|debug|trace.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a server directory: CA, TLS certificate, signing key, database, server.toml.
    ///
    /// server.toml, state.db and the private keys are created 0600, keys/ and tls/ 0700.
    #[command(after_help = files::CA_KEY_HELP)]
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// HTTPS listen address (control API, info, manifest), HOST:PORT.
        #[arg(long, value_name = "HOST:PORT")]
        https: String,
        /// HTTP listen address (fragments), HOST:PORT.
        #[arg(long, value_name = "HOST:PORT")]
        http: String,
        /// Name or IP the certificate is for (repeatable; default: the --https host).
        #[arg(long, value_name = "NAME")]
        san: Vec<String>,
        /// Where agents fetch fragments, HOST[:PORT]/PATH (default: the --http address + /download).
        #[arg(long, value_name = "HOST[:PORT]/PATH")]
        fragment_loc: Option<String>,
    },
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
    /// Assign a package to one device or to every device, present and future.
    Assign(AssignArgs),
    /// Serve the control API and the packages until SIGINT/SIGTERM.
    ///
    /// At start, server.toml, state.db (and its -wal/-shm files), keys/ and tls/ and the
    /// private keys are made private to the server's user (0600, directories 0700) if
    /// others can read them, with a warning.
    #[command(after_help = files::CA_KEY_HELP)]
    Serve {
        #[arg(long)]
        dir: PathBuf,
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
    /// Lift the blocks of a client (see `status --blocked`); the running server obeys at once.
    Unblock {
        #[arg(long)]
        dir: PathBuf,
        /// The client: an IPv4 address, or an IPv6 address or /64 (IPv6 clients are blocked by /64).
        #[arg(long, value_name = "ADDR")]
        address: String,
    },
}

#[derive(Subcommand)]
enum PackageCmd {
    /// Build a package from an archive (zip or tar.gz); prints its ID.
    Add {
        #[arg(long)]
        dir: PathBuf,
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
        /// Display name.
        #[arg(long)]
        name: Option<String>,
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
        #[command(flatten)]
        notify: NotifyArgs,
    },
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
enum DeviceCmd {
    /// Register a device and write its ready-to-run agent configuration (mode 0600).
    Add {
        #[arg(long)]
        dir: PathBuf,
        /// Device id (A-Za-z0-9._-).
        #[arg(long)]
        id: String,
        /// Where to write the agent's TOML configuration.
        #[arg(long, value_name = "OUT.toml")]
        agent_config: PathBuf,
        /// The agent's state directory on the device.
        #[arg(long, default_value = "/var/lib/outpost-agent")]
        state_dir: PathBuf,
    },
}

#[derive(Args)]
#[group(required = true, multiple = false, id = "target")]
struct Target {
    /// One device.
    #[arg(long)]
    device: Option<String>,
    /// Every device, present and future.
    #[arg(long)]
    all: bool,
}

#[derive(Args)]
struct AssignArgs {
    #[arg(long)]
    dir: PathBuf,
    #[arg(long)]
    package: u64,
    #[command(flatten)]
    target: Target,
    /// Deploy even where the package is already installed.
    #[arg(long)]
    force: bool,
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

fn init_logger(verbose: u8) {
    struct L;
    impl log::Log for L {
        fn enabled(&self, m: &log::Metadata<'_>) -> bool {
            m.level() <= log::max_level()
        }
        fn log(&self, r: &log::Record<'_>) {
            if self.enabled(r.metadata()) && r.target().starts_with("outpost") {
                eprintln!("{:<5} {}", r.level(), r.args());
            }
        }
        fn flush(&self) {}
    }
    let level = std::env::var("OUTPOST_LOG").ok().and_then(|v| v.parse().ok()).unwrap_or(match verbose {
        0 => log::LevelFilter::Info,
        1 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    });
    if log::set_logger(&L).is_ok() {
        log::set_max_level(level);
    }
}

fn host_of(addr: &str) -> String {
    let h = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    h.trim_start_matches('[').trim_end_matches(']').to_string()
}

fn url_host(h: &str) -> String {
    if h.contains(':') { format!("[{h}]") } else { h.to_string() }
}

fn port_of(addr: &str) -> Result<u16, String> {
    addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).ok_or_else(|| format!("{addr:?} is not HOST:PORT"))
}

fn init(dir: &Path, https: &str, http: &str, sans: Vec<String>, fragment_loc: Option<String>) -> Result<(), String> {
    for a in [https, http] {
        port_of(a)?;
    }
    let taken = ["server.toml", "tls/ca-key.pem", "tls/server-key.pem", "keys/signing.pk8", "state.db"];
    if let Some(t) = taken.iter().find(|t| dir.join(t).exists()) {
        return Err(format!("{} already holds a server ({t} exists); refusing to overwrite its keys", dir.display()));
    }
    let sans = if sans.is_empty() { vec![host_of(https)] } else { sans };
    let public_host = url_host(&sans[0]);
    let https_port = port_of(https)?;
    let http_host = match host_of(http).as_str() {
        "0.0.0.0" | "::" => public_host.clone(),
        h => url_host(h),
    };
    let fragment_loc = fragment_loc.unwrap_or_else(|| format!("{http_host}:{}/download", port_of(http).unwrap_or(80)));
    if !valid_location(&fragment_loc) {
        return Err(format!("--fragment-loc {fragment_loc:?} must be HOST[:PORT]/PATH without a scheme"));
    }
    fs::create_dir_all(dir.join("download")).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|e| e.to_string())?;
    pki::create_tls(dir, &sans)?;
    pki::create_signing_key(dir)?;
    Db::open(&dir.join("state.db")).map_err(|e| format!("state.db: {e}"))?;
    let cfg = ServerConfig {
        listen: Listen { https: https.to_string(), http: http.to_string() },
        public: Public {
            server_url: format!("https://{public_host}:{https_port}"),
            info_loc: format!("{public_host}:{https_port}/download"),
            fragment_loc,
        },
        agents: Agents::default(),
        ocs: Default::default(),
        security: Default::default(),
        limits: Default::default(),
    };
    pki::write_private(&dir.join("server.toml"), cfg.to_toml().as_bytes())
        .map_err(|e| format!("cannot write server.toml: {e}"))?;
    println!(
        "initialised {}: CA {}, control API {}",
        dir.display(),
        dir.join("tls/ca-cert.pem").display(),
        cfg.public.server_url
    );
    Ok(())
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn device_add(dir: &Path, id: &str, out: &Path, state_dir: &Path) -> Result<(), String> {
    if !valid_device_id(id) {
        return Err(format!("device id {id:?}: use 1-128 of A-Za-z0-9._-"));
    }
    let cfg = ServerConfig::load(dir)?;
    let ca = fs::read_to_string(dir.join("tls/ca-cert.pem")).map_err(|e| format!("tls/ca-cert.pem: {e}"))?;
    let public = pki::signing_public_hex(dir)?;
    let mut secret = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut secret).map_err(|_| "no randomness available")?;
    let secret = hex(&secret);
    let mut db = Db::open(&dir.join("state.db")).map_err(|e| format!("state.db: {e}"))?;
    let state = state_dir.to_str().ok_or("--state-dir must be UTF-8")?;
    let text = format!(
        "# outpost-agent configuration for device {id}, written by outpost-server device add.\n\
         # Keep it private: it holds the device's secret.\n\n\
         [server]\nurl = {}\ndevice_id = {}\nsecret = {}\nsigning_key = {}\nca_cert = '''\n{}'''\n\n\
         [agent]\nstate_dir = {}\nexecution_timeout = 7200\n",
        toml_string(&cfg.public.server_url),
        toml_string(id),
        toml_string(&secret),
        toml_string(&public),
        ca.trim_end().to_string() + "\n",
        toml_string(state),
    );
    // Write the file before registering, so a failure leaves no orphan device.
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(out)
        .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    f.set_permissions(fs::Permissions::from_mode(0o600)).map_err(|e| e.to_string())?;
    f.write_all(text.as_bytes()).map_err(|e| e.to_string())?;
    f.sync_all().map_err(|e| e.to_string())?;
    if !db.add_device(id, &sha256(secret.as_bytes())).map_err(|e| e.to_string())? {
        let _ = fs::remove_file(out);
        return Err(format!("device {id:?} already exists"));
    }
    println!("device {id} registered; agent configuration in {}", out.display());
    Ok(())
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.cmd {
        Cmd::Init { dir, https, http, san, fragment_loc } => init(&dir, &https, &http, san, fragment_loc),
        Cmd::Package {
            cmd:
                PackageCmd::Add {
                    dir,
                    file,
                    action,
                    command,
                    path,
                    priority,
                    frag_size,
                    proto,
                    name,
                    reboot,
                    reboot_exit_code,
                    keep_modes,
                    notify: n,
                },
        } => {
            ServerConfig::load(&dir)?;
            let action = match action {
                ActionArg::Launch => Action::Launch,
                ActionArg::Execute => Action::Execute,
                ActionArg::Store => Action::Store,
            };
            let proto = match proto {
                ProtoArg::Http => Proto::Http,
                ProtoArg::Https => Proto::Https,
            };
            let db = Db::open(&dir.join("state.db")).map_err(|e| format!("state.db: {e}"))?;
            let notify = Notify {
                user: n.notify_user,
                text: n.notify_text,
                countdown: n.notify_countdown,
                can_abort: n.notify_can_abort,
                can_delay: n.notify_can_delay,
                need_done_action: n.need_done_action,
                need_done_action_text: n.need_done_action_text,
            };
            let spec = Spec {
                file,
                action,
                command,
                path,
                priority,
                frag_size,
                proto,
                name,
                reboot,
                reboot_exit_codes: reboot_exit_code,
                notify,
                keep_modes,
            };
            let id = package::add(&dir, &db, &spec)?;
            println!("{id}");
            Ok(())
        }
        Cmd::Device { cmd: DeviceCmd::Add { dir, id, agent_config, state_dir } } => {
            device_add(&dir, &id, &agent_config, &state_dir)
        }
        Cmd::Assign(a) => {
            let mut db = Db::open(&a.dir.join("state.db")).map_err(|e| format!("state.db: {e}"))?;
            if !db.has_package(a.package).map_err(|e| e.to_string())? {
                return Err(format!("no package {}", a.package));
            }
            if let Some(d) = &a.target.device
                && !db.has_device(d).map_err(|e| e.to_string())?
            {
                return Err(format!("no device {d:?}"));
            }
            let n = db.assign(a.package, a.target.device.as_deref(), a.force).map_err(|e| e.to_string())?;
            match &a.target.device {
                Some(d) => println!("package {} assigned to {d}", a.package),
                None => println!("package {} assigned to all devices ({n} now, and every future one)", a.package),
            }
            Ok(())
        }
        Cmd::Serve { dir } => {
            files::check_at_serve(&dir)?;
            serve::run(&dir)
        }
        Cmd::Validate { dir, package } => {
            let mut db = Db::open(&dir.join("state.db")).map_err(|e| format!("state.db: {e}"))?;
            let n = db.validate(package).map_err(|e| e.to_string())?;
            println!("package {package}: {n} successful device(s) cleared");
            Ok(())
        }
        Cmd::Unaffect { dir, package, not_notified } => {
            let mut db = Db::open(&dir.join("state.db")).map_err(|e| format!("state.db: {e}"))?;
            let n = db.unaffect(package, not_notified).map_err(|e| e.to_string())?;
            println!("package {package}: removed from {n} device(s)");
            Ok(())
        }
        Cmd::Status { dir, package, json, blocked } => admin::status(&dir, package, json, blocked),
        Cmd::Unblock { dir, address } => admin::unblock(&dir, &address),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logger(cli.verbose);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("outpost-server: {e}");
            ExitCode::FAILURE
        }
    }
}
