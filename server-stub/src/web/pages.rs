//! The status page's HTML: packages with the OCS console's counts, one
//! package's devices (status, download progress, last contact), one
//! device's history, blocked addresses, and the login form. Every value
//! from the database goes through [`esc`] (names come from `package add`,
//! device ids and statuses from agents).

use std::fmt::Write as _;

use crate::db::{BlockRow, DeviceRow, PackageSummary, ProgressRow};
use crate::http::Response;
use crate::time::rfc3339;

use super::DevicePage;
use super::html::{bytes, esc, page, seg};

/// A package summary with its version (from its manifest), if it has one.
pub type Listed = (PackageSummary, Option<String>);

fn counts(o: &mut String, p: &PackageSummary) {
    let all = [
        ("waiting", "Waiting", p.waiting),
        ("notified", "Notified", p.notified),
        ("success", "Success", p.success),
        ("errors", "Errors", p.errors),
    ];
    for (k, l, n) in all {
        let _ = write!(o, "<td class=\"n\" data-k=\"{k}\" data-l=\"{l}\">{n}</td>");
    }
}

const COUNT_HEADS: &str = "<th class=\"n\">Waiting</th><th class=\"n\">Notified</th>\
<th class=\"n\">Success</th><th class=\"n\">Errors</th>";

/// `/admin/`: every package.
pub fn packages(list: &[Listed]) -> Response {
    let mut o = String::from("<h1>Packages</h1><div class=\"scroll\"><table id=\"packages\"><thead><tr>");
    let _ = write!(o, "<th>Id</th><th>Name</th><th>Version</th><th class=\"n\">Priority</th>{COUNT_HEADS}");
    o.push_str("</tr></thead><tbody>");
    for (p, version) in list {
        let _ = write!(
            o,
            "<tr id=\"pkg-{id}\"><td><a href=\"/admin/packages/{id}\">{id}</a></td><td data-k=\"name\">{}</td>\
             <td data-l=\"Version\">{}</td><td class=\"n\" data-l=\"Priority\">{}</td>",
            esc(&p.name),
            esc(version.as_deref().unwrap_or("–")),
            p.priority,
            id = p.id
        );
        counts(&mut o, p);
        o.push_str("</tr>");
    }
    if list.is_empty() {
        o.push_str("<tr><td colspan=\"8\">No package yet: <code>outpost-server package add</code>.</td></tr>");
    }
    o.push_str("</tbody></table></div>");
    page(200, "Packages", true, &o)
}

fn status_class(s: &str) -> &'static str {
    match s {
        crate::db::WAITING | crate::db::NOTIFIED => "wait",
        s if s.starts_with("SUCCESS") => "ok",
        _ => "err",
    }
}

fn progress_cell(o: &mut String, p: Option<&ProgressRow>) {
    let Some(p) = p else {
        o.push_str("<td data-k=\"progress\" data-l=\"Progress\">–</td>");
        return;
    };
    let pct = if p.total == 0 { 0 } else { (u128::from(p.held.min(p.total)) * 100 / u128::from(p.total)) as u64 };
    let _ = write!(
        o,
        "<td data-k=\"progress\" data-l=\"Progress\" data-held=\"{}\" data-total=\"{}\"><progress value=\"{}\" max=\"{}\">{pct} %</progress> \
         {pct} % · {} of {}",
        p.held,
        p.total,
        p.held.min(p.total),
        p.total,
        bytes(p.held),
        bytes(p.total),
    );
    // 0: the agent's first poll since it started, or nothing fetched since the last.
    if p.rate > 0 {
        let _ = write!(o, " · {}/s", bytes(p.rate));
    }
    let _ = write!(o, " <small>(as of {})</small></td>", rfc3339(p.at));
}

fn device_table(o: &mut String, rows: &[DeviceRow], by_device: bool) {
    o.push_str("<div class=\"scroll\"><table id=\"devices\"><thead><tr>");
    o.push_str(if by_device { "<th>Package</th>" } else { "<th>Device</th>" });
    o.push_str("<th>Status</th><th>Progress</th><th>Status since</th><th>Last contact</th></tr></thead><tbody>");
    for r in rows {
        if by_device {
            let _ = write!(
                o,
                "<tr id=\"pkg-{}\"><td><a href=\"/admin/packages/{}\">{} {}</a></td>",
                r.package,
                r.package,
                r.package,
                esc(&r.name)
            );
        } else {
            let _ = write!(
                o,
                "<tr id=\"dev-{}\"><td><a href=\"/admin/devices/{}\">{}</a></td>",
                esc(&seg(&r.device)),
                esc(&seg(&r.device)),
                esc(&r.device)
            );
        }
        let _ = write!(
            o,
            "<td class=\"{}\" data-k=\"status\" data-l=\"Status\">{}</td>",
            status_class(&r.status),
            esc(&r.status)
        );
        progress_cell(o, r.progress.as_ref());
        let _ = write!(
            o,
            "<td data-l=\"Since\">{}</td><td data-k=\"seen\" data-l=\"Last contact\">{}</td></tr>",
            esc(&r.updated),
            esc(r.last_seen.as_deref().unwrap_or("never"))
        );
    }
    o.push_str("</tbody></table></div>");
}

