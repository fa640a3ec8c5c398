//! A linear scan of OCS XML text that refuses a document beyond the bounds
//! of [`crate::engine::limits`] before roxmltree parses it.
//!
//! roxmltree recurses once per nesting level (a few thousand levels, 140
//! bytes once zlib-compressed, overflow a thread's stack and abort the whole
//! process) and checks every attribute against each earlier one of its
//! element (tens of thousands of attributes take seconds). This scan counts
//! depth, attributes and elements in one pass over the bytes, with no
//! recursion and no allocation.
//!
//! It follows the markup just far enough to count what roxmltree would
//! build: comments, CDATA sections and processing instructions are stepped
//! over to the same terminator roxmltree looks for, quoted attribute values
//! likewise, and anything it cannot follow (a DTD, `<` inside a tag, an end
//! tag with nothing open, an unterminated construct) is refused as
//! malformed, which roxmltree would refuse too. So a document that passes
//! holds no element, level or attribute the scan did not count.

use core::fmt;

use crate::engine::limits::{MAX_XML_ATTRIBUTES, MAX_XML_ATTRIBUTES_PER_ELEMENT, MAX_XML_DEPTH, MAX_XML_ELEMENTS};

/// Namespace declarations (`xmlns`, `xmlns:p`) a document may hold in all.
/// OCS messages use none; roxmltree copies every namespace in scope into
/// each element it builds, so a few thousand declarations in scope times
/// tens of thousands of elements cost it minutes and gigabytes (a 13 KB
/// zlib body took about 30 min of CPU and 0.5 GB) while every other bound
/// holds.
pub const MAX_XML_NAMESPACES: usize = 4;

/// Why a document was refused before parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanError {
    /// Elements nested deeper than [`MAX_XML_DEPTH`].
    TooDeep,
    /// One element has more than [`MAX_XML_ATTRIBUTES_PER_ELEMENT`] attributes.
    TooManyAttributesOnElement,
    /// More than [`MAX_XML_ELEMENTS`] elements.
    TooManyElements,
    /// More than [`MAX_XML_ATTRIBUTES`] attributes in all.
    TooManyAttributes,
    /// More than [`MAX_XML_NAMESPACES`] namespace declarations in all.
    TooManyNamespaces,
    /// Markup the scan cannot follow, and that roxmltree would refuse too.
    Malformed(&'static str),
}

impl fmt::Display for ScanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooDeep => write!(f, "elements nested deeper than {MAX_XML_DEPTH}"),
            Self::TooManyAttributesOnElement => {
                write!(f, "an element with more than {MAX_XML_ATTRIBUTES_PER_ELEMENT} attributes")
            }
            Self::TooManyElements => write!(f, "more than {MAX_XML_ELEMENTS} elements"),
            Self::TooManyAttributes => write!(f, "more than {MAX_XML_ATTRIBUTES} attributes"),
            Self::TooManyNamespaces => write!(f, "more than {MAX_XML_NAMESPACES} namespace declarations"),
            Self::Malformed(why) => write!(f, "malformed XML: {why}"),
        }
    }
}

impl core::error::Error for ScanError {}

/// What a document holds, as counted by [`scan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Shape {
    /// Deepest nesting (the root element is at depth 1).
    pub depth: usize,
    /// Elements.
    pub elements: usize,
    /// Attributes, namespace declarations included.
    pub attributes: usize,
    /// Namespace declarations (`xmlns`, `xmlns:p`).
    pub namespaces: usize,
}

