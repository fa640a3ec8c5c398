//! The OCS Inventory NG messages, both directions, as the real agent 2.10
//! and server 2.8 write them (see `shared/reference/ocs-protocol.md` §2–§9).
//!
//! Both sides use XML::Simple, which writes a scalar as an attribute or as a
//! child element, and which does not keep the order of elements or
//! attributes. So every reader here accepts each field in either form and in
//! any order. The compression (zlib, gzip or plain) is the runtime's job:
//! these functions take and give XML text.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use super::info::escape;

pub mod scan;

pub use scan::ScanError;

/// Why an OCS message was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OcsError {
    /// Not well-formed XML.
    Xml(String),
    /// The root element or a required field is missing.
    Missing(&'static str),
    /// A field has a value out of its domain.
    Invalid(&'static str),
    /// Refused before parsing: beyond a bound of nesting, attributes or
    /// elements, or markup the bounds scan cannot follow ([`scan`]).
    Shape(ScanError),
}

impl fmt::Display for OcsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Xml(e) => write!(f, "malformed OCS XML: {e}"),
            Self::Missing(w) => write!(f, "OCS message lacks {w}"),
            Self::Invalid(w) => write!(f, "OCS message has an invalid {w}"),
            Self::Shape(e) => write!(f, "OCS XML refused before parsing: {e}"),
        }
    }
}

impl core::error::Error for OcsError {}

/// A field of `node`, as an attribute or as a child element's text.
fn field<'a>(node: roxmltree::Node<'a, 'a>, name: &str) -> Option<&'a str> {
    node.attribute(name).or_else(|| node.children().find(|c| c.has_tag_name(name)).map(|c| c.text().unwrap_or("")))
}

/// Parse `xml` once [`scan::scan`] has found it within the bounds that keep
/// roxmltree's recursion and duplicate-attribute check cheap.
fn parse(xml: &str) -> Result<roxmltree::Document<'_>, OcsError> {
    scan::scan(xml).map_err(OcsError::Shape)?;
    roxmltree::Document::parse(xml).map_err(|e| OcsError::Xml(e.to_string()))
}

/// DEVICEIDs as the OCS server accepts them: `name-YYYY-MM-DD-HH-MM-SS`.
pub fn valid_device_id(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 21 || b.len() > 128 || !s.is_ascii() {
        return false;
    }
    let (name, stamp) = s.split_at(s.len() - 20);
    let stamp = stamp.as_bytes();
    let shape_ok = stamp.iter().enumerate().all(|(i, c)| match i {
        0 | 5 | 8 | 11 | 14 | 17 => *c == b'-',
        _ => c.is_ascii_digit(),
    });
    !name.is_empty() && shape_ok && name.bytes().all(|c| c.is_ascii_graphic())
}

/// A DEVICEID in the OCS form for `host` at `unix` time: the host name up
/// to its first dot (characters outside `A-Za-z0-9-_` dropped), then
/// `-YYYY-MM-DD-HH-MM-SS` (UTC).
pub fn device_id_for(host: &str, unix: u64) -> String {
    let name: String = host
        .split('.')
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(64)
        .collect();
    let name = if name.is_empty() { "outpost" } else { &name };
    let [y, m, d, h, mi, s] = super::civil::civil(unix);
    format!("{name}-{y:04}-{m:02}-{d:02}-{h:02}-{mi:02}-{s:02}")
}

/// A request from an OCS agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `QUERY=PROLOG`: "what should I do?"
    Prolog {
        /// The agent's DEVICEID.
        device_id: String,
    },
    /// `QUERY=DOWNLOAD`: a status report.
    Download {
        /// The agent's DEVICEID.
        device_id: String,
        /// Package id.
        id: u64,
        /// The code, exactly as sent (may be empty: `SUCCESS_` bug aside).
        err: String,
    },
    /// `QUERY=INVENTORY`: we keep only the download history.
    Inventory {
        /// The agent's DEVICEID.
        device_id: String,
        /// `CONTENT/DOWNLOAD/HISTORY/PACKAGE/@ID`.
        history: Vec<u64>,
    },
    /// Any other query (answered harmlessly).
    Other {
        /// The agent's DEVICEID.
        device_id: String,
        /// The query name.
        query: String,
    },
}

