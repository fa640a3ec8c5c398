//! Why a run of the Outpost agent could not do its work: one error type
//! for the work loop and its front (`drive.rs`), with a string only where
//! `main` prints it.

use super::super::env::{EnvError, GetError};
use super::super::identity::IdentityError;
use super::super::store::StoreError;
use crate::engine::ocs::OcsError;
use crate::engine::proto::ProtoError;

/// Why a run could not do its work.
#[derive(Debug)]
pub enum AgentError {
    /// The state directory failed.
    Store(StoreError),
    /// The environment could not be set up (CA, `[download]`).
    Env(EnvError),
    /// The configuration is not usable (signing key, server URL).
    Config(String),
    /// The server could not be asked (connection, TLS, a broken body).
    Unreachable(GetError),
    /// The server refused this device: unknown device or wrong secret.
    Unauthorized {
        /// The server.
        server: String,
        /// This device.
        device: String,
    },
    /// The server answered a request with an unexpected status.
    Status {
        /// The request's path.
        path: &'static str,
        /// Its status.
        status: u16,
    },
    /// The server's answer is not a valid control message.
    BadReply(&'static str, ProtoError),
    /// An OCS server's answer is not zlib, gzip or XML.
    NotXml,
    /// An OCS server's answer is not a valid reply.
    BadOcsReply(OcsError),
    /// A package's action came before its metadata (a bug; the package
    /// stays for a later run).
    NoMetadata(u64),
    /// The device's credentials cannot be read, used or stored.
    Identity(IdentityError),
    /// The server's trust bundle was refused (`engine::trust`).
    Trust(crate::engine::trust::TrustError),
}

impl std::fmt::Display for AgentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Store(e) => write!(f, "state directory: {e}"),
            Self::Env(e) => write!(f, "{e}"),
            Self::Config(m) => f.write_str(m),
            Self::Unreachable(e) => write!(f, "{e}"),
            Self::Unauthorized { server, device } => {
                write!(
                    f,
                    "server {server} refused device {device:?}: unknown, revoked, wrong secret or client certificate (401)"
                )
            }
            Self::Status { path, status } => write!(f, "server answered {status} to {path}"),
            Self::BadReply(what, e) => write!(f, "bad {what} reply: {e}"),
            Self::NotXml => f.write_str("reply is not zlib, gzip or XML"),
            Self::BadOcsReply(e) => write!(f, "bad reply: {e}"),
            Self::NoMetadata(id) => write!(f, "package {id}: an action came before its metadata"),
            Self::Identity(e) => write!(f, "device credentials: {e}"),
            Self::Trust(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for AgentError {}

impl From<IdentityError> for AgentError {
    fn from(e: IdentityError) -> Self {
        Self::Identity(e)
    }
}

impl From<StoreError> for AgentError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}
