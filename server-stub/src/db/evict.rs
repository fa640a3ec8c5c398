//! Making room for a new OCS device when `[ocs] max_devices` is reached:
//! one *stale* OCS device is forgotten instead of refusing the newcomer.
//!
//! Stale: an OCS device with no download history (`ocs_history`), no
//! assignment whose status its agent reported (anything but
//! `WAITING NOTIFICATION` / `NOTIFIED`), not seen for more than
//! `[ocs] stale_after_days` (its `last_seen`, or `created` if it never came
//! back). That is a DEVICEID that said PROLOG once and nothing since: the
//! made-up ids of a flood. Devices that ever reported or sent an inventory
//! are kept, however long they are away.

use super::sql::{Conn, OptionalExtension};
use crate::params;

use super::{DbResult, KIND_OCS, NOTIFIED, WAITING};
use crate::time::rfc3339;

/// The age index: OCS devices in the order they were last seen (or created).
pub(super) const SCHEMA: &str = "
CREATE INDEX IF NOT EXISTS devices_by_age ON devices(kind, COALESCE(last_seen, created));
";

/// The stale device seen longest ago. Walks `devices_by_age` from the
/// oldest; each candidate costs two index probes (`ocs_history`'s primary
/// key, `assignments_of_device`).
pub(super) const STALEST: &str = "SELECT d.id FROM devices d
     WHERE d.kind = ?1 AND COALESCE(d.last_seen, d.created) < ?2
     AND NOT EXISTS (SELECT 1 FROM ocs_history h WHERE h.device = d.id)
     AND NOT EXISTS (SELECT 1 FROM assignments a WHERE a.device = d.id AND a.status NOT IN (?3, ?4))
     ORDER BY COALESCE(d.last_seen, d.created) LIMIT 1";

/// Seconds in a day.
const DAY: u64 = 86_400;

