//! [`NetMonitor`] from `/sys/class/net` and the kernel's routing tables
//! (`/proc/net/route`, `/proc/net/ipv6_route`).

use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::PathBuf;

use super::IoError;
use crate::ErrorType;
use crate::net::{Counters, Interface, LinkState, NetMonitor};

/// The real network interfaces.
#[derive(Debug, Clone)]
pub struct SysNet {
    sys: PathBuf,
    proc_net: PathBuf,
}

impl Default for SysNet {
    fn default() -> Self {
        Self { sys: PathBuf::from("/sys/class/net"), proc_net: PathBuf::from("/proc/net") }
    }
}

impl SysNet {
    /// Read from the usual places.
    pub fn new() -> Self {
        Self::default()
    }

    fn iface_dir(&self, iface: &str) -> Result<PathBuf, IoError> {
        if iface.is_empty() || iface.contains('/') || iface.starts_with('.') {
            return Err(IoError(io::Error::new(io::ErrorKind::InvalidInput, "bad interface name")));
        }
        Ok(self.sys.join(iface))
    }

    fn read_u64(&self, iface: &str, file: &str) -> Result<u64, IoError> {
        let s = fs::read_to_string(self.iface_dir(iface)?.join(file))?;
        s.trim().parse().map_err(|_| IoError(io::Error::new(io::ErrorKind::InvalidData, "not a number")))
    }
}

fn parse_state(s: &str) -> LinkState {
    match s.trim() {
        "up" => LinkState::Up,
        "unknown" => LinkState::Unknown,
        _ => LinkState::Down,
    }
}

/// Longest-prefix match in `/proc/net/route` text (IPv4, hex little-endian).
pub fn route4(table: &str, addr: std::net::Ipv4Addr) -> Option<String> {
    let a = u32::from(addr);
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let dest = u32::from_str_radix(f.get(1)?, 16).ok()?.swap_bytes();
            let mask = u32::from_str_radix(f.get(7)?, 16).ok()?.swap_bytes();
            (a & mask == dest & mask).then(|| (mask.count_ones(), f[0].to_string()))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, name)| name)
}

/// Longest-prefix match in `/proc/net/ipv6_route` text.
pub fn route6(table: &str, addr: std::net::Ipv6Addr) -> Option<String> {
    let a = u128::from(addr);
    table
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let dest = u128::from_str_radix(f.first()?, 16).ok()?;
            let len = u32::from_str_radix(f.get(1)?, 16).ok()?;
            let mask = if len == 0 { 0 } else { u128::MAX << (128 - len.min(128)) };
            let name = f.get(9)?.to_string();
            // Local-table entries name `lo`; loopback is handled by the caller.
            (a & mask == dest & mask && name != "lo").then_some((len, name))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, name)| name)
}

impl ErrorType for SysNet {
    type Error = IoError;
}

impl NetMonitor for SysNet {
    fn interfaces(&mut self) -> Result<Vec<Interface>, IoError> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.sys)?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let state = self.link_state(&name).unwrap_or(LinkState::Unknown);
            out.push(Interface { name, state });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn link_state(&mut self, iface: &str) -> Result<LinkState, IoError> {
        Ok(parse_state(&fs::read_to_string(self.iface_dir(iface)?.join("operstate"))?))
    }

    fn counters(&mut self, iface: &str) -> Result<Counters, IoError> {
        Ok(Counters {
            rx_bytes: self.read_u64(iface, "statistics/rx_bytes")?,
            tx_bytes: self.read_u64(iface, "statistics/tx_bytes")?,
        })
    }

    fn route_to(&mut self, addr: IpAddr) -> Result<Option<String>, IoError> {
        if addr.is_loopback() {
            return Ok(Some("lo".into())); // the local table is not in /proc/net/route
        }
        Ok(match addr {
            IpAddr::V4(a) => route4(&fs::read_to_string(self.proc_net.join("route"))?, a),
            IpAddr::V6(a) => route6(&fs::read_to_string(self.proc_net.join("ipv6_route"))?, a),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTE: &str = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
        eth0\t00000000\t0100A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
        eth0\t0000A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n\
        wg0\t000012C6\t00000000\t0001\t0\t0\t0\t0000FEFF\t0\t0\t0\n";

    #[test]
    fn longest_prefix_wins() {
        assert_eq!(route4(ROUTE, "198.18.3.4".parse().unwrap()).as_deref(), Some("wg0"));
        assert_eq!(route4(ROUTE, "192.168.0.7".parse().unwrap()).as_deref(), Some("eth0"));
        assert_eq!(route4(ROUTE, "9.9.9.9".parse().unwrap()).as_deref(), Some("eth0"), "default route");
        assert_eq!(route4("Iface\tDestination\n", "9.9.9.9".parse().unwrap()), None);
        let v6 = "20010db8000000000000000000000000 20 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth1\n";
        assert_eq!(route6(v6, "2001:db8::1".parse().unwrap()).as_deref(), Some("eth1"));
        assert_eq!(route6(v6, "2001:db9::1".parse().unwrap()), None);
    }

    #[test]
    fn loopback_is_there_and_counts() {
        let mut n = SysNet::new();
        assert_eq!(n.route_to("127.0.0.1".parse().unwrap()).unwrap().as_deref(), Some("lo"));
        assert!(n.interfaces().unwrap().iter().any(|i| i.name == "lo"));
        assert_ne!(n.link_state("lo").unwrap(), LinkState::Down);
        let before = n.counters("lo").unwrap();
        let l = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..10 {
            s.send_to(&[0u8; 1000], l.local_addr().unwrap()).unwrap();
        }
        let after = n.counters("lo").unwrap();
        assert!(after.tx_bytes >= before.tx_bytes + 10_000, "{before:?} -> {after:?}");
        assert!(n.link_state("../etc").is_err());
    }
}
