//! Linux implementations of the HAL traits (real IO). This is the only place
//! in the workspace that reads the system clocks.

mod blocks;
mod clock;
mod disk;
mod fs;
mod net;
mod notify;
mod power;

pub use blocks::DirBlocks;
pub use clock::StdClock;
pub use disk::{LinuxDisk, space_of};
pub use fs::{IoError, sync_dir, write_atomic};
pub use net::{SysNet, route4, route6};
pub use notify::CommandNotifier;
pub use power::{LinuxPower, RebootMethod, utmp_has_user};
