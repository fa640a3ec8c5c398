//! Waiting between polls, woken early when the link to the server comes up.
//!
//! The link of the interface that routes to the server is polled once a
//! second (the HAL's [`NetMonitor`]); a down → up change ends the wait at
//! once, so a device that comes back online resumes within about a second
//! instead of sitting out a long backoff. A caller may also be woken by
//! something of its own (a new bundle in `import_dir`), looked at as often.

use core::net::IpAddr;
use core::time::Duration;

use outpost_hal::net::{LinkState, LinkWatch, NetMonitor};
use outpost_hal::time::Clock;

/// How often the link is looked at while waiting.
pub const LINK_POLL: Duration = Duration::from_secs(1);

/// Why a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// The time was up.
    Timer,
    /// The link to the server came up.
    LinkUp,
    /// The caller's own check said so.
    Asked,
}

/// Wait `wait` (through `sleep`, by at most [`LINK_POLL`] at a time), ending
/// early when the link towards `server` comes up.
pub fn wait_or_link_up<N: NetMonitor>(
    wait: Duration,
    net: &mut N,
    server: Option<IpAddr>,
    clock: &dyn Clock,
    sleep: &mut dyn FnMut(Duration),
) -> Wake {
    wait_or_wake(wait, net, server, clock, sleep, &mut || false)
}

/// [`wait_or_link_up`], also ending when `wake` says so (asked each time
/// the link is looked at).
pub fn wait_or_wake<N: NetMonitor>(
    wait: Duration,
    net: &mut N,
    server: Option<IpAddr>,
    clock: &dyn Clock,
    sleep: &mut dyn FnMut(Duration),
    wake: &mut dyn FnMut() -> bool,
) -> Wake {
    let deadline = clock.now() + wait;
    let mut watch = LinkWatch::default();
    loop {
        let state = match server.and_then(|a| net.route_to(a).ok().flatten()) {
            Some(iface) => net.link_state(&iface).unwrap_or(LinkState::Unknown),
            None => LinkState::Down, // no route: as good as down
        };
        if watch.observe(state) {
            log::info!(target: "outpost", "the link to the server is up: waking");
            return Wake::LinkUp;
        }
        if wake() {
            return Wake::Asked;
        }
        let now = clock.now();
        if now >= deadline {
            return Wake::Timer;
        }
        sleep(LINK_POLL.min(deadline.saturating_duration_since(now)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sim_link::*;

    #[test]
    fn the_callers_check_ends_the_wait_within_a_second_of_saying_so() {
        let clock = outpost_hal::sim::SimClock::new(0);
        let mut net = UpAt { clock: &clock, up_at: None };
        let start = clock.now();
        let ready = start + Duration::from_secs(42);
        let mut asked = || clock.now() >= ready;
        let wake =
            wait_or_wake(Duration::from_secs(3600), &mut net, None, &clock, &mut |d| clock.advance(d), &mut asked);
        assert_eq!(wake, Wake::Asked);
        assert!(clock.now().saturating_duration_since(ready) <= LINK_POLL, "woken at once, not at the hour");
    }

    /// A link that is down until `up_at` on the simulated clock.
    mod sim_link {
        use outpost_hal::ErrorKind;
        use outpost_hal::net::{Counters, Interface, LinkState, NetMonitor};
        use outpost_hal::sim::SimClock;
        use outpost_hal::time::{Clock, Instant};

        pub struct UpAt<'a> {
            pub clock: &'a SimClock,
            pub up_at: Option<Instant>,
        }

        impl outpost_hal::ErrorType for UpAt<'_> {
            type Error = ErrorKind;
        }

        impl NetMonitor for UpAt<'_> {
            fn interfaces(&mut self) -> Result<Vec<Interface>, ErrorKind> {
                Ok(vec![])
            }
            fn link_state(&mut self, _: &str) -> Result<LinkState, ErrorKind> {
                Ok(if self.up_at.is_some_and(|t| self.clock.now() >= t) { LinkState::Up } else { LinkState::Down })
            }
            fn counters(&mut self, _: &str) -> Result<Counters, ErrorKind> {
                Ok(Counters::default())
            }
            fn route_to(&mut self, _: core::net::IpAddr) -> Result<Option<String>, ErrorKind> {
                Ok(Some("wan0".into()))
            }
        }
    }

    #[test]
    fn link_up_wakes_within_a_second_of_a_long_backoff() {
        let clock = outpost_hal::sim::SimClock::new(0);
        let mut net = UpAt { clock: &clock, up_at: Some(outpost_hal::time::Instant::from_secs(100)) };
        let server = Some("198.18.0.1".parse().unwrap());
        let wake = wait_or_link_up(Duration::from_secs(900), &mut net, server, &clock, &mut |d| clock.advance(d));
        assert_eq!(wake, Wake::LinkUp);
        let woke = clock.now().as_micros() / 1_000_000;
        assert!((100..=101).contains(&woke), "woke at {woke} s, link up at 100 s (the backoff said 900 s)");
    }

    #[test]
    fn without_a_link_change_the_timer_ends_the_wait() {
        let clock = outpost_hal::sim::SimClock::new(0);
        let mut net = UpAt { clock: &clock, up_at: None };
        let wake =
            wait_or_link_up(Duration::from_secs(30), &mut net, Some("198.18.0.1".parse().unwrap()), &clock, &mut |d| {
                clock.advance(d)
            });
        assert_eq!((wake, clock.now().as_micros()), (Wake::Timer, 30_000_000));
        // A link that is up all along is not an event either.
        let mut up = UpAt { clock: &clock, up_at: Some(outpost_hal::time::Instant::ZERO) };
        let wake =
            wait_or_link_up(Duration::from_secs(5), &mut up, Some("198.18.0.1".parse().unwrap()), &clock, &mut |d| {
                clock.advance(d)
            });
        assert_eq!(wake, Wake::Timer);
    }
}
