//! `POST /api/v1/report`: an Outpost device reports what became of its
//! packages. [`check`] authenticates it and reads the reports (on a poll
//! worker: it reads the database), or [`check_from_memory`] on the
//! connection's thread when the device's last poll answer is kept
//! ([`crate::poll_cache`]); [`record`] has them recorded by the group
//! commit ([`crate::group_commit`], one transaction and one fsync for
//! every report in flight, [`commit`]) and answers with the ids it
//! acknowledges. Each report is recorded once whatever how often it comes.

use std::net::IpAddr;

use outpost_agent::engine::digest::hex;
use outpost_agent::engine::proto::{self, Report};

use crate::db::ReportRow;
use crate::http::{Request, Response};
use crate::pki::Fingerprint;
use crate::poll_cache::Asker;
use crate::serve::State;

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
    read(device, req)
}

/// [`check`] with no read of the database, if the device's last poll
/// answer is kept for these credentials from this address
/// ([`crate::poll_cache::PollCache::knows`]); `None`: take [`check`].
pub fn check_from_memory(
    state: &State,
    req: &Request,
    peer: IpAddr,
    cert: Option<Fingerprint>,
) -> Option<Result<Checked, Response>> {
    let (device, secret_sha256) = super::presented(req)?;
    let asker = Asker { device, secret_sha256: &secret_sha256, cert: cert.as_ref(), peer };
    state.poll_cache.knows(&asker, crate::time::monotonic_now()).then(|| read(device, req))
}

/// The reports of `req`, from the authenticated `device`. A status the
/// server gives (NOTIFIED) is refused: a device reporting it would reopen
/// its package at will.
fn read(device: &str, req: &Request) -> Result<Checked, Response> {
    let reports = proto::decode_reports(&req.body).map_err(|e| Response::text(400, e.to_string()))?;
    if let Some(r) =
        reports.iter().find(|r| [crate::db::NOTIFIED, crate::db::WAITING].contains(&r.status.to_string().as_str()))
    {
        return Err(Response::text(400, format!("status {} is the server's to give, not a report", r.status)));
    }
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
/// agents send them again). The answers kept of the devices whose reports
/// changed something are dropped ([`crate::poll_cache::PollCache::reported`];
/// after an error, of every device of the batch), before anyone is answered.
pub fn commit(state: &State, batch: Vec<Vec<ReportRow>>) -> Vec<Result<Vec<bool>, String>> {
    let all: Vec<ReportRow> = batch.iter().flatten().cloned().collect();
    let result = match state.db.lock() {
        Ok(mut db) => {
            let changed = db.told(|db| db.report_all(&all)).map_err(|e| e.to_string());
            let concerned = all.iter().enumerate().filter(|(i, _)| changed.as_ref().map_or(true, |c| c[*i]));
            state.poll_cache.reported(concerned.map(|(_, r)| r.device.as_str()));
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
