//! `outpost-agent`: polls the Outpost server, downloads, verifies, installs.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use outpost_agent::rt::agent::{Agent, AgentError, Bundle, Installed, Runner, run_forever};
use outpost_agent::rt::config::{Config, Protocol};
use outpost_agent::rt::env::RealEnv;
use outpost_agent::rt::logger;
use outpost_agent::rt::ocs_mode::OcsAgent;
use outpost_agent::rt::store::Store;

const HELP: &str = "\
outpost-agent — deploys packages published by an Outpost or OCS Inventory NG server
(server.protocol = outpost or ocs in the configuration)

USAGE:
    outpost-agent --config FILE [-v|-q]... run [--once]
    outpost-agent --config FILE status [--json]
    outpost-agent --config FILE install BUNDLE.outpost
    outpost-agent --help | --version

COMMANDS:
    run           poll the server and deploy what it assigns; keeps polling at
                  the interval the server gives (backing off while it is away)
    run --once    one poll; work until every package is finished or failed;
                  exit 0 when every status was reported, 1 otherwise
    status        the download rate and what limits it; each package: state,
                  bytes held/total, last status code; while downloading also
                  percent, rate (measured since the previous status, 1 s to
                  10 min before) and time left
    status --json the same as one JSON object
    install FILE  install an offline bundle (outpost-server bundle), verified
                  as a download, with no network; its status goes at the next run

OPTIONS:
    -c, --config FILE   agent configuration (written by `outpost-server device add`);
                        also --config=FILE
    -v, -q              more / less logging (repeatable: -vv, -v -v); also --verbose,
                        --quiet; or OUTPOST_LOG=error|warn|info|debug|trace
    -h, --help          this text
    -V, --version       the version

SAFETY CHECKS (exit 2 when refused):
    the state directory and its subdirectories must belong to the agent's user
    and not be writable by group or others, nor be symbolic links, and every
    directory above it must belong to root or that user and not be writable by
    others unless sticky: otherwise the agent refuses them, without repairing;
    the config must belong to root or the agent's user and not be writable by
    group or others: refused otherwise; a config with the device secret that
    group or others can read is made 0600, with a warning
";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Cli {
    /// `-h`, `--help`: print [`HELP`].
    Help,
    /// `-V`, `--version`.
    Version,
    /// A command to run.
    Run(Args),
}

/// `run` or `status`.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    /// Poll and deploy; `once`: one poll, then exit.
    Run { once: bool },
    /// Print the download rate and each package's state; `json`: as JSON.
    Status { json: bool },
    /// Install an offline bundle.
    Install(PathBuf),
}

/// A command with its options.
#[derive(Debug, PartialEq, Eq)]
struct Args {
    config: PathBuf,
    command: Command,
    /// Each `-v` adds one, each `-q` takes one away.
    verbosity: i32,
}

/// Parse the arguments after the program name. Options may come before or
/// after the command; short ones combine (`-vv`), values follow a space or
/// `=` (`--config=FILE`, `-cFILE`).
fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Cli, String> {
    use lexopt::prelude::*;
    let mut config = None;
    let mut command = None;
    let mut once = false;
    let mut file = None;
    let mut json = false;
    let mut verbosity = 0;
    let mut p = lexopt::Parser::from_args(args);
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Short('h') | Long("help") => return Ok(Cli::Help),
            Short('V') | Long("version") => return Ok(Cli::Version),
            Short('c') | Long("config") => config = Some(PathBuf::from(p.value().map_err(|e| e.to_string())?)),
            Short('v') | Long("verbose") => verbosity += 1,
            Short('q') | Long("quiet") => verbosity -= 1,
            Long("once") => once = true,
            Long("json") => json = true,
            Value(v) if command.is_none() && (v == "run" || v == "status" || v == "install") => command = Some(v),
            Value(v) if command.as_deref() == Some("install".as_ref()) && file.is_none() => file = Some(v),
            other => return Err(other.unexpected().to_string()),
        }
    }
    let command = match command.ok_or("no command given (run, status or install)")? {
        c if c != "status" && json => return Err("--json goes with status".into()),
        c if c == "run" => Command::Run { once },
        _ if once => return Err("--once goes with run".into()),
        c if c == "install" => Command::Install(file.ok_or("install needs a bundle file")?.into()),
        _ => Command::Status { json },
    };
    Ok(Cli::Run(Args { config: config.ok_or("--config FILE is required")?, command, verbosity }))
}