/// Count `xml`'s depth, elements and attributes; refuse it at the first
/// bound it exceeds. Time linear in `xml.len()`, constant memory.
pub fn scan(xml: &str) -> Result<Shape, ScanError> {
    let b = xml.as_bytes();
    let mut shape = Shape::default();
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(lt) = find_byte(b, i, b'<') {
        let rest = &b[lt..];
        i = if rest.starts_with(b"<!--") {
            skip_past(b, lt + 4, b"-->", "an unterminated comment")?
        } else if rest.starts_with(b"<![CDATA[") {
            skip_past(b, lt + 9, b"]]>", "an unterminated CDATA section")?
        } else if rest.starts_with(b"<?") {
            skip_past(b, lt + 2, b"?>", "an unterminated processing instruction")?
        } else if rest.starts_with(b"<!") {
            return Err(ScanError::Malformed("a DTD or other declaration"));
        } else if rest.starts_with(b"</") {
            depth = depth.checked_sub(1).ok_or(ScanError::Malformed("an end tag with no open element"))?;
            find_byte(b, lt + 2, b'>').ok_or(ScanError::Malformed("an unterminated end tag"))? + 1
        } else {
            let tag = start_tag(b, lt + 1)?;
            let level = depth + 1;
            if level > MAX_XML_DEPTH {
                return Err(ScanError::TooDeep);
            }
            shape.depth = shape.depth.max(level);
            shape.elements += 1;
            if shape.elements > MAX_XML_ELEMENTS {
                return Err(ScanError::TooManyElements);
            }
            shape.attributes += tag.attributes;
            if shape.attributes > MAX_XML_ATTRIBUTES {
                return Err(ScanError::TooManyAttributes);
            }
            shape.namespaces += tag.namespaces;
            if shape.namespaces > MAX_XML_NAMESPACES {
                return Err(ScanError::TooManyNamespaces);
            }
            if !tag.empty {
                depth = level;
            }
            tag.end
        };
    }
    Ok(shape)
}

/// A start tag, as far as counting needs.
struct StartTag {
    /// Index just past its `>`.
    end: usize,
    /// Quoted values in it: one per attribute.
    attributes: usize,
    /// Attributes among them named `xmlns` or `xmlns:…`.
    namespaces: usize,
    /// `<x/>`: opens no level.
    empty: bool,
}

/// Read the start tag whose name begins at `from` (just past its `<`).
fn start_tag(b: &[u8], from: usize) -> Result<StartTag, ScanError> {
    let (mut attributes, mut namespaces) = (0, 0);
    let mut j = from;
    loop {
        match b.get(j) {
            None => return Err(ScanError::Malformed("an unterminated tag")),
            Some(b'>') => return Ok(StartTag { end: j + 1, attributes, namespaces, empty: false }),
            Some(b'/') if b.get(j + 1) == Some(&b'>') => {
                return Ok(StartTag { end: j + 2, attributes, namespaces, empty: true });
            }
            Some(b'<') => return Err(ScanError::Malformed("'<' inside a tag")),
            Some(&quote @ (b'"' | b'\'')) => {
                attributes += 1;
                if attributes > MAX_XML_ATTRIBUTES_PER_ELEMENT {
                    return Err(ScanError::TooManyAttributesOnElement);
                }
                if declares_namespace(&b[from..j]) {
                    namespaces += 1;
                }
                let close =
                    find_byte(b, j + 1, quote).ok_or(ScanError::Malformed("an unterminated attribute value"))?;
                if b[j + 1..close].contains(&b'<') {
                    return Err(ScanError::Malformed("'<' in an attribute value"));
                }
                j = close + 1;
            }
            Some(_) => j += 1,
        }
    }
}

/// Whether the attribute whose value starts just after `before` (the tag
/// from its name up to that quote) is named `xmlns` or `xmlns:…`: the name
/// is the run of non-space bytes before the `=` (spaces allowed around it).
fn declares_namespace(before: &[u8]) -> bool {
    let is_space = |c: &u8| matches!(c, b' ' | b'\t' | b'\r' | b'\n');
    let Some(eq) = before.iter().rposition(|c| !is_space(c)) else { return false };
    if before[eq] != b'=' {
        return false;
    }
    let Some(last) = before[..eq].iter().rposition(|c| !is_space(c)) else { return false };
    let start = before[..last].iter().rposition(is_space).map_or(0, |p| p + 1);
    let name = &before[start..=last];
    name == b"xmlns" || name.starts_with(b"xmlns:")
}

/// Index of the first `byte` at or after `from`.
fn find_byte(b: &[u8], from: usize, byte: u8) -> Option<usize> {
    b.get(from..)?.iter().position(|&c| c == byte).map(|p| from + p)
}

/// Index just past the first `end` at or after `from`.
fn skip_past(b: &[u8], from: usize, end: &[u8], unterminated: &'static str) -> Result<usize, ScanError> {
    b.get(from..)
        .and_then(|rest| rest.windows(end.len()).position(|w| w == end))
        .map(|p| from + p + end.len())
        .ok_or(ScanError::Malformed(unterminated))
}

