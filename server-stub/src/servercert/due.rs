//! When the server certificate is renewed: a pure function of its validity
//! period and the time, fed `now` by the caller (`serve`'s watcher, `tls`).
//!
//! A certificate is due for renewal once less than a third of its lifetime
//! is left, and at the latest 30 days before it expires: a one-year
//! certificate is renewed 30 days before its end, a nine-day one three days
//! before. A certificate just issued is never due (all of its lifetime is
//! left), so renewing cannot loop.

/// Renewal starts this long before the end at the latest, seconds.
pub const RENEW_BEFORE_MAX: u64 = 30 * 86_400;

/// The Unix time from which a certificate valid from `not_before` to
/// `not_after` (Unix seconds) is due for renewal.
pub fn renew_at(not_before: u64, not_after: u64) -> u64 {
    let lifetime = not_after.saturating_sub(not_before);
    not_after - (lifetime / 3).min(RENEW_BEFORE_MAX)
}

/// What to do about a certificate at some time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Nothing until `until` (Unix seconds).
    Keep {
        /// When renewal becomes due.
        until: u64,
    },
    /// Renew now: `left` seconds of validity remain (0: expired).
    Renew {
        /// Seconds until `notAfter`, 0 once past it.
        left: u64,
    },
}

/// What to do at `now` about a certificate valid from `not_before` to `not_after`.
pub fn plan(not_before: u64, not_after: u64, now: u64) -> Plan {
    let at = renew_at(not_before, not_after);
    if now < at { Plan::Keep { until: at } } else { Plan::Renew { left: not_after.saturating_sub(now) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;
    const T0: u64 = 1_800_000_000;

    #[test]
    fn a_year_long_certificate_is_renewed_30_days_before_its_end() {
        let end = T0 + 365 * DAY;
        assert_eq!(renew_at(T0, end), end - 30 * DAY);
        assert_eq!(plan(T0, end, T0), Plan::Keep { until: end - 30 * DAY }, "just issued");
        assert_eq!(plan(T0, end, end - 30 * DAY - 1), Plan::Keep { until: end - 30 * DAY });
        assert_eq!(plan(T0, end, end - 30 * DAY), Plan::Renew { left: 30 * DAY });
        assert_eq!(plan(T0, end, end + 5), Plan::Renew { left: 0 }, "expired");
    }

    #[test]
    fn a_short_certificate_is_renewed_with_a_third_of_its_life_left() {
        let end = T0 + 9 * DAY;
        assert_eq!(renew_at(T0, end), T0 + 6 * DAY);
        assert_eq!(plan(T0, end, T0 + 6 * DAY - 1), Plan::Keep { until: T0 + 6 * DAY });
        assert_eq!(plan(T0, end, T0 + 8 * DAY), Plan::Renew { left: DAY });
    }

    #[test]
    fn a_long_lived_certificate_waits_and_a_backwards_one_is_due_at_once() {
        // init's certificates before renewal existed: 2024-01-01 to 2049-12-31.
        let (start, end) = (1_704_067_200, 2_524_521_600);
        assert_eq!(renew_at(start, end), end - 30 * DAY);
        assert!(matches!(plan(start, end, T0), Plan::Keep { .. }));
        assert_eq!(plan(T0, T0 - 1, T0), Plan::Renew { left: 0 }, "notAfter before notBefore");
        assert_eq!(plan(T0, T0, T0), Plan::Renew { left: 0 });
    }
}
