//! Network interfaces scripted over time.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::{ErrorKind, ErrorType};

/// Network interfaces whose states and counters tests script over time.
#[derive(Debug, Default)]
pub struct SimNet {
    /// `(name, state, counters)` of each interface.
    pub ifaces: Vec<(String, crate::net::LinkState, crate::net::Counters)>,
    /// The interface every address routes to.
    pub route: Option<String>,
}

impl SimNet {
    /// One interface `name` in `state`, carrying every route.
    pub fn one(name: &str, state: crate::net::LinkState) -> Self {
        Self { ifaces: alloc::vec![(name.to_string(), state, Default::default())], route: Some(name.to_string()) }
    }

    /// Set an interface's state.
    pub fn set_state(&mut self, name: &str, state: crate::net::LinkState) {
        if let Some(i) = self.ifaces.iter_mut().find(|i| i.0 == name) {
            i.1 = state;
        }
    }

    /// Add traffic to an interface's counters.
    pub fn add_traffic(&mut self, name: &str, rx: u64, tx: u64) {
        if let Some(i) = self.ifaces.iter_mut().find(|i| i.0 == name) {
            i.2.rx_bytes += rx;
            i.2.tx_bytes += tx;
        }
    }
}

impl ErrorType for SimNet {
    type Error = ErrorKind;
}

impl crate::net::NetMonitor for SimNet {
    fn interfaces(&mut self) -> Result<Vec<crate::net::Interface>, ErrorKind> {
        Ok(self.ifaces.iter().map(|i| crate::net::Interface { name: i.0.clone(), state: i.1 }).collect())
    }
    fn link_state(&mut self, iface: &str) -> Result<crate::net::LinkState, ErrorKind> {
        self.ifaces.iter().find(|i| i.0 == iface).map(|i| i.1).ok_or(ErrorKind::NotFound)
    }
    fn counters(&mut self, iface: &str) -> Result<crate::net::Counters, ErrorKind> {
        self.ifaces.iter().find(|i| i.0 == iface).map(|i| i.2).ok_or(ErrorKind::NotFound)
    }
    fn route_to(&mut self, _addr: core::net::IpAddr) -> Result<Option<String>, ErrorKind> {
        Ok(self.route.clone())
    }
}
