//! What fleet management reads from outside: a device's `facts` line (a
//! poll body), an OCS agent's INVENTORY (facts), and `--where` filters.
//! The first byte picks which. Nothing panics; a facts line that decodes
//! is encoded into one that decodes to the same facts; a filter error
//! points inside the input, and a filter that parses evaluates.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outpost_agent::engine::facts::Facts;
use outpost_server::fleet::contact::ocs_inventory_facts;
use outpost_server::fleet::expr::{Expr, Subject};

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    match which % 3 {
        0 => {
            if let Some(Ok(f)) = Facts::from_poll(rest) {
                let mut line = String::new();
                f.encode_line(&mut line);
                assert_eq!(Facts::from_poll(line.as_bytes()), Some(Ok(f)), "{line}");
            }
        }
        1 => {
            if let Ok(xml) = std::str::from_utf8(rest) {
                let _ = ocs_inventory_facts(xml, Some("OCS-NG_unified_unix_agent_v2.10.0"));
            }
        }
        _ => {
            let Ok(s) = std::str::from_utf8(rest) else { return };
            match Expr::parse(s) {
                Ok(e) => {
                    let tags = ["a".to_string()];
                    let d = Subject {
                        id: "pc",
                        os: "linux",
                        free: Some(1),
                        age: Some(5),
                        tags: &tags,
                        ..Default::default()
                    };
                    let _ = e.matches(&d);
                }
                Err(e) => assert!(e.at <= s.len().max(outpost_server::fleet::expr::MAX_LEN), "{e}"),
            }
        }
    }
});
