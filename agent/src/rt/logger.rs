//! A small `log` backend writing to stderr: `LEVEL target: message`.
//!
//! The level comes from `-v`/`-q` or the `OUTPOST_LOG` environment variable
//! (`error`, `warn`, `info`, `debug`, `trace`).

use log::{LevelFilter, Log, Metadata, Record};

struct Stderr;

impl Log for Stderr {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record<'_>) {
        if self.enabled(r.metadata()) && r.target().starts_with("outpost") {
            eprintln!("{:<5} {}", r.level(), r.args());
        }
    }

    fn flush(&self) {}
}

/// Install the logger. `verbosity` is the count of `-v` minus the count of `-q`.
pub fn init(verbosity: i32) {
    let from_env = std::env::var("OUTPOST_LOG").ok().and_then(|v| v.parse::<LevelFilter>().ok());
    let level = from_env.unwrap_or(match verbosity {
        i32::MIN..=-2 => LevelFilter::Error,
        -1 => LevelFilter::Warn,
        0 => LevelFilter::Info,
        1 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    });
    if log::set_logger(&Stderr).is_ok() {
        log::set_max_level(level);
    }
}
