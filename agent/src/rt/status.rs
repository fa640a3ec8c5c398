//! `outpost-agent status`: one line per package from the state directory
//! alone (no server), the same for both protocols: bytes held come from
//! the download journal, read without re-hashing; while a package
//! downloads, its percent, rate and time left ([`super::progress`]). As a
//! table, or with `--json` as one JSON object.

use outpost_hal::linux::DirBlocks;

use super::progress::{self, Progress, Sample, num};
use super::store::{Store, StoreError};
use crate::engine::download::{Layout, durable_bytes};
use crate::engine::info::Info;
use crate::engine::journal::Phase;
use crate::engine::manifest::Manifest;

/// The download layout of package `id` as its saved metadata gives it: the
/// signed manifest (Outpost), else the info file (OCS).
pub fn layout_of(store: &Store, id: u64) -> Result<Option<Layout>, StoreError> {
    if let Some(m) = store.package_file(id, "manifest")?.and_then(|b| Manifest::decode_unverified(&b)) {
        return Ok(Some(Layout::signed(&m)));
    }
    Ok(store.package_file(id, "info")?.and_then(|b| Some(Layout::ocs(id, &b, Info::parse(&b).ok()?.frags))))
}

/// One package as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Package id.
    pub id: u64,
    /// `downloading`, `installing`, `unreported` or `reported`.
    pub state: &'static str,
    /// Bytes held (only while downloading; else 0), total (`None`: an OCS
    /// package's, unknown until it is here) and rate.
    pub progress: Progress,
    /// The last status code, once there is one.
    pub status: Option<String>,
}

/// Every package, measured at `now_ms` (ms since 1970 UTC) against the
/// previous `status`'s samples `prev`; with the samples to keep for the
/// next (one per package downloading).
pub fn rows(store: &Store, now_ms: u64, prev: &[Sample]) -> Result<(Vec<Row>, Vec<Sample>), StoreError> {
    let pending = store.pending_reports()?;
    let (mut rows, mut samples) = (Vec::new(), Vec::new());
    for id in store.package_ids()? {
        let Some(rec) = store.package(id)? else {
            continue;
        };
        let layout = layout_of(store, id)?;
        let mut progress = Progress { held: 0, total: layout.as_ref().map_or(Some(0), Layout::total), rate: None };
        if let (Some(l), Phase::Fetching) = (&layout, rec.phase) {
            progress.held = DirBlocks::open(store.package_dir(id))
                .ok()
                .and_then(|mut b| durable_bytes(&mut b, l).ok())
                .unwrap_or(0);
            let now = Sample { id, held: progress.held, at_ms: now_ms };
            progress.rate = progress::rate(prev, now);
            samples.push(now);
        }
        let state = match rec.phase {
            Phase::Fetching => "downloading",
            Phase::Installing => "installing",
            Phase::Finished if pending.iter().any(|p| p.package == id) => "unreported",
            Phase::Finished => "reported",
        };
        rows.push(Row { id, state, progress, status: rec.status });
    }
    Ok((rows, samples))
}

/// Percent (tenths), rate (B/s) and seconds left: only while downloading,
/// and when known.
fn live(r: &Row) -> [Option<u64>; 3] {
    let p = &r.progress;
    if r.state != "downloading" {
        return [None; 3];
    }
    [p.permille(), p.rate, p.seconds_left()]
}

/// A number, or `.1` in its place (`-` in the table, `null` in JSON); with
/// `.2`, as tenths (`12.5`). Honours width.
struct Or(Option<u64>, &'static str, bool);

impl core::fmt::Display for Or {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Some(m) if self.2 => f.pad(&(num(m / 10) + "." + &num(m % 10))),
            Some(n) => f.pad(&num(n)),
            None => f.pad(self.1),
        }
    }
}

/// The table: a header, then one line per row. `-` where a value is not
/// known (see [`super::progress`]).
pub fn table(rows: &[Row]) -> Vec<String> {
    let mut out = vec![String::from(
        "PACKAGE      STATE              HELD/TOTAL BYTES      %         RATE      LEFT  LAST STATUS",
    )];
    for r in rows {
        let p = &r.progress;
        let [pct, rate, left] = live(r);
        let rate = rate.map_or_else(|| "-".into(), |b| num(b) + " B/s");
        let left = left.map_or_else(|| "-".into(), duration);
        let bytes = format!("{}/{}", p.held, Or(p.total, "?", false));
        out.push(format!(
            "{:<12} {:<11} {bytes:>23} {:>6} {rate:>12} {left:>9}  {}",
            r.id,
            r.state,
            Or(pct, "-", true),
            r.status.as_deref().unwrap_or("-"),
        ));
    }
    out
}

