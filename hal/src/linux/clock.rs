//! The real clocks.

use crate::time::{Clock, Instant};

/// Monotonic time from `std::time::Instant`, wall time from `SystemTime`.
#[derive(Debug, Clone, Copy)]
pub struct StdClock {
    origin: std::time::Instant,
}

impl StdClock {
    /// A clock whose epoch is the moment of this call.
    pub fn new() -> Self {
        #[allow(clippy::disallowed_methods)]
        Self { origin: std::time::Instant::now() }
    }
}

impl Default for StdClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for StdClock {
    fn now(&self) -> Instant {
        let micros = u64::try_from(self.origin.elapsed().as_micros()).unwrap_or(u64::MAX);
        Instant::from_micros(micros)
    }

    fn unix_time(&self) -> u64 {
        #[allow(clippy::disallowed_methods)]
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    }
}

/// Minutes since local midnight (0..1440) at Unix time `unix`, in the
/// process's time zone (`localtime_r`).
#[allow(unsafe_code)]
pub fn local_minute(unix: u64) -> u16 {
    let t = libc::time_t::try_from(unix).unwrap_or(0);
    // SAFETY: localtime_r only writes into the tm we pass; both pointers are valid.
    let tm = unsafe {
        let mut tm = std::mem::zeroed::<libc::tm>();
        libc::localtime_r(&t, &mut tm);
        tm
    };
    (tm.tm_hour * 60 + tm.tm_min).clamp(0, 1439) as u16
}
