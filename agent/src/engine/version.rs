//! No rollback: package versions, and the highest version of each package
//! name this endpoint has run.
//!
//! `package add --name NAME --version VERSION` ties packages into a line of
//! versions; the signed manifest carries both ([`crate::engine::manifest::Release`]).
//! A version is dotted numbers (`3`, `1.10`, `2.0.7`) compared part by part
//! as numbers, missing parts counting as 0: `1.10 > 1.9`, `1.0 == 1`.
//!
//! ```text
//!  manifest.release ─► Versions::admit ─► ok ─► … ─► Versions::note ─► the action runs
//!                                      └► Err(installed): ERR_DOWNGRADE, nothing fetched or run
//! ```
//!
//! A version counts from the moment its action starts (`note` is written
//! durably before it), whatever the action's outcome: an action that failed
//! or was cut by a crash may have changed the endpoint all the same, so going
//! back needs a manifest signed as an intended downgrade. Packages without a
//! name (built before names, OCS packages) are not subject to the rule.

use alloc::string::String;
use alloc::vec::Vec;
use core::cmp::Ordering;
use core::fmt;

use serde::{Deserialize, Serialize};

use super::limits::{MAX_VERSION_LINES, MAX_VERSION_PARTS};
use super::manifest::Release;

/// A package version: 1 to [`MAX_VERSION_PARTS`] dotted numbers (`u32` each).
///
/// Ordered numerically, part by part, a missing part counting as 0; `==`
/// agrees with that order (`1.0 == 1`), while `Display` keeps the parts given.
/// On the wire (manifest, state directory) it is the sequence of numbers.
#[derive(Clone, Copy, Serialize, Deserialize)]
#[serde(try_from = "Vec<u32>", into = "Vec<u32>")]
pub struct Version {
    /// The parts given, then zeros: comparing whole arrays pads the shorter.
    parts: [u32; MAX_VERSION_PARTS],
    /// How many parts were given (1 to [`MAX_VERSION_PARTS`]).
    len: u8,
}

/// Why a version was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionError {
    /// Empty, or an empty part (`1..2`, `1.`).
    Empty,
    /// A part that is not decimal digits.
    NotANumber,
    /// A part with a leading zero (`1.01`): ambiguous, so refused.
    LeadingZero,
    /// A part above `u32::MAX`.
    TooLarge,
    /// More than [`MAX_VERSION_PARTS`] parts.
    TooManyParts,
}

impl fmt::Display for VersionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("a version is dotted numbers such as 1.10.2, with no empty part"),
            Self::NotANumber => f.write_str("a version part is not a decimal number"),
            Self::LeadingZero => f.write_str("a version part has a leading zero"),
            Self::TooLarge => write!(f, "a version part is above {}", u32::MAX),
            Self::TooManyParts => write!(f, "a version has at most {MAX_VERSION_PARTS} parts"),
        }
    }
}

impl core::error::Error for VersionError {}

impl Version {
    /// Parse dotted numbers (`1.10.2`).
    pub fn parse(s: &str) -> Result<Self, VersionError> {
        let mut parts = Vec::new();
        for p in s.split('.') {
            if p.is_empty() {
                return Err(VersionError::Empty);
            }
            if !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(VersionError::NotANumber);
            }
            if p.len() > 1 && p.starts_with('0') {
                return Err(VersionError::LeadingZero);
            }
            parts.push(p.parse().map_err(|_| VersionError::TooLarge)?);
        }
        Self::try_from(parts)
    }

    /// The parts, as given.
    pub fn parts(&self) -> &[u32] {
        &self.parts[..usize::from(self.len)]
    }
}

impl TryFrom<Vec<u32>> for Version {
    type Error = VersionError;
    fn try_from(v: Vec<u32>) -> Result<Self, VersionError> {
        if v.is_empty() {
            return Err(VersionError::Empty);
        }
        if v.len() > MAX_VERSION_PARTS {
            return Err(VersionError::TooManyParts);
        }
        let mut parts = [0; MAX_VERSION_PARTS];
        parts[..v.len()].copy_from_slice(&v);
        Ok(Self { parts, len: v.len() as u8 })
    }
}

impl From<Version> for Vec<u32> {
    fn from(v: Version) -> Self {
        v.parts().to_vec()
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        // Unused parts are 0 in the array: comparing whole arrays pads both.
        self.parts.cmp(&other.parts)
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.parts().iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Version({self})")
    }
}

/// One package name and the version of it that ran last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// The package name (`package add --name`).
    pub name: String,
    /// Its version whose action started last.
    pub version: Version,
}

/// The version of each package name whose action started last on this
/// endpoint (`STATE/versions`), at most [`MAX_VERSION_LINES`] names, the
/// least recently run first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versions {
    /// The lines, least recently run first.
    pub lines: Vec<Line>,
}

impl Versions {
    /// The version of `name` that ran last, if any.
    pub fn get(&self, name: &str) -> Option<Version> {
        self.lines.iter().find(|l| l.name == name).map(|l| l.version)
    }

    /// Whether a package of `release` may run here: `Err(installed)` when a
    /// higher version of its name has run and its signed manifest does not
    /// say that a downgrade is intended. The same version again is no
    /// downgrade (`assign --force`).
    pub fn admit(&self, release: &Release) -> Result<(), Version> {
        match self.get(&release.name) {
            Some(have) if release.version < have && !release.downgrade => Err(have),
            _ => Ok(()),
        }
    }

