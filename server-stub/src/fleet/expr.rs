//! The filter language over device facts (`device list --where`, dynamic
//! groups):
//!
//! ```text
//! expr    := and ("or" and)*
//! and     := unary ("and" unary)*
//! unary   := "not" unary | "(" expr ")" | FIELD OP VALUE
//! OP      := = | != | < | > | <= | >=
//! VALUE   := "string" | NUMBER[K|M|G|T] | DURATION (30s, 15m, 12h, 7d, 2w)
//! ```
//!
//! Fields: `id`, `host`, `os`, `os_version`, `arch`, `agent_version`,
//! `address`, `kind` (strings; `<`/`>` compare them as versions, numbers
//! numerically: `"0.10" > "0.9"`), `free` (bytes), `last_contact` (the age
//! of the last contact: `last_contact > 7d` is "not seen for a week"; a
//! device never seen is older than anything) and `tag` (`tag = "kiosk"`:
//! has the tag; `!=`: has not). A comparison with an unknown value (free
//! space not reported) is false. Input is at most [`MAX_LEN`] bytes and
//! [`MAX_DEPTH`] levels deep; errors give the byte offset.

use std::cmp::Ordering;
use std::fmt;

/// Longest expression accepted, bytes.
pub const MAX_LEN: usize = 1024;
/// Deepest nesting of `not` and parentheses.
pub const MAX_DEPTH: usize = 32;

/// Why an expression was refused: what, at which byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    /// Byte offset in the input.
    pub at: usize,
    /// What is wrong.
    pub kind: ErrorKind,
}

/// The kinds of [`ExprError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// Longer than [`MAX_LEN`].
    TooLong,
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// A character that starts no token.
    BadChar(char),
    /// A string without its closing quote.
    UnclosedString,
    /// Not one of the fields.
    UnknownField(String),
    /// Something else than what the grammar wants here.
    Expected(&'static str),
    /// A value of the wrong type for its field (`free = "x"`).
    BadValue(&'static str),
    /// An operator the field does not have (`tag < "a"`).
    BadOperator(&'static str),
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at byte {}: ", self.at)?;
        match &self.kind {
            ErrorKind::TooLong => write!(f, "expression longer than {MAX_LEN} bytes"),
            ErrorKind::TooDeep => write!(f, "nested deeper than {MAX_DEPTH} levels"),
            ErrorKind::BadChar(c) => write!(f, "unexpected character {c:?}"),
            ErrorKind::UnclosedString => f.write_str("string without its closing quote"),
            ErrorKind::UnknownField(n) => write!(
                f,
                "unknown field {n:?} (fields: id host os os_version arch agent_version address kind free last_contact tag)"
            ),
            ErrorKind::Expected(w) => write!(f, "expected {w}"),
            ErrorKind::BadValue(w) => write!(f, "expected {w}"),
            ErrorKind::BadOperator(w) => f.write_str(w),
        }
    }
}

impl std::error::Error for ExprError {}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Op(Op),
    Open,
    Close,
    End,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `>`
    Gt,
    /// `<=`
    Le,
    /// `>=`
    Ge,
}

impl Op {
    fn holds(self, o: Ordering) -> bool {
        match self {
            Op::Eq => o == Ordering::Equal,
            Op::Ne => o != Ordering::Equal,
            Op::Lt => o == Ordering::Less,
            Op::Gt => o == Ordering::Greater,
            Op::Le => o != Ordering::Greater,
            Op::Ge => o != Ordering::Less,
        }
    }
}

fn lex(s: &str) -> Result<Vec<(usize, Tok)>, ExprError> {
    if s.len() > MAX_LEN {
        return Err(ExprError { at: MAX_LEN, kind: ErrorKind::TooLong });
    }
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        let tok = match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'(' => Tok::Open,
            b')' => Tok::Close,
            b'"' => {
                let end = s[i + 1..].find('"').ok_or(ExprError { at: i, kind: ErrorKind::UnclosedString })?;
                out.push((start, Tok::Str(s[i + 1..i + 1 + end].to_string())));
                i += end + 2;
                continue;
            }
            b'=' => Tok::Op(Op::Eq),
            b'!' | b'<' | b'>' => {
                let eq = b.get(i + 1) == Some(&b'=');
                let op = match (c, eq) {
                    (b'!', true) => Op::Ne,
                    (b'<', false) => Op::Lt,
                    (b'<', true) => Op::Le,
                    (b'>', false) => Op::Gt,
                    (b'>', true) => Op::Ge,
                    _ => return Err(ExprError { at: i, kind: ErrorKind::BadChar('!') }),
                };
                i += usize::from(eq);
                Tok::Op(op)
            }
            c if c.is_ascii_alphanumeric() || c == b'_' || c == b'.' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.') {
                    i += 1;
                }
                out.push((start, Tok::Word(s[start..i].to_string())));
                continue;
            }
            _ => {
                let ch = s[i..].chars().next().unwrap_or('?');
                return Err(ExprError { at: i, kind: ErrorKind::BadChar(ch) });
            }
        };
        out.push((start, tok));
        i += 1;
    }
    out.push((s.len(), Tok::End));
    Ok(out)
}

