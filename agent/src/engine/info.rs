//! The OCS `info` file: one `<DOWNLOAD …/>` element describing a package.
//!
//! Writing follows ocsreports 2.8 byte for byte (attribute order, spacing,
//! `GARDEFOU="rien"`), except that values are XML-escaped. Reading is lenient
//! in the way real files need: ocsreports does not escape values, so a value
//! is whatever stands between its quotes (`&&`, `<` and `>` included), and
//! well-formed entities are then decoded. Anything else that is wrong gives
//! an [`InfoError`], never a panic.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use super::limits::MAX_INFO_LEN;

/// What the agent does with the unpacked archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Run a file from the archive (`NAME`: its command line).
    Launch,
    /// Run a shell command line in the unpack directory (`COMMAND`).
    Execute,
    /// Copy the unpacked tree to a destination (`PATH`).
    Store,
}

impl Action {
    /// The OCS spelling.
    pub fn as_ocs(self) -> &'static str {
        match self {
            Self::Launch => "LAUNCH",
            Self::Execute => "EXECUTE",
            Self::Store => "STORE",
        }
    }

    /// The attribute that carries the action's argument.
    pub fn target_attr(self) -> &'static str {
        match self {
            Self::Launch => "NAME",
            Self::Execute => "COMMAND",
            Self::Store => "PATH",
        }
    }

    /// Parse `LAUNCH` / `EXECUTE` / `STORE`, any case.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Launch, Self::Execute, Self::Store].into_iter().find(|a| a.as_ocs().eq_ignore_ascii_case(s))
    }
}

/// Transport of the fragments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// Plain HTTP (integrity from the signed manifest / the info digest).
    Http,
    /// HTTPS verified against the configured CA.
    Https,
}

/// Hash named by `DIGEST_ALGO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestAlgo {
    /// MD5, what ocsreports writes.
    Md5,
    /// SHA-1.
    Sha1,
}

/// Encoding named by `DIGEST_ENCODE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestEncode {
    /// Hex (`Hexa`).
    Hexa,
    /// Base64, padded or not.
    Base64,
}

/// The user-notification fields (`NOTIFY_*`, `NEED_DONE_ACTION*`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notify {
    /// `NOTIFY_USER`.
    pub user: bool,
    /// `NOTIFY_TEXT`.
    pub text: String,
    /// `NOTIFY_COUNTDOWN` in seconds (empty in the file when `None`).
    pub countdown: Option<u32>,
    /// `NOTIFY_CAN_ABORT`.
    pub can_abort: bool,
    /// `NOTIFY_CAN_DELAY`.
    pub can_delay: bool,
    /// `NEED_DONE_ACTION`.
    pub need_done_action: bool,
    /// `NEED_DONE_ACTION_TEXT`.
    pub need_done_action_text: String,
}

/// A parsed info file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// Package id (all digits in OCS).
    pub id: u64,
    /// Priority 0..=10; 0 is absolute priority.
    pub priority: u8,
    /// The action.
    pub action: Action,
    /// Digest of the whole archive, as written (empty when `frags == 0`).
    pub digest: String,
    /// Fragment transport.
    pub proto: Proto,
    /// Number of fragments; 0 means a command without a file.
    pub frags: u32,
    /// Digest algorithm.
    pub digest_algo: DigestAlgo,
    /// Digest encoding.
    pub digest_encode: DigestEncode,
    /// `NAME`, `COMMAND` or `PATH`, by action.
    pub target: String,
    /// Notification settings.
    pub notify: Notify,
}

/// Why an info file was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InfoError {
    /// Longer than [`MAX_INFO_LEN`].
    TooLong,
    /// Not UTF-8.
    NotUtf8,
    /// No `<DOWNLOAD` element, or its syntax is broken.
    Malformed(&'static str),
    /// A required attribute is absent.
    Missing(&'static str),
    /// An attribute has a value out of its domain.
    Invalid(&'static str),
}

impl fmt::Display for InfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLong => write!(f, "info file longer than {MAX_INFO_LEN} bytes"),
            Self::NotUtf8 => f.write_str("info file is not utf-8"),
            Self::Malformed(w) => write!(f, "malformed info file: {w}"),
            Self::Missing(a) => write!(f, "info file lacks attribute {a}"),
            Self::Invalid(a) => write!(f, "info file has an invalid {a}"),
        }
    }
}