#[cfg(test)]
mod tests {
    use alloc::format;
    use alloc::string::String;

    use super::*;

    fn nested(levels: usize) -> String {
        format!("{}{}", "<a>".repeat(levels), "</a>".repeat(levels))
    }

    fn with_attributes(n: usize) -> String {
        let attrs: String = (0..n).map(|i| format!(" a{i}=\"v\"")).collect();
        format!("<REQUEST{attrs}/>")
    }

    /// An inventory shaped like the one the Debian `ocsinventory-agent` 2.10
    /// wrote for a Debian 12 host: 306,520 bytes, 7,241 elements, depth 4
    /// (5 with a download history), 765 `SOFTWARES` of 7 fields (about 42
    /// bytes per element).
    fn inventory(softwares: usize) -> String {
        let mut s = String::from(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<REQUEST>\n  <CONTENT>\n    <HARDWARE>\n      <NAME>vm</NAME>\n      <OSNAME>Debian GNU/Linux 12</OSNAME>\n    </HARDWARE>\n",
        );
        for i in 0..softwares {
            s.push_str(&format!(
                "    <SOFTWARES>\n      <ARCHITECTURE>all</ARCHITECTURE>\n      <COMMENTS>add &amp; remove users</COMMENTS>\n      <FILESIZE>702464</FILESIZE>\n      <FROM>deb</FROM>\n      <INSTALLDATE>2025/04/20 00:00:00</INSTALLDATE>\n      <NAME>package-{i:06}</NAME>\n      <VERSION>3.134</VERSION>\n    </SOFTWARES>\n"
            ));
        }
        s.push_str("    <DOWNLOAD>\n      <HISTORY>\n        <PACKAGE ID=\"1700000000\" />\n      </HISTORY>\n    </DOWNLOAD>\n  </CONTENT>\n  <DEVICEID>vm-2026-12-02-07-21-01</DEVICEID>\n  <QUERY>INVENTORY</QUERY>\n</REQUEST>\n");
        s
    }

    #[test]
    fn real_inventories_pass_with_room_to_spare() {
        let shape = scan(&inventory(765)).unwrap();
        assert_eq!(shape, Shape { depth: 5, elements: 10 + 765 * 8, attributes: 1, namespaces: 0 });
        // As many packages as fill the server's 8 MiB inflate bound.
        let per_package = inventory(1).len() - inventory(0).len();
        let big = inventory((8 * 1024 * 1024 - inventory(0).len()) / per_package);
        assert!(big.len() <= 8 * 1024 * 1024);
        assert!(scan(&big).is_ok(), "{} bytes", big.len());
    }

    #[test]
    fn depth_is_bounded() {
        assert_eq!(scan(&nested(MAX_XML_DEPTH)).unwrap().depth, MAX_XML_DEPTH);
        assert_eq!(scan(&nested(MAX_XML_DEPTH + 1)), Err(ScanError::TooDeep));
        // An empty element one level too deep counts too.
        let leaf = format!("{}<b/>{}", "<a>".repeat(MAX_XML_DEPTH), "</a>".repeat(MAX_XML_DEPTH));
        assert_eq!(scan(&leaf), Err(ScanError::TooDeep));
        // Never closed: refused at the level that crosses the bound.
        assert_eq!(scan(&"<a>".repeat(100_000)), Err(ScanError::TooDeep));
        // Siblings do not add depth.
        assert_eq!(scan(&format!("<r>{}</r>", "<a><b/></a>".repeat(1000))).unwrap().depth, 3);
    }

    #[test]
    fn attributes_are_bounded_per_element_and_in_all() {
        assert_eq!(scan(&with_attributes(MAX_XML_ATTRIBUTES_PER_ELEMENT)).unwrap().attributes, 64);
        assert_eq!(
            scan(&with_attributes(MAX_XML_ATTRIBUTES_PER_ELEMENT + 1)),
            Err(ScanError::TooManyAttributesOnElement)
        );
        assert_eq!(scan(&with_attributes(50_000)), Err(ScanError::TooManyAttributesOnElement));
        let per = MAX_XML_ATTRIBUTES_PER_ELEMENT;
        let el = format!("<e{}/>", (0..per).map(|i| format!(" a{i}=''")).collect::<String>());
        let many = format!("<r>{}</r>", el.repeat(MAX_XML_ATTRIBUTES / per + 1));
        assert_eq!(scan(&many), Err(ScanError::TooManyAttributes));
    }

