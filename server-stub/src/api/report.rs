//! `POST /api/v1/report`: an Outpost device reports what became of its
//! packages. [`check`] authenticates it and reads the reports (on a poll
//! worker: it reads the database); [`record`] has them recorded by the
//! group commit ([`crate::group_commit`], one transaction and one fsync
//! for every report in flight, [`commit`]) and answers with the ids it
//! acknowledges. Each report is recorded once whatever how often it comes.

use std::net::IpAddr;

use outpost_agent::engine::digest::hex;
use outpost_agent::engine::proto::{self, Report};

use crate::db::ReportRow;
use crate::http::{Request, Response};
use crate::pki::Fingerprint;
use crate::serve::State;
use crate::time::unix_now;

/// A report request that passed [`check`].
pub struct Checked {
    device: String,
    reports: Vec<Report>,
    rows: Vec<ReportRow>,
}

/// Authenticate `req` (from `peer`, with the client certificate `cert`)
/// and read its reports; `Err`: the answer to send.
pub fn check(state: &State, req: &Request, peer: IpAddr, cert: Option<Fingerprint>) -> Result<Checked, Response> {
    let (device, _) = super::authenticate(state, req, peer, cert)?;
    let reports = proto::decode_reports(&req.body).map_err(|e| Response::text(400, e.to_string()))?;
    let rows = reports
        .iter()
        .map(|r| ReportRow {
            device: device.to_string(),
            report_id: hex(&r.id.to_be_bytes()),
            package: r.package,
            status: r.status.to_string(),
        })
        .collect();
    Ok(Checked { device: device.to_string(), reports, rows })
}

/// Record the reports of `c` and acknowledge them.
pub async fn record(state: &State, c: Checked) -> Response {
    let changed = match state.reports.submit(c.rows).await {
        Some(Ok(changed)) => changed,
        Some(Err(e)) => {
            log::error!(target: "outpost", "database: {e}");
            return Response::text(500, "database error");
        }
        None => return Response::text(500, "database error"),
    };
    let mut acks = Vec::new();
    for (r, changed) in c.reports.iter().zip(changed) {
        state.metrics.report(&r.status.to_string());
        if changed {
            log::info!(target: "outpost", "device {}: package {} -> {}", c.device, r.package, r.status);
        }
        acks.push(r.id);
    }
    Response::text(200, proto::encode_acks(&acks))
}

/// Record the reports of several requests in one transaction (one fsync):
/// each request's answer is whether each of its reports changed something,
/// or the database error, which fails them all (nothing was recorded; the
/// agents send them again).
pub fn commit(state: &State, batch: Vec<Vec<ReportRow>>) -> Vec<Result<Vec<bool>, String>> {
    let all: Vec<ReportRow> = batch.iter().flatten().cloned().collect();
    let result = match state.db.lock() {
        Ok(mut db) => {
            let changed = db.report_all(&all).map_err(|e| e.to_string());
            // Rollouts move on with the results (once per group).
            crate::fleet::contact::after_reports(&mut db, unix_now());
            changed
        }
        Err(_) => Err("database lock poisoned".to_string()),
    };
    match result {
        Ok(changed) => {
            let mut changed = changed.into_iter();
            batch.iter().map(|rows| Ok(changed.by_ref().take(rows.len()).collect())).collect()
        }
        Err(e) => batch.iter().map(|_| Err(e.clone())).collect(),
    }
}
