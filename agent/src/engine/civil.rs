//! Calendar dates from Unix time (UTC), without a date library.

/// `[year, month, day, hour, minute, second]` (UTC) of a Unix time.
pub fn civil(secs: u64) -> [u32; 6] {
    let days = (secs / 86_400) as i64;
    let rem = (secs % 86_400) as u32;
    // Days since the epoch to a proleptic Gregorian date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = (yoe + era * 400 + i64::from(m <= 2)) as u32;
    [y, m, d, rem / 3600, rem / 60 % 60, rem % 60]
}

/// The Unix time of `[year, month, day, hour, minute, second]` (UTC), the
/// inverse of [`civil`]; `None` for a field out of its range or a date
/// before 1970.
pub fn unix(t: [u32; 6]) -> Option<u64> {
    let [y, m, d, hh, mm, ss] = t;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // H. Hinnant's days_from_civil.
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from(if m > 2 { m - 3 } else { m + 9 });
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + i64::from(hh * 3600 + mm * 60 + ss);
    u64::try_from(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(civil(0), [1970, 1, 1, 0, 0, 0]);
        assert_eq!(civil(951_782_400), [2000, 2, 29, 0, 0, 0]);
        assert_eq!(civil(1_795_457_331), [2026, 11, 23, 18, 8, 51]);
    }

    #[test]
    fn unix_is_the_inverse_of_civil() {
        for t in [0, 951_782_400, 1_795_457_331, 4_949_819_825, 253_402_300_799] {
            assert_eq!(unix(civil(t)), Some(t), "{t}");
        }
        assert_eq!(unix([1969, 12, 31, 23, 59, 59]), None);
        assert_eq!(unix([2026, 13, 1, 0, 0, 0]), None);
    }
}
