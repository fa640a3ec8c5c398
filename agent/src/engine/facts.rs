//! A device's facts, sent with each poll so the server can sort its fleet:
//! one optional line of the poll request ([`super::proto`]):
//!
//! ```text
//! facts host=pc3 os=linux os_version=6.1.0 arch=x86_64 agent=0.1.0 free=123456 tags=site%3Alyon,kiosk
//! ```
//!
//! Every value is percent-encoded (`%`, space, `=`, `,` and bytes outside
//! printable ASCII become `%XX`), so a value is one word and a tag never
//! splits. A server that does not know the line ignores it; a line that
//! breaks a bound below is refused as a whole ([`Facts::decode`]). No IO
//! here: the runtime gathers the values (`rt::facts`).

use alloc::string::String;
use alloc::vec::Vec;

/// The record's kind in the poll request.
pub const KIND: &str = "facts";
/// Longest value (decoded bytes) of a fact or a tag.
pub const MAX_VALUE_LEN: usize = 128;
/// Most tags a device may carry.
pub const MAX_TAGS: usize = 32;

/// What a device says about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// Host name.
    pub host: String,
    /// Operating system (`linux`).
    pub os: String,
    /// Its version (the kernel release on Linux).
    pub os_version: String,
    /// Architecture (`x86_64`, `aarch64`).
    pub arch: String,
    /// Agent version.
    pub agent: String,
    /// Free bytes of the state directory's filesystem (`None`: unknown).
    pub free: Option<u64>,
    /// Free-form tags from `[agent] tags`.
    pub tags: Vec<String>,
}

/// Whether `t` can be a tag: 1 to [`MAX_VALUE_LEN`] bytes, no control character.
pub fn valid_tag(t: &str) -> bool {
    (1..=MAX_VALUE_LEN).contains(&t.len()) && !t.chars().any(char::is_control)
}

fn push_encoded(out: &mut String, v: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in v.bytes().take(MAX_VALUE_LEN) {
        if b.is_ascii_graphic() && !b"%=,".contains(&b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
    }
}

fn decode_value(v: &str) -> Option<String> {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = b.get(i + 1..i + 3)?;
            let hex = core::str::from_utf8(h).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
        if out.len() > MAX_VALUE_LEN {
            return None;
        }
    }
    String::from_utf8(out).ok()
}

impl Facts {
    /// Append the `facts …` line (with its newline) to `out`.
    pub fn encode_line(&self, out: &mut String) {
        out.push_str(KIND);
        for (k, v) in [
            (" host=", &self.host),
            (" os=", &self.os),
            (" os_version=", &self.os_version),
            (" arch=", &self.arch),
            (" agent=", &self.agent),
        ] {
            out.push_str(k);
            push_encoded(out, v);
        }
        if let Some(free) = self.free {
            out.push_str(" free=");
            out.push_str(itoa(free, &mut [0; 20]));
        }
        out.push_str(" tags=");
        for (i, t) in self.tags.iter().take(MAX_TAGS).enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_encoded(out, t);
        }
        out.push('\n');
    }

    /// The facts of a poll request (`None` without a `facts` line). A line
    /// with a bad escape, a value over [`MAX_VALUE_LEN`] bytes or more than
    /// [`MAX_TAGS`] tags is refused. Unknown keys are ignored.
    pub fn from_poll(body: &[u8]) -> Option<Result<Self, BadFacts>> {
        let text = core::str::from_utf8(body).ok()?;
        let line = text.lines().find_map(|l| l.strip_prefix(KIND).filter(|r| r.starts_with(' ')))?;
        Some(Self::decode(line))
    }

    /// Decode the fields of a `facts` line (without its kind).
    pub fn decode(fields: &str) -> Result<Self, BadFacts> {
        let mut f = Self::default();
        for w in fields.split_ascii_whitespace() {
            let (k, v) = w.split_once('=').unwrap_or((w, ""));
            let slot = match k {
                "host" => &mut f.host,
                "os" => &mut f.os,
                "os_version" => &mut f.os_version,
                "arch" => &mut f.arch,
                "agent" => &mut f.agent,
                "free" => {
                    f.free = Some(v.parse().map_err(|_| BadFacts("free"))?);
                    continue;
                }
                "tags" => {
                    for t in v.split(',').filter(|t| !t.is_empty()) {
                        if f.tags.len() == MAX_TAGS {
                            return Err(BadFacts("tags"));
                        }
                        f.tags.push(decode_value(t).filter(|t| valid_tag(t)).ok_or(BadFacts("tags"))?);
                    }
                    continue;
                }
                _ => continue,
            };
            *slot = decode_value(v).ok_or(BadFacts("value"))?;
        }
        Ok(f)
    }
}

/// A `facts` line that breaks a bound or has a bad escape; names the field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadFacts(pub &'static str);

impl core::fmt::Display for BadFacts {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("bad facts field ")?;
        f.write_str(self.0)
    }
}

/// `n` in decimal, without `format!`.
fn itoa(mut n: u64, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    core::str::from_utf8(&buf[i..]).unwrap_or("0")
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn sample() -> Facts {
        Facts {
            host: "pc 3".into(),
            os: "linux".into(),
            os_version: "6.1.0-18-amd64".into(),
            arch: "x86_64".into(),
            agent: "0.1.0".into(),
            free: Some(1_234_567),
            tags: alloc::vec!["site:lyon".into(), "kiosk".into(), "a,b=c%".into(), "é".into()],
        }
    }

    #[test]
    fn facts_round_trip_through_a_poll_body() {
        let mut body = String::from("outpost 1\nagent 0.1.0\n");
        sample().encode_line(&mut body);
        assert!(body.contains("host=pc%203 "), "{body}");
        assert!(body.contains("tags=site:lyon,kiosk,a%2Cb%3Dc%25,%C3%A9\n"), "{body}");
        assert_eq!(Facts::from_poll(body.as_bytes()), Some(Ok(sample())));
        assert_eq!(Facts::from_poll(b"outpost 1\nagent 0.1.0\n"), None, "an older agent sends none");
        let bare = Facts { free: None, tags: alloc::vec![], ..sample() };
        let mut line = String::new();
        bare.encode_line(&mut line);
        assert_eq!(Facts::from_poll(line.as_bytes()), Some(Ok(bare)));
    }

    #[test]
    fn bad_facts_lines_are_refused() {
        for bad in ["free=-1", "host=%4", "host=%zz", "tags=%00", "os=%FF"] {
            assert!(Facts::decode(bad).is_err(), "{bad}");
        }
        let long = "x".repeat(MAX_VALUE_LEN + 1);
        assert_eq!(Facts::decode(&(String::from("host=") + &long)), Err(BadFacts("value")));
        let many: Vec<String> = (0..=MAX_TAGS).map(|i| i.to_string()).collect();
        assert_eq!(Facts::decode(&(String::from("tags=") + &many.join(","))), Err(BadFacts("tags")));
        assert_eq!(Facts::decode("future=1 host=a").unwrap().host, "a");
    }
}
