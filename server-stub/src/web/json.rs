//! The status page's data as JSON (`/admin/api/…`), field for field what
//! the HTML shows.

use serde_json::{Value, json};

use crate::db::{BlockRow, DeviceRow, PackageSummary};
use crate::http::Response;
use crate::time::rfc3339;

use super::pages::Listed;

fn respond(status: u16, v: &Value) -> Response {
    let mut r = Response::text(status, v.to_string());
    r.headers = vec![("Content-Type", "application/json".into())];
    super::html::secure_headers(&mut r);
    r
}

/// 401 for an API request without a live session.
pub fn unauthorized() -> Response {
    respond(401, &json!({"error": "log in at /admin/login first (session cookie)"}))
}

fn summary(p: &PackageSummary, version: Option<&str>) -> Value {
    json!({
        "id": p.id, "name": p.name, "version": version, "priority": p.priority, "size": p.size,
        "waiting": p.waiting, "notified": p.notified, "success": p.success, "errors": p.errors,
    })
}

fn rows(rows: &[DeviceRow]) -> Value {
    rows.iter()
        .map(|r| {
            json!({
                "package": r.package, "name": r.name, "device": r.device, "status": r.status,
                "updated": r.updated, "last_seen": r.last_seen,
                "progress": r.progress.map(|p| json!({
                    "held": p.held, "total": p.total, "rate": p.rate, "reported": rfc3339(p.at),
                })),
            })
        })
        .collect()
}

/// `/admin/api/packages`.
pub fn packages(list: &[Listed]) -> Response {
    respond(200, &list.iter().map(|(p, v)| summary(p, v.as_deref())).collect())
}

/// `/admin/api/packages/ID`.
pub fn package(p: &Listed, devices: &[DeviceRow]) -> Response {
    let mut v = summary(&p.0, p.1.as_deref());
    v["devices"] = rows(devices);
    respond(200, &v)
}

/// `/admin/api/devices/ID`.
pub fn device(d: &super::DevicePage) -> Response {
    let h: Value = d.history.iter().map(|h| json!({"package": h.package, "status": h.status, "at": h.at})).collect();
    respond(200, &json!({"device": d.id, "last_seen": d.last_seen, "packages": rows(&d.rows), "history": h}))
}

/// `/admin/api/blocked`.
pub fn blocked(list: &[BlockRow]) -> Response {
    let v: Value = list
        .iter()
        .map(|r| {
            json!({"address": r.client, "scope": r.scope, "identity": r.identity,
                   "blocked_until": rfc3339(r.blocked_until)})
        })
        .collect();
    respond(200, &v)
}