impl core::error::Error for InfoError {}

/// Split a `<DOWNLOAD …>` element into (name, raw value) pairs.
///
/// A value runs from its opening quote to the next same quote that is
/// followed by white space, `/`, `>` or the end: unescaped `&`, `<`, `>`
/// inside are kept.
fn attributes(text: &str) -> Result<Vec<(&str, &str)>, InfoError> {
    let start = text.find("<DOWNLOAD").ok_or(InfoError::Malformed("no <DOWNLOAD element"))?;
    let mut rest = &text[start + "<DOWNLOAD".len()..];
    let mut out = Vec::new();
    loop {
        rest = rest.trim_start();
        if rest.starts_with("/>") || rest.starts_with('>') {
            return Ok(out);
        }
        if rest.is_empty() {
            return Err(InfoError::Malformed("unterminated element"));
        }
        let eq = rest.find('=').ok_or(InfoError::Malformed("attribute without value"))?;
        let name = rest[..eq].trim();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(InfoError::Malformed("bad attribute name"));
        }
        let after = rest[eq + 1..].trim_start();
        let quote = after.chars().next().filter(|c| *c == '"' || *c == '\'');
        let quote = quote.ok_or(InfoError::Malformed("unquoted value"))?;
        let body = &after[1..];
        let mut end = None;
        for (i, c) in body.char_indices() {
            if c == quote {
                let next = body[i + 1..].chars().next();
                if matches!(next, None | Some(' ' | '\t' | '\r' | '\n' | '/' | '>')) {
                    end = Some(i);
                    break;
                }
            }
        }
        let end = end.ok_or(InfoError::Malformed("unterminated value"))?;
        if out.iter().any(|(n, _)| *n == name) {
            return Err(InfoError::Malformed("duplicate attribute"));
        }
        out.push((name, &body[..end]));
        rest = &body[end + 1..];
    }
}

