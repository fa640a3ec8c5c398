//! `outpost-agent`: polls the Outpost server, downloads, verifies, installs.

use std::path::PathBuf;
use std::process::ExitCode;

use outpost_agent::rt::agent::{Agent, AgentError, Runner, run_forever};
use outpost_agent::rt::config::{Config, Protocol};
use outpost_agent::rt::logger;
use outpost_agent::rt::ocs_mode::{OcsAgent, RealEnv};
use outpost_agent::rt::store::Store;

const HELP: &str = "\
outpost-agent — deploys packages published by an Outpost or OCS Inventory NG server
(server.protocol = outpost or ocs in the configuration)

USAGE:
    outpost-agent --config FILE [-v|-q]... run [--once]
    outpost-agent --config FILE status
    outpost-agent --help | --version

COMMANDS:
    run           poll the server and deploy what it assigns; keeps polling at
                  the interval the server gives (backing off while it is away)
    run --once    one poll; work until every package is finished or failed;
                  exit 0 when every status was reported, 1 otherwise
    status        the download rate and what limits it; each package: state,
                  bytes cached/total, last status code

OPTIONS:
    --config FILE   agent configuration (written by `outpost-server device add`)
    -v, -q          more / less logging (repeatable); or OUTPOST_LOG=error|warn|info|debug|trace

SAFETY CHECKS (exit 2 when refused):
    the state directory and its subdirectories must belong to the agent's user
    and not be writable by group or others, nor be symbolic links, and every
    directory above it must belong to root or that user and not be writable by
    others unless sticky: otherwise the agent refuses them, without repairing;
    the config must belong to root or the agent's user and not be writable by
    group or others: refused otherwise; a config with the device secret that
    group or others can read is made 0600, with a warning
";

struct Args {
    config: PathBuf,
    command: String,
    once: bool,
    verbosity: i32,
}

fn parse_args() -> Result<Args, String> {
    let mut config = None;
    let mut command = None;
    let mut once = false;
    let mut verbosity = 0;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => {
                print!("{HELP}");
                std::process::exit(0);
            }
            "-V" | "--version" => {
                println!("outpost-agent {}", env!("CARGO_PKG_VERSION"));
                std::process::exit(0);
            }
            "--config" | "-c" => config = Some(PathBuf::from(it.next().ok_or("--config needs a file")?)),
            "-v" | "--verbose" => verbosity += 1,
            "-q" | "--quiet" => verbosity -= 1,
            "--once" => once = true,
            "run" | "status" if command.is_none() => command = Some(a),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    let command = command.ok_or("no command given (run or status)")?;
    if once && command != "run" {
        return Err("--once goes with run".into());
    }
    Ok(Args { config: config.ok_or("--config FILE is required")?, command, once, verbosity })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("outpost-agent: {e}\n\n{HELP}");
            return ExitCode::from(2);
        }
    };
    logger::init(args.verbosity);
    let mut cfg = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            log::error!(target: "outpost", "{e}");
            return ExitCode::from(2);
        }
    };
    // Every command checks the state directory before touching it, and then
    // uses only its checked, canonical path.
    let store = match Store::open(cfg.agent.state_path()) {
        Ok(s) => s,
        Err(e) => {
            log::error!(target: "outpost", "state directory {}: {e}", cfg.agent.state_dir);
            return ExitCode::from(2);
        }
    };
    match store.root().to_str() {
        Some(root) => cfg.agent.state_dir = root.to_owned(),
        None => {
            log::error!(target: "outpost", "state directory {}: its real path is not UTF-8", store.root().display());
            return ExitCode::from(2);
        }
    }
    if args.command == "status" {
        let lines = outpost_agent::rt::status::lines(&store);
        return match lines {
            Ok(lines) => {
                let now = outpost_hal::time::Clock::unix_time(&outpost_hal::linux::StdClock::new());
                println!("{}", outpost_agent::rt::pace::status_line(store.root(), now));
                for l in lines {
                    println!("{l}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                log::error!(target: "outpost", "{e}");
                ExitCode::FAILURE
            }
        };
    }
    let default_interval = cfg.agent.poll_interval;
    let server_url = cfg.server.url.clone();
    let agent: Result<Box<dyn Runner>, AgentError> = match cfg.server.protocol {
        Protocol::Outpost => Agent::new(cfg).map(|a| Box::new(a) as Box<dyn Runner>),
        Protocol::Ocs => {
            RealEnv::new(&cfg).and_then(|env| OcsAgent::new(cfg, env)).map(|a| Box::new(a) as Box<dyn Runner>)
        }
    };
    let mut agent = match agent {
        Ok(a) => a,
        Err(e) => {
            log::error!(target: "outpost", "{e}");
            return ExitCode::from(2);
        }
    };
    if !args.once {
        run_forever(agent.as_mut(), default_interval, &server_url);
    }
    match agent.run_once() {
        Ok(s) if s.complete() => {
            log::info!(target: "outpost", "done: {} package(s) finished, every status reported", s.finished);
            ExitCode::SUCCESS
        }
        Ok(s) if s.poll_error.is_some() => ExitCode::FAILURE,
        Ok(s) => {
            log::warn!(target: "outpost", "{} package(s) unfinished, {} report(s) undelivered", s.pending, s.unreported);
            ExitCode::FAILURE
        }
        Err(e) => {
            log::error!(target: "outpost", "{e}");
            ExitCode::FAILURE
        }
    }
}
