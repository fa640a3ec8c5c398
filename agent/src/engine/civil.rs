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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(civil(0), [1970, 1, 1, 0, 0, 0]);
        assert_eq!(civil(951_782_400), [2000, 2, 29, 0, 0, 0]);
        assert_eq!(civil(1_795_457_331), [2026, 11, 23, 18, 8, 51]);
    }
}
