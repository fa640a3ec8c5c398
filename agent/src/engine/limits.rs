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
