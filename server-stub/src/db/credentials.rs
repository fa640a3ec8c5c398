//! What an Outpost device authenticates with, and how that changes:
//! `device add` (a secret, and a client certificate when the CA's key is
//! here), `device rotate` (new ones staged beside the old), `device revoke`.
//! Every request is checked against these rows as they are now, so a
//! revocation or a promotion takes effect on the next request, kept-alive
//! connections included.
//!
//! ```text
//!  devices.secret_sha256 + device_certs.cert_sha256     the current credentials
//!  rotations(secret, cert, key)                         staged by `device rotate`, sent with
//!                                                       every poll reply until used
//!  revoked_devices                                      refused, whatever they present
//!
//!  request: secret matches current ─► cert check ─► ok
//!           secret matches staged  ─► cert check ─► promoted: staged becomes current,
//!                                                   the old secret and certificate die
//!  cert check: a certificate presented must be the one recorded with that secret;
//!              none presented is refused only with require_client_cert
//! ```
//!
//! Secrets are kept as SHA-256 and compared in constant time; a staged
//! rotation keeps its secret and key in clear (the device has not got them
//! yet), in `state.db` (0600), until it is used.

use super::sql::OptionalExtension;
use crate::params;
use outpost_agent::engine::identity::Credentials;
use outpost_agent::engine::manifest::sha256;

use super::{Db, DbResult, KIND_OUTPOST};
use crate::ct::constant_time_eq;
use crate::pki::Fingerprint;
use crate::time::now_rfc3339;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS device_certs(device TEXT PRIMARY KEY REFERENCES devices(id), cert_sha256 BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS rotations(
    device TEXT PRIMARY KEY REFERENCES devices(id), secret TEXT NOT NULL, secret_sha256 BLOB NOT NULL,
    cert BLOB NOT NULL, key BLOB NOT NULL, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS revoked_devices(device TEXT PRIMARY KEY REFERENCES devices(id), revoked TEXT NOT NULL);
";

/// What a request presents.
#[derive(Debug, Clone, Copy)]
pub struct Presented<'a> {
    /// SHA-256 of the secret of its `Authorization` header.
    pub secret_sha256: &'a [u8; 32],
    /// The fingerprint of the client certificate its connection presented.
    pub cert: Option<&'a Fingerprint>,
}

/// Why credentials were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No such Outpost device, or a secret that is neither its current nor its staged one.
    WrongSecret,
    /// The device is revoked.
    Revoked,
    /// The right secret without a client certificate, where one is required.
    NoCertificate,
    /// The right secret with a certificate that is not the one recorded with it.
    WrongCertificate,
}

impl Refusal {
    /// For the log (never the secret).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WrongSecret => "unknown device or wrong secret",
            Self::Revoked => "the device is revoked",
            Self::NoCertificate => "the right secret without the device's client certificate",
            Self::WrongCertificate => "the right secret with a client certificate that is not the device's",
        }
    }
}

/// The outcome of [`Db::authenticate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The current credentials; `staged`: new ones wait to be sent to the
    /// device at its poll ([`Db::staged_rotation`]).
    Current {
        /// A rotation is staged.
        staged: bool,
    },
    /// The staged ones, used for the first time: they are current now and
    /// the old ones are refused from now on.
    Rotated,
    /// Refused.
    Refused(Refusal),
}

/// What [`Db::stage_rotation`] and [`Db::revoke`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Done.
    Done,
    /// Done, and it replaced a rotation staged before and not used yet.
    Replaced,
    /// No Outpost device has this id.
    NoDevice,
    /// The device is revoked (for `revoke`: already).
    Revoked,
}

impl Db {
    /// Register an Outpost device with its secret's hash and, if it has one,
    /// its client certificate's fingerprint; `false` if the id exists.
    pub fn add_device_with_cert(
        &mut self,
        id: &str,
        secret_sha256: &[u8; 32],
        cert: Option<&Fingerprint>,
    ) -> DbResult<bool> {
        let tx = self.conn.transaction()?;
        let added = super::insert_device(&tx, id, KIND_OUTPOST, Some(&secret_sha256[..]), &now_rfc3339())?;
        if added && let Some(c) = cert {
            tx.execute("INSERT INTO device_certs(device, cert_sha256) VALUES (?1, ?2)", params![id, &c[..]])?;
        }
        tx.commit()?;
        Ok(added)
    }

