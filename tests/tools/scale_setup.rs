//! `outpost-scale-setup`: provisions the devices of `scripts/bench-scale`.
//!
//! ```text
//! outpost-scale-setup --dir DIR --devices N --package ID --out WORK
//! ```
//!
//! Adds devices `scale-1` … `scale-N` to `DIR/state.db` in one transaction
//! (`Db::add_devices`: the same rows `device add` writes, without a client
//! certificate or an agent config each; `device add` for 100,000 devices
//! would take most of an hour), and writes the request templates that
//! `outpost-loadgen` replays:
//!
//! - `WORK/polls.jsonl`: one poll per device;
//! - `WORK/reports.jsonl`: one report per device for package ID (every tenth
//!   an error code, the others SUCCESS), then the first tenth of them again
//!   with the same report ids: duplicates, which the server must count once.
//!
//! Secrets are derived from the device number, so the templates and the
//! database agree without storing secrets anywhere else.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use outpost_agent::engine::manifest::sha256;
use outpost_agent::engine::proto::{Report, encode_reports};
use outpost_agent::engine::status::StatusCode;
use outpost_server::db::Db;

const USAGE: &str = "usage: outpost-scale-setup --dir DIR --devices N --package ID --out WORK";

fn secret(i: u64) -> String {
    sha256(format!("outpost-scale-{i}").as_bytes())[..16].iter().map(|b| format!("{b:02x}")).collect()
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

fn template(path: &str, device: u64, body: &str) -> String {
    format!(
        "{{\"method\":\"POST\",\"path\":\"{path}\",\"headers\":{{\"Authorization\":\"Outpost scale-{device} {}\"}},\"body\":{}}}\n",
        secret(device),
        json_string(body)
    )
}

fn run() -> Result<(), String> {
    let (mut dir, mut devices, mut package, mut out) = (None, None, None, None);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{a} needs a value\n{USAGE}"));
        match a.as_str() {
            "--dir" => dir = Some(PathBuf::from(value()?)),
            "--devices" => devices = Some(value()?.parse::<u64>().map_err(|e| format!("--devices: {e}"))?),
            "--package" => package = Some(value()?.parse::<u64>().map_err(|e| format!("--package: {e}"))?),
            "--out" => out = Some(PathBuf::from(value()?)),
            _ => return Err(USAGE.into()),
        }
    }
    let (Some(dir), Some(n), Some(package), Some(out)) = (dir, devices, package, out) else {
        return Err(USAGE.into());
    };
    let mut db = Db::open_in(&dir)?;
    for chunk in (1..=n).collect::<Vec<_>>().chunks(10_000) {
        let rows: Vec<(String, [u8; 32])> =
            chunk.iter().map(|&i| (format!("scale-{i}"), sha256(secret(i).as_bytes()))).collect();
        db.add_devices(&rows).map_err(|e| e.to_string())?;
    }
    let create =
        |name: &str| std::fs::File::create(out.join(name)).map(BufWriter::new).map_err(|e| format!("{name}: {e}"));
    let mut polls = create("polls.jsonl")?;
    let mut reports = create("reports.jsonl")?;
    for i in 1..=n {
        polls.write_all(template("/api/v1/poll", i, "outpost 1\n").as_bytes()).map_err(|e| e.to_string())?;
    }
    let report = |i: u64| {
        let status = if i.is_multiple_of(10) { StatusCode::parse("ERR_EXECUTE") } else { StatusCode::Success };
        template("/api/v1/report", i, &encode_reports(&[Report { id: i, package, status }]))
    };
    for i in (1..=n).chain(1..=n / 10) {
        reports.write_all(report(i).as_bytes()).map_err(|e| e.to_string())?;
    }
    polls.flush().and_then(|()| reports.flush()).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("outpost-scale-setup: {e}");
            ExitCode::FAILURE
        }
    }
}
