//! `tls`: show the server certificate; issue it again for other names
//! (`--add-san`, `--remove-san`) or as it is (`tls renew`). Issuing needs
//! the CA key; the new pair replaces the old atomically, and a running
//! `serve` picks it up within [`live::TICK`].

use std::path::Path;

use outpost_server::servercert::{self, CA_KEY, CERT, Leaf, San, due, live};
use outpost_server::time::{rfc3339, unix_now};

use crate::cli::{TlsArgs, TlsCmd};

/// Runs `tls`.
pub fn run(a: TlsArgs) -> Result<(), String> {
    let (dir, sans, days) = match a.cmd {
        Some(TlsCmd::Renew { dir, days }) => (dir, None, days),
        None => {
            let dir = a.dir.ok_or("--dir is required")?;
            if a.add_san.is_empty() && a.remove_san.is_empty() {
                return show(&dir);
            }
            (dir, Some((a.add_san, a.remove_san)), None)
        }
    };
    let edit = |mut names: Vec<San>| -> Result<Vec<San>, String> {
        let Some((add, remove)) = sans else { return Ok(names) };
        for n in &remove {
            let s = San::parse(n)?;
            if !names.contains(&s) {
                return Err(format!("{s} is not a name of the server certificate (it has: {})", list(&names)));
            }
            names.retain(|x| *x != s);
        }
        for n in &add {
            let s = San::parse(n)?;
            if !names.contains(&s) {
                names.push(s);
            }
        }
        if names.is_empty() {
            return Err("that would leave the server certificate without a name".into());
        }
        Ok(names)
    };
    let issued = servercert::reissue(&dir, edit, days, unix_now())?;
    println!(
        "issued the server certificate for {}, valid until {}; a running serve uses it within {} s",
        list(&issued.leaf.sans),
        rfc3339(issued.leaf.not_after),
        live::TICK.as_secs()
    );
    Ok(())
}

fn list(names: &[San]) -> String {
    names.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// Print what the server certificate says, and when it is renewed.
fn show(dir: &Path) -> Result<(), String> {
    let (certs, _) = {
        let _lock = servercert::lock(dir, false)?;
        servercert::read_pair(dir)?
    };
    let leaf = Leaf::read(&certs[0]).map_err(|e| format!("{CERT}: {e}"))?;
    let now = unix_now();
    let renewal = match due::plan(leaf.not_before, leaf.not_after, now) {
        due::Plan::Keep { until } => format!("from {}", rfc3339(until)),
        due::Plan::Renew { left: 0 } => "overdue: it has expired".to_string(),
        due::Plan::Renew { .. } => "due now".to_string(),
    };
    let key = if dir.join(CA_KEY).exists() { "here (serve renews the certificate)" } else { "offline" };
    println!("names:       {}", list(&leaf.sans));
    println!("issuer:      {}", leaf.issuer);
    println!("valid:       {} to {}", rfc3339(leaf.not_before), rfc3339(leaf.not_after));
    println!("renewal:     {renewal}");
    println!("sent chain:  {} certificate(s)", certs.len());
    println!("CA key:      {CA_KEY} {key}");
    Ok(())
}
