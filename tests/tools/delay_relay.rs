//! `outpost-delay-relay TUN DELAY_MS`: holds every packet the kernel routes
//! into the TUN device for DELAY_MS, then hands it back, in order.
//!
//! This kernel has no netem, so `scripts/bench-bandwidth --rtt MS` builds a
//! relay namespace between server and client. Policy routing there sends
//! every forwarded packet into the TUN device; what this program writes back
//! is routed normally (by the main table) towards its destination. Both
//! directions pass, so the round trip grows by twice DELAY_MS. The device
//! must exist (`ip tuntap add dev NAME mode tun`). Packets beyond 16 MiB held
//! are dropped, as a router's full queue would.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// `struct ifreq` as TUNSETIFF reads it: a name and the flags.
#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: libc::c_short,
    _pad: [u8; 22],
}

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const MAX_HELD: usize = 16 << 20;

#[allow(unsafe_code)]
fn attach(name: &str) -> std::io::Result<File> {
    let dev = OpenOptions::new().read(true).write(true).open("/dev/net/tun")?;
    let mut req = IfReq { name: [0; 16], flags: (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short, _pad: [0; 22] };
    let n = name.len().min(15);
    req.name[..n].copy_from_slice(&name.as_bytes()[..n]);
    // SAFETY: a valid descriptor and a pointer to a live ifreq-shaped struct.
    if unsafe { libc::ioctl(dev.as_raw_fd(), TUNSETIFF, &mut req as *mut IfReq) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(dev)
}

/// Wait until `dev` is readable or `timeout` passes; true when readable.
#[allow(unsafe_code)]
fn readable(dev: &File, timeout: Option<Duration>) -> bool {
    let mut p = libc::pollfd { fd: dev.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    let ms = timeout.map_or(-1, |t| i32::try_from(t.as_micros().div_ceil(1000)).unwrap_or(i32::MAX));
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, ms) > 0 && p.revents & libc::POLLIN != 0 }
}

#[allow(clippy::disallowed_methods)] // real time is this tool's whole job
fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(name), Some(Ok(ms))) = (args.get(1), args.get(2).map(|s| s.parse::<u64>())) else {
        eprintln!("usage: outpost-delay-relay TUN DELAY_MS");
        return ExitCode::from(2);
    };
    let delay = Duration::from_millis(ms);
    let mut dev = match attach(name) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("outpost-delay-relay: cannot attach to {name}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut held: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
    let mut bytes = 0usize;
    let mut buf = vec![0u8; 65_536];
    loop {
        let now = Instant::now();
        while held.front().is_some_and(|(due, _)| *due <= now) {
            if let Some((_, p)) = held.pop_front() {
                bytes -= p.len();
                let _ = dev.write(&p);
            }
        }
        let wait = held.front().map(|(due, _)| due.saturating_duration_since(now));
        if !readable(&dev, wait) {
            continue;
        }
        match dev.read(&mut buf) {
            Ok(n) if bytes + n <= MAX_HELD => {
                bytes += n;
                held.push_back((Instant::now() + delay, buf[..n].to_vec()));
            }
            Ok(_) => {} // full: dropped
            Err(e) => {
                eprintln!("outpost-delay-relay: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
}
