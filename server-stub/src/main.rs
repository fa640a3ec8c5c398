//! `outpost-server`: publish packages, register devices, assign, serve, report.
//!
//! This file parses the command line, sets up logging, hands each command to its module
//! and turns an error into a message and an exit code. The command line is in `cli`,
//! the commands in `cmd/`.

mod cli;
mod cli_fleet;
mod cli_ops;
mod cmd;

use std::process::ExitCode;

use clap::Parser;
use cli::{AdminCmd, CaCmd, Cli, Cmd, DepotCmd, DeviceCmd, KeysCmd, PackageCmd, RolloutCmd};
use outpost_server::{admin, files, serve};

fn init_logger(verbose: u8) {
    struct L;
    impl log::Log for L {
        fn enabled(&self, m: &log::Metadata<'_>) -> bool {
            m.level() <= log::max_level()
        }
        fn log(&self, r: &log::Record<'_>) {
            if self.enabled(r.metadata()) && r.target().starts_with("outpost") {
                // One write per line: stderr is unbuffered, and `eprintln!`
                // makes a system call for every piece of the format (a
                // twentieth of the server's time at 10,000 reports/s).
                let line = format!("{:<5} {}\n", r.level(), r.args());
                let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
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

fn run(cmd: Cmd) -> Result<(), String> {
    match cmd {
        Cmd::Init(a) => cmd::init::run(a),
        Cmd::Tls(a) => cmd::tls::run(a),
        Cmd::Package { cmd: PackageCmd::Add(a) } => cmd::package::add(a),
        Cmd::Package { cmd: PackageCmd::Resign(a) } => cmd::package::resign(a),
        Cmd::Device { cmd: DeviceCmd::Add(a) } => cmd::device::add(a),
        Cmd::Device { cmd: DeviceCmd::Revoke(a) } => cmd::device::revoke(a),
        Cmd::Device { cmd: DeviceCmd::Rotate(a) } => cmd::device::rotate(a),
        Cmd::Package { cmd: PackageCmd::List(a) } => cmd::catalog::list(a),
        Cmd::Package { cmd: PackageCmd::Show(a) } => cmd::catalog::show(a),
        Cmd::Package { cmd: PackageCmd::Delete(a) } => cmd::catalog::delete(a),
        Cmd::Package { cmd: PackageCmd::Check(a) } => cmd::catalog::check(a),
        Cmd::Device { cmd: DeviceCmd::List(a) } => cmd::fleet::device_list(a),
        Cmd::Group { cmd } => cmd::fleet::group(cmd),
        Cmd::Rollout { cmd: RolloutCmd::Resume(a) } => cmd::fleet::resume(a),
        Cmd::Rollout { cmd: RolloutCmd::Cancel(a) } => cmd::fleet::cancel(a),
        Cmd::Assign(a) => cmd::assign::assign(a),
        Cmd::Depot { cmd: DepotCmd::Add { dir, loc, networks } } => cmd::depot::add(&dir, &loc, networks),
        Cmd::Depot { cmd: DepotCmd::List { dir } } => cmd::depot::list(&dir),
        Cmd::Depot { cmd: DepotCmd::Remove { dir, loc } } => cmd::depot::remove(&dir, &loc),
        Cmd::Depot { cmd: DepotCmd::Sync { dir, to } } => cmd::depot::sync(&dir, &to),
        Cmd::Keys { cmd: KeysCmd::Rotate { dir, overlap_days } } => cmd::rollover::rotate_key(&dir, overlap_days),
        Cmd::Ca { cmd: CaCmd::Rotate { dir, valid_years } } => cmd::rollover::rotate_ca(&dir, valid_years),
        Cmd::Ca { cmd: CaCmd::Switch { dir } } => cmd::rollover::switch_ca(&dir),
        Cmd::Serve { dir, https, http } => files::check_at_serve(&dir).and_then(|()| serve::run_on(&dir, https, http)),
        Cmd::Validate { dir, package } => cmd::assign::validate(&dir, package),
        Cmd::Unaffect { dir, package, not_notified } => cmd::assign::unaffect(&dir, package, not_notified),
        Cmd::Migrate { dir, from: _, to: _, database } => outpost_server::migrate::sqlite_to_postgres(&dir, &database)
            .map(|copied| {
                let rows: usize = copied.iter().map(|(_, n)| n).sum();
                println!(
                    "migrated {rows} rows in {} tables to {}; server.toml now uses it (state.db is kept as state.db.migrated)",
                    copied.len(),
                    outpost_server::db::redact(&database)
                );
            }),
        Cmd::Status { dir, package, json, blocked } => admin::status(&dir, package, json, blocked),
        Cmd::Unblock { dir, address } => admin::unblock(&dir, &address),
        Cmd::Admin { cmd: AdminCmd::Add { dir, user } } => cmd::admin::add(&dir, &user),
        Cmd::Admin { cmd: AdminCmd::Remove { dir, user } } => cmd::admin::remove(&dir, &user),
        Cmd::Bundle(a) => cmd::bundle::run(a),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logger(cli.verbose);
    match run(cli.cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("outpost-server: {e}");
            ExitCode::FAILURE
        }
    }
}