impl Request {
    /// Parse a request body (already decompressed).
    pub fn parse(xml: &str) -> Result<Self, OcsError> {
        let doc = parse(xml)?;
        let root = doc.root_element();
        if !root.has_tag_name("REQUEST") {
            return Err(OcsError::Missing("REQUEST"));
        }
        let device_id = field(root, "DEVICEID").ok_or(OcsError::Missing("DEVICEID"))?.trim().to_string();
        if !valid_device_id(&device_id) {
            return Err(OcsError::Invalid("DEVICEID"));
        }
        let query = field(root, "QUERY").ok_or(OcsError::Missing("QUERY"))?.trim();
        Ok(match query.to_ascii_uppercase().as_str() {
            "PROLOG" => Self::Prolog { device_id },
            "DOWNLOAD" => {
                let id = field(root, "ID").ok_or(OcsError::Missing("ID"))?.trim();
                let id = id.parse().map_err(|_| OcsError::Invalid("ID"))?;
                let err = field(root, "ERR").unwrap_or("").trim().to_string();
                if err.len() > 64 || !err.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
                    return Err(OcsError::Invalid("ERR"));
                }
                Self::Download { device_id, id, err }
            }
            "INVENTORY" => {
                let history = root
                    .descendants()
                    .filter(|n| n.has_tag_name("HISTORY"))
                    .flat_map(|h| h.children().filter(|p| p.has_tag_name("PACKAGE")))
                    .filter_map(|p| field(p, "ID")?.trim().parse().ok())
                    .collect();
                Self::Inventory { device_id, history }
            }
            q => Self::Other { device_id, query: q.to_string() },
        })
    }

    /// Write the request as the Unix agent 2.10 does.
    pub fn to_xml(&self) -> String {
        match self {
            Self::Prolog { device_id } => format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<REQUEST>\n  <DEVICEID>{}</DEVICEID>\n  <QUERY>PROLOG</QUERY>\n</REQUEST>\n",
                escape(device_id)
            ),
            Self::Download { device_id, id, err } => format!(
                "<REQUEST DEVICEID=\"{}\" ERR=\"{}\" ID=\"{id}\" QUERY=\"DOWNLOAD\" />\n",
                escape(device_id),
                escape(err)
            ),
            Self::Inventory { device_id, history } => {
                let mut s = String::from(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<REQUEST>\n  <CONTENT>\n    <DOWNLOAD>\n      <HISTORY>\n",
                );
                for id in history {
                    s.push_str(&format!("        <PACKAGE ID=\"{id}\" />\n"));
                }
                s.push_str(&format!(
                    "      </HISTORY>\n    </DOWNLOAD>\n  </CONTENT>\n  <DEVICEID>{}</DEVICEID>\n  <QUERY>INVENTORY</QUERY>\n</REQUEST>\n",
                    escape(device_id)
                ));
                s
            }
            Self::Other { device_id, query } => format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<REQUEST>\n  <DEVICEID>{}</DEVICEID>\n  <QUERY>{}</QUERY>\n</REQUEST>\n",
                escape(device_id),
                escape(query)
            ),
        }
    }
}

/// The download module's global settings (`PARAM TYPE="CONF"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conf {
    /// Download on (`ON`).
    pub on: bool,
    /// Seconds after each slot.
    pub frag_latency: u32,
    /// Seconds after each cycle.
    pub cycle_latency: u32,
    /// Seconds after each period.
    pub period_latency: u32,
    /// Cycles per period.
    pub period_length: u32,
    /// Days from first notification before ERR_TIMEOUT.
    pub timeout: u32,
    /// Minutes an action may run (Windows agents).
    pub execution_timeout: u32,
}

impl Default for Conf {
    /// Safe values for a CONF that lacks fields: download on, the Unix
    /// agent's latencies, 10 cycles a period, 30 days, 120 minutes.
    fn default() -> Self {
        Self {
            on: true,
            frag_latency: 10,
            cycle_latency: 10,
            period_latency: 0,
            period_length: 10,
            timeout: 30,
            execution_timeout: 120,
        }
    }
}

/// One package to deploy (`PARAM TYPE="PACK"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pack {
    /// Package id.
    pub id: u64,
    /// `host[:port]/path` of `ID/info` (fetched over HTTPS).
    pub info_loc: String,
    /// `host[:port]/path` of `ID/ID-n`.
    pub pack_loc: String,
    /// Re-deploy even if in the history.
    pub force: bool,
}

