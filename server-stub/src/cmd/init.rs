//! `init`: create a server directory.

use std::fmt;
use std::fs;
use std::os::unix::fs::PermissionsExt;

use outpost_agent::engine::proto::valid_location;
use outpost_server::config::{Agents, Listen, Public, ServerConfig};
use outpost_server::pki;
use outpost_server::servercert::{self, Ca};
use outpost_server::time::unix_now;

use super::open_db;
use crate::cli::InitArgs;

/// A listen address without a `:PORT` that parses as a port number.
#[derive(Debug)]
pub struct NotHostPort(String);

impl fmt::Display for NotHostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not HOST:PORT", self.0)
    }
}

impl std::error::Error for NotHostPort {}

impl From<NotHostPort> for String {
    fn from(e: NotHostPort) -> Self {
        e.to_string()
    }
}

fn host_of(addr: &str) -> String {
    let h = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    h.trim_start_matches('[').trim_end_matches(']').to_string()
}

fn url_host(h: &str) -> String {
    if h.contains(':') { format!("[{h}]") } else { h.to_string() }
}

fn port_of(addr: &str) -> Result<u16, NotHostPort> {
    addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).ok_or_else(|| NotHostPort(addr.to_string()))
}

/// Creates the CA (or takes an existing one), TLS certificate, signing key, database and server.toml in `a.dir`.
pub fn run(a: InitArgs) -> Result<(), String> {
    let InitArgs {
        dir,
        https,
        http,
        san: sans,
        fragment_loc,
        ca_cert,
        ca_key,
        ca_chain,
        cert_days,
        download_dir,
        database,
    } = a;
    for a in [&https, &http] {
        port_of(a)?;
    }
    let database = outpost_server::config::Database { url: database, connections: None };
    if let Some(url) = &database.url {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(format!("--database {:?} is not a postgres:// URL", outpost_server::db::redact(url)));
        }
        // Reached, and its tables made, before anything is written here.
        outpost_server::db::Db::open_postgres(url)
            .map_err(|e| format!("database {}: {e}", outpost_server::db::redact(url)))?;
    }
    let taken = ["server.toml", "tls/ca-key.pem", "tls/server-key.pem", "keys/signing.pk8", "state.db"];
    if let Some(t) = taken.iter().find(|t| dir.join(t).exists()) {
        return Err(format!("{} already holds a server ({t} exists); refusing to overwrite its keys", dir.display()));
    }
    let sans = if sans.is_empty() { vec![host_of(&https)] } else { sans };
    let public_host = url_host(&sans[0]);
    let https_port = port_of(&https)?;
    let http_host = match host_of(&http).as_str() {
        "0.0.0.0" | "::" => public_host.clone(),
        h => url_host(h),
    };
    let fragment_loc = fragment_loc.unwrap_or_else(|| format!("{http_host}:{}/download", port_of(&http).unwrap_or(80)));
    if !valid_location(&fragment_loc) {
        return Err(format!("--fragment-loc {fragment_loc:?} must be HOST[:PORT]/PATH without a scheme"));
    }
    let names = servercert::parse_sans(&sans)?;
    let now = unix_now();
    // An existing CA is checked, and a certificate issued from it checked
    // against what agents will trust, before anything is written.
    let imported = match (ca_cert, ca_key) {
        (Some(cert), Some(key)) => {
            let ca = Ca::from_files(&cert, &key, ca_chain.as_deref(), now).map_err(|e| e.to_string())?;
            let issued = servercert::issue(&ca, &names, u64::from(cert_days) * 86_400, now)?;
            Some((ca, issued))
        }
        _ => None,
    };
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(|e| e.to_string())?;
    let server = outpost_server::downloads::Section { download_dir };
    let download = server.download_dir(&dir);
    outpost_server::downloads::create(&download).map_err(|e| format!("cannot create {}: {e}", download.display()))?;
    match imported {
        Some((ca, issued)) => {
            ca.write(&dir)?;
            servercert::install(&dir, &issued)?;
        }
        None => {
            pki::create_ca(&dir)?;
            let ca = Ca::load(&dir, now).map_err(|e| e.to_string())?;
            servercert::create(&dir, &ca, &names, cert_days, now)?;
        }
    }
    pki::create_signing_key(&dir)?;
    if database.url.is_none() {
        open_db(&dir)?;
    }
    let cfg = ServerConfig {
        listen: Listen { https, http },
        public: Public {
            server_url: format!("https://{public_host}:{https_port}"),
            info_loc: format!("{public_host}:{https_port}/download"),
            fragment_loc,
        },
        agents: Agents::default(),
        ocs: Default::default(),
        security: Default::default(),
        limits: Default::default(),
        server,
        database,
    };
    pki::write_private(&dir.join("server.toml"), cfg.to_toml().as_bytes())
        .map_err(|e| format!("cannot write server.toml: {e}"))?;
    let agents_ca = if dir.join(servercert::CA_CHAIN).exists() { servercert::CA_CHAIN } else { servercert::CA_CERT };
    println!(
        "initialised {}: agents trust {}, control API {}",
        dir.display(),
        dir.join(agents_ca).display(),
        cfg.public.server_url
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(host_of("[::1]:8443"), "::1");
        assert_eq!(host_of("example.org:80"), "example.org");
        assert_eq!(url_host("::1"), "[::1]");
        assert_eq!(url_host("10.0.0.1"), "10.0.0.1");
        assert_eq!(port_of("[::1]:8443").unwrap(), 8443);
        assert_eq!(port_of("foo").unwrap_err().to_string(), "\"foo\" is not HOST:PORT");
    }
}
