//! Bandwidth control, pure and fed `now`.
//!
//! [`TokenBucket`] enforces a rate: the runtime asks [`TokenBucket::budget`]
//! how many bytes it may read now, reads at most that, reports them with
//! [`TokenBucket::consume`], and when the budget is 0 sleeps until
//! [`TokenBucket::ready_at`]. The burst is small (50 ms of the rate, at least
//! 4 KiB: a quarter second at 16 KiB/s), so the rate holds over short windows too.
//! Bytes that arrive without asking first (small control bodies: a poll
//! reply, an info file, a manifest) are [`TokenBucket::charge`]d: they become
//! a debt that later reads pay, so the cap covers them as well.

use alloc::vec::Vec;
use core::time::Duration;

use outpost_hal::time::Instant;

/// Smallest burst, in bytes.
pub const MIN_BURST: u64 = 4 * 1024;
/// Burst as time at the rate.
pub const BURST_TIME: Duration = Duration::from_millis(50);

/// A token bucket in bytes. Rate 0 means no limit.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: u64,
    burst: u64,
    tokens: u64,
    /// Bytes charged beyond the tokens there were: paid from the refill
    /// before any new token.
    debt: u64,
    /// Fractions of a byte (in byte·µs) carried between refills, so that
    /// small steps do not lose accuracy.
    carry: u64,
    last: Instant,
}

impl TokenBucket {
    /// A bucket of `rate` bytes/s (0: unlimited), full at `now`.
    pub fn new(rate: u64, now: Instant) -> Self {
        let burst = Self::burst_for(rate);
        Self { rate, burst, tokens: burst, debt: 0, carry: 0, last: now }
    }

    fn burst_for(rate: u64) -> u64 {
        let t = u64::try_from(BURST_TIME.as_micros()).unwrap_or(u64::MAX);
        (rate.saturating_mul(t) / 1_000_000).max(MIN_BURST)
    }

    /// The rate in bytes/s (0: unlimited).
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Change the rate from `now` on (tokens held are kept, up to the new
    /// burst; a debt is kept while there is a rate to pay it at).
    pub fn set_rate(&mut self, now: Instant, rate: u64) {
        self.refill(now);
        if rate == 0 {
            self.debt = 0;
        }
        self.rate = rate;
        self.burst = Self::burst_for(rate);
        self.tokens = self.tokens.min(self.burst);
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last);
        self.last = self.last.max(now);
        if self.rate == 0 {
            return;
        }
        let dt = dt.as_micros();
        let acc = u128::from(self.carry) + dt * u128::from(self.rate);
        let mut add = u64::try_from(acc / 1_000_000).unwrap_or(u64::MAX);
        self.carry = (acc % 1_000_000) as u64;
        let pay = add.min(self.debt);
        self.debt -= pay;
        add -= pay;
        self.tokens = self.tokens.saturating_add(add).min(self.burst);
        if self.tokens == self.burst {
            self.carry = 0;
        }
    }

    /// Bytes that may be taken at `now` (`u64::MAX` when unlimited).
    pub fn budget(&mut self, now: Instant) -> u64 {
        if self.rate == 0 {
            return u64::MAX;
        }
        self.refill(now);
        self.tokens
    }

    /// `n` bytes were taken at `now`.
    pub fn consume(&mut self, now: Instant, n: u64) {
        if self.rate == 0 {
            return;
        }
        self.refill(now);
        self.tokens = self.tokens.saturating_sub(n);
    }

    /// `n` bytes arrived at `now` without asking the bucket first: they take
    /// the tokens there are, and the rest is a debt that later reads pay.
    pub fn charge(&mut self, now: Instant, n: u64) {
        if self.rate == 0 {
            return;
        }
        self.refill(now);
        let take = n.min(self.tokens);
        self.tokens -= take;
        self.debt = self.debt.saturating_add(n - take);
    }

