//! Status reports from Outpost agents: each recorded once by its report id,
//! many in one transaction (one fsync) when the server commits a group of
//! them ([`crate::group_commit`]).

use crate::params;

use super::{Db, DbResult};
use crate::time::now_rfc3339;

/// One report: `device` says package `package` ended with `status`; the
/// agent's `report_id` is the same on every retry of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRow {
    /// The reporting device.
    pub device: String,
    /// The agent's id for this report (hex).
    pub report_id: String,
    /// The package.
    pub package: u64,
    /// The status code.
    pub status: String,
}

impl Db {
    /// Apply a status report unless its id was seen before. Returns whether
    /// it changed anything. Reports for unassigned packages are dropped.
    pub fn report(&mut self, device: &str, report_id: &str, package: u64, status: &str) -> DbResult<bool> {
        let row = ReportRow { device: device.into(), report_id: report_id.into(), package, status: status.into() };
        Ok(self.report_all(std::slice::from_ref(&row))?[0])
    }

    /// Apply `rows` as [`Db::report`] does each, in one transaction: all
    /// are recorded or none. Returns, for each, whether it changed anything.
    pub fn report_all(&mut self, rows: &[ReportRow]) -> DbResult<Vec<bool>> {
        let tx = self.conn.transaction()?;
        let now = now_rfc3339();
        let mut out = vec![false; rows.len()];
        // In key order: instances sharing a PostgreSQL database then take
        // the rows' locks in one order, and two batches never deadlock.
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by(|&a, &b| (&rows[a].device, &rows[a].report_id).cmp(&(&rows[b].device, &rows[b].report_id)));
        {
            let mut seen = tx.prepare_cached(
                "INSERT INTO reports(device, report_id, received) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            )?;
            let mut apply = tx.prepare_cached(
                "UPDATE assignments SET status = ?1, updated = ?2, force = 0 WHERE device = ?3 AND package = ?4",
            )?;
            for i in order {
                let r = &rows[i];
                let fresh = seen.execute(params![r.device, r.report_id, now])? > 0;
                out[i] = fresh && apply.execute(params![r.status, now, r.device, r.package as i64])? > 0;
            }
        }
        tx.commit()?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::NewPackage;

    #[test]
    fn a_batch_records_each_report_once_and_says_which_changed_something() {
        let mut db = crate::db::test_db("reports");
        db.add_package(&NewPackage { id: 1, name: "p", action: "store", priority: 5, frags: 1, size: 1, https: false })
            .unwrap();
        for d in ["a", "b"] {
            db.add_device(d, &[0; 32]).unwrap();
            db.assign(1, Some(d), false).unwrap();
        }
        let row = |d: &str, id: &str, s: &str| ReportRow {
            device: d.into(),
            report_id: id.into(),
            package: 1,
            status: s.into(),
        };
        let batch = [
            row("a", "01", "SUCCESS"),
            row("b", "02", "ERR_EXECUTE"),
            row("a", "01", "ERR_LATE"),
            row("c", "03", "SUCCESS"),
        ];
        assert_eq!(db.report_all(&batch).unwrap(), [true, true, false, false], "a repeated id, an unknown device");
        let status: Vec<_> = db.status(Some(1)).unwrap().into_iter().map(|r| r.status).collect();
        assert_eq!(status, ["SUCCESS", "ERR_EXECUTE"]);
        assert_eq!(db.report_all(&batch[..1]).unwrap(), [false], "a retry of a recorded report changes nothing");
    }

    #[test]
    fn two_instances_record_a_report_sent_to_both_once() {
        let Some((mut one, mut two)) = crate::db::test_db_pair("reports2") else {
            eprintln!("skipped: needs OUTPOST_TEST_POSTGRES (SQLite has one instance per database)");
            return;
        };
        one.add_package(&NewPackage {
            id: 1,
            name: "p",
            action: "store",
            priority: 5,
            frags: 1,
            size: 1,
            https: false,
        })
        .unwrap();
        let devices: Vec<String> = (0..200).map(|i| format!("d{i}")).collect();
        for d in &devices {
            one.add_device(d, &[0; 32]).unwrap();
            one.assign(1, Some(d), false).unwrap();
        }
        // Every device's report reaches both instances at once (an agent
        // retrying against the other while the first still works on it),
        // in batches whose rows come in opposite orders.
        let batch = |status: &str, rev: bool| -> Vec<ReportRow> {
            let mut v: Vec<ReportRow> = devices
                .iter()
                .map(|d| ReportRow {
                    device: d.clone(),
                    report_id: format!("r-{d}"),
                    package: 1,
                    status: status.into(),
                })
                .collect();
            if rev {
                v.reverse();
            }
            v
        };
        let (a, b) = (batch("SUCCESS", false), batch("EXIT_CODE_1", true));
        let (ra, rb) = std::thread::scope(|s| {
            let ta = s.spawn(|| a.chunks(10).map(|c| one.report_all(c).unwrap()).collect::<Vec<_>>().concat());
            let tb = s.spawn(|| b.chunks(10).map(|c| two.report_all(c).unwrap()).collect::<Vec<_>>().concat());
            (ta.join().unwrap(), tb.join().unwrap())
        });
        let recorded = ra.iter().chain(&rb).filter(|x| **x).count();
        assert_eq!(recorded, devices.len(), "each report recorded by exactly one instance");
    }
}
