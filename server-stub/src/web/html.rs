//! HTML building blocks for the status page: escaping (every value that
//! reaches a page goes through [`esc`]), the page frame (readable on a
//! phone, no script), and the small decoders the routes need: form bodies,
//! cookies and path segments.

use std::fmt::Write as _;

use crate::http::Response;

/// `s` with `& < > " '` escaped: safe in element text and quoted attributes.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// `s` percent-encoded for a path segment (everything but `A-Za-z0-9._-`).
pub fn seg(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"._-".contains(&b) {
            o.push(char::from(b));
        } else {
            let _ = write!(o, "%{b:02X}");
        }
    }
    o
}

/// Percent-decode `s` (`+` as a space with `plus`); `None` if not UTF-8 or
/// a `%` is not followed by two hex digits.
pub fn unpercent(s: &str, plus: bool) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let h = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 3;
            }
            b'+' if plus => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The value of `name` in an `application/x-www-form-urlencoded` body.
pub fn form_value(body: &[u8], name: &str) -> Option<String> {
    let body = std::str::from_utf8(body).ok()?;
    body.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (unpercent(k, true)? == name).then(|| unpercent(v, true)).flatten()
    })
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: Option<&'a str>, name: &str) -> Option<&'a str> {
    header?.split(';').find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0 auto;max-width:64em;padding:0 .8em;color:#222}\
header{display:flex;flex-wrap:wrap;gap:.4em 1.2em;align-items:center;border-bottom:1px solid #ccc;padding:.6em 0}\
header a{text-decoration:none}h1{font-size:1.3em}h1.brand{font-size:1.1em;margin:0}\
.scroll{overflow-x:auto}table{border-collapse:collapse;width:100%;margin:.6em 0}\
th,td{text-align:left;padding:.35em .5em;border-bottom:1px solid #e4e4e4;white-space:nowrap}\
td.n,th.n{text-align:right}.ok{color:#17692b}.err{color:#a4161a}.wait{color:#7a5c00}\
progress{width:7em;vertical-align:middle}form.inline{display:inline;margin:0}\
label{display:block;margin:.6em 0}input{font-size:1em;padding:.3em;max-width:100%}\
button{font-size:1em;padding:.3em .8em}.msg{background:#fde2e1;padding:.5em;border-radius:.2em}\
@media (max-width:40em){thead{display:none}table,tbody,tr,td{display:block}tr{border-bottom:1px solid #ccc;\
padding:.4em 0}td,td.n{border:0;padding:.1em .3em;white-space:normal;text-align:left}\
td[data-l]::before{content:attr(data-l) \": \";color:#666}td.n{display:inline-block;margin-right:.5em}}";

/// A whole page: `title`, the navigation (with a logout button) when
/// `nav`, and `body` (already escaped HTML).
pub fn page(status: u16, title: &str, nav: bool, body: &str) -> Response {
    let mut o = String::with_capacity(body.len() + 2048);
    o.push_str("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">");
    o.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    let _ = write!(o, "<title>{} · Outpost</title><style>{STYLE}</style></head><body>", esc(title));
    o.push_str("<header><h1 class=\"brand\">Outpost</h1>");
    if nav {
        o.push_str("<a href=\"/admin/\">Packages</a><a href=\"/admin/fleet\">Groups and rollouts</a><a href=\"/admin/blocked\">Blocked addresses</a>");
        o.push_str("<form class=\"inline\" method=\"post\" action=\"/admin/logout\"><button>Log out</button></form>");
    }
    o.push_str("</header><main>");
    o.push_str(body);
    o.push_str("</main></body></html>");
    let mut r = Response::text(status, o);
    r.headers = vec![("Content-Type", "text/html; charset=utf-8".into())];
    secure_headers(&mut r);
    r
}

/// Headers every administrative answer carries: no caching, no framing,
/// no script, forms only to this server.
pub fn secure_headers(r: &mut Response) {
    r.headers.push((
        "Content-Security-Policy",
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
            .into(),
    ));
    r.headers.push(("Cache-Control", "no-store".into()));
    r.headers.push(("X-Content-Type-Options", "nosniff".into()));
    r.headers.push(("Referrer-Policy", "same-origin".into()));
}

/// `303 See Other` to `to`.
pub fn redirect(to: &str) -> Response {
    let mut r = Response::text(303, "see other\n");
    r.headers.push(("Location", to.to_string()));
    secure_headers(&mut r);
    r
}

/// A byte count for people: `512 B`, `1.5 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_no_markup() {
        assert_eq!(esc("<script>alert('x&\"')</script>"), "&lt;script&gt;alert(&#39;x&amp;&quot;&#39;)&lt;/script&gt;");
        assert_eq!(seg("a b/<c>"), "a%20b%2F%3Cc%3E");
        assert_eq!(unpercent(&seg("a b/<c>é"), false).as_deref(), Some("a b/<c>é"));
        assert_eq!(unpercent("%zz", false), None);
        assert_eq!(unpercent("%4", false), None);
    }

    #[test]
    fn forms_and_cookies_decode() {
        let body = b"user=root&password=a%26b+c&x=";
        assert_eq!(form_value(body, "user").as_deref(), Some("root"));
        assert_eq!(form_value(body, "password").as_deref(), Some("a&b c"));
        assert_eq!(form_value(body, "y"), None);
        assert_eq!(cookie(Some("a=1; outpost_admin=xyz; b=2"), "outpost_admin"), Some("xyz"));
        assert_eq!(cookie(Some("a=1"), "outpost_admin"), None);
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(10), "10 B");
    }
}
