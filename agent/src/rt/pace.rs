//! The runtime side of bandwidth control: one [`Pacer`] for every download
//! of the agent (the cap is global, not per stream), in both protocols.
//!
//! A download calls [`Pacer::begin`] before its request (it gets the receive
//! window to connect with) and reads its body through [`Pacer::read`], which
//! waits for the token bucket, counts the bytes and moves the connection's
//! window clamp. In dynamic mode the pacer feeds the detectors of
//! [`crate::engine::throttle`]: the byte counters of the interface that routes
//! to the fragment server every 100 ms, and an RTT sample every 100 ms from
//! the download connection itself: the kernel's receiver-side RTT, taken from
//! the TCP timestamps the server echoes in its data, so it carries the queue
//! that data waited in (RFC 9840's signal; no extra traffic). A server without
//! TCP timestamps gets a probe thread instead, which times TCP connects to it
//! every 100 ms (the SYN-ACK queues behind the download on the way back). The
//! current rate and its reason go to `STATE/rate` for `outpost-agent status`.
//!
//! Under a hard cap the connection's receive buffer holds the cap over the
//! path's RTT plus 50 ms: flow control then paces the sender at the
//! cap, instead of letting it burst a fragment at line rate into a large
//! buffer and sit idle (long enough to fall back to slow start) while the
//! agent reads it.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use outpost_hal::linux::{StdClock, SysNet, write_atomic};
use outpost_hal::net::NetMonitor;
use outpost_hal::time::{Clock, Instant};

use super::http::{Response, Url};
use crate::engine::throttle::{Reason, Throttle, TokenBucket, Window};

/// How often the interface counters are read (the share is taken over a sliding
/// `ShareDetector::WINDOW`).
const COUNTER_PERIOD: Duration = Duration::from_millis(100);
/// Least time between rewrites of `STATE/rate` for a new rate alone.
const STATUS_PERIOD: Duration = Duration::from_secs(5);
/// How often the delay controller gets an RTT sample (from the connection,
/// or from the probe thread's connects).
const SAMPLE_PERIOD: Duration = Duration::from_millis(100);
/// Under a cap, the receive buffer holds the cap over the RTT plus this: the
/// agent's reads never wait for the sender, and the sender is never idle for
/// longer than two RTTs plus this, under its retransmission timeout (at least
/// RTT + 200 ms on Linux) for RTTs up to 150 ms, so it keeps its window.
const CAP_MARGIN: Duration = Duration::from_millis(50);
/// The smallest receive buffer the pacer sets.
const MIN_RECV_BUFFER: u64 = 16 * 1024;

/// The `[download]` settings the pacer needs.
#[derive(Debug, Clone, Default)]
pub struct PaceConfig {
    /// Hard cap, bytes/s (0: none).
    pub max_bandwidth: u64,
    /// Dynamic mode.
    pub dynamic: bool,
    /// Full-speed windows (local time).
    pub windows: Vec<Window>,
}

/// Paces every download of the agent.
pub struct Pacer {
    bucket: TokenBucket,
    throttle: Throttle,
    local: PaceConfig,
    clock: StdClock,
    net: SysNet,
    target: Option<SocketAddr>,
    iface: Option<String>,
    /// Connect-time RTT samples, when the server has no TCP timestamps.
    probes: Option<Receiver<Duration>>,
    /// The latest RTT sample from a download connection, not yet used.
    conn_rtt: Option<Duration>,
    next_sample: Instant,
    /// The largest receive buffer a socket can be given (net.core.rmem_max).
    rmem_max: u64,
    agent_rx: u64,
    next_counters: Instant,
    status_path: PathBuf,
    shown: Option<(u64, Reason, Instant)>,
}

impl Pacer {
    /// A pacer with the local settings; `STATE/rate` under `state_dir`.
    pub fn new(cfg: PaceConfig, state_dir: &std::path::Path) -> Self {
        let clock = StdClock::new();
        let now = clock.now();
        Self {
            bucket: TokenBucket::new(0, now),
            throttle: Throttle::new(cfg.max_bandwidth, cfg.windows.clone(), cfg.dynamic),
            local: cfg,
            clock,
            net: SysNet::new(),
            target: None,
            iface: None,
            probes: None,
            conn_rtt: None,
            next_sample: now,
            rmem_max: std::fs::read_to_string("/proc/sys/net/core/rmem_max")
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(212_992),
            agent_rx: 0,
            next_counters: now,
            status_path: state_dir.join("rate"),
            shown: None,
        }
    }

    /// Apply the server's cap and windows for this poll (never looser than local).
    pub fn set_server_limits(&mut self, cap: u64, windows: &[Window]) {
        let mut t = Throttle::new(self.local.max_bandwidth, self.local.windows.clone(), self.local.dynamic);
        t.stricter_with(cap, windows);
        t.share = self.throttle.share.clone();
        t.delay = self.throttle.delay.clone();
        self.throttle = t;
    }

