//! `/admin/fleet` and `/admin/api/fleet`: groups (members, filter) and
//! rollouts with each wave's counts and error rate, as `status` prints them
//! ([`crate::fleet::status::fleet_status`], which moves rollouts on first).

use std::fmt::Write as _;

use crate::fleet::status::FleetStatus;
use crate::http::Response;

use super::html::{esc, page};

/// The page.
pub fn page_of(f: &FleetStatus) -> Response {
    let mut o = String::from("<h1>Groups</h1><div class=\"scroll\"><table id=\"groups\"><thead><tr>");
    o.push_str("<th>Name</th><th>Filter</th><th class=\"n\">Members</th></tr></thead><tbody>");
    for g in &f.groups {
        let _ = write!(
            o,
            "<tr id=\"group-{n}\"><td data-k=\"name\">{n}</td><td data-l=\"Filter\"><code>{}</code></td>\
             <td class=\"n\" data-k=\"members\" data-l=\"Members\">{}</td></tr>",
            g.filter.as_deref().map_or_else(|| "static".to_string(), esc),
            g.members,
            n = esc(&g.name),
        );
    }
    if f.groups.is_empty() {
        o.push_str("<tr><td colspan=\"3\">No group yet: <code>outpost-server group add</code>.</td></tr>");
    }
    o.push_str("</tbody></table></div><h1>Rollouts</h1>");
    if f.rollouts.is_empty() {
        o.push_str("<p>No rollout yet: <code>outpost-server assign --group NAME --waves 5%,25%,100%</code>.</p>");
    }
    for r in &f.rollouts {
        let _ = write!(
            o,
            "<section id=\"rollout-{id}\" data-state=\"{state}\"><h2>Rollout {id}: package \
             <a href=\"/admin/packages/{p}\">{p}</a> to group {g} · <span data-k=\"state\">{state}</span>, \
             wave {w} of {n} · halts above {h} %</h2>",
            id = r.id,
            p = r.package,
            g = esc(&r.group),
            state = esc(&r.state),
            w = r.wave,
            n = r.waves.len(),
            h = r.halt_above,
        );
        if !r.reason.is_empty() {
            let _ = write!(o, "<p class=\"err\" data-k=\"reason\">{}</p>", esc(&r.reason));
        }
        o.push_str(
            "<div class=\"scroll\"><table><thead><tr><th>Wave</th><th class=\"n\">Share</th>\
             <th class=\"n\">Devices</th><th class=\"n\">Waiting</th><th class=\"n\">Notified</th>\
             <th class=\"n\">Success</th><th class=\"n\">Errors</th><th class=\"n\">Error rate</th></tr></thead><tbody>",
        );
        for (i, w) in r.waves.iter().enumerate() {
            let c = &w.counts;
            let _ = write!(
                o,
                "<tr id=\"rollout-{id}-wave-{n}\"><td>{n}</td><td class=\"n\" data-l=\"Share\">{} %</td>\
                 <td class=\"n\" data-k=\"devices\" data-l=\"Devices\">{}</td><td class=\"n\" data-l=\"Waiting\">{}</td>\
                 <td class=\"n\" data-l=\"Notified\">{}</td><td class=\"n\" data-k=\"success\" data-l=\"Success\">{}</td>\
                 <td class=\"n\" data-k=\"errors\" data-l=\"Errors\">{}</td>\
                 <td class=\"n\" data-k=\"error-rate\" data-l=\"Error rate\">{:.0} %</td></tr>",
                w.percent,
                c.devices,
                c.waiting,
                c.notified,
                c.success,
                c.errors,
                w.error_rate,
                id = r.id,
                n = i + 1,
            );
        }
        o.push_str("</tbody></table></div></section>");
    }
    page(200, "Groups and rollouts", true, &o)
}

/// The same as JSON.
pub fn json_of(f: &FleetStatus) -> Response {
    let mut r = Response::text(200, serde_json::to_string(f).unwrap_or_else(|_| "{}".into()));
    r.headers = vec![("Content-Type", "application/json".into())];
    super::html::secure_headers(&mut r);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::rollout::WaveCounts;
    use crate::fleet::status::{GroupStatus, RolloutStatus, WaveStatus};

    fn text(r: Response) -> String {
        match r.body {
            crate::http::Body::Bytes(b) => String::from_utf8(b).unwrap(),
            crate::http::Body::File { .. } => panic!("a page is in memory"),
        }
    }

    #[test]
    fn groups_and_waves_show_with_their_error_rates_and_names_escaped() {
        let counts = WaveCounts { devices: 2, waiting: 0, notified: 0, success: 0, errors: 2 };
        let f = FleetStatus {
            groups: vec![GroupStatus { name: "<b>lyon".into(), filter: Some("tag = \"x\"".into()), members: 4 }],
            rollouts: vec![RolloutStatus {
                id: 1,
                package: 7,
                group: "<b>lyon".into(),
                state: "halted".into(),
                reason: "wave 1 of 2: 2 of 2 devices failed (100%)".into(),
                wave: 1,
                halt_above: 10,
                waves: vec![WaveStatus { percent: 50, counts, error_rate: 100.0 }],
            }],
        };
        let body = text(page_of(&f));
        assert!(body.contains("data-k=\"members\" data-l=\"Members\">4<"), "{body}");
        assert!(body.contains("data-k=\"error-rate\" data-l=\"Error rate\">100 %<"), "{body}");
        assert!(body.contains("2 of 2 devices failed"), "the reason it halted");
        assert!(!body.contains("<b>lyon") && body.contains("&lt;b&gt;lyon"), "names are escaped");
        let json = text(json_of(&f));
        assert!(json.contains("\"error_rate\":100.0") && json.contains("\"members\":4"), "{json}");
    }
}