    #[test]
    fn elements_are_bounded() {
        assert!(scan(&format!("<r>{}</r>", "<a/>".repeat(MAX_XML_ELEMENTS - 1))).is_ok());
        assert_eq!(scan(&format!("<r>{}</r>", "<a/>".repeat(MAX_XML_ELEMENTS))), Err(ScanError::TooManyElements));
    }

    /// The namespace bomb of issue 10's review: 62 nested elements each
    /// declaring 64 prefixes, then 61,500 leaves each declaring one more.
    /// Within the depth, element and attribute bounds (1.05 MB of text,
    /// 12.8 KB of zlib), it cost roxmltree 0.20 about 30 min of CPU and
    /// 0.5 GB, as each element copies the 3,968 namespaces in scope.
    fn namespace_bomb() -> String {
        let mut s = String::new();
        for level in 0..62 {
            s.push_str("<e");
            for n in 0..64 {
                s.push_str(&format!(" xmlns:p{}=\"u{n}\"", level * 64 + n));
            }
            s.push('>');
        }
        s.push_str(&"<l xmlns:q=\"u\"/>".repeat(61_500));
        s.push_str(&"</e>".repeat(62));
        s
    }

    #[test]
    fn a_namespace_bomb_is_refused() {
        let bomb = namespace_bomb();
        // Every other bound holds: only the namespace count refuses it.
        const { assert!(62 + 61_500 < MAX_XML_ELEMENTS && 62 * 64 + 61_500 <= MAX_XML_ATTRIBUTES && 63 <= MAX_XML_DEPTH) };
        assert!(bomb.len() < 8 * 1024 * 1024, "{} bytes", bomb.len());
        assert_eq!(scan(&bomb), Err(ScanError::TooManyNamespaces));
        // Spread thin, one a leaf, it is refused just the same.
        let leaves = format!("<r>{}</r>", "<l xmlns:q='u'/>".repeat(MAX_XML_NAMESPACES + 1));
        assert_eq!(scan(&leaves), Err(ScanError::TooManyNamespaces));
    }

    #[test]
    fn namespace_declarations_are_told_from_other_attributes() {
        let few = "<r xmlns='a' xmlns:p = \"b\"><p:x\txmlns:q\n=\n'c' xmlnsx='d' a:xmlns='e' v='xmlns:'/></r>";
        assert_eq!(scan(few).unwrap(), Shape { depth: 2, elements: 2, attributes: 6, namespaces: 3 });
        let limit = format!("<r>{}</r>", "<l xmlns='u'/>".repeat(MAX_XML_NAMESPACES));
        assert_eq!(scan(&limit).unwrap().namespaces, MAX_XML_NAMESPACES);
    }

    #[test]
    fn markup_that_hides_no_elements_is_stepped_over() {
        let doc = "<?xml version='1.0'?><!-- <a><a> --><r x=\"a>b\" y='\"/>'><![CDATA[<a><a>]]><?pi <a>?>t &amp; u</r>";
        assert_eq!(scan(doc).unwrap(), Shape { depth: 1, elements: 1, attributes: 2, namespaces: 0 });
        assert!(roxmltree::Document::parse(doc).is_ok(), "roxmltree reads it the same way");
    }

    #[test]
    fn markup_it_cannot_follow_is_refused() {
        for bad in [
            "<!DOCTYPE r [<!ENTITY e 'x'>]><r/>",
            "<r><!ELEMENT r ANY></r>",
            "</r>",
            "<r a=\"<b>\"/>",
            "<r <b/>",
            "<r a=\"x",
            "<r",
            "<r><!-- x",
            "<r><![CDATA[ x",
            "<r><?pi",
            "<r></r",
        ] {
            assert!(matches!(scan(bad), Err(ScanError::Malformed(_))), "{bad}");
        }
        assert_eq!(scan(""), Ok(Shape::default()));
        assert_eq!(scan("no markup"), Ok(Shape::default()));
    }
}
