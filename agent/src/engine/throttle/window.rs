//! Daily full-speed windows.

/// A daily full-speed window in minutes since midnight, `[from, to)`;
/// `from > to` wraps past midnight (e.g. 18:00–07:00).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Start, minutes after midnight.
    pub from: u16,
    /// End, minutes after midnight.
    pub to: u16,
}

impl Window {
    /// Parse `HH:MM-HH:MM`.
    pub fn parse(s: &str) -> Option<Self> {
        let (a, b) = s.trim().split_once('-')?;
        let hm = |t: &str| -> Option<u16> {
            let (h, m) = t.trim().split_once(':')?;
            let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
            (h < 24 && m < 60).then_some(h * 60 + m)
        };
        Some(Self { from: hm(a)?, to: hm(b)? })
    }

    /// Whether `minute` (0..1440) is inside.
    pub fn contains(&self, minute: u16) -> bool {
        if self.from <= self.to {
            (self.from..self.to).contains(&minute)
        } else {
            minute >= self.from || minute < self.to
        }
    }
}