    /// Register many Outpost devices (id, secret hash; no client
    /// certificate) in one transaction, as `add_device` does one by one;
    /// ids that exist are left as they are. Returns how many were added.
    /// For provisioning in bulk (and the scale bench): one commit, one
    /// fsync, instead of one per device.
    pub fn add_devices(&mut self, devices: &[(String, [u8; 32])]) -> DbResult<usize> {
        let tx = self.conn.transaction()?;
        let now = now_rfc3339();
        let mut added = 0;
        for (id, secret) in devices {
            added += usize::from(super::insert_device(&tx, id, KIND_OUTPOST, Some(&secret[..]), &now)?);
        }
        tx.commit()?;
        Ok(added)
    }

    /// Check what a request from `device` presents, as the database is now;
    /// with `require_cert`, a client certificate is needed. Using staged
    /// credentials promotes them, in the same transaction.
    pub fn authenticate(&mut self, device: &str, p: &Presented<'_>, require_cert: bool) -> DbResult<Verdict> {
        // One read, outside any transaction: a request costs one round trip
        // to PostgreSQL here, not four. Only a promotion writes.
        type Row = (Option<Vec<u8>>, Option<Vec<u8>>, bool, Option<Vec<u8>>, Option<Vec<u8>>);
        let row: Option<Row> = self
            .conn
            .prepare_cached(
                "SELECT d.secret_sha256, c.cert_sha256, r.device IS NOT NULL, s.secret_sha256, s.cert FROM devices d
                 LEFT JOIN device_certs c ON c.device = d.id LEFT JOIN revoked_devices r ON r.device = d.id
                 LEFT JOIN rotations s ON s.device = d.id
                 WHERE d.id = ?1 AND d.kind = ?2",
            )?
            .query_row(params![device, KIND_OUTPOST], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
            .optional()?;
        let (current, current_cert, revoked, staged_secret, staged_cert) =
            row.unwrap_or((None, None, false, None, None));
        let staged: Option<(Vec<u8>, Vec<u8>)> = staged_secret.zip(staged_cert);
        // Both comparisons, whatever exists: the same work for every claim.
        let matches = |stored: Option<&Vec<u8>>| {
            let zero = vec![0u8; 32];
            let stored = stored.unwrap_or(&zero);
            constant_time_eq(p.secret_sha256, stored) && *stored != zero
        };
        let (is_current, is_staged) = (matches(current.as_ref()), matches(staged.as_ref().map(|s| &s.0)));
        let expected_cert = match (is_current, is_staged) {
            _ if revoked => return Ok(Verdict::Refused(Refusal::Revoked)),
            (true, _) => current_cert,
            (false, true) => staged.as_ref().filter(|s| !s.1.is_empty()).map(|s| sha256(&s.1).to_vec()),
            (false, false) => return Ok(Verdict::Refused(Refusal::WrongSecret)),
        };
        match (p.cert, expected_cert) {
            (Some(got), Some(want)) if constant_time_eq(got, &want) => {}
            (Some(_), _) => return Ok(Verdict::Refused(Refusal::WrongCertificate)),
            (None, _) if require_cert => return Ok(Verdict::Refused(Refusal::NoCertificate)),
            (None, _) => {}
        }
        if is_current {
            return Ok(Verdict::Current { staged: staged.is_some() });
        }
        let Some((secret_sha256, cert)) = staged else { return Ok(Verdict::Refused(Refusal::WrongSecret)) };
        let tx = self.conn.transaction()?;
        // Still staged? (Another instance may have promoted it meanwhile:
        // then these are the current credentials already.)
        if tx
            .execute("DELETE FROM rotations WHERE device = ?1 AND secret_sha256 = ?2", params![device, secret_sha256])?
            == 0
        {
            let now: Option<Vec<u8>> =
                tx.query_row("SELECT secret_sha256 FROM devices WHERE id = ?1", [device], |r| r.get(0))?;
            return Ok(if matches(now.as_ref()) {
                Verdict::Current { staged: false }
            } else {
                Verdict::Refused(Refusal::WrongSecret)
            });
        }
        tx.execute("UPDATE devices SET secret_sha256 = ?1 WHERE id = ?2", params![secret_sha256, device])?;
        tx.execute("DELETE FROM device_certs WHERE device = ?1", [device])?;
        if !cert.is_empty() {
            tx.execute(
                "INSERT INTO device_certs(device, cert_sha256) VALUES (?1, ?2)",
                params![device, &sha256(&cert)[..]],
            )?;
        }
        tx.commit()?;
        Ok(Verdict::Rotated)
    }

    /// Stage new credentials for `device` (`device rotate`): accepted beside
    /// the current ones until first used. `cert` and `key` (DER) may be
    /// empty: a secret alone.
    pub fn stage_rotation(&mut self, device: &str, new: &Credentials) -> DbResult<Change> {
        let tx = self.conn.transaction()?;
        if let Some(c) = outpost_state(&tx, device)? {
            return Ok(c);
        }
        let replaced = tx.execute("DELETE FROM rotations WHERE device = ?1", [device])? > 0;
        tx.execute(
            "INSERT INTO rotations(device, secret, secret_sha256, cert, key, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![device, new.secret, &sha256(new.secret.as_bytes())[..], new.cert, new.key, now_rfc3339()],
        )?;
        tx.commit()?;
        Ok(if replaced { Change::Replaced } else { Change::Done })
    }

    /// The credentials staged for `device`, if any: what its poll replies carry.
    pub fn staged_rotation(&self, device: &str) -> DbResult<Option<Credentials>> {
        self.conn
            .prepare_cached("SELECT secret, cert, key FROM rotations WHERE device = ?1")?
            .query_row([device], |r| Ok(Credentials { secret: r.get(0)?, cert: r.get(1)?, key: r.get(2)? }))
            .optional()
    }

    /// Revoke `device`: its secret, certificate and any staged rotation are
    /// forgotten and it is marked revoked, for good.
    pub fn revoke(&mut self, device: &str) -> DbResult<Change> {
        let tx = self.conn.transaction()?;
        if let Some(c) = outpost_state(&tx, device)? {
            return Ok(c);
        }
        tx.execute("UPDATE devices SET secret_sha256 = NULL WHERE id = ?1", [device])?;
        tx.execute("DELETE FROM device_certs WHERE device = ?1", [device])?;
        let replaced = tx.execute("DELETE FROM rotations WHERE device = ?1", [device])? > 0;
        tx.execute("INSERT INTO revoked_devices(device, revoked) VALUES (?1, ?2)", params![device, now_rfc3339()])?;
        tx.commit()?;
        Ok(if replaced { Change::Replaced } else { Change::Done })
    }

    /// Whether `device` is revoked.
    pub fn is_revoked(&self, device: &str) -> DbResult<bool> {
        let q = self.conn.query_row("SELECT 1 FROM revoked_devices WHERE device = ?1", [device], |_| Ok(()));
        Ok(q.optional()?.is_some())
    }
}

/// `None` when `device` is an Outpost device that is not revoked; else why
/// nothing can be changed for it.
fn outpost_state(tx: &super::Conn, device: &str) -> DbResult<Option<Change>> {
    let q = tx.query_row(
        "SELECT r.device IS NOT NULL FROM devices d LEFT JOIN revoked_devices r ON r.device = d.id
         WHERE d.id = ?1 AND d.kind = ?2",
        params![device, KIND_OUTPOST],
        |r| r.get::<_, bool>(0),
    );
    Ok(match q.optional()? {
        None => Some(Change::NoDevice),
        Some(true) => Some(Change::Revoked),
        Some(false) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(tag: &str) -> Db {
        crate::db::test_db(tag)
    }

    fn creds(secret: &str, cert: &[u8]) -> Credentials {
        Credentials { secret: secret.into(), cert: cert.to_vec(), key: if cert.is_empty() { vec![] } else { vec![9] } }
    }

    /// Authenticate `secret` with the certificate `cert` (its DER, or none).
    fn auth(d: &mut Db, secret: &str, cert: Option<&[u8]>, require: bool) -> Verdict {
        let fp = cert.map(sha256);
        let p = Presented { secret_sha256: &sha256(secret.as_bytes()), cert: fp.as_ref() };
        d.authenticate("pc1", &p, require).unwrap()
    }

    #[test]
    fn many_devices_are_added_at_once_and_existing_ids_kept() {
        let mut d = db("bulk");
        assert!(d.add_device("pc1", &sha256(b"old")).unwrap());
        let many: Vec<(String, [u8; 32])> = (0..500).map(|i| (format!("pc{i}"), sha256(b"new"))).collect();
        assert_eq!(d.add_devices(&many).unwrap(), 499, "pc1 existed");
        assert_eq!(d.device_secret("pc1").unwrap().unwrap(), sha256(b"old"), "an existing device keeps its secret");
        assert_eq!(d.device_secret("pc499").unwrap().unwrap(), sha256(b"new"));
    }

    #[test]
    fn the_certificate_must_be_the_one_recorded_with_the_secret() {
        let mut d = db("cert");
        assert!(d.add_device_with_cert("pc1", &sha256(b"s1"), Some(&sha256(b"cert1"))).unwrap());
        d.add_device_with_cert("pc2", &sha256(b"s2"), Some(&sha256(b"cert2"))).unwrap();
        assert_eq!(auth(&mut d, "s1", Some(b"cert1"), true), Verdict::Current { staged: false });
        assert_eq!(auth(&mut d, "s1", None, true), Verdict::Refused(Refusal::NoCertificate), "a stolen secret alone");
        assert_eq!(auth(&mut d, "s1", None, false), Verdict::Current { staged: false }, "not required: older agents");
        assert_eq!(auth(&mut d, "s1", Some(b"cert2"), false), Verdict::Refused(Refusal::WrongCertificate), "pc2's");
        assert_eq!(auth(&mut d, "s2", Some(b"cert2"), true), Verdict::Refused(Refusal::WrongSecret), "pc2's secret");
        assert_eq!(auth(&mut d, "nope", Some(b"cert1"), true), Verdict::Refused(Refusal::WrongSecret));
    }

    #[test]
    fn a_staged_rotation_works_beside_the_old_until_used_then_alone() {
        let mut d = db("rotate");
        d.add_device_with_cert("pc1", &sha256(b"old"), Some(&sha256(b"oldcert"))).unwrap();
        assert_eq!(d.stage_rotation("pc1", &creds("new", b"newcert")).unwrap(), Change::Done);
        assert_eq!(d.staged_rotation("pc1").unwrap(), Some(creds("new", b"newcert")));
        assert_eq!(
            auth(&mut d, "old", Some(b"oldcert"), true),
            Verdict::Current { staged: true },
            "the old still works"
        );
        assert_eq!(auth(&mut d, "new", Some(b"oldcert"), true), Verdict::Refused(Refusal::WrongCertificate));
        assert_eq!(auth(&mut d, "new", Some(b"newcert"), true), Verdict::Rotated);
        assert_eq!(d.staged_rotation("pc1").unwrap(), None, "the key is forgotten once delivered and used");
        assert_eq!(auth(&mut d, "old", Some(b"oldcert"), true), Verdict::Refused(Refusal::WrongSecret));
        assert_eq!(auth(&mut d, "new", Some(b"oldcert"), true), Verdict::Refused(Refusal::WrongCertificate));
        assert_eq!(auth(&mut d, "new", Some(b"newcert"), true), Verdict::Current { staged: false });
        // Rotating again before use replaces the staged credentials.
        d.stage_rotation("pc1", &creds("newer", b"c3")).unwrap();
        assert_eq!(d.stage_rotation("pc1", &creds("newest", b"")).unwrap(), Change::Replaced);
        assert_eq!(auth(&mut d, "newer", Some(b"c3"), false), Verdict::Refused(Refusal::WrongSecret));
        assert_eq!(auth(&mut d, "newest", None, false), Verdict::Rotated, "a secret alone, without the CA key");
        assert_eq!(auth(&mut d, "new", Some(b"newcert"), false), Verdict::Refused(Refusal::WrongSecret));
    }

    #[test]
    fn a_revoked_device_is_refused_whatever_it_presents() {
        let mut d = db("revoke");
        d.add_device_with_cert("pc1", &sha256(b"s1"), Some(&sha256(b"c1"))).unwrap();
        d.stage_rotation("pc1", &creds("s2", b"c2")).unwrap();
        assert_eq!(d.revoke("pc1").unwrap(), Change::Replaced, "the staged rotation went too");
        assert!(d.is_revoked("pc1").unwrap());
        assert_eq!(auth(&mut d, "s1", Some(b"c1"), false), Verdict::Refused(Refusal::Revoked));
        assert_eq!(auth(&mut d, "s2", Some(b"c2"), false), Verdict::Refused(Refusal::Revoked));
        assert_eq!(d.revoke("pc1").unwrap(), Change::Revoked);
        assert_eq!(d.stage_rotation("pc1", &creds("s3", b"")).unwrap(), Change::Revoked, "no way back by rotation");
        assert_eq!(d.revoke("nobody").unwrap(), Change::NoDevice);
        assert_eq!(d.device_secret("pc1").unwrap(), None);
    }
}