/// A PROLOG reply's download part.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PrologReply {
    /// `RESPONSE`: `SEND` asks for an inventory.
    pub send_inventory: bool,
    /// `PROLOG_FREQ` in hours.
    pub prolog_freq: u32,
    /// The CONF, if a DOWNLOAD option was present.
    pub conf: Option<Conf>,
    /// The packages, in the order sent.
    pub packs: Vec<Pack>,
}

impl PrologReply {
    /// Write the reply the way the OCS server's XML::Simple does.
    pub fn to_xml(&self) -> String {
        let mut s = String::from("<?xml version='1.0' encoding='UTF-8'?>\n<REPLY>\n");
        // The DOWNLOAD option carries the packages even without a CONF (the
        // reader takes them so); found by the `ocs` fuzz target.
        let download = self.conf.is_some() || !self.packs.is_empty();
        if download {
            s.push_str("  <OPTION>\n    <NAME>DOWNLOAD</NAME>\n");
        }
        if let Some(c) = &self.conf {
            s.push_str(&format!(
                "    <PARAM TYPE=\"CONF\" ON=\"{}\" FRAG_LATENCY=\"{}\" CYCLE_LATENCY=\"{}\" PERIOD_LATENCY=\"{}\" PERIOD_LENGTH=\"{}\" TIMEOUT=\"{}\" EXECUTION_TIMEOUT=\"{}\" />\n",
                c.on as u8, c.frag_latency, c.cycle_latency, c.period_latency, c.period_length, c.timeout, c.execution_timeout
            ));
        }
        for p in &self.packs {
            s.push_str(&format!(
                "    <PARAM TYPE=\"PACK\" ID=\"{}\" INFO_LOC=\"{}\" PACK_LOC=\"{}\" CERT_PATH=\"INSTALL_PATH\" CERT_FILE=\"INSTALL_PATH/cacert.pem\" FORCE=\"{}\" SCHEDULE=\"\" POSTCMD=\"\" />\n",
                p.id,
                escape(&p.info_loc),
                escape(&p.pack_loc),
                p.force as u8
            ));
        }
        if download {
            s.push_str("  </OPTION>\n");
        }
        s.push_str(&format!(
            "  <RESPONSE>{}</RESPONSE>\n  <PROLOG_FREQ>{}</PROLOG_FREQ>\n</REPLY>\n",
            if self.send_inventory { "SEND" } else { "STOP" },
            self.prolog_freq
        ));
        s
    }

    /// Read a reply: options other than DOWNLOAD are ignored; a CONF missing
    /// `ON` or `TIMEOUT` gets the safe defaults of [`Conf::default`] (the
    /// real agent would turn downloads off, or time everything out).
    pub fn parse(xml: &str) -> Result<Self, OcsError> {
        let doc = parse(xml)?;
        let root = doc.root_element();
        if !root.has_tag_name("REPLY") {
            return Err(OcsError::Missing("REPLY"));
        }
        let mut reply = Self {
            send_inventory: field(root, "RESPONSE").is_some_and(|r| r.trim() == "SEND"),
            prolog_freq: field(root, "PROLOG_FREQ").and_then(|f| f.trim().parse().ok()).unwrap_or(24),
            ..Self::default()
        };
        for opt in root.children().filter(|n| n.has_tag_name("OPTION")) {
            if !field(opt, "NAME").is_some_and(|n| n.trim().eq_ignore_ascii_case("download")) {
                continue;
            }
            for p in opt.children().filter(|n| n.has_tag_name("PARAM")) {
                match field(p, "TYPE").map(str::trim) {
                    Some("CONF") => {
                        let d = Conf::default();
                        let num = |k: &str, def: u32| field(p, k).and_then(|v| v.trim().parse().ok()).unwrap_or(def);
                        reply.conf = Some(Conf {
                            on: field(p, "ON").map_or(d.on, |v| v.trim() != "0"),
                            frag_latency: num("FRAG_LATENCY", d.frag_latency),
                            cycle_latency: num("CYCLE_LATENCY", d.cycle_latency),
                            period_latency: num("PERIOD_LATENCY", d.period_latency),
                            period_length: num("PERIOD_LENGTH", d.period_length).max(1),
                            timeout: num("TIMEOUT", d.timeout),
                            execution_timeout: num("EXECUTION_TIMEOUT", d.execution_timeout),
                        });
                    }
                    Some("PACK") => {
                        let id = field(p, "ID").ok_or(OcsError::Missing("PACK ID"))?.trim();
                        reply.packs.push(Pack {
                            id: id.parse().map_err(|_| OcsError::Invalid("PACK ID"))?,
                            info_loc: field(p, "INFO_LOC").ok_or(OcsError::Missing("INFO_LOC"))?.trim().to_string(),
                            pack_loc: field(p, "PACK_LOC").ok_or(OcsError::Missing("PACK_LOC"))?.trim().to_string(),
                            force: field(p, "FORCE").is_some_and(|f| f.trim() == "1"),
                        });
                    }
                    _ => {}
                }
            }
        }
        Ok(reply)
    }
}