    /// Downloads now come from `addr`: watch the interface that routes to it.
    fn set_target(&mut self, addr: SocketAddr) {
        if self.target == Some(addr) {
            return;
        }
        self.target = Some(addr);
        self.iface = self.net.route_to(addr.ip()).ok().flatten();
        self.probes = None; // the old probe thread ends with its channel
        self.conn_rtt = None;
    }

    /// The download connection to the target has no TCP timestamps, so it
    /// cannot show the queue: time connects to the target instead.
    fn start_probe(&mut self) {
        let Some(addr) = self.target else { return };
        if self.probes.is_some() {
            return;
        }
        log::debug!(target: "outpost", "{addr}: no TCP timestamps, timing connects for the queuing delay");
        let (tx, rx) = channel();
        let spawned = std::thread::Builder::new().name("outpost-probe".into()).spawn(move || {
            let clock = StdClock::new();
            loop {
                let t0 = clock.now();
                let ok = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok();
                let rtt = clock.now().saturating_duration_since(t0);
                if ok && tx.send(rtt).is_err() {
                    return; // nobody listens any more
                }
                super::sleep(SAMPLE_PERIOD.saturating_sub(rtt));
            }
        });
        if spawned.is_ok() {
            self.probes = Some(rx);
        }
    }

    fn update(&mut self, now: Instant) {
        if self.throttle.dynamic {
            // From the connection, or the smallest of the probe's since the
            // last update: one sample per period.
            let sample = self.conn_rtt.take().or_else(|| self.probes.as_ref().and_then(|rx| rx.try_iter().min()));
            if let Some(rtt) = sample {
                let d = &mut self.throttle.delay;
                d.handle_rtt(now, rtt, self.agent_rx);
                log::trace!(target: "outpost", "rtt {rtt:?}, base {:?}, window {}, received {}, share limit {:?}",
                    d.delays().map(|d| d.0), d.window(), self.agent_rx, self.throttle.share.limit());
            }
            if now >= self.next_counters {
                self.next_counters = now + COUNTER_PERIOD;
                if let Some(c) = self.iface.clone().and_then(|i| self.net.counters(&i).ok()) {
                    self.throttle.share.handle_counters(now, c.rx_bytes, self.agent_rx);
                }
            }
        }
        let minute = outpost_hal::linux::local_minute(self.clock.unix_time());
        let (rate, _) = self.throttle.rate(minute);
        if rate != self.bucket.rate() {
            self.bucket.set_rate(now, rate);
        }
        let (rate, why) = self.throttle.shown(minute);
        // The rates of the two detectors move with every sample: written when
        // the reason changes, or at most every STATUS_PERIOD (it is synced:
        // flash). A new cap or window (the server's, at a poll) is written at once.
        let moves = matches!(why, Reason::OtherTraffic | Reason::Delay);
        let due = match self.shown {
            None => true,
            Some((r, w, at)) => w != why || (r != rate && (!moves || now >= at + STATUS_PERIOD)),
        };
        if due {
            self.shown = Some((rate, why, now));
            let line = format!("{rate} {} {}\n", self.clock.unix_time(), why.as_str());
            let _ = write_atomic(&self.status_path, line.as_bytes());
            log::debug!(target: "outpost", "download rate {rate} B/s ({})", why.as_str());
        }
    }

    /// How many bytes (at most `want`) may be read now; sleeps until at
    /// least one read's worth is allowed.
    fn permit(&mut self, want: usize) -> usize {
        loop {
            let now = self.clock.now();
            self.update(now);
            let budget = self.bucket.budget(now);
            if budget > 0 {
                return want.min(usize::try_from(budget).unwrap_or(usize::MAX)).max(1);
            }
            let ready = self.bucket.ready_at(now, want as u64);
            super::sleep(ready.saturating_duration_since(now).min(Duration::from_millis(100)));
        }
    }

    /// The receive window (bytes) for download connections in dynamic mode,
    /// from the delay controller: applied as each connection's window clamp,
    /// so the data in flight towards the agent, and the queue it can build at
    /// a bottleneck, follow the controller during a transfer. `None` otherwise.
    fn window(&self) -> Option<u32> {
        self.throttle.window().map(|w| u32::try_from(w).unwrap_or(u32::MAX))
    }

    /// Before a download from `url`: watch the path to it (dynamic mode) and
    /// give the receive window to open its connection with.
    pub fn begin(&mut self, url: &Url) -> Option<u32> {
        use std::net::ToSocketAddrs;
        if let Some(addr) = (url.host.as_str(), url.port).to_socket_addrs().ok().and_then(|mut a| a.next()) {
            self.set_target(addr);
        }
        self.window()
    }

