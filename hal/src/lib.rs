//! # outpost-hal: the hardware abstraction the Outpost agent runs on
//!
//! Small traits, one capability each, every method fallible. Each trait has a
//! Linux implementation (`linux`, feature `std`) and a simulated one (`sim`,
//! feature `sim`) that tests drive and fault-inject.
//!
//! ```text
//!   agent runtime ──► Clock       ──► linux::StdClock   | sim::SimClock
//!                 ──► DiskSpace   ──► linux::LinuxDisk  | sim::SimDisk
//!                 ──► BlockStore  ──► linux::DirBlocks  | sim::SimBlocks
//!                 ──► Notifier    ──► linux::CommandNotifier | sim::SimNotifier
//!                 ──► NetMonitor  ──► linux::SysNet     | sim::SimNet
//!                 ──► Power       ──► linux::LinuxPower | sim::SimPower
//! ```
//!
//! The core of the agent never touches these directly: the runtime reads them
//! and hands the values (`now`, free space) to the pure state machines.
#![cfg_attr(not(feature = "std"), no_std)]
#![warn(missing_docs)]

extern crate alloc;

pub mod net;
pub mod notify;
pub mod power;
pub mod storage;
pub mod time;

#[cfg(feature = "std")]
pub mod linux;
#[cfg(feature = "sim")]
pub mod sim;

/// What went wrong, independent of the implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The storage has no room for the write.
    StorageFull,
    /// The named object does not exist.
    NotFound,
    /// Any other input/output failure.
    Io,
    /// The (simulated) power was cut during the operation.
    PowerLoss,
    /// The network link is down.
    LinkDown,
    /// The operation did not finish in time.
    TimedOut,
    /// The platform cannot do this.
    Unsupported,
    /// Anything else.
    Other,
}

impl core::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::StorageFull => "storage full",
            Self::NotFound => "not found",
            Self::Io => "input/output error",
            Self::PowerLoss => "power lost",
            Self::LinkDown => "link down",
            Self::TimedOut => "timed out",
            Self::Unsupported => "unsupported",
            Self::Other => "other error",
        })
    }
}

/// An error of a HAL implementation, reducible to an [`ErrorKind`].
pub trait Error: core::fmt::Debug + core::fmt::Display {
    /// The implementation-independent kind of this error.
    fn kind(&self) -> ErrorKind;
}

impl Error for ErrorKind {
    fn kind(&self) -> ErrorKind {
        *self
    }
}

/// Every HAL error kind is an [`embedded_io`] error kind, so the byte
/// boundaries of the HAL and the engine speak `embedded-io` (its kinds are
/// coarser: a full disk is `OutOfMemory`, a power cut `Interrupted`).
impl embedded_io::Error for ErrorKind {
    fn kind(&self) -> embedded_io::ErrorKind {
        match self {
            Self::StorageFull => embedded_io::ErrorKind::OutOfMemory,
            Self::NotFound => embedded_io::ErrorKind::NotFound,
            Self::PowerLoss => embedded_io::ErrorKind::Interrupted,
            Self::LinkDown => embedded_io::ErrorKind::NotConnected,
            Self::TimedOut => embedded_io::ErrorKind::TimedOut,
            Self::Unsupported => embedded_io::ErrorKind::Unsupported,
            Self::Io | Self::Other => embedded_io::ErrorKind::Other,
        }
    }
}

/// Ties an implementation to its error type.
pub trait ErrorType {
    /// The error the implementation returns.
    type Error: Error;
}

impl<T: ErrorType + ?Sized> ErrorType for &mut T {
    type Error = T::Error;
}
