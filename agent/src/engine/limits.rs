//! Every capacity of the core, in one place. Exceeding one is a typed error.

/// Largest info file accepted, in bytes.
pub const MAX_INFO_LEN: usize = 64 * 1024;
/// Largest manifest accepted, in bytes (about 24 000 fragments).
pub const MAX_MANIFEST_LEN: usize = 1024 * 1024;
/// Most fragments one package may have.
pub const MAX_FRAGMENTS: usize = 20_000;
/// Largest control-API message (poll reply, report batch), in bytes.
pub const MAX_CONTROL_LEN: usize = 256 * 1024;
/// Most packages one poll reply may list.
pub const MAX_POLL_PACKAGES: usize = 1_000;
/// Most reports in one report request.
pub const MAX_REPORTS_PER_REQUEST: usize = 64;
/// Largest client certificate, and largest private key, a poll reply or
/// the state directory may hand the agent, in bytes (DER; a certificate
/// from `device add` is about 450).
pub const MAX_CREDENTIAL_LEN: usize = 8 * 1024;
/// Longest status code accepted, in bytes.
pub const MAX_STATUS_LEN: usize = 64;
/// Largest journal record, in bytes.
pub const MAX_RECORD_LEN: usize = 64 * 1024;
/// Deepest element nesting in an OCS XML message (the root is level 1). Real
/// messages nest 5 deep (`REQUEST/CONTENT/DOWNLOAD/HISTORY/PACKAGE`); roxmltree
/// recurses once per level, so a few thousand overflow a thread's stack.
pub const MAX_XML_DEPTH: usize = 64;
/// Most attributes on one element of an OCS XML message (a PROLOG reply's
/// `PARAM` has 11); roxmltree checks duplicates in time quadratic in this.
pub const MAX_XML_ATTRIBUTES_PER_ELEMENT: usize = 64;
/// Most elements in one OCS XML message: 8 MiB (the server's inflate bound)
/// at 32 bytes an element. A real inventory has about 42 bytes an element
/// (Debian's ocsinventory-agent 2.10: 306,520 bytes, 7,241 elements).
pub const MAX_XML_ELEMENTS: usize = 262_144;
/// Most attributes in one OCS XML message (real ones have a few: the
/// agents' inventories use elements, the history one `ID` per package).
pub const MAX_XML_ATTRIBUTES: usize = 65_536;
/// Unpacked bytes allowed to a package whose size is not signed (OCS servers,
/// manifests from before the size was recorded): 4 GiB, far above real
/// packages (an office suite unpacks to about 1 GiB) yet a bound a gzip bomb
/// (1,032:1 at best) or a GNU sparse member cannot pass.
pub const MAX_UNPACKED_BYTES: u64 = 4 << 30;
/// Members allowed to a package whose count is not signed: an office suite
/// has about 10,000 files; 100,000 empty ones made from 620 KB was the attack.
pub const MAX_UNPACKED_MEMBERS: u64 = 65_536;
/// Longest member path or link target, in bytes: Linux's `PATH_MAX` is 4096
/// for the whole path, of which the state directory takes a part.
pub const MAX_MEMBER_PATH: usize = 1024;
/// Most components in a member path: each costs a `lstat` per member, so a
/// bound keeps a many-member archive from costing members × depth calls.
pub const MAX_MEMBER_DEPTH: usize = 64;
/// Archive bytes read for one member besides its data: headers, GNU long
/// names and links, PAX records (the tar reader holds them in memory).
pub const MAX_MEMBER_META: u64 = 64 * 1024;
/// How long digest mismatches may go on (wall time since the first of an
/// unbroken series) before the package ends `ERR_BAD_DIGEST`: a day outlasts
/// a flaky proxy or a passing attacker on the fragment path; a burst never ends it.
pub const DIGEST_GIVE_UP_SECS: u64 = 86_400;
/// Bytes a broken-off fragment answer must have brought for the agent to
/// resume at once; less counts as a failed try (with backoff). Without it, a
/// fragment server sending one byte per connection made the agent connect
/// once per byte of the fragment.
pub const MIN_RESUME_PROGRESS: u64 = 64 * 1024;
/// Longest package name a signed manifest may carry (`package add --name`
/// with `--version`), in bytes.
pub const MAX_PACKAGE_NAME_LEN: usize = 64;
/// Most dotted parts of a package version (`1.10.2` has 3).
pub const MAX_VERSION_PARTS: usize = 8;
/// Package names whose highest version the agent keeps (`STATE/versions`):
/// past it, the name run least recently is forgotten. At the longest names
/// and versions the record stays under [`MAX_RECORD_LEN`].
pub const MAX_VERSION_LINES: usize = 512;
/// Package ids the history of installed packages keeps (`STATE/history`):
/// past it, the oldest is forgotten (a forgotten package offered again,
/// unforced, would run again; servers do not offer a package that reported
/// success). At ten bytes an id the record stays under [`MAX_RECORD_LEN`].
pub const MAX_HISTORY_IDS: usize = 4096;
/// Largest trust bundle accepted, in bytes (eight CAs of a few KiB each).
pub const MAX_TRUST_LEN: usize = 64 * 1024;
/// Most CA certificates in a trust bundle: a rollover needs two at a time.
pub const MAX_TRUST_CAS: usize = 8;
/// Most signing keys (and signatures) in a trust bundle: a rollover needs
/// two at a time; retired keys stay listed a while so they stay retired.
pub const MAX_TRUST_KEYS: usize = 8;
/// Most depots (other fragment locations) one poll reply may list
/// (`engine::sources`); the server sends the most specific ones.
pub const MAX_DEPOTS: usize = 4;
