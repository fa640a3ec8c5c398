//! Network policy, opsi's `networks`, `admin-networks` and
//! `trusted-proxies` (`[security]` in `server.toml`, parsed once into
//! [`Cidr`]s): who may connect at all, who may use administrative routes,
//! and which address a request is counted against.
//!
//! ```text
//!  accept ─► peer in networks? ── no ─► closed: before TLS, before a byte is read
//!    │ a request head is read
//!    ▼
//!  client_addr: peer in trusted_proxies? ── no ─► client = peer (forwarding headers ignored)
//!    │ yes: X-Forwarded-For (if absent, Forwarded: for=), hops from the
//!    │      right, trusted proxies skipped: the first other hop is the client;
//!    │      a hop that is no address ─► client = peer (logged at debug)
//!    ▼
//!  client in networks? ── no ─► 403
//!    ▼
//!  lockout, [ocs] allow and per-address limits, logs: by client;
//!  /admin/… only for a client in admin_networks, and never for a request
//!  with forwarding headers from an untrusted peer (else 403)
//! ```
//!
//! Why the rightmost untrusted hop. A proxy appends the address it was
//! connected from to whatever `X-Forwarded-For` the client sent, so only the
//! hops a trusted proxy appended are known to be true; everything left of
//! the first untrusted one may be made up by the client. The per-connection
//! caps ([`crate::limits`]) stay on the TCP peer, which is what holds the
//! connection.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::cidr::Cidr;

/// A hop of a forwarding header that is not an IP address (`unknown`, an
/// obfuscated `_name`, an empty list entry, a `Forwarded` element without
/// `for=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadHop {
    /// The header, lower case.
    pub header: &'static str,
    /// The hop as sent (truncated to 64 bytes).
    pub hop: String,
}

impl fmt::Display for BadHop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} hop {:?} is not an IP address", self.header, self.hop)
    }
}

impl std::error::Error for BadHop {}

/// Where a request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// The address it is counted against ([`client_addr`]).
    pub client: IpAddr,
    /// The TCP peer.
    pub peer: IpAddr,
    /// It carries forwarding headers and its peer is not a trusted proxy:
    /// it came through a proxy missing from `trusted_proxies` (or says so).
    /// Such a request is never administrative, whatever `client` is: behind
    /// an unlisted proxy on loopback every client would look local.
    pub untrusted_forwarding: bool,
}

impl Origin {
    /// The origin of a request `peer` sent with `headers` (names lower
    /// case); with the hop that kept the forwarded address from being
    /// used, if one did (the client is then `peer`).
    pub fn of(trusted: &[Cidr], peer: IpAddr, headers: &[(String, String)]) -> (Self, Option<BadHop>) {
        let forwarding = headers.iter().any(|(k, _)| k == XFF || k == FORWARDED);
        let untrusted_forwarding = forwarding && !Cidr::any_contains(trusted, peer);
        let (client, bad) = match client_addr(trusted, peer, headers) {
            Ok(c) => (c, None),
            Err(e) => (peer, Some(e)),
        };
        (Self { client, peer, untrusted_forwarding }, bad)
    }
}

const XFF: &str = "x-forwarded-for";
const FORWARDED: &str = "forwarded";

/// The address a request that `peer` sent with `headers` (names lower
/// case) is counted against. From a peer outside `trusted` it is `peer`,
/// whatever the headers say. From a trusted proxy it is the rightmost hop of
/// `X-Forwarded-For` (every such header, in order), or of `Forwarded`'s
/// `for=` when no `X-Forwarded-For` is present, that is not itself a
/// trusted proxy; the leftmost if all are; `peer` if neither header is
/// present. `Err`: a hop examined is not an address (the caller uses `peer`).
pub fn client_addr(trusted: &[Cidr], peer: IpAddr, headers: &[(String, String)]) -> Result<IpAddr, BadHop> {
    if !Cidr::any_contains(trusted, peer) {
        return Ok(peer);
    }
    let values = |name: &'static str| headers.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str());
    let (header, hops): (&'static str, Vec<&str>) = if values(XFF).next().is_some() {
        (XFF, values(XFF).flat_map(|v| v.split(',')).collect())
    } else {
        (FORWARDED, values(FORWARDED).flat_map(|v| v.split(',')).map(forwarded_for).collect())
    };
    let mut client = peer;
    for hop in hops.iter().rev() {
        client = parse_hop(hop).ok_or_else(|| BadHop { header, hop: hop.chars().take(64).collect() })?;
        if !Cidr::any_contains(trusted, client) {
            break;
        }
    }
    Ok(client)
}

/// The `for=` value of one `Forwarded` element (`for=192.0.2.1;proto=https`),
/// or the whole element when it has none (so that it fails to parse).
fn forwarded_for(element: &str) -> &str {
    element
        .split(';')
        .find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            k.trim().eq_ignore_ascii_case("for").then_some(v)
        })
        .unwrap_or(element)
}

