//! Counters for `/metrics` (Prometheus text format 0.0.4), kept in atomics
//! in the serve state and bumped where things happen: polls and reports
//! ([`crate::api`]), bytes answered and connections accepted
//! ([`crate::serve`]), lockouts and authentication failures
//! ([`crate::auth`]). Gauges read from the database at scrape time
//! (devices, assignments by the OCS console's buckets, blocked clients)
//! are passed to [`Metrics::render`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::serve::Side;

/// Distinct report statuses counted by name; later ones count as `other`,
/// so a device inventing statuses cannot grow the map without bound.
pub const MAX_STATUS_LABELS: usize = 64;

/// Which protocol a poll came by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Front {
    /// The control API (`POST /api/v1/poll`).
    Outpost,
    /// An OCS agent's PROLOG.
    Ocs,
}

/// The server's counters since it started.
#[derive(Debug, Default)]
pub struct Metrics {
    polls: AtomicU64,
    ocs_polls: AtomicU64,
    polls_from_memory: AtomicU64,
    reports: Mutex<BTreeMap<String, u64>>,
    bytes_https: AtomicU64,
    bytes_http: AtomicU64,
    conns_https: AtomicU64,
    conns_http: AtomicU64,
    lockouts: AtomicU64,
    auth_failures: AtomicU64,
}

/// What is read from the database and the gate at scrape time.
#[derive(Debug, Default, Clone, Copy)]
pub struct Gauges {
    /// Devices registered.
    pub devices: u64,
    /// Assignments waiting notification, notified, succeeded, failed.
    pub assignments: [u64; 4],
    /// Clients blocked now.
    pub blocked: u64,
    /// Connections open now.
    pub open_connections: u64,
}

impl Metrics {
    /// An authenticated poll (an OCS PROLOG that was answered).
    pub fn poll(&self, front: Front) {
        match front {
            Front::Outpost => &self.polls,
            Front::Ocs => &self.ocs_polls,
        }
        .fetch_add(1, Relaxed);
    }

    /// An Outpost poll answered from memory ([`crate::poll_cache`]); it is
    /// counted by [`Metrics::poll`] as well.
    pub fn poll_from_memory(&self) {
        self.polls_from_memory.fetch_add(1, Relaxed);
    }

    /// A status report applied or acknowledged, with its status.
    pub fn report(&self, status: &str) {
        let Ok(mut m) = self.reports.lock() else { return };
        // Exit codes are many (a device picks them): one label for all, so
        // that no device can fill the labels and push real statuses out.
        let status = if status.starts_with("EXIT_CODE_") { "EXIT_CODE" } else { status };
        let key = if m.contains_key(status) || m.len() < MAX_STATUS_LABELS { status } else { "other" };
        *m.entry(key.to_string()).or_insert(0) += 1;
    }

    /// `n` bytes of responses (head excluded) written on `side`'s listener.
    pub fn served(&self, side: Side, n: u64) {
        match side {
            Side::Https => &self.bytes_https,
            Side::Http => &self.bytes_http,
        }
        .fetch_add(n, Relaxed);
    }

    /// A connection admitted on `side`'s listener.
    pub fn connection(&self, side: Side) {
        match side {
            Side::Https => &self.conns_https,
            Side::Http => &self.conns_http,
        }
        .fetch_add(1, Relaxed);
    }

    /// An authentication failure; `blocks` of them started a block.
    pub fn auth_failure(&self, blocks: u64) {
        self.auth_failures.fetch_add(1, Relaxed);
        self.lockouts.fetch_add(blocks, Relaxed);
    }