    /// Read a download's body at the allowed pace: wait for the token
    /// bucket, read at most what it allows, count it, take an RTT sample
    /// from the connection, and size the connection's window and buffer.
    pub fn read(&mut self, resp: &mut Response, buf: &mut [u8]) -> std::io::Result<usize> {
        let allowed = self.permit(buf.len());
        let n = resp.read(&mut buf[..allowed])?;
        self.consumed(n);
        let paced = self.bucket.rate();
        let path = if paced > 0 || self.throttle.dynamic { resp.path_info().ok() } else { None };
        let now = self.clock.now();
        if self.throttle.dynamic && n > 0 && now >= self.next_sample {
            self.next_sample = now + SAMPLE_PERIOD;
            match path {
                Some(p) if !p.timestamps => self.start_probe(),
                Some(p) => self.conn_rtt = p.rcv_rtt.or(self.conn_rtt),
                None => {}
            }
        }
        if let Some(w) = self.window() {
            // Set again each time: the kernel's buffer autotuning raises the clamp.
            let _ = resp.set_window(w);
            // The clamp bounds what is in flight, not what the sender may
            // push into the buffer while reads are paced: after a yield, an
            // autotuned buffer let it go on at full speed for most of a
            // second. Paced, the buffer holds a quarter second at the rate,
            // so flow control follows the reads. Otherwise the kernel
            // autotunes it: a buffer that is set cannot grow past
            // net.core.rmem_max (208 KiB on a default Debian), which would
            // hold a long fat path below the link.
            if paced > 0 {
                let size = (paced / 4).max(MIN_RECV_BUFFER);
                let _ = resp.set_recv_buffer(usize::try_from(size).unwrap_or(usize::MAX));
            } else {
                resp.unlock_recv_buffer();
            }
        } else if paced == 0 {
            // Unlimited now: back to the kernel's autotuning (on a new
            // connection, if this one's buffer was set).
            resp.unlock_recv_buffer();
        } else if let Some(p) = path {
            let rtt = p.rcv_rtt.map_or(p.rtt, |r| r.max(p.rtt));
            match cap_recv_buffer(paced, rtt, self.rmem_max) {
                Some(size) => {
                    let _ = resp.set_recv_buffer(usize::try_from(size).unwrap_or(usize::MAX));
                }
                None => resp.unlock_recv_buffer(),
            }
        }
        Ok(n)
    }

    /// `n` bytes of a body that was read without the pacer (a poll reply, an
    /// info file, a manifest): the cap covers them too, as a debt later
    /// downloads pay, and the share detector counts them as the agent's.
    pub fn charge(&mut self, n: usize) {
        let now = self.clock.now();
        self.update(now);
        self.bucket.charge(now, n as u64);
        self.agent_rx += n as u64;
    }

    /// `n` bytes were read.
    fn consumed(&mut self, n: usize) {
        let now = self.clock.now();
        self.bucket.consume(now, n as u64);
        self.agent_rx += n as u64;
    }
}

/// The receive buffer for a connection read at a cap of `rate` bytes/s over
/// a path with this RTT: the rate over the RTT plus [`CAP_MARGIN`], at least
/// [`MIN_RECV_BUFFER`]. `None` (leave it to the kernel's autotuning) when it
/// would be larger than `rmem_max`: a buffer that is set cannot grow past
/// that, while autotuning can.
fn cap_recv_buffer(rate: u64, rtt: Duration, rmem_max: u64) -> Option<u64> {
    let span = (rtt + CAP_MARGIN).as_micros();
    let size = u64::try_from(u128::from(rate) * span / 1_000_000).unwrap_or(u64::MAX).max(MIN_RECV_BUFFER);
    (size <= rmem_max).then_some(size)
}

/// `outpost-agent status`'s line about the rate, from `STATE/rate`.
pub fn status_line(state_dir: &std::path::Path, now_unix: u64) -> String {
    let Ok(s) = std::fs::read_to_string(state_dir.join("rate")) else { return "download rate: idle".into() };
    let mut w = s.trim().splitn(3, ' ');
    let (rate, at, why) = (w.next().unwrap_or("0"), w.next().unwrap_or("0"), w.next().unwrap_or(""));
    let at: u64 = at.parse().unwrap_or(0);
    if now_unix.saturating_sub(at) > 60 && why == "unlimited" {
        return "download rate: idle".into();
    }
    match rate {
        "0" => format!("download rate: unlimited (since {}s)", now_unix.saturating_sub(at)),
        r => format!("download rate: {r} B/s, limited by {why} (since {}s)", now_unix.saturating_sub(at)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_a_cap_the_buffer_holds_the_rtt_plus_a_margin_at_the_cap() {
        let ms = Duration::from_millis;
        // 500 kB/s over 40 ms + 50 ms.
        assert_eq!(cap_recv_buffer(500_000, ms(40), 212_992), Some(45_000));
        // Never below 16 KiB: a slow cap still fills a segment train.
        assert_eq!(cap_recv_buffer(16_384, ms(1), 212_992), Some(MIN_RECV_BUFFER));
        // A fast cap on a long path: more than a socket can be given, so the
        // kernel keeps autotuning.
        assert_eq!(cap_recv_buffer(100 << 20, ms(40), 212_992), None);
        assert_eq!(cap_recv_buffer(2_000_000, ms(50), 4 << 20), Some(200_000));
    }
}
