//! The device's credentials (secret, client certificate and its key) and
//! how a rotation (`outpost-server device rotate`) moves from the old ones to
//! the new without a visit and without a lockout. Sans-IO: the runtime
//! (`rt/identity.rs`) stores the [`Identity`] record and feeds the answers.
//!
//! ```text
//!  poll reply carries `identity …` (new credentials, staged on the server)
//!     └─► received(new): current = new, previous = what was used ──► save, then use
//!  a request with `current` answered (not 401)
//!     └─► accepted(): previous forgotten ──► save
//!  a request with `current` refused (401) while a `previous` is kept
//!     └─► refused(): current = previous ──► save, then use
//! ```
//!
//! Why no step can lock the device out. The server keeps accepting the old
//! credentials until the new ones are used once, and sends the new ones with
//! every poll until then. So: a crash before the record is saved leaves the
//! old ones in use, still accepted, and the next poll brings the new ones
//! again; a crash after it leaves the new ones in use, accepted as staged
//! (or already promoted). If the new ones are refused (the admin rotated
//! again before this device used them, which replaces them on the server),
//! the old ones are still there to fall back to, and still accepted, and the
//! next poll brings the newest.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use serde::{Deserialize, Serialize};

use super::limits::MAX_CREDENTIAL_LEN;

/// One set of credentials: what a request presents.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Credentials {
    /// The secret of the `Authorization` header.
    pub secret: String,
    /// DER of the client certificate (empty: none).
    pub cert: Vec<u8>,
    /// PKCS#8 DER of the certificate's private key (empty with no certificate).
    pub key: Vec<u8>,
}

/// Without the secret and the key: `Debug` output ends up in logs.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Credentials {{ secret: <{} chars>, cert: <{} bytes>, key: <hidden> }}",
            self.secret.len(),
            self.cert.len()
        )
    }
}

impl Credentials {
    /// Whether these are well formed: a secret that [`valid_secret`] takes,
    /// and a certificate with its key or neither, each within
    /// [`MAX_CREDENTIAL_LEN`].
    pub fn is_valid(&self) -> bool {
        valid_secret(&self.secret)
            && self.cert.is_empty() == self.key.is_empty()
            && self.cert.len() <= MAX_CREDENTIAL_LEN
            && self.key.len() <= MAX_CREDENTIAL_LEN
    }

    /// Whether they hold a client certificate.
    pub fn has_cert(&self) -> bool {
        !self.cert.is_empty()
    }
}

/// Secrets the server hands out: 16 to 256 of `A-Za-z0-9` (`device add` and
/// `device rotate` make 64 hex digits). Nothing that could break the
/// `Authorization` header.
pub fn valid_secret(s: &str) -> bool {
    (16..=256).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The credentials a device uses, as the state directory keeps them once a
/// rotation has reached it (before that, the configuration's are used).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The device they belong to: a record for another id (a configuration
    /// replaced by one for another device) is not used.
    pub device_id: String,
    /// What requests present.
    pub current: Credentials,
    /// What worked before `current` was received, kept until `current` has
    /// been accepted once.
    pub previous: Option<Credentials>,
}

impl Identity {
    /// The configuration's credentials, nothing received yet.
    pub fn new(device_id: String, current: Credentials) -> Self {
        Self { device_id, current, previous: None }
    }

    /// New credentials arrived over the verified channel. `true`: the record
    /// changed, save it before using `current`. The same credentials again
    /// change nothing.
    pub fn received(&mut self, new: Credentials) -> bool {
        if new == self.current {
            return false;
        }
        let used = core::mem::replace(&mut self.current, new);
        // After a fallback, the one that worked is `used`; before one, too.
        self.previous = Some(used);
        true
    }

    /// A request with `current` was authenticated: the server has retired
    /// the older credentials. `true`: the record changed, save it.
    pub fn accepted(&mut self) -> bool {
        self.previous.take().is_some()
    }

    /// A request with `current` was refused (401). `true` when there was a
    /// `previous` to fall back to: it is `current` now; save the record and
    /// ask again with it.
    pub fn refused(&mut self) -> bool {
        match self.previous.take() {
            Some(p) => {
                self.current = p;
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    fn creds(secret: &str, cert: u8) -> Credentials {
        Credentials { secret: secret.to_string(), cert: vec![cert; 3], key: vec![cert; 2] }
    }

    #[test]
    fn a_rotation_is_used_then_the_old_credentials_forgotten() {
        let (old, new) = (creds("0123456789abcdef", 1), creds("fedcba9876543210", 2));
        let mut id = Identity::new("pc-1".into(), old.clone());
        assert!(!id.accepted(), "nothing to forget");
        assert!(id.received(new.clone()));
        assert_eq!((&id.current, id.previous.as_ref()), (&new, Some(&old)), "the old kept until the new works");
        assert!(!id.received(new.clone()), "the same again changes nothing");
        assert!(id.accepted());
        assert_eq!((&id.current, &id.previous), (&new, &None));
        assert!(!id.refused(), "no fallback left: the device reports the refusal");
    }

    #[test]
    fn refused_new_credentials_fall_back_and_a_newer_rotation_replaces_them() {
        let (old, new, newer) =
            (creds("0123456789abcdef", 1), creds("fedcba9876543210", 2), creds("aaaabbbbccccdddd", 3));
        let mut id = Identity::new("pc-1".into(), old.clone());
        id.received(new);
        // The admin rotated again before the device used `new`: refused.
        assert!(id.refused());
        assert_eq!((&id.current, &id.previous), (&old, &None));
        // The old ones work, and the poll brings the newest.
        assert!(!id.accepted());
        assert!(id.received(newer.clone()));
        assert_eq!((&id.current, id.previous.as_ref()), (&newer, Some(&old)));
    }

    #[test]
    fn credentials_are_checked_and_debug_hides_the_secrets() {
        assert!(creds("0123456789abcdef", 1).is_valid());
        assert!(Credentials { secret: "0123456789abcdef".into(), ..Default::default() }.is_valid(), "no certificate");
        assert!(!creds("short", 1).is_valid());
        assert!(!creds("0123456789abcdef 1", 1).is_valid(), "a space would break the header");
        assert!(
            !Credentials { key: vec![], ..creds("0123456789abcdef", 1) }.is_valid(),
            "a certificate without its key"
        );
        let big = Credentials { cert: vec![1; MAX_CREDENTIAL_LEN + 1], ..creds("0123456789abcdef", 1) };
        assert!(!big.is_valid());
        let shown = alloc::format!("{:?}", creds("0123456789abcdef", 7));
        assert!(!shown.contains("0123456789abcdef") && !shown.contains("[7, 7]"), "{shown}");
    }
}