/// Decode the five XML entities and numeric references; leave any other `&`.
pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let decoded = rest.find(';').filter(|&j| j <= 10).and_then(|j| {
            let c = match &rest[1..j] {
                "amp" => '&',
                "lt" => '<',
                "gt" => '>',
                "quot" => '"',
                "apos" => '\'',
                e => {
                    let n = if let Some(h) = e.strip_prefix("#x").or_else(|| e.strip_prefix("#X")) {
                        u32::from_str_radix(h, 16).ok()
                    } else {
                        e.strip_prefix('#').and_then(|d| d.parse().ok())
                    };
                    char::from_u32(n?)?
                }
            };
            Some((c, j + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Escape a value for an attribute in double quotes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c => out.push(c),
        }
    }
    out
}

fn flag(v: Option<String>, name: &'static str) -> Result<bool, InfoError> {
    match v.as_deref().map(str::trim) {
        None | Some("" | "0") => Ok(false),
        Some("1") => Ok(true),
        Some(_) => Err(InfoError::Invalid(name)),
    }
}

impl Info {
    /// Parse an info file.
    pub fn parse(bytes: &[u8]) -> Result<Self, InfoError> {
        if bytes.len() > MAX_INFO_LEN {
            return Err(InfoError::TooLong);
        }
        let text = core::str::from_utf8(bytes).map_err(|_| InfoError::NotUtf8)?;
        let attrs = attributes(text)?;
        let get = |n: &str| attrs.iter().find(|(k, _)| *k == n).map(|(_, v)| unescape(v));
        let need = |n: &'static str| get(n).ok_or(InfoError::Missing(n));

        let id_s = need("ID")?;
        let id_s = id_s.trim();
        if id_s.is_empty() || !id_s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InfoError::Invalid("ID"));
        }
        let id = id_s.parse().map_err(|_| InfoError::Invalid("ID"))?;
        let priority: u8 = need("PRI")?.trim().parse().map_err(|_| InfoError::Invalid("PRI"))?;
        if priority > 10 {
            return Err(InfoError::Invalid("PRI"));
        }
        let action = Action::parse(need("ACT")?.trim()).ok_or(InfoError::Invalid("ACT"))?;
        let frags_s = get("FRAGS").unwrap_or_default();
        let frags = match frags_s.trim() {
            "" => 0,
            s => s.parse().map_err(|_| InfoError::Invalid("FRAGS"))?,
        };
        let proto = match get("PROTO").as_deref().map(str::trim) {
            None | Some("") => Proto::Http,
            Some(p) if p.eq_ignore_ascii_case("http") => Proto::Http,
            Some(p) if p.eq_ignore_ascii_case("https") => Proto::Https,
            Some(_) => return Err(InfoError::Invalid("PROTO")),
        };
        let digest_algo = match get("DIGEST_ALGO").as_deref().map(str::trim) {
            None | Some("") => DigestAlgo::Md5,
            Some(a) if a.eq_ignore_ascii_case("md5") => DigestAlgo::Md5,
            Some(a) if a.eq_ignore_ascii_case("sha1") => DigestAlgo::Sha1,
            Some(_) => return Err(InfoError::Invalid("DIGEST_ALGO")),
        };
        let digest_encode = match get("DIGEST_ENCODE").as_deref().map(str::trim) {
            None | Some("") => DigestEncode::Hexa,
            Some(e) if e.eq_ignore_ascii_case("hexa") => DigestEncode::Hexa,
            Some(e) if e.eq_ignore_ascii_case("base64") => DigestEncode::Base64,
            Some(_) => return Err(InfoError::Invalid("DIGEST_ENCODE")),
        };
        let digest = get("DIGEST").unwrap_or_default().trim().to_string();
        if frags > 0 && digest.is_empty() {
            return Err(InfoError::Missing("DIGEST"));
        }
        let target = get(action.target_attr()).unwrap_or_default();
        let countdown = match get("NOTIFY_COUNTDOWN").as_deref().map(str::trim) {
            None | Some("") => None,
            Some(c) => Some(c.parse().map_err(|_| InfoError::Invalid("NOTIFY_COUNTDOWN"))?),
        };
        let notify = Notify {
            user: flag(get("NOTIFY_USER"), "NOTIFY_USER")?,
            text: get("NOTIFY_TEXT").unwrap_or_default(),
            countdown,
            can_abort: flag(get("NOTIFY_CAN_ABORT"), "NOTIFY_CAN_ABORT")?,
            can_delay: flag(get("NOTIFY_CAN_DELAY"), "NOTIFY_CAN_DELAY")?,
            need_done_action: flag(get("NEED_DONE_ACTION"), "NEED_DONE_ACTION")?,
            need_done_action_text: get("NEED_DONE_ACTION_TEXT").unwrap_or_default(),
        };
        Ok(Self { id, priority, action, digest, proto, frags, digest_algo, digest_encode, target, notify })
    }

    /// Write the file as ocsreports 2.8 does, with values escaped.
    pub fn to_ocs_xml(&self) -> String {
        let b = |v: bool| if v { "1" } else { "0" };
        let countdown = self.notify.countdown.map(|c| c.to_string()).unwrap_or_default();
        let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DOWNLOAD");
        let mut attr = |k: &str, v: &str| {
            s.push(' ');
            s.push_str(k);
            s.push_str("=\"");
            s.push_str(&escape(v));
            s.push('"');
        };
        attr("ID", &self.id.to_string());
        attr("PRI", &self.priority.to_string());
        attr("ACT", self.action.as_ocs());
        attr("DIGEST", &self.digest);
        attr("PROTO", if self.proto == Proto::Https { "HTTPS" } else { "HTTP" });
        attr("FRAGS", &self.frags.to_string());
        attr("DIGEST_ALGO", if self.digest_algo == DigestAlgo::Sha1 { "SHA1" } else { "MD5" });
        attr("DIGEST_ENCODE", if self.digest_encode == DigestEncode::Base64 { "Base64" } else { "Hexa" });
        attr(self.action.target_attr(), &self.target);
        attr("NOTIFY_USER", b(self.notify.user));
        attr("NOTIFY_TEXT", &self.notify.text);
        attr("NOTIFY_COUNTDOWN", &countdown);
        attr("NOTIFY_CAN_ABORT", b(self.notify.can_abort));
        attr("NOTIFY_CAN_DELAY", b(self.notify.can_delay));
        attr("NEED_DONE_ACTION", b(self.notify.need_done_action));
        attr("NEED_DONE_ACTION_TEXT", &self.notify.need_done_action_text);
        attr("GARDEFOU", "rien");
        s.push_str(" />\n");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OCS: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DOWNLOAD ID=\"1795457331\" PRI=\"5\" ACT=\"EXECUTE\" DIGEST=\"4b3b03dc24a8dee176b41fe694fd38c3\" PROTO=\"HTTP\" FRAGS=\"1\" DIGEST_ALGO=\"MD5\" DIGEST_ENCODE=\"Hexa\" COMMAND=\"sh bashscript.sh --verbose\" NOTIFY_USER=\"0\" NOTIFY_TEXT=\"\" NOTIFY_COUNTDOWN=\"\" NOTIFY_CAN_ABORT=\"0\" NOTIFY_CAN_DELAY=\"0\" NEED_DONE_ACTION=\"0\" NEED_DONE_ACTION_TEXT=\"\" GARDEFOU=\"rien\" />\n";

    #[test]
    fn ocsreports_file_round_trips_byte_for_byte() {
        let info = Info::parse(OCS.as_bytes()).unwrap();
        assert_eq!(info.id, 1795457331);
        assert_eq!(info.action, Action::Execute);
        assert_eq!(info.target, "sh bashscript.sh --verbose");
        assert_eq!(info.to_ocs_xml(), OCS);
    }

    #[test]
    fn unescaped_values_are_read_between_the_quotes() {
        let f = "<DOWNLOAD ID=\"7\" PRI=\"0\" ACT=\"EXECUTE\" DIGEST=\"\" FRAGS=\"0\" COMMAND=\"a && b <x> 'q'\" GARDEFOU=\"rien\" />";
        let info = Info::parse(f.as_bytes()).unwrap();
        assert_eq!(info.target, "a && b <x> 'q'");
        assert_eq!(info.frags, 0);
    }

    #[test]
    fn escaped_values_are_decoded_and_written_escaped() {
        let f = "<DOWNLOAD ID=\"7\" PRI=\"1\" ACT=\"EXECUTE\" FRAGS=\"0\" COMMAND=\"a &amp;&amp; b &lt;x&gt; &#65;&#x42; &bogus\" />";
        let info = Info::parse(f.as_bytes()).unwrap();
        assert_eq!(info.target, "a && b <x> AB &bogus");
        assert!(info.to_ocs_xml().contains("COMMAND=\"a &amp;&amp; b &lt;x&gt; AB &amp;bogus\""));
        assert_eq!(Info::parse(info.to_ocs_xml().as_bytes()).unwrap(), info);
    }

    #[test]
    fn broken_files_are_errors_not_panics() {
        let cases: &[&[u8]] = &[
            b"",
            b"<DOWNLOAD",
            b"<DOWNLOAD ID=\"1\" PRI=\"5\" ACT=\"EXECUTE\" COMMAND=\"unterminated />",
            b"<DOWNLOAD ID=\"x1\" PRI=\"5\" ACT=\"EXECUTE\" />",
            b"<DOWNLOAD ID=\"1\" PRI=\"11\" ACT=\"EXECUTE\" />",
            b"<DOWNLOAD ID=\"1\" ACT=\"EXECUTE\" />",
            b"<DOWNLOAD ID=\"1\" PRI=\"5\" ACT=\"RUN\" />",
            b"<DOWNLOAD ID=\"1\" PRI=\"5\" ACT=\"STORE\" FRAGS=\"2\" />",
            b"<DOWNLOAD ID=\"1\" ID=\"2\" PRI=\"5\" ACT=\"STORE\" />",
            b"<DOWNLOAD ID=1 />",
            b"\xff\xfe<DOWNLOAD",
        ];
        for c in cases {
            assert!(Info::parse(c).is_err(), "{:?}", core::str::from_utf8(c));
        }
        // Every prefix of a good file fails cleanly or parses.
        for i in 0..OCS.len() {
            let _ = Info::parse(&OCS.as_bytes()[..i]);
        }
    }
}
