//! Outpost control protocol, version 1 (see `docs/control-api.md`).
//!
//! Line-based UTF-8 text, one record per line, `key=value` fields separated
//! by single spaces; unknown lines and keys are ignored so that either side
//! can grow. Every message opens with `outpost 1`.
//!
//! ```text
//! agent                                        server (HTTPS)
//!   POST /api/v1/poll   Authorization: Outpost <device> <secret>
//!                       outpost 1 / agent <version> / facts host=… (`super::facts`)
//!                                  ◄── outpost 1 / poll-interval 3600 /
//!                                      package id=… priority=… force=… info=… pack=…
//!   POST /api/v1/report  outpost 1 / report id=<hex> package=<id> status=<code>
//!                                  ◄── outpost 1 / ack id=<hex>
//!   POST /api/v1/trust   (when the poll said `trust version=N`, N newer than held)
//!                                  ◄── the signed trust bundle (`engine::trust`)
//! ```
//!
//! After `outpost-server device rotate`, poll replies also carry
//! `identity secret=… cert=<hex DER> key=<hex PKCS#8>`: the device's new
//! credentials, until it uses them ([`super::identity`]).
//!
//! A reply may also list `depot loc=host[:port]/path` records (at most
//! [`MAX_DEPOTS`]): more plain-HTTP locations of the fragments for this
//! device ([`super::sources`]).

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use super::digest::{hex, unhex};
use super::identity::Credentials;
use super::limits::{MAX_CONTROL_LEN, MAX_DEPOTS, MAX_POLL_PACKAGES, MAX_REPORTS_PER_REQUEST, MAX_STATUS_LEN};
use super::status::StatusCode;

/// Protocol version spoken here.
pub const VERSION: u32 = 1;
/// First line of every message.
pub const HEADER: &str = "outpost 1";
/// Path of the poll request.
pub const POLL_PATH: &str = "/api/v1/poll";
/// Path of the report request.
pub const REPORT_PATH: &str = "/api/v1/report";
/// Path of the trust bundle request (`engine::trust`).
pub const TRUST_PATH: &str = "/api/v1/trust";
/// Scheme of the `Authorization` header.
pub const AUTH_SCHEME: &str = "Outpost";

/// One package the server wants deployed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// Package id.
    pub id: u64,
    /// Priority 0..=10 (0 first).
    pub priority: u8,
    /// Re-deploy even if the package is in the agent's history.
    pub force: bool,
    /// Where `ID/info` and `ID/manifest` are: `host[:port]/path`, fetched over HTTPS.
    pub info_loc: String,
    /// Where `ID/ID-n` fragments are: `host[:port]/path`, scheme from the info file.
    pub pack_loc: String,
}

/// The server's answer to a poll.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PollReply {
    /// Seconds until the next poll.
    pub poll_interval: u32,
    /// Packages to deploy, in no particular order.
    pub offers: Vec<Offer>,
    /// Server-wide bandwidth cap for agents, bytes/s (0: none).
    pub max_bandwidth: u64,
    /// Server-wide full-speed windows (`HH:MM-HH:MM`, the agent's local time).
    pub full_speed_windows: Vec<String>,
    /// New credentials for this device (`device rotate`), sent with every
    /// reply until the device uses them: the `identity` record.
    pub identity: Option<Credentials>,
    /// Version of the trust bundle the server publishes (`trust version=N`;
    /// 0: none). An agent holding an older one fetches it from [`TRUST_PATH`].
    pub trust_version: u64,
    /// More locations of the fragments (`depot loc=…`), `host[:port]/path`
    /// over plain HTTP, at most [`MAX_DEPOTS`].
    pub depots: Vec<String>,
}

/// One status report, identified by `id` so the server can drop duplicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Random id chosen by the agent, stable across retries.
    pub id: u64,
    /// Package id.
    pub package: u64,
    /// The code.
    pub status: StatusCode,
}

/// Why a control message was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtoError {
    /// Longer than the limit, or too many records.
    TooLarge,
    /// Not UTF-8 or the first line is not `outpost 1`.
    BadHeader,
    /// A record lacks a field or has a bad value.
    BadField(&'static str),
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge => f.write_str("control message too large"),
            Self::BadHeader => f.write_str("not an outpost 1 message"),
            Self::BadField(k) => write!(f, "bad or missing field {k}"),
        }
    }
}

impl core::error::Error for ProtoError {}

/// One record: its kind and its `key=value` fields.
type Line<'a> = (&'a str, Vec<(&'a str, &'a str)>);