/// `3s`, `4m05s`, `2h07m`.
fn duration(s: u64) -> String {
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// `--json`: `{"download_rate": LINE, "packages": [{"id", "state",
/// "held", "total", "percent", "rate", "seconds_left", "status"}]}`, with
/// `null` where a value is not known; `percent` has one decimal.
pub fn json(rate_line: &str, rows: &[Row]) -> String {
    let mut o = String::from("{\"download_rate\":");
    string(&mut o, rate_line);
    o += ",\"packages\":[";
    for (i, r) in rows.iter().enumerate() {
        let [pct, rate, left] = live(r);
        let mut status = String::new();
        match &r.status {
            Some(s) => string(&mut status, s),
            None => status += "null",
        }
        o += &format!(
            "{}{{\"id\":{},\"state\":\"{}\",\"held\":{},\"total\":{},\"percent\":{},\"rate\":{},\"seconds_left\":{},\"status\":{status}}}",
            if i > 0 { "," } else { "" },
            r.id,
            r.state,
            r.progress.held,
            Or(r.progress.total, "null", false),
            Or(pct, "null", true),
            Or(rate, "null", false),
            Or(left, "null", false),
        );
    }
    o += "]}";
    o
}

/// `s` as a JSON string.
fn string(o: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    o.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                o.push('\\');
                o.push(c);
            }
            c if (c as u32) < 0x20 => {
                *o += "\\u00";
                o.push(char::from(HEX[(c as usize) >> 4]));
                o.push(char::from(HEX[(c as usize) & 15]));
            }
            c => o.push(c),
        }
    }
    o.push('"');
}

/// The table, without rates (no previous sample).
pub fn lines(store: &Store) -> Result<Vec<String>, StoreError> {
    Ok(table(&rows(store, 0, &[])?.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(state: &'static str, held: u64, total: Option<u64>, rate: Option<u64>, status: Option<&str>) -> Row {
        Row { id: 17, state, progress: Progress { held, total, rate }, status: status.map(Into::into) }
    }

    #[test]
    fn the_table_shows_progress_of_downloads_only() {
        let t = table(&[
            row("downloading", 262_144, Some(1_048_576), Some(65_536), None),
            row("downloading", 100, None, None, None),
            row("reported", 0, Some(5), None, Some("SUCCESS")),
        ]);
        let cols = |i: usize| t[i].split_whitespace().collect::<Vec<_>>();
        assert_eq!(cols(0)[2], "HELD/TOTAL");
        assert_eq!(cols(1), ["17", "downloading", "262144/1048576", "25.0", "65536", "B/s", "12s", "-"]);
        assert_eq!(cols(2), ["17", "downloading", "100/?", "-", "-", "-", "-"]);
        assert_eq!(cols(3), ["17", "reported", "0/5", "-", "-", "-", "SUCCESS"]);
        assert_eq!((duration(59), duration(245), duration(7_620)), ("59s".into(), "4m05s".into(), "2h07m".into()));
    }

    #[test]
    fn json_has_every_field_with_null_for_the_unknown() {
        let j = json(
            "download rate: \"idle\"",
            &[row("downloading", 1, Some(3), Some(1), None), row("unreported", 0, None, None, Some("ERR_X"))],
        );
        assert_eq!(
            j,
            "{\"download_rate\":\"download rate: \\\"idle\\\"\",\"packages\":[\
             {\"id\":17,\"state\":\"downloading\",\"held\":1,\"total\":3,\"percent\":33.3,\"rate\":1,\"seconds_left\":2,\"status\":null},\
             {\"id\":17,\"state\":\"unreported\",\"held\":0,\"total\":null,\"percent\":null,\"rate\":null,\"seconds_left\":null,\"status\":\"ERR_X\"}]}"
        );
        let mut s = String::new();
        string(&mut s, "a\nb\u{1}");
        assert_eq!(s, "\"a\\u000ab\\u0001\"");
    }
}