/// A fact a comparison reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// Device id.
    Id,
    /// Host name.
    Host,
    /// Operating system.
    Os,
    /// Its version.
    OsVersion,
    /// Architecture.
    Arch,
    /// Agent version.
    AgentVersion,
    /// Last address seen.
    Address,
    /// `outpost` or `ocs`.
    Kind,
    /// Free bytes of the state directory.
    Free,
    /// Age of the last contact.
    LastContact,
    /// A tag.
    Tag,
}

/// The right side of a comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A string.
    Str(String),
    /// Bytes or seconds.
    Num(u64),
}

/// A parsed expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// Both.
    And(Box<Expr>, Box<Expr>),
    /// Either.
    Or(Box<Expr>, Box<Expr>),
    /// Negation.
    Not(Box<Expr>),
    /// One comparison.
    Cmp(Field, Op, Value),
}

/// What a device looks like to an expression.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject<'a> {
    /// Device id.
    pub id: &'a str,
    /// Device kind.
    pub kind: &'a str,
    /// Host name.
    pub host: &'a str,
    /// Operating system.
    pub os: &'a str,
    /// Its version.
    pub os_version: &'a str,
    /// Architecture.
    pub arch: &'a str,
    /// Agent version.
    pub agent_version: &'a str,
    /// Last address.
    pub address: &'a str,
    /// Free bytes.
    pub free: Option<u64>,
    /// Seconds since the last contact (`None`: never).
    pub age: Option<u64>,
    /// Tags.
    pub tags: &'a [String],
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> &(usize, Tok) {
        &self.toks[self.pos.min(self.toks.len() - 1)]
    }
    fn next(&mut self) -> (usize, Tok) {
        let t = self.peek().clone();
        self.pos += 1;
        t
    }
    fn keyword(&self, k: &str) -> bool {
        matches!(&self.peek().1, Tok::Word(w) if w.eq_ignore_ascii_case(k))
    }
    fn deeper(&mut self) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ExprError { at: self.peek().0, kind: ErrorKind::TooDeep });
        }
        Ok(())
    }
    fn or(&mut self) -> Result<Expr, ExprError> {
        let mut e = self.and()?;
        while self.keyword("or") {
            self.pos += 1;
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }
    fn and(&mut self) -> Result<Expr, ExprError> {
        let mut e = self.unary()?;
        while self.keyword("and") {
            self.pos += 1;
            e = Expr::And(Box::new(e), Box::new(self.unary()?));
        }
        Ok(e)
    }
    fn unary(&mut self) -> Result<Expr, ExprError> {
        if self.keyword("not") {
            self.pos += 1;
            self.deeper()?;
            let e = Expr::Not(Box::new(self.unary()?));
            self.depth -= 1;
            return Ok(e);
        }
        let (at, t) = self.next();
        match t {
            Tok::Open => {
                self.deeper()?;
                let e = self.or()?;
                self.depth -= 1;
                match self.next() {
                    (_, Tok::Close) => Ok(e),
                    (at, _) => Err(ExprError { at, kind: ErrorKind::Expected("')'") }),
                }
            }
            Tok::Word(w) => self.comparison(at, &w),
            _ => Err(ExprError { at, kind: ErrorKind::Expected("a field, 'not' or '('") }),
        }
    }
    fn comparison(&mut self, at: usize, name: &str) -> Result<Expr, ExprError> {
        let field = match name {
            "id" => Field::Id,
            "host" => Field::Host,
            "os" => Field::Os,
            "os_version" => Field::OsVersion,
            "arch" => Field::Arch,
            "agent_version" | "agent" => Field::AgentVersion,
            "address" => Field::Address,
            "kind" => Field::Kind,
            "free" => Field::Free,
            "last_contact" => Field::LastContact,
            "tag" => Field::Tag,
            _ => return Err(ExprError { at, kind: ErrorKind::UnknownField(name.into()) }),
        };
        let (at, op) = match self.next() {
            (at, Tok::Op(op)) => (at, op),
            (at, _) => return Err(ExprError { at, kind: ErrorKind::Expected("an operator (= != < > <= >=)") }),
        };
        if field == Field::Tag && !matches!(op, Op::Eq | Op::Ne) {
            return Err(ExprError { at, kind: ErrorKind::BadOperator("a tag is compared with = or != only") });
        }
        let (at, v) = self.next();
        let value = match (field, v) {
            (Field::Free, Tok::Word(w)) => Value::Num(
                number(&w, SIZES)
                    .ok_or(ExprError { at, kind: ErrorKind::BadValue("a size in bytes (1000, 64K, 2G)") })?,
            ),
            (Field::LastContact, Tok::Word(w)) => Value::Num(
                number(&w, DURATIONS)
                    .ok_or(ExprError { at, kind: ErrorKind::BadValue("a duration (30s, 15m, 12h, 7d, 2w)") })?,
            ),
            (Field::Free, _) => return Err(ExprError { at, kind: ErrorKind::BadValue("a size in bytes") }),
            (Field::LastContact, _) => return Err(ExprError { at, kind: ErrorKind::BadValue("a duration") }),
            (_, Tok::Str(s)) => Value::Str(s),
            _ => return Err(ExprError { at, kind: ErrorKind::BadValue("a \"quoted string\"") }),
        };
        Ok(Expr::Cmp(field, op, value))
    }
}

