//! Depots (`depot add`): more locations of `DIR/download` (a branch's
//! nginx, a CDN), each for the devices in its networks. Polls list those
//! that apply ([`crate::depot::for_client`]).

use crate::params;

use super::{Db, DbResult};
use crate::cidr::Cidr;
use crate::time::now_rfc3339;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS depots(
    loc TEXT PRIMARY KEY, networks TEXT NOT NULL, created TEXT NOT NULL);
";

/// A depot as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Depot {
    /// `host[:port]/path` of its copy of `DIR/download`, over plain HTTP.
    pub loc: String,
    /// The devices it serves, by address (empty: every device).
    pub networks: Vec<Cidr>,
}

impl Db {
    /// Record a depot, or change the networks of one at `loc`.
    pub fn add_depot(&mut self, d: &Depot) -> DbResult<()> {
        let nets: Vec<String> = d.networks.iter().map(Cidr::to_string).collect();
        self.conn.execute(
            "INSERT INTO depots(loc, networks, created) VALUES (?1, ?2, ?3)
             ON CONFLICT(loc) DO UPDATE SET networks = ?2",
            params![d.loc, nets.join(","), now_rfc3339()],
        )?;
        Ok(())
    }

    /// Forget the depot at `loc`; whether there was one.
    pub fn remove_depot(&mut self, loc: &str) -> DbResult<bool> {
        Ok(self.conn.execute("DELETE FROM depots WHERE loc = ?1", [loc])? > 0)
    }

    /// Every depot, by location. Networks that no longer parse are dropped.
    pub fn depots(&self) -> DbResult<Vec<Depot>> {
        let mut st = self.conn.prepare_cached("SELECT loc, networks FROM depots ORDER BY loc")?;
        st.query_map([], |r| {
            let nets: String = r.get(1)?;
            Ok(Depot { loc: r.get(0)?, networks: nets.split(',').filter_map(Cidr::parse).collect() })
        })?
        .collect()
    }
}