/// `status [--json]`: the rate line and a row per package, measured against
/// the previous `status`'s samples, which this one replaces. Output to a
/// reader that went away (`| head -1`) ends it quietly.
fn status(store: &Store, json: bool) -> ExitCode {
    use outpost_agent::rt::{progress, status};
    use std::io::Write;
    #[allow(clippy::disallowed_methods)] // runtime glue: the wall time of this sample
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let (rows, samples) = match status::rows(store, now_ms, &progress::load(store.root())) {
        Ok(r) => r,
        Err(e) => {
            log::error!(target: "outpost", "{e}");
            return ExitCode::FAILURE;
        }
    };
    progress::save(store.root(), &samples);
    let rate = outpost_agent::rt::pace::status_line(store.root(), now_ms / 1000);
    let mut text = if json { status::json(&rate, &rows) } else { rate };
    for l in if json { Vec::new() } else { status::table(&rows) } {
        text.push('\n');
        text += &l;
    }
    text.push('\n');
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let args = match parse(std::env::args_os().skip(1)) {
        Ok(Cli::Run(a)) => a,
        Ok(Cli::Help) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Ok(Cli::Version) => {
            println!("outpost-agent {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
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
    if let Command::Status { json } = args.command {
        return status(&store, json);
    }
    let default_interval = cfg.agent.poll_interval;
    let server_url = cfg.server.url.clone();
    // Bundles are for the Outpost protocol (an OCS-mode agent ignores import_dir).
    let import_dir =
        cfg.agent.import_dir.clone().filter(|_| matches!(cfg.server.protocol, Protocol::Outpost)).map(PathBuf::from);
    let agent: Result<Box<dyn Runner>, AgentError> =
        RealEnv::new(&cfg).map_err(AgentError::Env).and_then(|env| match cfg.server.protocol {
            Protocol::Outpost => Agent::new(cfg, env).map(|a| Box::new(a) as Box<dyn Runner>),
            Protocol::Ocs => OcsAgent::new(cfg, env).map(|a| Box::new(a) as Box<dyn Runner>),
        });
    let mut agent = match agent {
        Ok(a) => a,
        Err(e) => {
            log::error!(target: "outpost", "{e}");
            return ExitCode::from(2);
        }
    };
    if let Command::Install(file) = &args.command {
        return install(agent.as_mut(), file);
    }
    if matches!(args.command, Command::Run { once: false }) {
        run_forever(agent.as_mut(), default_interval, &server_url, import_dir.as_deref());
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

/// `install FILE`: the bundle through the lifecycle; its report goes at
/// the next run that reaches the server.
fn install(runner: &mut dyn Runner, file: &std::path::Path) -> ExitCode {
    let outcome = Bundle::open(file)
        .map_err(|e| e.to_string())
        .and_then(|b| runner.install_bundle(&b).map_err(|e| e.to_string()));
    let (ok, what) = match outcome {
        Ok(Installed::Final(code)) => (code.is_success(), code.to_string()),
        Ok(Installed::Later) => (false, "not finished in this run".into()),
        Ok(Installed::Invalid(why)) => (false, format!("not a valid bundle: {why}")),
        Err(e) => (false, e),
    };
    if ok {
        log::info!(target: "outpost", "{}: installed: {what}", file.display());
        return ExitCode::SUCCESS;
    }
    log::error!(target: "outpost", "{}: not installed: {what}", file.display());
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Cli, String> {
        parse(args.iter().map(OsString::from))
    }

    fn run(config: &str, once: bool, verbosity: i32) -> Result<Cli, String> {
        Ok(Cli::Run(Args { config: config.into(), command: Command::Run { once }, verbosity }))
    }

    #[test]
    fn config_takes_a_space_an_equals_sign_or_the_short_form() {
        assert_eq!(p(&["--config", "a.toml", "run"]), run("a.toml", false, 0));
        assert_eq!(p(&["--config=a.toml", "run"]), run("a.toml", false, 0));
        assert_eq!(p(&["-c", "a.toml", "run"]), run("a.toml", false, 0));
        assert_eq!(p(&["-ca.toml", "run"]), run("a.toml", false, 0));
        assert_eq!(p(&["run", "--config", "b", "--config", "a.toml"]), run("a.toml", false, 0), "the last one wins");
        assert!(p(&["run", "--config"]).unwrap_err().contains("missing argument"));
        assert_eq!(p(&["run"]), Err("--config FILE is required".into()));
    }

    #[test]
    fn verbosity_counts_every_v_and_q() {
        assert_eq!(p(&["-v", "-c", "f", "run"]), run("f", false, 1));
        assert_eq!(p(&["-vv", "-c", "f", "run"]), run("f", false, 2));
        assert_eq!(p(&["-v", "-v", "--verbose", "-c", "f", "run"]), run("f", false, 3));
        assert_eq!(p(&["-c", "f", "run", "-qq", "--quiet"]), run("f", false, -3));
        assert_eq!(p(&["-vqv", "-c", "f", "run"]), run("f", false, 1));
        assert_eq!(p(&["-vvc", "f", "run"]), run("f", false, 2), "a value-taking short option ends the group");
    }

    #[test]
    fn commands_and_once() {
        assert_eq!(p(&["-c", "f", "run", "--once"]), run("f", true, 0));
        assert_eq!(p(&["--once", "-c", "f", "run"]), run("f", true, 0));
        assert_eq!(
            p(&["-c", "f", "status"]),
            Ok(Cli::Run(Args { config: "f".into(), command: Command::Status { json: false }, verbosity: 0 }))
        );
        assert_eq!(
            p(&["--json", "-c", "f", "status"]),
            Ok(Cli::Run(Args { config: "f".into(), command: Command::Status { json: true }, verbosity: 0 }))
        );
        assert_eq!(p(&["-c", "f", "run", "--json"]), Err("--json goes with status".into()));
        assert_eq!(p(&["-c", "f", "status", "--once"]), Err("--once goes with run".into()));
        assert_eq!(p(&["-c", "f"]), Err("no command given (run, status or install)".into()));
        assert_eq!(
            p(&["-c", "f", "install", "a.outpost"]),
            Ok(Cli::Run(Args { config: "f".into(), command: Command::Install("a.outpost".into()), verbosity: 0 }))
        );
        assert_eq!(p(&["-c", "f", "install"]), Err("install needs a bundle file".into()));
        assert!(p(&["-c", "f", "install", "a", "b"]).is_err());
        assert!(p(&["-c", "f", "run", "status"]).unwrap_err().contains("status"));
        assert!(p(&["-c", "f", "stop"]).unwrap_err().contains("stop"));
        assert!(p(&["-c", "f", "run", "-x"]).unwrap_err().contains("-x"));
        assert!(p(&["-c", "f", "run", "--once=yes"]).is_err());
        assert!(p(&["-c", "f", "run", "--verbose=2"]).is_err());
    }

    #[test]
    fn help_and_version_win_wherever_they_are() {
        assert_eq!(p(&["--help"]), Ok(Cli::Help));
        assert_eq!(p(&["-c", "f", "run", "-h"]), Ok(Cli::Help));
        assert_eq!(p(&["--version"]), Ok(Cli::Version));
        assert_eq!(p(&["-V", "bogus"]), Ok(Cli::Version));
        assert_eq!(p(&[]), Err("no command given (run, status or install)".into()));
    }

    #[test]
    fn help_names_every_option_the_parser_takes() {
        for o in [
            "-c, --config FILE",
            "--config=FILE",
            "-v, -q",
            "-vv",
            "--verbose",
            "--quiet",
            "-h, --help",
            "status --json",
        ] {
            assert!(HELP.contains(o), "{o}");
        }
        assert!(HELP.contains("-V, --version") && HELP.contains("run --once") && HELP.contains("status"));
    }
}