/// The reply to an INVENTORY.
pub const NO_ACCOUNT_UPDATE: &str =
    "<?xml version='1.0' encoding='UTF-8'?>\n<REPLY>\n  <RESPONSE>NO_ACCOUNT_UPDATE</RESPONSE>\n</REPLY>\n";

#[cfg(test)]
mod tests {
    use super::*;

    const DEV: &str = "vm-2026-11-23-18-03-38";

    #[test]
    fn device_ids() {
        assert!(valid_device_id(DEV));
        assert!(valid_device_id("my-host.example-2026-01-02-03-04-05"));
        assert!(!valid_device_id("2026-11-23-18-03-38"));
        assert!(!valid_device_id("vm-2026-11-23-18-03"));
        assert!(!valid_device_id("vm 2026-11-23-18-03-38x"));
    }

    #[test]
    fn device_ids_are_made_in_the_ocs_form() {
        let id = device_id_for("pc-7.branch.example", 1_795_457_331);
        assert_eq!(id, "pc-7-2026-11-23-18-08-51");
        assert!(valid_device_id(&id));
        assert!(valid_device_id(&device_id_for("", 0)));
        assert!(valid_device_id(&device_id_for("we ird/host", 0)));
    }

    #[test]
    fn real_agent_requests_parse() {
        // The PROLOG exactly as captured (elements).
        let prolog = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<REQUEST>\n  <DEVICEID>vm-2026-11-23-18-03-38</DEVICEID>\n  <QUERY>PROLOG</QUERY>\n</REQUEST>\n";
        assert_eq!(Request::parse(prolog).unwrap(), Request::Prolog { device_id: DEV.into() });
        assert_eq!(Request::Prolog { device_id: DEV.into() }.to_xml(), prolog);
        // The DOWNLOAD report exactly as captured (attributes).
        let report =
            "<REQUEST DEVICEID=\"vm-2026-11-23-18-07-09\" ERR=\"SUCCESS\" ID=\"1700000600\" QUERY=\"DOWNLOAD\" />\n";
        let r = Request::parse(report).unwrap();
        assert_eq!(
            r,
            Request::Download { device_id: "vm-2026-11-23-18-07-09".into(), id: 1700000600, err: "SUCCESS".into() }
        );
        assert_eq!(r.to_xml(), report);
        // Mixed forms and order.
        let mixed = "<REQUEST QUERY=\"DOWNLOAD\"><ERR>EXIT_CODE_3</ERR><ID>7</ID><DEVICEID>vm-2026-11-23-18-03-38</DEVICEID></REQUEST>";
        assert!(matches!(Request::parse(mixed).unwrap(), Request::Download { id: 7, .. }));
    }

    #[test]
    fn inventory_history() {
        let inv = Request::Inventory { device_id: DEV.into(), history: alloc::vec![1700000009, 1700000003] };
        assert_eq!(Request::parse(&inv.to_xml()).unwrap(), inv);
    }