fn lines(msg: &[u8]) -> Result<impl Iterator<Item = Line<'_>>, ProtoError> {
    if msg.len() > MAX_CONTROL_LEN {
        return Err(ProtoError::TooLarge);
    }
    let text = core::str::from_utf8(msg).map_err(|_| ProtoError::BadHeader)?;
    let mut it = text.lines();
    if it.next().map(str::trim) != Some(HEADER) {
        return Err(ProtoError::BadHeader);
    }
    Ok(it.filter(|l| !l.trim().is_empty()).map(|l| {
        let mut words = l.split_ascii_whitespace();
        let kind = words.next().unwrap_or("");
        (kind, words.map(|w| w.split_once('=').unwrap_or((w, ""))).collect())
    }))
}

fn field<'a>(fields: &[(&str, &'a str)], key: &'static str) -> Result<&'a str, ProtoError> {
    fields.iter().find(|(k, _)| *k == key).map(|(_, v)| *v).ok_or(ProtoError::BadField(key))
}

fn num<T: core::str::FromStr>(fields: &[(&str, &str)], key: &'static str) -> Result<T, ProtoError> {
    field(fields, key)?.parse().map_err(|_| ProtoError::BadField(key))
}

/// A `host[:port]/path` location without scheme, as OCS uses them.
pub fn valid_location(s: &str) -> bool {
    !s.is_empty()
        && !s.contains("://")
        && !s.starts_with('/')
        && s.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

/// Device ids: 1 to 128 of `A-Za-z0-9._-` (OCS DEVICEIDs fit).
pub fn valid_device_id(s: &str) -> bool {
    (1..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Status codes on the wire: 1 to 64 of `A-Z0-9_-`.
pub fn valid_status(s: &str) -> bool {
    (1..=MAX_STATUS_LEN).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl PollReply {
    /// Encode for the wire.
    pub fn encode(&self) -> String {
        let mut s = format!("{HEADER}\npoll-interval {}\n", self.poll_interval);
        if self.max_bandwidth > 0 || !self.full_speed_windows.is_empty() {
            s.push_str(&format!(
                "throttle max_bandwidth={} windows={}\n",
                self.max_bandwidth,
                self.full_speed_windows.join(",")
            ));
        }
        if self.trust_version > 0 {
            s.push_str(&format!("trust version={}\n", self.trust_version));
        }
        for o in &self.offers {
            s.push_str(&format!(
                "package id={} priority={} force={} info={} pack={}\n",
                o.id, o.priority, o.force as u8, o.info_loc, o.pack_loc
            ));
        }
        for d in &self.depots {
            s.push_str(&format!("depot loc={d}\n"));
        }
        if let Some(c) = &self.identity {
            s.push_str(&format!("identity secret={}", c.secret));
            if c.has_cert() {
                s.push_str(&format!(" cert={} key={}", hex(&c.cert), hex(&c.key)));
            }
            s.push('\n');
        }
        s
    }

    /// Decode a reply; bad package lines are errors (the server is trusted
    /// over TLS, but its bytes are still input).
    pub fn decode(msg: &[u8]) -> Result<Self, ProtoError> {
        let mut reply = Self::default();
        for (kind, f) in lines(msg)? {
            match kind {
                "poll-interval" => {
                    let v = f.first().map(|(k, _)| *k).unwrap_or("");
                    reply.poll_interval = v.parse().map_err(|_| ProtoError::BadField("poll-interval"))?;
                }
                "throttle" => {
                    reply.max_bandwidth = num(&f, "max_bandwidth")?;
                    let w = field(&f, "windows").unwrap_or("");
                    reply.full_speed_windows =
                        w.split(',').filter(|x| !x.is_empty()).map(|x| x.to_string()).take(24).collect();
                    if reply.full_speed_windows.iter().any(|x| super::throttle::Window::parse(x).is_none()) {
                        return Err(ProtoError::BadField("windows"));
                    }
                }
                "trust" => reply.trust_version = num(&f, "version")?,
                "package" => {
                    if reply.offers.len() >= MAX_POLL_PACKAGES {
                        return Err(ProtoError::TooLarge);
                    }
                    let priority: u8 = num(&f, "priority")?;
                    let info_loc = field(&f, "info")?;
                    let pack_loc = field(&f, "pack")?;
                    if priority > 10 {
                        return Err(ProtoError::BadField("priority"));
                    }
                    if !valid_location(info_loc) {
                        return Err(ProtoError::BadField("info"));
                    }
                    if !valid_location(pack_loc) {
                        return Err(ProtoError::BadField("pack"));
                    }
                    reply.offers.push(Offer {
                        id: num(&f, "id")?,
                        priority,
                        force: num::<u8>(&f, "force")? == 1,
                        info_loc: info_loc.to_string(),
                        pack_loc: pack_loc.to_string(),
                    });
                }
                "depot" => {
                    let loc = field(&f, "loc")?;
                    if !valid_location(loc) {
                        return Err(ProtoError::BadField("loc"));
                    }
                    if reply.depots.len() >= MAX_DEPOTS {
                        return Err(ProtoError::TooLarge);
                    }
                    reply.depots.push(loc.to_string());
                }
                "identity" => {
                    let bytes = |key| field(&f, key).map_or(Some(Vec::new()), unhex).ok_or(ProtoError::BadField(key));
                    let c = Credentials {
                        secret: field(&f, "secret")?.to_string(),
                        cert: bytes("cert")?,
                        key: bytes("key")?,
                    };
                    if !c.is_valid() {
                        return Err(ProtoError::BadField("identity"));
                    }
                    reply.identity = Some(c);
                }
                _ => {}
            }
        }
        Ok(reply)
    }
}

/// Encode a batch of reports.
pub fn encode_reports(reports: &[Report]) -> String {
    let mut s = format!("{HEADER}\n");
    for r in reports {
        s.push_str(&format!("report id={:016x} package={} status={}\n", r.id, r.package, r.status));
    }
    s
}

/// Decode a batch of reports.
pub fn decode_reports(msg: &[u8]) -> Result<Vec<Report>, ProtoError> {
    let mut out = Vec::new();
    for (kind, f) in lines(msg)? {
        if kind != "report" {
            continue;
        }
        if out.len() >= MAX_REPORTS_PER_REQUEST {
            return Err(ProtoError::TooLarge);
        }
        let id = u64::from_str_radix(field(&f, "id")?, 16).map_err(|_| ProtoError::BadField("id"))?;
        let status = field(&f, "status")?;
        if !valid_status(status) {
            return Err(ProtoError::BadField("status"));
        }
        out.push(Report { id, package: num(&f, "package")?, status: StatusCode::parse(status) });
    }
    Ok(out)
}

/// A download's progress, sent with a poll (`progress id=… held=… total=…
/// rate=…`, one line per package being fetched; servers that do not know
/// the line ignore it) for the server's status page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Package id.
    pub id: u64,
    /// Bytes held (verified fragments).
    pub held: u64,
    /// Bytes in all.
    pub total: u64,
    /// Current download rate, bytes/s.
    pub rate: u64,
}

/// The body of a poll: the header, the agent's version, and `progress`.
pub fn encode_poll(agent_version: &str, progress: &[Progress]) -> String {
    let mut s = format!("{HEADER}\nagent {agent_version}\n");
    for p in progress {
        s.push_str(&format!("progress id={} held={} total={} rate={}\n", p.id, p.held, p.total, p.rate));
    }
    s
}

/// The progress lines of a poll body (at most [`MAX_POLL_PACKAGES`]; bad
/// lines are errors).
pub fn decode_progress(msg: &[u8]) -> Result<Vec<Progress>, ProtoError> {
    let mut out = Vec::new();
    for (kind, f) in lines(msg)? {
        if kind != "progress" {
            continue;
        }
        if out.len() >= MAX_POLL_PACKAGES {
            return Err(ProtoError::TooLarge);
        }
        let p =
            Progress { id: num(&f, "id")?, held: num(&f, "held")?, total: num(&f, "total")?, rate: num(&f, "rate")? };
        if p.held > p.total {
            return Err(ProtoError::BadField("held"));
        }
        out.push(p);
    }
    Ok(out)
}

/// Encode the acknowledgement of reports `ids`.
pub fn encode_acks(ids: &[u64]) -> String {
    let mut s = format!("{HEADER}\n");
    for id in ids {
        s.push_str(&format!("ack id={id:016x}\n"));
    }
    s
}

/// Decode an acknowledgement.
pub fn decode_acks(msg: &[u8]) -> Result<Vec<u64>, ProtoError> {
    let mut out = Vec::new();
    for (kind, f) in lines(msg)? {
        if kind == "ack" {
            let id = field(&f, "id")?;
            out.push(u64::from_str_radix(id, 16).map_err(|_| ProtoError::BadField("id"))?);
        }
    }
    Ok(out)
}

/// The value of the `Authorization` header for a device.
pub fn auth_header(device: &str, secret: &str) -> String {
    format!("{AUTH_SCHEME} {device} {secret}")
}

/// Split an `Authorization` header into (device, secret).
pub fn parse_auth_header(v: &str) -> Option<(&str, &str)> {
    let mut w = v.split_ascii_whitespace();
    if w.next()? != AUTH_SCHEME {
        return None;
    }
    let (d, s) = (w.next()?, w.next()?);
    (w.next().is_none() && valid_device_id(d)).then_some((d, s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_reply_round_trips_and_ignores_unknown_lines() {
        let r = PollReply {
            poll_interval: 60,
            max_bandwidth: 125_000,
            full_speed_windows: alloc::vec!["18:00-07:00".into(), "12:00-13:00".into()],
            offers: alloc::vec![Offer {
                id: 17,
                priority: 0,
                force: true,
                info_loc: "127.0.0.1:8443/download".into(),
                pack_loc: "cdn.example:80/d".into()
            }],
            trust_version: 3,
            depots: alloc::vec!["branch.example/outpost".into(), "10.1.2.3:8080/d".into()],
            ..Default::default()
        };
        let mut wire = r.encode();
        wire.push_str("future-thing a=b\n");
        assert_eq!(PollReply::decode(wire.as_bytes()).unwrap(), r);
    }

    #[test]
    fn an_identity_record_round_trips_and_is_checked() {
        let c =
            Credentials { secret: "0123456789abcdef".into(), cert: alloc::vec![0x30, 1, 2], key: alloc::vec![0x30, 9] };
        let r = PollReply { poll_interval: 60, identity: Some(c.clone()), ..Default::default() };
        let wire = r.encode();
        assert!(wire.contains("identity secret=0123456789abcdef cert=300102 key=3009\n"), "{wire}");
        assert_eq!(PollReply::decode(wire.as_bytes()).unwrap(), r);
        // Without a certificate (the CA key kept offline): a secret alone.
        let bare = PollReply { identity: Some(Credentials { cert: alloc::vec![], key: alloc::vec![], ..c }), ..r };
        assert!(bare.encode().ends_with("identity secret=0123456789abcdef\n"));
        assert_eq!(PollReply::decode(bare.encode().as_bytes()).unwrap(), bare);
        // An older agent's decoder skipped it: unknown records are ignored,
        // so this one only adds to what a reply may say.
        for bad in [
            "identity cert=3001 key=3001",
            "identity secret=short",
            "identity secret=0123456789abcdef cert=3001",
            "identity secret=0123456789abcdef cert=30zz key=3001",
            "identity secret=0123456789abcdef cert=301 key=3001",
        ] {
            let msg = alloc::format!("outpost 1\npoll-interval 5\n{bad}\n");
            assert!(PollReply::decode(msg.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn reports_and_acks_round_trip() {
        let reps = alloc::vec![
            Report { id: 0xdead_beef, package: 5, status: StatusCode::ExitCode(3) },
            Report { id: 1, package: 6, status: StatusCode::Success }
        ];
        assert_eq!(decode_reports(encode_reports(&reps).as_bytes()).unwrap(), reps);
        assert_eq!(decode_acks(encode_acks(&[1, 2]).as_bytes()).unwrap(), alloc::vec![1, 2]);
    }

    #[test]
    fn bad_messages_are_errors() {
        assert_eq!(PollReply::decode(b"hello"), Err(ProtoError::BadHeader));
        assert!(PollReply::decode(b"outpost 1\npackage id=x priority=1 force=0 info=a/b pack=a/b\n").is_err());
        assert!(PollReply::decode(b"outpost 1\npackage id=1 priority=1 force=0 info=http://a/b pack=a/b\n").is_err());
        assert!(PollReply::decode(b"outpost 1\nthrottle max_bandwidth=1 windows=25:00-01:00\n").is_err());
        assert!(PollReply::decode(b"outpost 1\ntrust version=-1\n").is_err());
        assert!(PollReply::decode(b"outpost 1\ndepot loc=http://a/b\n").is_err());
        let many = "outpost 1\n".to_string() + &"depot loc=a/b\n".repeat(MAX_DEPOTS + 1);
        assert_eq!(PollReply::decode(many.as_bytes()), Err(ProtoError::TooLarge));
        assert!(decode_reports(b"outpost 1\nreport id=1 package=2 status=bad<code>\n").is_err());
        assert!(decode_reports(&[b'x'; MAX_CONTROL_LEN + 1]).is_err());
    }

    #[test]
    fn progress_rides_on_the_poll() {
        let p = [Progress { id: 7, held: 5, total: 10, rate: 3 }, Progress { id: 8, held: 0, total: 0, rate: 0 }];
        let body = encode_poll("1.0", &p);
        assert!(body.starts_with("outpost 1\nagent 1.0\n"));
        assert_eq!(decode_progress(body.as_bytes()).unwrap(), p);
        assert_eq!(decode_progress(b"outpost 1\nagent 1.0\n").unwrap(), alloc::vec![]);
        assert!(decode_progress(b"outpost 1\nprogress id=1 held=5 total=4 rate=0\n").is_err(), "held > total");
        assert!(decode_progress(b"outpost 1\nprogress id=1 held=x total=4 rate=0\n").is_err());
    }

    #[test]
    fn auth_header_parsing() {
        assert_eq!(parse_auth_header(&auth_header("pc-1", "abc")), Some(("pc-1", "abc")));
        assert_eq!(parse_auth_header("Basic abc"), None);
        assert_eq!(parse_auth_header("Outpost a/b c"), None);
        assert_eq!(parse_auth_header("Outpost a b c"), None);
    }
}