/// An address as a hop gives it: `192.0.2.1`, `2001:db8::1`, with a port
/// (`192.0.2.1:4711`, `[2001:db8::1]:4711`), in brackets or quotes.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let h = hop.trim().trim_matches('"');
    h.parse::<IpAddr>()
        .ok()
        .or_else(|| h.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| h.strip_prefix('[')?.strip_suffix(']')?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(s: &[&str]) -> Vec<Cidr> {
        s.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    const PROXY: &str = "10.0.0.5";

    #[test]
    fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
        let trusted = nets(&["10.0.0.5"]);
        let spoof = h(&[("x-forwarded-for", "192.0.2.1"), ("forwarded", "for=192.0.2.2")]);
        assert_eq!(client_addr(&trusted, ip("198.51.100.7"), &spoof), Ok(ip("198.51.100.7")));
        assert_eq!(client_addr(&[], ip(PROXY), &spoof), Ok(ip(PROXY)), "no trusted proxies: none believed");
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let trusted = nets(&["10.0.0.0/24"]);
        let p = ip(PROXY);
        // The client sent "192.0.2.66" itself; the proxy appended what it saw.
        let xff = h(&[("x-forwarded-for", "192.0.2.66, 198.51.100.7")]);
        assert_eq!(client_addr(&trusted, p, &xff), Ok(ip("198.51.100.7")));
        // Two proxies of ours in a row: both skipped.
        let chain = h(&[("x-forwarded-for", "192.0.2.66, 198.51.100.7, 10.0.0.9")]);
        assert_eq!(client_addr(&trusted, p, &chain), Ok(ip("198.51.100.7")));
        // Several header lines are one list, in order.
        let lines = h(&[("x-forwarded-for", "192.0.2.66"), ("x-forwarded-for", "198.51.100.8")]);
        assert_eq!(client_addr(&trusted, p, &lines), Ok(ip("198.51.100.8")));
        // Only trusted hops: the leftmost is where the request began.
        assert_eq!(client_addr(&trusted, p, &h(&[("x-forwarded-for", "10.0.0.7, 10.0.0.8")])), Ok(ip("10.0.0.7")));
        assert_eq!(client_addr(&trusted, p, &[]), Ok(p), "no header: the proxy itself");
    }

    #[test]
    fn forwarded_for_is_read_when_there_is_no_x_forwarded_for() {
        let trusted = nets(&[PROXY]);
        let p = ip(PROXY);
        let fwd = h(&[("forwarded", "for=192.0.2.66;proto=https, For=\"[2001:db8:cafe::17]:4711\";by=10.0.0.5")]);
        assert_eq!(client_addr(&trusted, p, &fwd), Ok(ip("2001:db8:cafe::17")));
        let both = h(&[("forwarded", "for=192.0.2.66"), ("x-forwarded-for", "198.51.100.7")]);
        assert_eq!(client_addr(&trusted, p, &both), Ok(ip("198.51.100.7")), "X-Forwarded-For wins");
        assert_eq!(client_addr(&trusted, p, &h(&[("x-forwarded-for", "198.51.100.7:5000")])), Ok(ip("198.51.100.7")));
        assert_eq!(client_addr(&trusted, p, &h(&[("x-forwarded-for", "[2001:db8::1]")])), Ok(ip("2001:db8::1")));
    }

    #[test]
    fn forwarding_through_an_unlisted_proxy_is_marked() {
        let trusted = nets(&[PROXY]);
        let xff = h(&[("x-forwarded-for", "192.0.2.1")]);
        let (o, bad) = Origin::of(&trusted, ip("127.0.0.1"), &xff);
        assert_eq!((o.client, o.untrusted_forwarding, bad), (ip("127.0.0.1"), true, None));
        let (o, _) = Origin::of(&trusted, ip(PROXY), &xff);
        assert_eq!((o.client, o.peer, o.untrusted_forwarding), (ip("192.0.2.1"), ip(PROXY), false));
        assert!(!Origin::of(&trusted, ip("127.0.0.1"), &[]).0.untrusted_forwarding);
        let (o, bad) = Origin::of(&trusted, ip(PROXY), &h(&[("forwarded", "for=unknown")]));
        assert_eq!((o.client, bad.map(|b| b.hop)), (ip(PROXY), Some("unknown".to_string())));
    }

    #[test]
    fn a_hop_that_is_no_address_is_an_error() {
        let trusted = nets(&[PROXY]);
        let p = ip(PROXY);
        for (name, value, hop) in [
            ("x-forwarded-for", "unknown", "unknown"),
            ("x-forwarded-for", "192.0.2.1,", ""),
            ("forwarded", "for=_hidden", "_hidden"),
            ("forwarded", "proto=https", "proto=https"),
        ] {
            let e = client_addr(&trusted, p, &h(&[(name, value)])).unwrap_err();
            assert_eq!(e.hop, hop, "{name}: {value}");
        }
        // A bad hop left of the client is never looked at.
        assert_eq!(client_addr(&trusted, p, &h(&[("x-forwarded-for", "garbage, 192.0.2.1")])), Ok(ip("192.0.2.1")));
        let e = client_addr(&trusted, p, &h(&[("x-forwarded-for", &"x".repeat(500))])).unwrap_err();
        assert_eq!(e.hop.len(), 64);
        assert!(e.to_string().starts_with("x-forwarded-for hop \"xxx"));
    }
}
