//! Network interfaces: link state, traffic counters, the interface that
//! routes to the server, and link-up detection by polling (at most once a
//! second; a netlink listener can replace the polling without changing callers).

use alloc::string::String;
use alloc::vec::Vec;
use core::net::IpAddr;

use crate::ErrorType;

/// Operational state of a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Carrier and up.
    Up,
    /// Down (no carrier, administratively down, …).
    Down,
    /// The platform does not say (Linux reports loopback as "unknown").
    Unknown,
}

/// Byte counters of an interface since it came up (64-bit, wrap-free in practice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
}

/// One interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Name, e.g. `eth0`.
    pub name: String,
    /// Link state.
    pub state: LinkState,
}

/// Watches the network interfaces.
pub trait NetMonitor: ErrorType {
    /// Every interface.
    fn interfaces(&mut self) -> Result<Vec<Interface>, Self::Error>;
    /// The state of one interface.
    fn link_state(&mut self, iface: &str) -> Result<LinkState, Self::Error>;
    /// The byte counters of one interface.
    fn counters(&mut self, iface: &str) -> Result<Counters, Self::Error>;
    /// The interface traffic to `addr` leaves by, if any route matches.
    fn route_to(&mut self, addr: IpAddr) -> Result<Option<String>, Self::Error>;
}

impl<T: NetMonitor + ?Sized> NetMonitor for &mut T {
    fn interfaces(&mut self) -> Result<Vec<Interface>, Self::Error> {
        (**self).interfaces()
    }
    fn link_state(&mut self, iface: &str) -> Result<LinkState, Self::Error> {
        (**self).link_state(iface)
    }
    fn counters(&mut self, iface: &str) -> Result<Counters, Self::Error> {
        (**self).counters(iface)
    }
    fn route_to(&mut self, addr: IpAddr) -> Result<Option<String>, Self::Error> {
        (**self).route_to(addr)
    }
}

/// Turns polled link states into link-up events.
#[derive(Debug, Clone, Default)]
pub struct LinkWatch {
    last: Option<LinkState>,
}

impl LinkWatch {
    /// Feed the latest state; `true` when the link just came up (from down
    /// or unknown to up). The first observation is never an event.
    pub fn observe(&mut self, state: LinkState) -> bool {
        let up = state == LinkState::Up && self.last.is_some_and(|l| l != LinkState::Up);
        self.last = Some(state);
        up
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_up_events() {
        let mut w = LinkWatch::default();
        assert!(!w.observe(LinkState::Up), "first look is not an event");
        assert!(!w.observe(LinkState::Up));
        assert!(!w.observe(LinkState::Down));
        assert!(w.observe(LinkState::Up));
        assert!(!w.observe(LinkState::Unknown));
        assert!(w.observe(LinkState::Up));
    }
}