/// `/admin/packages/ID`: one package's devices.
pub fn package(p: &Listed, rows: &[DeviceRow]) -> Response {
    let (s, version) = p;
    let mut o = String::new();
    let _ = write!(o, "<h1>Package {} · {}</h1>", s.id, esc(&s.name));
    let _ = write!(
        o,
        "<p>Version {} · priority {} · {}</p><div class=\"scroll\"><table id=\"pkg-{}\"><thead><tr>{COUNT_HEADS}\
         </tr></thead><tbody><tr>",
        esc(version.as_deref().unwrap_or("–")),
        s.priority,
        bytes(s.size),
        s.id
    );
    counts(&mut o, s);
    o.push_str("</tr></tbody></table></div><h2>Devices</h2>");
    device_table(&mut o, rows, false);
    page(200, &format!("Package {}", s.id), true, &o)
}

/// `/admin/devices/ID`: one device's packages and history.
pub fn device(d: &DevicePage) -> Response {
    let (id, rows, history) = (&d.id, &d.rows, &d.history);
    let mut o = String::new();
    let _ = write!(o, "<h1>Device {}</h1>", esc(id));
    let seen = d.last_seen.as_deref().unwrap_or("never");
    let _ = write!(o, "<p>Last contact: <span id=\"seen\">{}</span></p><h2>Packages</h2>", esc(seen));
    device_table(&mut o, rows, true);
    o.push_str(
        "<h2>History</h2><div class=\"scroll\"><table id=\"history\"><thead><tr><th>When</th><th>Package</th>\
                <th>Status</th></tr></thead><tbody>",
    );
    for h in history {
        let _ = write!(
            o,
            "<tr><td>{}</td><td data-l=\"Package\"><a href=\"/admin/packages/{}\">{}</a></td><td class=\"{}\">{}</td></tr>",
            esc(&h.at),
            h.package,
            h.package,
            status_class(&h.status),
            esc(&h.status)
        );
    }
    o.push_str("</tbody></table></div>");
    page(200, &format!("Device {id}"), true, &o)
}

/// `/admin/blocked`: clients blocked after too many authentication failures.
pub fn blocked(rows: &[BlockRow], now: u64) -> Response {
    let mut o = String::from("<h1>Blocked addresses</h1><div class=\"scroll\"><table id=\"blocked\"><thead><tr>");
    o.push_str("<th>Address</th><th>Scope</th><th>Identity</th><th>Until</th><th class=\"n\">Seconds left</th>");
    o.push_str("<th></th></tr></thead><tbody>");
    for r in rows {
        let _ = write!(
            o,
            "<tr><td>{}</td><td data-l=\"Scope\">{}</td><td data-l=\"Identity\">{}</td><td data-l=\"Until\">{}</td>\
             <td class=\"n\" data-l=\"Seconds left\">{}</td><td>\
             <form class=\"inline\" method=\"post\" action=\"/admin/unblock\">\
             <input type=\"hidden\" name=\"address\" value=\"{}\"><button>Unblock</button></form></td></tr>",
            esc(&r.client),
            esc(&r.scope),
            esc(&r.identity),
            rfc3339(r.blocked_until),
            r.blocked_until.saturating_sub(now),
            esc(&r.client)
        );
    }
    if rows.is_empty() {
        o.push_str("<tr><td colspan=\"6\">No address is blocked.</td></tr>");
    }
    o.push_str("</tbody></table></div>");
    page(200, "Blocked addresses", true, &o)
}

/// `/admin/login`, with `msg` after a failed attempt.
pub fn login(status: u16, msg: Option<&str>) -> Response {
    let mut o = String::from("<h1>Log in</h1>");
    if let Some(m) = msg {
        let _ = write!(o, "<p class=\"msg\" id=\"msg\">{}</p>", esc(m));
    }
    o.push_str(
        "<form method=\"post\" action=\"/admin/login\"><label>Name<br>\
         <input name=\"user\" autocomplete=\"username\" required maxlength=\"64\"></label>\
         <label>Password<br><input name=\"password\" type=\"password\" autocomplete=\"current-password\" required \
         maxlength=\"256\"></label><button>Log in</button></form>\
         <p>An administrator is made with <code>outpost-server admin add --dir DIR --user NAME</code>.</p>",
    );
    page(status, "Log in", false, &o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::HistoryRow;
    use crate::http::Body;

    fn text(r: &Response) -> String {
        match &r.body {
            Body::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
            Body::File { .. } => String::new(),
        }
    }

    #[test]
    fn names_from_the_database_are_escaped() {
        let evil = "<script>alert(1)</script>";
        let s = PackageSummary {
            id: 3,
            name: evil.into(),
            priority: 5,
            size: 1,
            waiting: 1,
            notified: 0,
            success: 0,
            errors: 0,
        };
        let row = DeviceRow {
            package: 3,
            name: evil.into(),
            device: "a\"><script>x</script>".into(),
            status: "<b>".into(),
            updated: "t".into(),
            last_seen: None,
            progress: Some(ProgressRow { held: 5, total: 10, rate: 1, at: 0 }),
        };
        let hist = [HistoryRow { package: 3, status: evil.into(), at: "t".into() }];
        let pages = [
            packages(&[(s.clone(), Some(evil.into()))]),
            package(&(s, None), std::slice::from_ref(&row)),
            device(&DevicePage { id: evil.into(), last_seen: None, rows: vec![row.clone()], history: hist.to_vec() }),
            login(401, Some(evil)),
        ];
        for p in &pages {
            let t = text(p);
            assert!(!t.contains("<script>") && !t.contains("<b>"), "{t}");
            assert!(t.contains("&lt;script&gt;"));
        }
        assert!(text(&pages[1]).contains("50 %"));
    }
}
