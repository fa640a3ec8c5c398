//! IPv4/IPv6 networks in CIDR form (a leaf module: no crate imports).
//! In `server.toml` a network is a string (`"10.0.0.0/8"`, `"::1/128"`, a
//! bare address for one host), parsed once when the file is read.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An IPv4 or IPv6 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parse `a.b.c.d/n`, `x::y/n` or a bare address.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let (a, p) = s.split_once('/').map_or((s, None), |(a, p)| (a, Some(p)));
        let addr: IpAddr = a.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.parse().ok().filter(|p| *p <= max)?,
            None => max,
        };
        Some(Self { addr, prefix })
    }

    /// Every address of both families: `0.0.0.0/0` and `::/0`.
    pub fn everywhere() -> Vec<Self> {
        let any = |addr| Self { addr, prefix: 0 };
        vec![any(IpAddr::from([0u8; 4])), any(IpAddr::from([0u16; 8]))]
    }

    /// The loopback networks: `127.0.0.0/8` and `::1/128`.
    pub fn loopback() -> Vec<Self> {
        vec![
            Self { addr: IpAddr::from([127, 0, 0, 0]), prefix: 8 },
            Self { addr: IpAddr::from([0, 0, 0, 0, 0, 0, 0, 1u16]), prefix: 128 },
        ]
    }

    /// The prefix length: how specific the network is.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether any of `nets` holds `ip`.
    pub fn any_contains(nets: &[Self], ip: IpAddr) -> bool {
        nets.iter().any(|n| n.contains(ip))
    }

    /// Whether `ip` is inside (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let bits = |ip: IpAddr| match ip {
            IpAddr::V4(a) => (u128::from(u32::from(a)) << 96, 32u32),
            IpAddr::V6(a) => (u128::from(a), 128),
        };
        let ((net, w1), (x, w2)) = (bits(self.addr), bits(ip));
        if w1 != w2 {
            return false;
        }
        let mask = if self.prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(self.prefix)) };
        net & mask == x & mask
    }
}

/// Text that is not a network in CIDR form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotCidr(pub String);

impl fmt::Display for NotCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not a CIDR network (ADDRESS/PREFIX or an address)", self.0)
    }
}

impl std::error::Error for NotCidr {}

impl FromStr for Cidr {
    type Err = NotCidr;

    fn from_str(s: &str) -> Result<Self, NotCidr> {
        Self::parse(s).ok_or_else(|| NotCidr(s.to_string()))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let lo = Cidr::parse("127.0.0.0/8").unwrap();
        assert!(lo.contains("127.1.2.3".parse().unwrap()));
        assert!(lo.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!lo.contains("128.0.0.1".parse().unwrap()));
        assert!(Cidr::parse("::1/128").unwrap().contains("::1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("198.18.0.1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("nonsense").is_none());
    }

    #[test]
    fn networks_are_written_as_they_are_read() {
        for s in ["10.1.2.3/8", "::1/128", "0.0.0.0/0", "2001:db8::/32", "::ffff:192.0.2.1/128"] {
            let c: Cidr = s.parse().unwrap();
            assert_eq!(c.to_string(), s);
            assert_eq!(c.to_string().parse::<Cidr>().unwrap(), c);
        }
        assert_eq!("192.0.2.7".parse::<Cidr>().unwrap().to_string(), "192.0.2.7/32", "a bare address is one host");
        assert_eq!(
            "1.2.3/8".parse::<Cidr>().unwrap_err().to_string(),
            "\"1.2.3/8\" is not a CIDR network (ADDRESS/PREFIX or an address)"
        );
        let all = Cidr::everywhere();
        assert!(Cidr::any_contains(&all, "198.18.0.1".parse().unwrap()));
        assert!(Cidr::any_contains(&all, "2001:db8::1".parse().unwrap()));
        let lo = Cidr::loopback();
        assert!(
            Cidr::any_contains(&lo, "127.0.0.2".parse().unwrap()) && Cidr::any_contains(&lo, "::1".parse().unwrap())
        );
        assert!(
            !Cidr::any_contains(&lo, "192.0.2.1".parse().unwrap()) && !Cidr::any_contains(&[], "::1".parse().unwrap())
        );
    }
}
