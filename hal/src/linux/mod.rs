//! Linux implementations of the HAL traits (real IO). This is the only place
//! in the workspace that reads the system clocks.

mod blocks;
mod clock;
mod disk;
mod fs;
mod net;
mod notify;
mod power;
mod process;
mod rlimit;
mod sendfile;
mod signal;
mod sockopt;
mod trust;

pub use blocks::DirBlocks;
pub use clock::{StdClock, local_minute};
pub use disk::{LinuxDisk, space_of};
pub use fs::{IoError, OpenRegularError, open_regular_nofollow, read_nofollow, sync_dir, write_atomic};
pub use net::{SysNet, route4, route6};
pub use notify::CommandNotifier;
pub use power::{LinuxPower, RebootMethod, utmp_has_user};
pub use process::kill_group;
pub use rlimit::{NofileLimit, nofile_limit, raise_nofile_limit};
pub use sendfile::{MAX_SENDFILE, send_more, sendfile};
pub use signal::{interrupt, interrupt_with_sigusr2};
pub use sockopt::{PathInfo, path_info, set_recv_buffer, set_window_clamp, window_clamp};
pub use trust::{GROUP_OTHER_WRITE, Untrusted, current_dir_fd, euid, open_owned_dir, resolve_trusted, trusted_dir};
