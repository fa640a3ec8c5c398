//! `http://` and `https://` URLs: the only text about a server that reaches
//! the client, checked once here (no spaces or controls in the path, a
//! numeric port, a host).

use super::Error;

/// A parsed `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// TLS or not.
    pub tls: bool,
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Url {
    /// Parse an absolute http(s) URL.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let (tls, rest) = if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(Error::BadUrl(s.to_string()));
        };
        let (auth, path) = rest.find('/').map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = if let Some(h) = auth.strip_prefix('[') {
            let (h, p) = h.split_once(']').ok_or_else(|| Error::BadUrl(s.to_string()))?;
            (h, p.strip_prefix(':'))
        } else {
            match auth.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (auth, None),
            }
        };
        let port = match port {
            Some(p) => p.parse().map_err(|_| Error::BadUrl(s.to_string()))?,
            None => default_port,
        };
        if host.is_empty() || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(Error::BadUrl(s.to_string()));
        }
        Ok(Self { tls, host: host.to_string(), port, path: path.to_string() })
    }

    /// `scheme://loc/suffix` for a scheme-less OCS location.
    pub fn from_location(tls: bool, loc: &str, suffix: &str) -> Result<Self, Error> {
        let scheme = if tls { "https" } else { "http" };
        Self::parse(&format!("{scheme}://{}/{}", loc.trim_end_matches('/'), suffix.trim_start_matches('/')))
    }

    /// The `Host` header's value: the port only when it is not the default.
    pub(super) fn host_header(&self) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        if self.port == if self.tls { 443 } else { 80 } { host } else { format!("{host}:{}", self.port) }
    }

    /// `scheme://host:port`: which connections may serve this URL.
    pub(super) fn origin(&self) -> String {
        format!("{}://{}:{}", if self.tls { "https" } else { "http" }, self.host, self.port)
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}{}", if self.tls { "https" } else { "http" }, self.host_header(), self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = Url::parse("https://127.0.0.1:8443/api/v1/poll").unwrap();
        assert_eq!((u.tls, u.host.as_str(), u.port, u.path.as_str()), (true, "127.0.0.1", 8443, "/api/v1/poll"));
        let u = Url::from_location(false, "cdn.example/download/", "/17/17-1").unwrap();
        assert_eq!(u.to_string(), "http://cdn.example/download/17/17-1");
        assert_eq!(Url::parse("http://[::1]:80/x").unwrap().host, "::1");
        assert!(Url::parse("ftp://x/").is_err());
        assert!(Url::parse("http://h:99999/").is_err());
        assert!(Url::parse("http://h/a b").is_err());
    }
}