const SIZES: &[(char, u64)] = &[('K', 1 << 10), ('M', 1 << 20), ('G', 1 << 30), ('T', 1 << 40)];
const DURATIONS: &[(char, u64)] = &[('s', 1), ('m', 60), ('h', 3600), ('d', 86400), ('w', 7 * 86400)];

fn number(w: &str, units: &[(char, u64)]) -> Option<u64> {
    let (digits, mul) = match units.iter().find(|(c, _)| w.ends_with(*c)) {
        Some((c, m)) => (&w[..w.len() - c.len_utf8()], *m),
        None if units == SIZES => (w, 1),
        None => return None,
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(mul)
}

/// Compare two strings as versions where both are dotted numbers (and the
/// like: digit runs compare as numbers, other characters as bytes).
pub fn version_cmp(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    loop {
        match (x.first(), y.first()) {
            (None, None) => return Ordering::Equal,
            (None, _) => return Ordering::Less,
            (_, None) => return Ordering::Greater,
            (Some(p), Some(q)) if p.is_ascii_digit() && q.is_ascii_digit() => {
                let run = |s: &[u8]| s.iter().take_while(|c| c.is_ascii_digit()).count();
                let (m, n) = (run(x), run(y));
                let strip = |s: &[u8]| {
                    let z = s.iter().take_while(|c| **c == b'0').count();
                    s[z..].to_vec()
                };
                let (dx, dy) = (strip(&x[..m]), strip(&y[..n]));
                let o = dx.len().cmp(&dy.len()).then_with(|| dx.cmp(&dy));
                if o != Ordering::Equal {
                    return o;
                }
                x = &x[m..];
                y = &y[n..];
            }
            (Some(p), Some(q)) => {
                if p != q {
                    return p.cmp(q);
                }
                x = &x[1..];
                y = &y[1..];
            }
        }
    }
}

impl Expr {
    /// Parse `s`.
    pub fn parse(s: &str) -> Result<Self, ExprError> {
        let mut p = Parser { toks: lex(s)?, pos: 0, depth: 0 };
        let e = p.or()?;
        match p.next() {
            (_, Tok::End) => Ok(e),
            (at, _) => Err(ExprError { at, kind: ErrorKind::Expected("'and', 'or' or the end") }),
        }
    }

    /// Whether `d` matches.
    pub fn matches(&self, d: &Subject<'_>) -> bool {
        match self {
            Expr::And(a, b) => a.matches(d) && b.matches(d),
            Expr::Or(a, b) => a.matches(d) || b.matches(d),
            Expr::Not(a) => !a.matches(d),
            Expr::Cmp(Field::Tag, op, Value::Str(t)) => d.tags.iter().any(|x| x == t) == (*op == Op::Eq),
            Expr::Cmp(Field::Free, op, Value::Num(n)) => d.free.is_some_and(|f| op.holds(f.cmp(n))),
            Expr::Cmp(Field::LastContact, op, Value::Num(n)) => op.holds(d.age.unwrap_or(u64::MAX).cmp(n)),
            Expr::Cmp(f, op, Value::Str(s)) => {
                let v = match f {
                    Field::Id => d.id,
                    Field::Host => d.host,
                    Field::Os => d.os,
                    Field::OsVersion => d.os_version,
                    Field::Arch => d.arch,
                    Field::AgentVersion => d.agent_version,
                    Field::Address => d.address,
                    _ => d.kind,
                };
                match op {
                    Op::Eq | Op::Ne => {
                        op.holds(if v.eq_ignore_ascii_case(s) { Ordering::Equal } else { Ordering::Less })
                    }
                    _ => op.holds(version_cmp(v, s)),
                }
            }
            Expr::Cmp(..) => false,
        }
    }
}

#[cfg(test)]
mod tests;