    /// When at least `want` bytes (capped to the burst) will be available.
    pub fn ready_at(&mut self, now: Instant, want: u64) -> Instant {
        if self.rate == 0 {
            return now;
        }
        self.refill(now);
        let want = want.min(self.burst).max(1);
        if self.tokens >= want {
            return now;
        }
        // A debt exists only with no tokens left: it is paid first.
        let missing = (u128::from(want - self.tokens) + u128::from(self.debt)) * 1_000_000 - u128::from(self.carry);
        let micros = missing.div_ceil(u128::from(self.rate));
        now + Duration::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A greedy reader taking what the bucket allows, in reads of at most
    /// `read` bytes, for `secs` of virtual time. Returns bytes per 100 ms.
    fn drive(rate: u64, read: u64, secs: u64) -> Vec<u64> {
        let mut now = Instant::from_secs(1);
        let mut b = TokenBucket::new(rate, now);
        let end = now + Duration::from_secs(secs);
        let mut ticks = alloc::vec![0u64; (secs * 10) as usize];
        let start = now;
        while now < end {
            let n = b.budget(now).min(read);
            if n == 0 {
                now = b.ready_at(now, read);
                continue;
            }
            b.consume(now, n);
            let i = (now.saturating_duration_since(start).as_millis() / 100) as usize;
            if let Some(slot) = ticks.get_mut(i) {
                *slot += n;
            }
        }
        ticks
    }

    #[test]
    fn cap_holds_within_5_percent_over_every_10_s_window_from_16k_to_100m() {
        // Every 10 s window, sliding in 100 ms steps, not only back to back ones.
        for rate in [16 * 1024, 100_000, 1_000_000, 20_000_000, 100 * 1024 * 1024] {
            for read in [1_000, 16 * 1024, 64 * 1024] {
                let ticks = drive(rate, read, 40);
                for (i, w) in ticks.windows(100).enumerate() {
                    let got: u64 = w.iter().sum();
                    let want = rate * 10;
                    let err = (got as f64 - want as f64).abs() / want as f64;
                    assert!(
                        err <= 0.05,
                        "rate {rate} read {read} window from {} ms: {got} vs {want} ({:.2} %)",
                        i * 100,
                        err * 100.0
                    );
                }
            }
        }
    }

    #[test]
    fn bytes_charged_without_asking_are_paid_by_later_reads() {
        // 100 kB/s. A 300 kB manifest arrives unpaced, then fragments are
        // read greedily: over 10 s the agent still gets 1 MB in all, not 1.3.
        let t0 = Instant::from_secs(1);
        let mut b = TokenBucket::new(100_000, t0);
        b.charge(t0, 300_000);
        assert_eq!(b.budget(t0), 0);
        let (mut now, mut got) = (t0, 300_000u64);
        while now < t0 + Duration::from_secs(10) {
            let n = b.budget(now).min(16 * 1024);
            if n == 0 {
                now = b.ready_at(now, 16 * 1024);
                continue;
            }
            b.consume(now, n);
            got += n;
        }
        let err = (got as f64 - 1_000_000.0).abs() / 1_000_000.0;
        assert!(err <= 0.05, "{got} bytes in 10 s at 100 kB/s");
        // A charge within the tokens there are is no debt; none when unlimited.
        let mut c = TokenBucket::new(100_000, t0);
        c.charge(t0, 1_000);
        assert_eq!(c.budget(t0), 4_000);
        c.set_rate(t0, 0);
        c.charge(t0, 1 << 30);
        c.set_rate(t0, 100_000);
        assert_eq!(c.ready_at(t0, 5_000), t0 + Duration::from_millis(10), "no debt left from unlimited time");
    }

    #[test]
    fn unlimited_and_rate_changes() {
        let t = Instant::from_secs(1);
        let mut b = TokenBucket::new(0, t);
        assert_eq!(b.budget(t), u64::MAX);
        b.set_rate(t, 100_000);
        assert!(b.budget(t) <= MIN_BURST, "the burst stays small");
        let all = b.budget(t);
        b.consume(t, all);
        assert_eq!(b.budget(t), 0);
        let ready = b.ready_at(t, 10_000);
        assert_eq!(ready, t + Duration::from_millis(50), "a burst (5 kB, 50 ms at 100 kB/s), not 10 kB");
        assert_eq!(b.budget(ready), 5_000);
    }
}

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

/// Detector 1: the agent's share of the traffic its interface receives.
///
/// Over the last `window` (sliding: the runtime feeds the counters several
/// times per window), share = the agent's bytes on the wire / the
/// interface's bytes. The agent counts payload; the interface counts frames,
/// so the agent's bytes are scaled by [`ShareDetector::WIRE_OVERHEAD`] (alone,
/// the share is then about 1, not 0.956, which sat next to the release
/// threshold). At or below [`ShareDetector::LIMIT_AT`] other traffic is
/// there: limit to [`ShareDetector::LIMIT_FRACTION`] of the interface's
/// observed rate (at least [`ShareDetector::FLOOR`]). At or above
/// [`ShareDetector::RELEASE_AT`] the agent is alone again: no limit. In
/// between, keep the state (hysteresis). opsi's intended rule, with numbers
/// chosen on the bench (`scripts/bench-bandwidth`, BENCHMARKS.md).
#[derive(Debug, Clone)]
pub struct ShareDetector {
    window: Duration,
    /// Counter snapshots (time, interface bytes, agent bytes), oldest first.
    snaps: heapless::Deque<(Instant, u64, u64), 16>,
    limit: Option<u64>,
}

impl ShareDetector {
    /// Share at or below which the agent yields. opsi's 0.75 let a starting
    /// foreground transfer ramp slowly beside the agent for seconds.
    pub const LIMIT_AT: f64 = 0.90;
    /// Share at or above which it takes the link back.
    pub const RELEASE_AT: f64 = 0.95;
    /// Fraction of the interface rate left to the agent while yielding.
    /// opsi's intended 20 % let a foreground transfer keep only 77 % of its
    /// speed on the bench (`scripts/bench-bandwidth`, 20 Mbit/s); 5 % left
    /// it 0.86–0.90, and 3 % 0.92–0.93 (BENCHMARKS.md).
    pub const LIMIT_FRACTION: f64 = 0.03;
    /// Lowest limit, bytes/s.
    pub const FLOOR: u64 = 20_000;
    /// The sliding window the share is taken over. opsi's 5 s cannot yield
    /// within the 1 s asked for; with 1 s a starting foreground transfer
    /// waited 1.6 s on the bench. The runtime reads the counters every 100 ms.
    pub const WINDOW: Duration = Duration::from_millis(300);
    /// Wire bytes per payload byte of a full-sized TCP segment over
    /// Ethernet: (1448 + 32 TCP with timestamps + 20 IPv4 + 14 Ethernet) / 1448.
    pub const WIRE_OVERHEAD: f64 = 1514.0 / 1448.0;