/// Forget the stalest OCS device (see the module) as of `now` (Unix
/// seconds), with its assignments and report ids; its id, or `None` if no
/// device is stale or `stale_after_days` is 0 (never evict).
pub(super) fn evict_stalest(conn: &Conn, now: u64, stale_after_days: u32) -> DbResult<Option<String>> {
    if stale_after_days == 0 {
        return Ok(None);
    }
    // Timestamps are `YYYY-MM-DDTHH:MM:SSZ` (crate::time): text order is time order.
    let cutoff = rfc3339(now.saturating_sub(u64::from(stale_after_days) * DAY));
    let id: Option<String> =
        conn.query_row(STALEST, params![KIND_OCS, cutoff, WAITING, NOTIFIED], |r| r.get(0)).optional()?;
    if let Some(id) = &id {
        conn.execute("DELETE FROM assignments WHERE device = ?1", [id])?;
        conn.execute("DELETE FROM reports WHERE device = ?1", [id])?;
        conn.execute("DELETE FROM devices WHERE id = ?1 AND kind = ?2", [id, KIND_OCS])?;
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::super::{Db, OcsLimits, Registration};
    use super::*;
    use crate::lockout::Client;

    const DAYS: u64 = DAY;
    /// "Now" for these tests; the rows are aged relative to it.
    const NOW: u64 = 1_800_000_000;

    fn db(tag: &str) -> Db {
        crate::db::test_db(tag)
    }

    fn lim(max_devices: u64, stale_after_days: u32) -> OcsLimits {
        OcsLimits { new_devices_per_hour: 1_000, max_devices, stale_after_days }
    }

    fn client() -> Client {
        Client::parse("192.0.2.9").unwrap()
    }

    /// Register `id` and set its `created` to `created_ago` seconds before
    /// [`NOW`], its `last_seen` to `seen_ago` (never seen: `None`).
    fn device(d: &mut Db, id: &str, created_ago: u64, seen_ago: Option<u64>) {
        assert_eq!(d.register_ocs_device(NOW, client(), lim(u64::MAX, 7), id).unwrap(), Registration::New);
        d.conn
            .execute(
                "UPDATE devices SET created = ?1, last_seen = ?2 WHERE id = ?3",
                params![rfc3339(NOW - created_ago), seen_ago.map(|s| rfc3339(NOW - s)), id],
            )
            .unwrap();
    }

    fn ids(d: &Db) -> Vec<String> {
        let mut st = d.conn.prepare("SELECT id FROM devices ORDER BY id").unwrap();
        st.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
    }

    #[test]
    fn a_full_table_evicts_the_stalest_fake_and_never_a_device_with_a_past() {
        let mut d = db("stale");
        d.add_package(&super::super::NewPackage {
            id: 1,
            name: "p",
            action: "EXECUTE",
            priority: 5,
            frags: 1,
            size: 1,
            https: false,
        })
        .unwrap();
        d.assign(1, None, false).unwrap();
        // Kept whatever their age: a history, a reported status, seen recently.
        device(&mut d, "history", 90 * DAYS, Some(90 * DAYS));
        assert!(d.set_history("history", &[7]).unwrap());
        device(&mut d, "reported", 90 * DAYS, None);
        assert!(d.report_ocs("reported", 1, "ERR_TIMEOUT").unwrap());
        device(&mut d, "recent", 90 * DAYS, Some(6 * DAYS));
        // Fakes: one never seen after registration, one seen once long ago.
        device(&mut d, "fake-old", 30 * DAYS, None);
        device(&mut d, "fake-older", 60 * DAYS, Some(40 * DAYS));
        let full = lim(5, 7);
        assert_eq!(
            d.register_ocs_device(NOW, client(), full, "new1").unwrap(),
            Registration::Evicted { evicted: "fake-older".into() },
            "seen longest ago goes first"
        );
        assert_eq!(
            d.register_ocs_device(NOW, client(), full, "new2").unwrap(),
            Registration::Evicted { evicted: "fake-old".into() }
        );
        assert_eq!(d.register_ocs_device(NOW, client(), full, "new3").unwrap(), Registration::Full, "none stale left");
        assert_eq!(ids(&d), ["history", "new1", "new2", "recent", "reported"]);
        let n: i64 =
            d.conn.query_row("SELECT COUNT(*) FROM assignments WHERE device LIKE 'fake%'", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 0, "their assignments went with them");
        // Eight days on, "recent" (seen 14 days ago) is the stalest; the others never are.
        let later = NOW + 8 * DAYS;
        assert_eq!(
            d.register_ocs_device(later, client(), full, "new4").unwrap(),
            Registration::Evicted { evicted: "recent".into() }
        );
    }

    #[test]
    fn zero_stale_after_days_never_evicts() {
        let mut d = db("zero");
        device(&mut d, "fake", 365 * DAYS, None);
        assert_eq!(d.register_ocs_device(NOW, client(), lim(1, 0), "new").unwrap(), Registration::Full);
        assert_eq!(
            d.register_ocs_device(NOW, client(), lim(1, 7), "new").unwrap(),
            Registration::Evicted { evicted: "fake".into() }
        );
    }

    #[test]
    fn finding_the_stalest_walks_the_age_index_not_the_table() {
        let d = db("plan");
        if d.backend() == crate::db::Backend::Postgres {
            eprintln!("skipped: SQLite's query plans (PostgreSQL plans small test tables as scans anyway)");
            return;
        }
        let mut st = d.conn.prepare(&format!("EXPLAIN QUERY PLAN {STALEST}")).unwrap();
        let plan: Vec<String> = st
            .query_map(params!["x", "x", "x", "x"], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(plan.iter().any(|l| l.contains("USING INDEX devices_by_age")), "{plan:?}");
        assert!(!plan.iter().any(|l| l.starts_with("SCAN") || l.contains("TEMP B-TREE")), "{plan:?}");
    }
}