    /// Note that `release`'s action starts: its version becomes its name's
    /// (lowering it only for an intended downgrade). Past
    /// [`MAX_VERSION_LINES`] names, the least recently run is forgotten.
    pub fn note(&mut self, release: &Release) {
        let mut version = release.version;
        if let Some(i) = self.lines.iter().position(|l| l.name == release.name) {
            let old = self.lines.remove(i);
            if old.version > version && !release.downgrade {
                version = old.version;
            }
        } else if self.lines.len() >= MAX_VERSION_LINES {
            self.lines.remove(0);
        }
        self.lines.push(Line { name: release.name.clone(), version });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    fn rel(name: &str, version: &str, downgrade: bool) -> Release {
        Release { name: name.into(), version: v(version), downgrade }
    }

    #[test]
    fn versions_compare_as_numbers_part_by_part() {
        assert!(v("1.10") > v("1.9"));
        assert!(v("2") > v("1.999.999"));
        assert!(v("1.0.1") > v("1"));
        assert!(v("0.9") < v("1"));
        assert_eq!(v("1.0"), v("1"));
        assert_eq!(v("1.0.0").cmp(&v("1")), Ordering::Equal);
        assert!(v("4294967295") > v("4294967294.9"));
        assert_eq!(v("1.10.0").to_string(), "1.10.0", "shown as given");
        assert_eq!(v("1.2.3.4.5.6.7.8").parts().len(), 8);
    }

    #[test]
    fn bad_versions_are_refused() {
        for (s, e) in [
            ("", VersionError::Empty),
            ("1.", VersionError::Empty),
            (".1", VersionError::Empty),
            ("1..2", VersionError::Empty),
            ("1.a", VersionError::NotANumber),
            ("v1", VersionError::NotANumber),
            ("-1", VersionError::NotANumber),
            ("+1", VersionError::NotANumber),
            (" 1", VersionError::NotANumber),
            ("1.2-rc1", VersionError::NotANumber),
            ("1.٣", VersionError::NotANumber),
            ("01", VersionError::LeadingZero),
            ("1.00", VersionError::LeadingZero),
            ("4294967296", VersionError::TooLarge),
            ("99999999999999999999999", VersionError::TooLarge),
            ("1.2.3.4.5.6.7.8.9", VersionError::TooManyParts),
        ] {
            assert_eq!(Version::parse(s), Err(e), "{s:?}");
        }
        assert_eq!(v("0.0").to_string(), "0.0");
    }

    #[test]
    fn versions_round_trip_as_numbers_and_bad_ones_do_not_decode() {
        let b = postcard::to_allocvec(&v("1.10.2")).unwrap();
        assert_eq!(b, [3, 1, 10, 2]);
        assert_eq!(postcard::from_bytes::<Version>(&b).unwrap().to_string(), "1.10.2");
        assert!(postcard::from_bytes::<Version>(&[0]).is_err(), "no part");
        assert!(postcard::from_bytes::<Version>(&[9, 1, 1, 1, 1, 1, 1, 1, 1, 1]).is_err(), "nine parts");
    }

    #[test]
    fn an_older_version_is_refused_unless_a_downgrade_is_signed() {
        let mut h = Versions::default();
        assert_eq!(h.admit(&rel("app", "1", false)), Ok(()), "nothing ran yet");
        h.note(&rel("app", "2.0", false));
        assert_eq!(h.admit(&rel("app", "1.9", false)), Err(v("2")));
        assert_eq!(h.admit(&rel("app", "2", false)), Ok(()), "the same version again");
        assert_eq!(h.admit(&rel("app", "2.0.1", false)), Ok(()));
        assert_eq!(h.admit(&rel("other", "1", false)), Ok(()), "another name");
        assert_eq!(h.admit(&rel("app", "1.9", true)), Ok(()), "a signed downgrade");
        // An intended downgrade lowers the line; a plain older note never does.
        h.note(&rel("app", "1.9", true));
        assert_eq!(h.get("app"), Some(v("1.9")));
        h.note(&rel("app", "1.5", false));
        assert_eq!(h.get("app"), Some(v("1.9")));
        assert_eq!(h.admit(&rel("app", "2", false)), Ok(()), "upgrading again");
    }

    #[test]
    fn the_lines_are_bounded_forgetting_the_least_recently_run() {
        let mut h = Versions::default();
        for i in 0..MAX_VERSION_LINES {
            h.note(&rel(&alloc::format!("p{i}"), "2", false));
        }
        h.note(&rel("p0", "3", false)); // p0 is now the most recent
        h.note(&rel("new", "1", false));
        assert_eq!(h.lines.len(), MAX_VERSION_LINES);
        assert_eq!(h.get("p1"), None, "the least recently run is forgotten");
        assert_eq!(h.get("p0"), Some(v("3")));
        assert_eq!(h.get("new"), Some(v("1")));
        // Full of the longest names and versions, the record still fits.
        let long = "n".repeat(super::super::limits::MAX_PACKAGE_NAME_LEN);
        let mut h = Versions::default();
        for i in 0..MAX_VERSION_LINES {
            let name = alloc::format!("{i:05}{}", &long[5..]);
            h.note(&Release {
                name,
                version: v("4294967295.4294967295.4294967295.4294967295.4294967295.4294967295.4294967295.4294967295"),
                downgrade: false,
            });
        }
        let rec = super::super::journal::encode(super::super::journal::kind::VERSIONS, &h).unwrap();
        assert_eq!(super::super::journal::decode::<Versions>(super::super::journal::kind::VERSIONS, &rec).unwrap(), h);
    }
}