    /// A detector over a sliding `window`.
    pub fn new(window: Duration) -> Self {
        Self { window, snaps: heapless::Deque::new(), limit: None }
    }

    /// The current limit (bytes/s), if yielding.
    pub fn limit(&self) -> Option<u64> {
        self.limit
    }

    /// Feed the interface's total received bytes and the agent's total
    /// received payload bytes (both running counters) at `now`.
    pub fn handle_counters(&mut self, now: Instant, iface_rx: u64, agent_rx: u64) {
        // Keep one snapshot at least `window` old, and no older one.
        while self.snaps.len() >= 2
            && self.snaps.iter().nth(1).is_some_and(|s| now.saturating_duration_since(s.0) >= self.window)
        {
            self.snaps.pop_front();
        }
        if self.snaps.is_full() {
            self.snaps.pop_front();
        }
        let _ = self.snaps.push_back((now, iface_rx, agent_rx));
        let Some(&(t0, i0, a0)) = self.snaps.front() else { return };
        let dt = now.saturating_duration_since(t0);
        if dt < self.window {
            return;
        }
        let iface = iface_rx.saturating_sub(i0);
        if iface == 0 {
            return;
        }
        let agent = agent_rx.saturating_sub(a0) as f64 * Self::WIRE_OVERHEAD;
        let share = (agent / iface as f64).min(1.0);
        let rate = iface as f64 / dt.as_secs_f64();
        if share <= Self::LIMIT_AT {
            self.limit = Some(((rate * Self::LIMIT_FRACTION) as u64).max(Self::FLOOR));
        } else if share >= Self::RELEASE_AT {
            self.limit = None;
        }
    }
}

/// Detector 2: queuing delay, from RTT samples the runtime measures on the
/// path to the fragment server, acting on the receive window (receiver-side
/// LEDBAT, as in rLEDBAT: the receiver bounds the bytes in flight towards it,
/// so it bounds the queue it can build at any bottleneck, whatever the sender
/// and however slow the line behind a fast LAN).
///
/// Base delay = the smallest RTT over the last [`DelayController::BASE_HISTORY`]
/// minutes; current delay = the smallest sample since the last control step
/// (one every [`DelayController::STEP`] or more; samples that come closer
/// together are folded into the next step); queuing delay = current − base.
///
/// A window-limited flow delivers `window / RTT`; the window that would hold
/// the queue at the target is `window × (base + target) / current` (the
/// Vegas/FAST TCP form). Each sample moves the window half way there, at most
/// doubling it, and never beyond [`DelayController::HEADROOM`] times what the agent delivered in a
/// round trip at the target (so a window that is not used does not grow, and
/// cannot flood the link when a bottleneck appears). The runtime applies it as
/// the connection's window clamp; reads are not paced by it.
#[derive(Debug, Clone)]
pub struct DelayController {
    window: u64,
    minutes: [Option<(u64, Duration)>; 10],
    last: Option<Duration>,
    /// The last control step's time and the agent's received-bytes counter.
    prev: Option<(Instant, u64)>,
    /// The smallest sample since the last control step.
    pending: Option<Duration>,
    /// When the queue was last seen (nearly) empty.
    empty_at: Option<Instant>,
    /// In a slowdown: samples left, and the window to go back to.
    slowdown: Option<(u8, u64)>,
}

impl DelayController {
    /// Queuing delay aimed at. LEDBAT++ says 60 ms and the bench's goal is a
    /// p95 added delay of at most 60 ms. On the bench (BENCHMARKS.md) 40 ms
    /// gave a p95 of 45–50 ms and yielded slowly when a foreground transfer
    /// started (its slow start only pushed the queue to 45–50 ms); 25 ms gives
    /// a p95 of 26–28 ms at the same link use (0.96) and yields sooner.
    pub const TARGET: Duration = Duration::from_millis(25);
    /// Minutes of base-delay history.
    pub const BASE_HISTORY: usize = 10;
    /// Smallest window, bytes (a few segments: the flow never stalls).
    pub const MIN_WINDOW: u64 = 16 * 1024;
    /// Largest window, bytes.
    pub const MAX_WINDOW: u64 = 32 << 20;
    /// Window at the start, and the least the usage bound allows.
    pub const START_WINDOW: u64 = 64 * 1024;
    /// Fraction of the way to the aimed window taken per sample.
    pub const GAIN: f64 = 0.5;
    /// The window grows to at most this many times what the agent delivered
    /// in a round trip at the target. The agent's reads pause (fsync) and
    /// the sender then bursts a whole window into the bottleneck: the
    /// window, not the average queue, sets the peak delay. 2 gave a p95 of
    /// 59 ms on the bench with a 40 ms target.
    pub const HEADROOM: f64 = 1.25;
    /// After this long without seeing the queue (nearly) empty, the window
    /// drops to [`DelayController::MIN_WINDOW`] for
    /// [`DelayController::SLOWDOWN_SAMPLES`] samples, so the queue drains
    /// and the base delay is measured again (LEDBAT++'s periodic slowdown):
    /// a base taken while a queue stood would otherwise hide that queue
    /// for good. It costs about 1 % of the link.
    pub const SLOWDOWN_EVERY: Duration = Duration::from_secs(20);
    /// Samples a slowdown lasts.
    pub const SLOWDOWN_SAMPLES: u8 = 2;
    /// Least time between two control steps. The gain, the doubling bound
    /// and the delivered rate are per step; the runtime samples every
    /// 100 ms, with some jitter.
    pub const STEP: Duration = Duration::from_millis(90);