    /// The Prometheus text exposition of the counters and `g`.
    pub fn render(&self, g: &Gauges) -> String {
        let mut o = String::with_capacity(2048);
        let head = |o: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        head(
            &mut o,
            "outpost_polls_total",
            "counter",
            "Polls answered, by protocol (outpost: the control API; ocs: PROLOG).",
        );
        let _ = writeln!(o, "outpost_polls_total{{protocol=\"outpost\"}} {}", self.polls.load(Relaxed));
        let _ = writeln!(o, "outpost_polls_total{{protocol=\"ocs\"}} {}", self.ocs_polls.load(Relaxed));
        head(
            &mut o,
            "outpost_polls_from_memory_total",
            "counter",
            "Outpost polls answered without reading the database (nothing changed since the device's last poll).",
        );
        let _ = writeln!(o, "outpost_polls_from_memory_total {}", self.polls_from_memory.load(Relaxed));
        head(&mut o, "outpost_reports_total", "counter", "Status reports received (both protocols), by status.");
        if let Ok(m) = self.reports.lock() {
            for (status, n) in m.iter() {
                let _ = writeln!(o, "outpost_reports_total{{status=\"{}\"}} {n}", label(status));
            }
        }
        head(&mut o, "outpost_bytes_served_total", "counter", "Response body bytes written, by listener.");
        let _ = writeln!(o, "outpost_bytes_served_total{{listener=\"https\"}} {}", self.bytes_https.load(Relaxed));
        let _ = writeln!(o, "outpost_bytes_served_total{{listener=\"http\"}} {}", self.bytes_http.load(Relaxed));
        head(&mut o, "outpost_connections_total", "counter", "Connections admitted, by listener.");
        let _ = writeln!(o, "outpost_connections_total{{listener=\"https\"}} {}", self.conns_https.load(Relaxed));
        let _ = writeln!(o, "outpost_connections_total{{listener=\"http\"}} {}", self.conns_http.load(Relaxed));
        head(&mut o, "outpost_connections_open", "gauge", "Connections open now.");
        let _ = writeln!(o, "outpost_connections_open {}", g.open_connections);
        head(
            &mut o,
            "outpost_auth_failures_total",
            "counter",
            "Failed authentications (devices, OCS, administrators).",
        );
        let _ = writeln!(o, "outpost_auth_failures_total {}", self.auth_failures.load(Relaxed));
        head(&mut o, "outpost_lockouts_total", "counter", "Blocks started after too many authentication failures.");
        let _ = writeln!(o, "outpost_lockouts_total {}", self.lockouts.load(Relaxed));
        head(&mut o, "outpost_blocked_clients", "gauge", "Blocked client rows now.");
        let _ = writeln!(o, "outpost_blocked_clients {}", g.blocked);
        head(&mut o, "outpost_devices", "gauge", "Devices registered.");
        let _ = writeln!(o, "outpost_devices {}", g.devices);
        head(&mut o, "outpost_assignments", "gauge", "Assignments by the OCS console's buckets.");
        for (bucket, n) in ["waiting", "notified", "success", "errors"].iter().zip(g.assignments) {
            let _ = writeln!(o, "outpost_assignments{{state=\"{bucket}\"}} {n}");
        }
        o
    }
}

/// A label value escaped as the text format wants (`\\`, `\"`, `\n`).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_in_the_text_format() {
        let m = Metrics::default();
        m.poll(Front::Outpost);
        m.poll(Front::Outpost);
        m.poll(Front::Ocs);
        m.report("SUCCESS");
        m.report("ERR_\"x\"");
        m.served(Side::Http, 10);
        m.connection(Side::Https);
        m.auth_failure(1);
        let g = Gauges { devices: 3, assignments: [1, 2, 3, 4], blocked: 1, open_connections: 2 };
        let t = m.render(&g);
        for line in [
            "outpost_polls_total{protocol=\"outpost\"} 2",
            "outpost_polls_total{protocol=\"ocs\"} 1",
            "outpost_reports_total{status=\"SUCCESS\"} 1",
            "outpost_reports_total{status=\"ERR_\\\"x\\\"\"} 1",
            "outpost_bytes_served_total{listener=\"http\"} 10",
            "outpost_connections_total{listener=\"https\"} 1",
            "outpost_lockouts_total 1",
            "outpost_assignments{state=\"errors\"} 4",
            "# TYPE outpost_devices gauge",
        ] {
            assert!(t.lines().any(|l| l == line), "{line} missing from\n{t}");
        }
    }

    #[test]
    fn report_statuses_are_bounded() {
        let m = Metrics::default();
        for i in 0..(MAX_STATUS_LABELS + 10) {
            m.report(&format!("ERR_MADE_UP_{i}"));
        }
        let map = m.reports.lock().unwrap();
        assert_eq!(map.len(), MAX_STATUS_LABELS + 1);
        assert_eq!(map["other"], 10);
    }

    #[test]
    fn exit_codes_share_one_label_and_cannot_push_real_statuses_out() {
        let m = Metrics::default();
        for i in 0..(MAX_STATUS_LABELS + 10) {
            m.report(&format!("EXIT_CODE_{i}"));
        }
        m.report("SUCCESS");
        let map = m.reports.lock().unwrap();
        assert_eq!(map["EXIT_CODE"], MAX_STATUS_LABELS as u64 + 10);
        assert_eq!(map.get("SUCCESS"), Some(&1), "{map:?}");
    }
}
