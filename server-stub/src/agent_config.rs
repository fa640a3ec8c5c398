//! The agent configuration `device add` writes: a value of the agent's own
//! type ([`outpost_agent::engine::config::Config`]), serialised to TOML, so
//! the server cannot write a file the agent would read differently.

use outpost_agent::engine::config::{Agent, Config, Server};

/// What the server knows about a new device, as the agent's configuration:
/// keys the agent needs, everything else left at the agent's defaults. No
/// client certificate yet: `device add` sets `client_cert` and `client_key`
/// when it issues one.
pub fn for_device(
    server_url: &str,
    id: &str,
    secret: &str,
    signing_key: &str,
    ca_pem: &str,
    state_dir: &str,
) -> Config {
    Config {
        server: Server {
            protocol: Default::default(),
            url: server_url.into(),
            device_id: id.into(),
            secret: secret.into(),
            signing_key: signing_key.into(),
            require_signed: false,
            ca_cert: format!("{}\n", ca_pem.trim_end()),
            client_cert: String::new(),
            client_key: String::new(),
        },
        agent: Agent::new(state_dir.into()),
        download: Default::default(),
    }
}

/// The file's text: a comment naming the device, then the TOML of `cfg`
/// (keys at their defaults left out).
pub fn render(cfg: &Config) -> Result<String, String> {
    let body = toml::to_string(cfg).map_err(|e| format!("cannot serialise the agent configuration: {e}"))?;
    Ok(format!(
        "# outpost-agent configuration for device {}, written by outpost-server device add.\n\
         # Keep it private: it holds the device's secret (and its client certificate's key).\n\n{body}",
        cfg.server.device_id
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_keys_the_agent_needs_and_reads_back_the_same() {
        let pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n\n";
        let c = for_device("https://h:8443", "pc-1", "s\"'x", &"0".repeat(64), pem, "/var/lib/outpost agent");
        let text = render(&c).unwrap();
        assert!(text.starts_with("# outpost-agent configuration for device pc-1"), "{text}");
        for key in ["url", "device_id", "secret", "signing_key", "ca_cert", "state_dir"] {
            assert!(text.contains(&format!("\n{key} = ")), "{key} missing from\n{text}");
        }
        assert!(!text.contains("[download]") && !text.contains("execution_timeout"), "defaults left out:\n{text}");
        let back: Config = toml::from_str(&text).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.server.ca_cert, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    }
}
