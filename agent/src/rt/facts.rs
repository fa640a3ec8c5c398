//! Gathers the device's facts ([`crate::engine::facts`]) for each poll: the
//! host name and kernel release from `/proc/sys/kernel`, the architecture
//! and OS this agent was built for, the free space of the state directory
//! (`statvfs` through the HAL) and `[agent] tags`.

use std::path::Path;

use crate::engine::facts::Facts;

fn proc_value(name: &str) -> String {
    std::fs::read_to_string(Path::new("/proc/sys/kernel").join(name))
        .map(|s| s.trim().chars().take(crate::engine::facts::MAX_VALUE_LEN).collect())
        .unwrap_or_default()
}

/// The facts of this device now, with `tags` and the state directory `state_dir`.
pub fn gather(state_dir: &Path, tags: &[String]) -> Facts {
    Facts {
        host: proc_value("hostname"),
        os: std::env::consts::OS.into(),
        os_version: proc_value("osrelease"),
        arch: std::env::consts::ARCH.into(),
        agent: env!("CARGO_PKG_VERSION").into(),
        free: outpost_hal::linux::space_of(state_dir).ok().map(|s| s.available),
        tags: tags.to_vec(),
    }
}