    /// A controller at its start window.
    pub fn new() -> Self {
        Self {
            window: Self::START_WINDOW,
            minutes: [None; 10],
            last: None,
            prev: None,
            pending: None,
            empty_at: None,
            slowdown: None,
        }
    }

    /// The receive window it allows now, bytes.
    pub fn window(&self) -> u64 {
        self.window
    }

    /// The rate the window gives at the target delay, bytes/s (for status).
    pub fn rate(&self) -> u64 {
        let base = self.delays().map_or(Duration::ZERO, |d| d.0);
        (self.window as f64 / (base + Self::TARGET).as_secs_f64()) as u64
    }

    /// Base delay, current delay and queuing delay (`None` before samples).
    pub fn delays(&self) -> Option<(Duration, Duration, Duration)> {
        let base = self.minutes.iter().flatten().map(|m| m.1).min()?;
        let current = self.last?;
        Some((base, current, current.saturating_sub(base)))
    }

    /// An RTT sample at `now`; `received` is the agent's running count of
    /// bytes received.
    pub fn handle_rtt(&mut self, now: Instant, rtt: Duration, received: u64) {
        let minute = now.as_micros() / 60_000_000;
        let slot = (minute % Self::BASE_HISTORY as u64) as usize;
        match &mut self.minutes[slot] {
            Some((m, d)) if *m == minute => *d = (*d).min(rtt),
            s => *s = Some((minute, rtt)),
        }
        // Forget minutes older than the history.
        for m in self.minutes.iter_mut() {
            if m.is_some_and(|(k, _)| k + (Self::BASE_HISTORY as u64) <= minute) {
                *m = None;
            }
        }
        let rtt = self.pending.take().map_or(rtt, |p| p.min(rtt));
        let Some((t0, r0)) = self.prev else {
            self.prev = Some((now, received));
            self.last = Some(rtt);
            return;
        };
        if now < t0 + Self::STEP {
            self.pending = Some(rtt);
            return;
        }
        self.prev = Some((now, received));
        self.last = Some(rtt);
        let delivered = received.saturating_sub(r0) as f64 / now.saturating_duration_since(t0).as_secs_f64();
        let Some((base, current, queuing)) = self.delays() else { return };
        if let Some((left, saved)) = self.slowdown {
            self.slowdown = left.checked_sub(1).map(|l| (l, saved));
            self.window = if self.slowdown.is_some() { Self::MIN_WINDOW } else { saved };
            self.empty_at = Some(now);
            return;
        }
        if queuing <= Self::TARGET / 4 || self.empty_at.is_none() {
            self.empty_at = Some(now);
        } else if self.empty_at.is_some_and(|t| now >= t + Self::SLOWDOWN_EVERY) {
            self.slowdown = Some((Self::SLOWDOWN_SAMPLES - 1, self.window));
            self.window = Self::MIN_WINDOW;
            return;
        }
        let aim_rtt = (base + Self::TARGET).as_secs_f64();
        let w = self.window as f64;
        let aim = w * aim_rtt / current.as_secs_f64().max(1e-6);
        let mut next = (1.0 - Self::GAIN) * w + Self::GAIN * aim;
        if next > w {
            let used = (Self::HEADROOM * delivered * aim_rtt).max(Self::START_WINDOW as f64);
            next = next.min(2.0 * w).min(used.max(w));
        }
        self.window = (next as u64).clamp(Self::MIN_WINDOW, Self::MAX_WINDOW);
    }
}

impl Default for DelayController {
    fn default() -> Self {
        Self::new()
    }
}

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
mod dynamic_tests {
    use super::*;

