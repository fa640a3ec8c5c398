//! Bandwidth control, pure and fed `now`: one combiner, [`Throttle`], over
//! the mechanisms that each limit the download rate.
//!
//! ```text
//!   Throttle ── cap, outside the full-speed windows   (window.rs)
//!            ├─ ShareDetector: other traffic on the interface (share.rs)
//!            └─ DelayController: queuing delay → receive window (delay.rs)
//!   TokenBucket paces reads at the rate Throttle gives      (bucket.rs)
//! ```

mod bucket;
mod delay;
mod share;
mod window;

use alloc::vec::Vec;

pub use bucket::{BURST_TIME, MIN_BURST, TokenBucket};
pub use delay::DelayController;
pub use share::ShareDetector;
pub use window::Window;

/// Why the download rate is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Nothing limits it.
    Unlimited,
    /// The configured (or server-given) cap.
    Cap,
    /// Outside the full-speed time window: the cap applies.
    Window,
    /// Other traffic on the interface (counter detector).
    OtherTraffic,
    /// Queuing delay on the path (delay detector).
    Delay,
}

impl Reason {
    /// Lower-case name for logs and `outpost-agent status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unlimited => "unlimited",
            Self::Cap => "cap",
            Self::Window => "outside the full-speed window",
            Self::OtherTraffic => "other traffic on the interface",
            Self::Delay => "queuing delay",
        }
    }
}

/// Everything that limits the download rate, combined.
#[derive(Debug, Clone)]
pub struct Throttle {
    /// Hard cap, bytes/s (0: none).
    pub cap: u64,
    /// Full-speed windows; outside all of them the cap applies. Empty: the
    /// cap applies all day. A window lifts the cap, not the dynamic limits.
    pub windows: Vec<Window>,
    /// Dynamic mode on.
    pub dynamic: bool,
    /// Detector 1.
    pub share: ShareDetector,
    /// Detector 2.
    pub delay: DelayController,
}

impl Throttle {
    /// A throttle with a cap (0: none), windows and dynamic mode.
    pub fn new(cap: u64, windows: Vec<Window>, dynamic: bool) -> Self {
        Self { cap, windows, dynamic, share: ShareDetector::new(ShareDetector::WINDOW), delay: DelayController::new() }
    }

    /// The rate reads are paced at (bytes/s, 0: unlimited) and why, at
    /// local `minute` of the day: the cap (outside the full-speed windows)
    /// and the share detector. The delay detector acts on the receive
    /// window instead ([`Throttle::window`]).
    pub fn rate(&self, minute: u16) -> (u64, Reason) {
        self.limit(minute, false)
    }

    /// The receive window (bytes) the delay detector allows; `None` outside
    /// dynamic mode.
    pub fn window(&self) -> Option<u64> {
        self.dynamic.then(|| self.delay.window())
    }

    /// What limits the download, for people: [`Throttle::rate`] with the
    /// delay detector's window counted as a rate (window / (base + target)).
    pub fn shown(&self, minute: u16) -> (u64, Reason) {
        self.limit(minute, true)
    }

    fn limit(&self, minute: u16, with_delay: bool) -> (u64, Reason) {
        let mut best = (0u64, Reason::Unlimited);
        let mut take = |rate: u64, why: Reason| {
            if rate > 0 && (best.0 == 0 || rate < best.0) {
                best = (rate, why);
            }
        };
        let in_window = self.windows.iter().any(|w| w.contains(minute));
        if !in_window && self.cap > 0 {
            take(self.cap, if self.windows.is_empty() { Reason::Cap } else { Reason::Window });
        }
        if self.dynamic {
            if let Some(l) = self.share.limit() {
                take(l, Reason::OtherTraffic);
            }
            if with_delay && self.delay.delays().is_some() {
                take(self.delay.rate(), Reason::Delay);
            }
        }
        best
    }