    #[test]
    fn bad_requests_are_errors() {
        for bad in [
            "",
            "<REQUEST>",
            "<REPLY/>",
            "<REQUEST><QUERY>PROLOG</QUERY></REQUEST>",
            "<REQUEST DEVICEID=\"nodate\" QUERY=\"PROLOG\"/>",
            "<REQUEST DEVICEID=\"vm-2026-11-23-18-03-38\" QUERY=\"DOWNLOAD\" ID=\"x\"/>",
            "<REQUEST DEVICEID=\"vm-2026-11-23-18-03-38\" QUERY=\"DOWNLOAD\" ID=\"1\" ERR=\"a&lt;b\"/>",
        ] {
            assert!(Request::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn prolog_reply_round_trips_and_reads_any_order() {
        let r = PrologReply {
            send_inventory: false,
            prolog_freq: 12,
            conf: Some(Conf { frag_latency: 0, cycle_latency: 0, ..Conf::default() }),
            packs: alloc::vec![Pack { id: 5, info_loc: "h:1/d".into(), pack_loc: "h:2/d".into(), force: true }],
        };
        assert_eq!(PrologReply::parse(&r.to_xml()).unwrap(), r);
        // The reference's real-server example, with its random order.
        let real = "<?xml version='1.0' encoding='UTF-8'?>\n<REPLY>\n  <OPTION>\n    <PARAM PERIOD_LENGTH=\"10\" PERIOD_LATENCY=\"1\" EXECUTION_TIMEOUT=\"120\" ON=\"1\" FRAG_LATENCY=\"10\" TIMEOUT=\"30\" TYPE=\"CONF\" CYCLE_LATENCY=\"60\" />\n    <PARAM ID=\"1700000000\" PACK_LOC=\"ocs.example.org/download\" POSTCMD=\"\" CERT_PATH=\"INSTALL_PATH\" SCHEDULE=\"\" CERT_FILE=\"INSTALL_PATH/cacert.pem\" FORCE=\"0\" TYPE=\"PACK\" INFO_LOC=\"ocs.example.org/download\" />\n    <NAME>DOWNLOAD</NAME>\n  </OPTION>\n  <INVENTORY_ON_STARTUP>0</INVENTORY_ON_STARTUP>\n  <RESPONSE>SEND</RESPONSE>\n  <PROLOG_FREQ>12</PROLOG_FREQ>\n</REPLY>";
        let p = PrologReply::parse(real).unwrap();
        assert!(p.send_inventory);
        assert_eq!(p.conf.as_ref().unwrap().cycle_latency, 60);
        assert_eq!(p.packs[0].id, 1700000000);
        // Missing ON and TIMEOUT: safe defaults, not "off" and not "time out now".
        let bare = "<REPLY><OPTION><NAME>DOWNLOAD</NAME><PARAM TYPE=\"CONF\"/></OPTION></REPLY>";
        let c = PrologReply::parse(bare).unwrap().conf.unwrap();
        assert!(c.on && c.timeout == 30);
    }

    #[test]
    fn packages_without_a_conf_are_written_too() {
        // Found by the `ocs` fuzz target: the reader takes PACKs without a
        // CONF, and the writer dropped them.
        let r = PrologReply {
            packs: alloc::vec![Pack { id: 9, info_loc: "h/d".into(), pack_loc: "h/d".into(), force: false }],
            ..PrologReply::default()
        };
        assert_eq!(PrologReply::parse(&r.to_xml()).unwrap(), r);
        let empty = PrologReply::default();
        assert!(!empty.to_xml().contains("OPTION"));
        assert_eq!(PrologReply::parse(&empty.to_xml()).unwrap(), empty);
    }

    #[test]
    fn a_deeply_nested_prolog_reply_is_an_error_not_an_abort() {
        // Before the bounds scan, roxmltree recursed once per level and this
        // overflowed the stack: the agent's OCS mode aborted.
        let bomb = alloc::format!("<REPLY>{}", "<OPTION>".repeat(200_000));
        assert_eq!(PrologReply::parse(&bomb), Err(OcsError::Shape(ScanError::TooDeep)));
        assert_eq!(
            PrologReply::parse(&bomb).unwrap_err().to_string(),
            "OCS XML refused before parsing: elements nested deeper than 64"
        );
        let request = alloc::format!("<REQUEST>{}", "<CONTENT>".repeat(200_000));
        assert_eq!(Request::parse(&request), Err(OcsError::Shape(ScanError::TooDeep)));
    }

    #[test]
    fn an_attribute_heavy_message_is_refused_before_parsing() {
        let attrs: String = (0..50_000).map(|i| alloc::format!(" A{i}=\"\"")).collect();
        let bomb = alloc::format!("<REQUEST{attrs}><DEVICEID>{DEV}</DEVICEID><QUERY>PROLOG</QUERY></REQUEST>");
        assert_eq!(Request::parse(&bomb), Err(OcsError::Shape(ScanError::TooManyAttributesOnElement)));
    }
}