    /// One simulated link (a fluid model): capacity `link` bytes/s, a base
    /// RTT, a drop-tail buffer, and a queue that fills when the agent plus the
    /// others send more than the link carries. The agent's sender is
    /// window-limited: it sends `window / RTT`, at most `app` bytes/s.
    struct Path {
        link: f64,
        base: Duration,
        buffer: f64,
        queue: f64,
    }

    impl Path {
        fn rtt(&self) -> Duration {
            self.base + Duration::from_secs_f64(self.queue / self.link)
        }

        /// Advance 10 ms; returns the agent's delivered bytes.
        fn step(&mut self, window: f64, app: f64, other: f64) -> f64 {
            let dt = 0.01;
            let agent = (window / self.rtt().as_secs_f64()).min(app);
            let offered = (agent + other) * dt;
            let carried = (self.queue + offered).min(self.link * dt);
            self.queue = (self.queue + offered - carried).min(self.buffer);
            if agent + other > 0.0 { carried * agent / (agent + other) } else { 0.0 }
        }
    }

    /// Runs the controller on `p` for `samples` × 100 ms with others at
    /// `other` B/s; per sample: the agent's bytes and the RTT.
    struct Sim {
        path: Path,
        c: DelayController,
        now: Instant,
        received: f64,
    }