    /// Make this throttle at least as strict as the server's: the lower
    /// cap, and full speed only where both allow it.
    pub fn stricter_with(&mut self, server_cap: u64, server_windows: &[Window]) {
        if server_cap > 0 && (self.cap == 0 || server_cap < self.cap) {
            self.cap = server_cap;
        }
        if !server_windows.is_empty() {
            if self.windows.is_empty() {
                self.windows = server_windows.to_vec();
            } else {
                // Full speed only in minutes both sides allow.
                let both: Vec<u16> = (0..1440u16)
                    .filter(|m| {
                        self.windows.iter().any(|w| w.contains(*m)) && server_windows.iter().any(|w| w.contains(*m))
                    })
                    .collect();
                self.windows = runs(&both);
            }
        }
    }
}

/// Consecutive minutes as windows.
fn runs(minutes: &[u16]) -> Vec<Window> {
    let mut out: Vec<Window> = Vec::new();
    for &m in minutes {
        match out.last_mut() {
            Some(w) if w.to == m => w.to = m + 1,
            _ => out.push(Window { from: m, to: m + 1 }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use core::time::Duration;

    use outpost_hal::time::Instant;

    use super::*;

    #[test]
    fn dynamic_mode_changes_the_rate_or_this_test_fails() {
        // The opsi lesson: an adaptive limiter that silently does nothing.
        let mut th = Throttle::new(0, alloc::vec![], true);
        let mut t = Instant::from_secs(60);
        let mut got = 0u64;
        for _ in 0..100 {
            got += 250_000; // 2.5 MB/s delivered, no queue: the window opens
            th.delay.handle_rtt(t, Duration::from_millis(20), got);
            t = t + Duration::from_millis(100);
        }
        let free = th.window().unwrap();
        let bdp = 2_500_000.0 * (0.020 + DelayController::TARGET.as_secs_f64());
        assert!(free as f64 >= bdp, "the window opened to {free}, a round trip at the target is {bdp}");
        for _ in 0..20 {
            got += 25_000;
            th.delay.handle_rtt(t, Duration::from_millis(400), got);
            t = t + Duration::from_millis(100);
        }
        let busy = th.window().unwrap();
        assert!(busy < free / 8, "delay must shrink the window: {free} -> {busy}");
        assert_eq!(th.shown(0).1, Reason::Delay);
        assert_eq!(th.rate(0), (0, Reason::Unlimited), "delay does not pace reads, the window does");
        th.share.handle_counters(t, 0, 0);
        th.share.handle_counters(t + Duration::from_secs(1), 10_000_000, 1_000_000);
        assert_eq!(th.rate(0), (300_000, Reason::OtherTraffic));
        let off = Throttle::new(0, alloc::vec![], false);
        assert_eq!((off.rate(0), off.window()), ((0, Reason::Unlimited), None), "off means off");
    }

    #[test]
    fn windows_and_server_limits_only_make_it_stricter() {
        let night = Window::parse("18:00-07:00").unwrap();
        assert!(night.contains(23 * 60) && night.contains(6 * 60) && !night.contains(12 * 60));
        assert!(Window::parse("25:00-07:00").is_none() && Window::parse("nonsense").is_none());
        let mut th = Throttle::new(100_000, alloc::vec![night], false);
        assert_eq!(th.rate(12 * 60), (100_000, Reason::Window));
        assert_eq!(th.rate(23 * 60), (0, Reason::Unlimited));
        // The server: a lower cap and a shorter window. Local ones cannot loosen it.
        th.stricter_with(50_000, &[Window::parse("20:00-06:00").unwrap()]);
        assert_eq!(th.rate(19 * 60), (50_000, Reason::Window), "19:00 was full speed locally, not for the server");
        assert_eq!(th.rate(23 * 60), (0, Reason::Unlimited));
        th.stricter_with(200_000, &[]);
        assert_eq!(th.cap, 50_000, "a higher server cap does not loosen");
        let mut plain = Throttle::new(0, alloc::vec![], false);
        plain.stricter_with(30_000, &[]);
        assert_eq!(plain.rate(0), (30_000, Reason::Cap));
    }
}
