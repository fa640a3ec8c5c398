//! Deterministic simulators: a clock that tests advance and a disk whose
//! unsynced state vanishes on a power cut and that can run full.
//! One simulator per file; each is what its Linux counterpart is, with a
//! switch for the fault tests need.

mod blocks;
mod clock;
mod disk;
mod link;
mod net;
mod notify;
mod power;

pub use blocks::SimBlocks;
pub use clock::SimClock;
pub use disk::SimDisk;
pub use link::{LinkFault, SimLink, Transfer, TransferEnd};
pub use net::SimNet;
pub use notify::SimNotifier;
pub use power::SimPower;