    impl Sim {
        fn new(link: f64, base_ms: u64) -> Self {
            let path = Path { link, base: Duration::from_millis(base_ms), buffer: link * 0.2, queue: 0.0 };
            Self { path, c: DelayController::new(), now: Instant::from_secs(10), received: 0.0 }
        }

        fn run(&mut self, other: f64, app: f64, samples: usize) -> Vec<(f64, Duration)> {
            (0..samples)
                .map(|_| {
                    let mut got = 0.0;
                    for _ in 0..10 {
                        got += self.path.step(self.c.window() as f64, app, other);
                    }
                    self.received += got;
                    self.now = self.now + Duration::from_millis(100);
                    let rtt = self.path.rtt();
                    self.c.handle_rtt(self.now, rtt, self.received as u64);
                    (got, rtt)
                })
                .collect()
        }
    }

    fn p95(s: &[(f64, Duration)]) -> Duration {
        let mut d: Vec<Duration> = s.iter().map(|s| s.1).collect();
        d.sort();
        d[d.len() * 95 / 100]
    }

    #[test]
    fn delay_detector_fills_the_link_alone_with_little_queue() {
        for (link, base_ms) in [(2_500_000.0, 1), (2_500_000.0, 20), (1_250_000.0, 80), (12_500_000.0, 5)] {
            let mut sim = Sim::new(link, base_ms);
            let alone = sim.run(0.0, f64::INFINITY, 300);
            let used: f64 = alone[250..].iter().map(|s| s.0).sum::<f64>() / 5.0;
            assert!(used >= 0.85 * link, "{link} B/s, {base_ms} ms: alone it uses {:.0} %", used / link * 100.0);
            let added = p95(&alone[250..]) - Duration::from_millis(base_ms);
            assert!(added <= Duration::from_millis(60), "{link} B/s, {base_ms} ms: p95 added delay {added:?}");
        }
    }

    #[test]
    fn a_base_taken_over_a_standing_queue_is_measured_again() {
        // Others left 100 ms of queue when the agent started: the periodic
        // slowdown drains it and finds the real base.
        let mut sim = Sim::new(2_500_000.0, 1);
        sim.path.queue = 250_000.0;
        let alone = sim.run(0.0, f64::INFINITY, 300);
        let added = p95(&alone[250..]) - Duration::from_millis(1);
        assert!(added <= Duration::from_millis(60), "p95 added delay {added:?}");
        let (base, _, _) = sim.c.delays().unwrap();
        assert!(base < Duration::from_millis(10), "base {base:?}");
    }

    #[test]
    fn delay_detector_yields_within_a_second_and_climbs_back_within_ten() {
        const LINK: f64 = 2_500_000.0;
        let mut sim = Sim::new(LINK, 20);
        sim.run(0.0, f64::INFINITY, 300);
        // Others take the whole link: it yields within 1 s.
        let busy = sim.run(LINK, f64::INFINITY, 50);
        let yielded = busy.iter().position(|s| s.0 < 0.1 * LINK * 0.1).expect("it never yielded");
        assert!(yielded < 10, "yielded after {} ms", (yielded + 1) * 100);
        let late: f64 = busy[20..].iter().map(|s| s.0).sum::<f64>() / 3.0;
        assert!(late < 0.1 * LINK, "and stays out of the way: {late:.0} B/s");
        // They stop: back to most of the link within 10 s.
        let after = sim.run(0.0, f64::INFINITY, 150);
        let back =
            after.windows(10).position(|w| w.iter().map(|s| s.0).sum::<f64>() >= 0.85 * LINK).expect("never back");
        assert!(back + 10 <= 100, "back after {} ms", (back + 10) * 100);
    }

