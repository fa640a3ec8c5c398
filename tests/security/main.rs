//! The security suite: one module per attack the outside review made on
//! Outpost (issue "Nothing an attacker sends takes Outpost down or gets in"),
//! each test named for the attack it makes and checked to fail on the code
//! before its defence. SECURITY.md maps each defence to its test here.
//!
//! Server (real `outpost-server` processes on 127.0.0.1):
//! 1. [`xml_bombs`]: deeply nested and attribute-heavy OCS bodies; a
//!    request slow to handle, which must not stall other clients.
//! 2. [`exhaustion`]: connection floods, stalled readers, idle keep-alive
//!    connections, descriptor limits.
//!    [`ocs_flood`]: fake DEVICEID floods, oversized histories.
//! 3. [`ocs_kind`]: OCS queries writing to Outpost devices; empty ERR.
//! 4. [`lockout`]: guessing device secrets and Basic credentials.
//! 5. [`http_hygiene`]: smuggling-prone headers, HTTP/1.0 keep-alive,
//!    close_notify, responses split into segments (delayed-ACK stalls).
//! 6. [`server_files`]: file modes, the CA key kept offline.
//! 11. [`networks`]: connections from outside `networks`, admin routes from
//!     outside `admin_networks`, forwarding headers from untrusted clients.
//!
//! Agent:
//! 7. [`state_dir`]: a local user and a world-writable state directory.
//! 8. [`bounded_reads`]: a fragment server that never ends its head.
//! 9. [`unpack_bombs`]: sparse and many-member archives, mode bits.
//! 10. [`digest_burst`]: a burst of corrupt answers is not a final failure.
//! 12. [`allowed`]: a package the endpoint does not allow (`allowed_actions`,
//!     `allowed_store_paths`).
//! 13. [`expiry`]: a replayed offer of a package past its manifest's expiry.
//!
//! Both:
//! 14. [`client_cert`]: a stolen device secret without the device's client
//!     certificate, another device's certificate, one from another CA; a
//!     revoked device on an open connection; rotation of a device's
//!     credentials over its verified channel, with crashes in between.
//!
//! Server identity (issue 12):
//! 15. [`server_cert`]: a certificate near its end renewed by the running
//!     server (or warned about with the CA key offline), `tls --add-san`,
//!     an existing CA or intermediate given to `init`, and what it refuses.
//!
//! Agent (issue 12, no rollback):
//! 16. [`downgrade`]: a replayed offer of an older version of a package.
//!
//! Chain of trust (issue 12):
//! 17. [`rollover`]: a CA or signing key learned from a man in the middle or
//!     vouched for by no trusted key; the CA and key rollovers themselves.

mod allowed;
mod bounded_reads;
mod client_cert;
mod digest_burst;
mod downgrade;
mod exhaustion;
mod expiry;
mod http_hygiene;
mod lockout;
mod networks;
mod ocs_flood;
mod ocs_kind;
mod rollover;
mod server_cert;
mod server_files;
mod state_dir;
mod unpack_bombs;
mod xml_bombs;
