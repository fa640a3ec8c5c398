//! Real-world info files (`fixtures/info/`), each with the outcome the agent
//! must reach, listed in `fixtures/info/outcomes.txt`.

use std::path::Path;

use outpost_agent::engine::digest::{ArchiveHasher, info_digest_matches};
use outpost_agent::engine::info::{Action, Info};
use outpost_agent::engine::status::StatusCode;

fn dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/info"))
}

/// What the agent concludes from an info file and the archive `payload`.
fn outcome(bytes: &[u8], payload: &[u8]) -> String {
    let Ok(info) = Info::parse(bytes) else { return StatusCode::ErrBadParam.to_string() };
    if info.frags == 0 {
        return "NO_DIGEST".into();
    }
    let mut h = ArchiveHasher::new(info.digest_algo);
    h.update(payload);
    let (_, digest) = h.finish();
    if info_digest_matches(&info, &digest) { "SUCCESS".into() } else { StatusCode::ErrBadDigest.to_string() }
}

#[test]
fn every_fixture_reaches_its_listed_outcome() {
    let payload = std::fs::read(dir().join("payload.bin")).unwrap();
    let table = std::fs::read_to_string(dir().join("outcomes.txt")).unwrap();
    let mut checked = 0;
    for line in table.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
        let mut w = line.split_whitespace();
        let (file, want) = (w.next().unwrap(), w.next().unwrap());
        let bytes = std::fs::read(dir().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(outcome(&bytes, &payload), want, "{file}");
        checked += 1;
    }
    let on_disk = std::fs::read_dir(dir())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "info"))
        .count();
    assert_eq!(checked, on_disk + 1, "every fixture is listed (plus the ocsreports one)");
}

#[test]
fn values_are_what_stands_between_the_quotes() {
    let read = |f: &str| Info::parse(&std::fs::read(dir().join(f)).unwrap()).unwrap();
    assert_eq!(read("md5-hexa-unescaped-ampersand.info").target, "apt-get update && apt-get install -y foo");
    assert_eq!(read("md5-hexa-unescaped-redirects.info").target, "sh setup.sh < answers.txt > log.txt 2>&1");
    assert_eq!(read("md5-hexa-escaped-legacy.info").target, "a && b < c");
    let launch = read("sha1-hexa.info");
    assert_eq!((launch.action, launch.target.as_str()), (Action::Launch, "my-setup.sh --quiet"));
    assert_eq!(read("md5-base64-unpadded.info").target, "/opt/data");
    let cmd = read("frags0-command-only.info");
    assert_eq!((cmd.frags, cmd.digest.as_str()), (0, ""));
}