    #[test]
    fn an_unused_window_does_not_grow() {
        // The agent reads at 100 kB/s (a cap): the window stays near what
        // that needs, so when the cap lifts it cannot flood a busy link.
        let mut sim = Sim::new(2_500_000.0, 20);
        sim.run(0.0, 100_000.0, 300);
        let w = sim.c.window();
        assert!(w <= 2 * DelayController::START_WINDOW, "window {w} for 100 kB/s");
    }

    #[test]
    fn samples_closer_than_a_step_are_folded_into_the_next() {
        // Samples every millisecond while the agent reads 100 kB/s in 64 KiB
        // gulps: a rate taken between two close samples would be 64 MB/s, and
        // a step per sample would double the window a hundred times a second.
        let mut c = DelayController::new();
        let mut received = 0u64;
        for ms in 0..30_000u64 {
            if ms % 655 == 0 {
                received += 65_536;
            }
            c.handle_rtt(Instant::from_micros(10_000_000 + ms * 1000), Duration::from_millis(20), received);
        }
        assert!(c.window() <= 2 * DelayController::START_WINDOW, "window {} for 100 kB/s", c.window());
        // The smallest of the samples between two steps is the current delay.
        let mut c = DelayController::new();
        let t = Instant::from_secs(10);
        c.handle_rtt(t, Duration::from_millis(20), 0);
        c.handle_rtt(t + Duration::from_millis(30), Duration::from_millis(25), 0);
        c.handle_rtt(t + Duration::from_millis(60), Duration::from_millis(40), 0);
        c.handle_rtt(t + Duration::from_millis(100), Duration::from_millis(50), 0);
        assert_eq!(c.delays().map(|d| d.1), Some(Duration::from_millis(25)));
    }

    #[test]
    fn share_detector_limits_releases_and_holds_in_between() {
        let mut d = ShareDetector::new(Duration::from_secs(1));
        let (mut iface, mut agent) = (0u64, 0u64);
        let mut t = Instant::from_secs(1);
        let mut tick = |d: &mut ShareDetector, ours: u64, others: u64| {
            agent += ours;
            iface += ours + others;
            t = t + Duration::from_secs(1);
            d.handle_counters(t, iface, agent);
        };
        tick(&mut d, 0, 0);
        tick(&mut d, 1_000_000, 0);
        assert_eq!(d.limit(), None, "alone");
        tick(&mut d, 600_000, 400_000); // 60 %: yield
        assert_eq!(d.limit(), Some(30_000), "3 % of 1 MB/s");
        tick(&mut d, 180_000, 20_000); // 90 %: between, hold
        assert!(d.limit().is_some());
        tick(&mut d, 10_000, 0); // 100 % (and small): release
        assert_eq!(d.limit(), None);
        tick(&mut d, 10_000, 90_000); // 10 % of 100 kB/s: the floor
        assert_eq!(d.limit(), Some(ShareDetector::FLOOR));
    }

    #[test]
    fn share_detector_slides_and_counts_headers() {
        // Fed every 100 ms like the runtime. The agent gets 2 MB/s of payload,
        // which the interface counts with frame headers.
        let mut d = ShareDetector::new(ShareDetector::WINDOW);
        let (mut iface, mut agent) = (0u64, 0u64);
        let mut t = Instant::from_secs(1);
        let mut tick = |d: &mut ShareDetector, ours: u64, others: u64| {
            agent += ours;
            iface += (ours as f64 * 1514.0 / 1448.0) as u64 + others;
            t = t + Duration::from_millis(100);
            d.handle_counters(t, iface, agent);
            d.limit()
        };
        for _ in 0..50 {
            assert_eq!(tick(&mut d, 200_000, 0), None, "alone: headers are not other traffic");
        }
        // Someone else takes 30 % of the link: limited within a second.
        let yielded = (1..=20).find(|_| tick(&mut d, 140_000, 60_000).is_some()).expect("never yielded");
        assert!(yielded <= 10, "yielded after {} ms", yielded * 100);
        for _ in 0..20 {
            tick(&mut d, 5_000, 195_000);
        }
        // They stop: released as quickly.
        let back = (1..=20).find(|_| tick(&mut d, 200_000, 0).is_none()).expect("never released");
        assert!(back <= 10, "released after {} ms", back * 100);
    }

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
