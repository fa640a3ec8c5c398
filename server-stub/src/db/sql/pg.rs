//! The PostgreSQL side of [`super::Conn`]: `?N` placeholders become `$N`,
//! statements are prepared once per connection, and values cross by the
//! type PostgreSQL infers for each parameter and column.

use std::error::Error as StdError;

use bytes::BytesMut;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, NoTls, Statement};

use super::values::{Arg, Cell, Row};
use super::{Cache, DbResult, Error, STATEMENT_CACHE};

/// A client and its prepared statements.
pub(super) struct PgConn {
    /// Whether commits made now must wait for their flush ([`super::Conn::set_durable`]).
    pub(super) durable: bool,
    /// What the session's `synchronous_commit` is set to (on at connect).
    session_durable: bool,
    /// Inside `BEGIN` … `COMMIT`/`ROLLBACK`.
    in_tx: bool,
    url: String,
    client: Client,
    cache: Cache<Statement>,
}

impl PgConn {
    /// Connect. Loopback and Unix sockets without TLS: a database on
    /// another host goes through a TLS tunnel the operator sets up (see
    /// SECURITY.md).
    pub(super) fn connect(url: &str) -> DbResult<Self> {
        let mut client = Client::connect(url, NoTls)?;
        // Durable by default, whatever the role's or database's default.
        client.batch_execute("SET synchronous_commit = on")?;
        Ok(Self {
            durable: true,
            session_durable: true,
            in_tx: false,
            url: url.to_string(),
            client,
            cache: Cache::new(STATEMENT_CACHE),
        })
    }

    /// A connection the server closed (a restart, a failover) is opened
    /// again at the next statement, with its statements prepared again;
    /// the statement that found it closed failed (and its request with it).
    fn reconnect_if_closed(&mut self) -> DbResult<()> {
        if self.client.is_closed() {
            log::warn!(target: "outpost", "the PostgreSQL connection was closed: connecting again");
            self.client = Client::connect(&self.url, NoTls)?;
            self.client.batch_execute("SET synchronous_commit = on")?;
            self.cache = Cache::new(STATEMENT_CACHE);
            (self.session_durable, self.in_tx) = (true, false);
        }
        Ok(())
    }

    fn statement(&mut self, sql: &str) -> DbResult<Statement> {
        self.reconnect_if_closed()?;
        if let Some(st) = self.cache.get(sql) {
            return Ok(st);
        }
        let st = self.client.prepare(&dollar_params(sql))?;
        self.cache.put(sql, st.clone());
        Ok(st)
    }

    /// A write outside a transaction commits by itself: the session's
    /// setting decides, so it is switched first when it is not what is
    /// asked (a round trip only on a change).
    fn settle_autocommit(&mut self) -> DbResult<()> {
        if !self.in_tx && self.session_durable != self.durable {
            let sql = if self.durable { "SET synchronous_commit = on" } else { "SET synchronous_commit = off" };
            self.batch(sql)?;
            self.session_durable = self.durable;
        }
        Ok(())
    }

    pub(super) fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> DbResult<usize> {
        self.settle_autocommit()?;
        let st = self.statement(sql)?;
        let refs: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
        let n = self.client.execute(&st, &refs)?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    pub(super) fn query(&mut self, sql: &str, args: &[Arg<'_>]) -> DbResult<Vec<Row>> {
        if !sql.trim_start().starts_with("SELECT") {
            self.settle_autocommit()?; // INSERT … RETURNING
        }
        let st = self.statement(sql)?;
        let refs: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
        self.client.query(&st, &refs)?.iter().map(pg_row).collect()
    }

    /// `BEGIN`, with `SET LOCAL synchronous_commit` in the same message
    /// when the session's setting is not what this transaction needs.
    pub(super) fn begin(&mut self) -> DbResult<()> {
        let sql = match (self.durable, self.session_durable) {
            (true, false) => "BEGIN; SET LOCAL synchronous_commit = on",
            (false, true) => "BEGIN; SET LOCAL synchronous_commit = off",
            _ => "BEGIN",
        };
        self.batch(sql)?;
        self.in_tx = true;
        Ok(())
    }

    /// `COMMIT` or `ROLLBACK`.
    pub(super) fn end(&mut self, commit: bool) -> DbResult<()> {
        self.in_tx = false;
        self.batch(if commit { "COMMIT" } else { "ROLLBACK" })
    }

    pub(super) fn batch(&mut self, sql: &str) -> DbResult<()> {
        self.reconnect_if_closed()?;
        Ok(self.client.batch_execute(sql)?)
    }
}

/// `?1` → `$1` outside string literals and quoted names.
pub(crate) fn dollar_params(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (None, '\'' | '"') => quote = Some(c),
            (None, '?') if chars.peek().is_some_and(char::is_ascii_digit) => {
                out.push('$');
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
    out
}

fn cell_of(row: &postgres::Row, i: usize) -> Result<Cell, postgres::Error> {
    let ty = row.columns()[i].type_();
    let int = |v: Option<i64>| v.map_or(Cell::Null, Cell::Int);
    Ok(match *ty {
        Type::INT8 => int(row.try_get::<_, Option<i64>>(i)?),
        Type::INT4 => int(row.try_get::<_, Option<i32>>(i)?.map(i64::from)),
        Type::INT2 => int(row.try_get::<_, Option<i16>>(i)?.map(i64::from)),
        Type::BOOL => int(row.try_get::<_, Option<bool>>(i)?.map(i64::from)),
        Type::FLOAT8 => row.try_get::<_, Option<f64>>(i)?.map_or(Cell::Null, Cell::Real),
        Type::FLOAT4 => row.try_get::<_, Option<f32>>(i)?.map_or(Cell::Null, |v| Cell::Real(f64::from(v))),
        Type::BYTEA => row.try_get::<_, Option<Vec<u8>>>(i)?.map_or(Cell::Null, Cell::Blob),
        _ => row.try_get::<_, Option<String>>(i)?.map_or(Cell::Null, Cell::Text),
    })
}

fn pg_row(row: &postgres::Row) -> DbResult<Row> {
    (0..row.len()).map(|i| cell_of(row, i)).collect::<Result<Vec<_>, _>>().map(Row).map_err(Error::from)
}

type BoxError = Box<dyn StdError + Sync + Send>;

impl ToSql for Arg<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match *self {
            Arg::Null => Ok(IsNull::Yes),
            Arg::Int(v) => match *ty {
                Type::INT8 => v.to_sql(ty, out),
                Type::INT4 => i32::try_from(v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(v)?.to_sql(ty, out),
                Type::BOOL => (v != 0).to_sql(ty, out),
                #[allow(clippy::cast_precision_loss)]
                Type::FLOAT8 => (v as f64).to_sql(ty, out),
                _ => v.to_string().as_str().to_sql(ty, out),
            },
            Arg::Real(v) => v.to_sql(ty, out),
            Arg::Text(s) => s.to_sql(ty, out),
            Arg::Blob(b) => b.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::dollar_params;

    #[test]
    fn placeholders_become_dollars_outside_quotes() {
        assert_eq!(dollar_params("SELECT ?1, '?2', \"?3\" WHERE a = ?12"), "SELECT $1, '?2', \"?3\" WHERE a = $12");
        assert_eq!(dollar_params("a LIKE 'x?' AND b = ?2"), "a LIKE 'x?' AND b = $2");
    }
}
