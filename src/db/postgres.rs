//! PostgreSQL behind the storage seam: statements written for SQLite
//! (`?N` placeholders, rusqlite values) run here unchanged, translated once
//! when prepared and kept prepared on the server.
//!
//! The client is tokio-postgres through its blocking wrapper, with rustls
//! for TLS. The wrapper runs its own small runtime, which cannot start on a
//! thread already inside one, so a call made from async code runs on a
//! scoped helper thread; the log's writer thread calls it directly.

use std::cell::RefCell;
use std::collections::HashMap;
use std::error::Error as StdError;

use postgres::types::{IsNull, ToSql as PgToSql, Type, to_sql_checked};
use postgres::{Client, Row, Statement};
use rusqlite::ToSql;
use rusqlite::types::{FromSql, ToSqlOutput, Value, ValueRef};

use super::error::{Error, Result};

/// One PostgreSQL session, with the statements it prepared.
pub struct PgConnection {
    /// Always `Some` until dropped.
    client: RefCell<Option<Client>>,
    prepared: RefCell<HashMap<String, Statement>>,
}

impl PgConnection {
    /// Connects to `url` (`postgresql://user@host:port/db?sslmode=...`),
    /// trusting the certificate authorities in `roots` for TLS.
    pub fn connect(url: &str, roots: rustls::RootCertStore) -> Result<Self> {
        let tls =
            rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| Error::Postgres(format!("TLS: {e}")))?
                .with_root_certificates(roots)
                .with_no_client_auth();
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls);
        let url = url.to_owned();
        let client = off_runtime(move || Client::connect(&url, tls)).map_err(closed)?;
        Ok(Self {
            client: RefCell::new(Some(client)),
            prepared: RefCell::new(HashMap::new()),
        })
    }

    /// Runs `f` with the client, off any async runtime.
    fn with<T: Send>(&self, f: impl FnOnce(&mut Client) -> T + Send) -> T {
        let mut client = self.client.borrow_mut();
        let client = client.as_mut().expect("a PostgreSQL client until dropped");
        off_runtime(move || f(client))
    }

    pub(super) fn prepare(&self, sql: &str) -> Result<Statement> {
        if let Some(s) = self.prepared.borrow().get(sql) {
            return Ok(s.clone());
        }
        let translated = translate(sql);
        let statement = self.with(|c| c.prepare(&translated)).map_err(pg)?;
        self.prepared.borrow_mut().insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    pub(super) fn execute(&self, s: &Statement, params: &[&dyn ToSql]) -> Result<usize> {
        let outputs = outputs(params)?;
        let values = values(&outputs)?;
        let refs: Vec<&(dyn PgToSql + Sync)> = values.iter().map(|v| v as _).collect();
        Ok(self.with(|c| c.execute(s, &refs)).map_err(pg)? as usize)
    }

    pub(super) fn query(&self, s: &Statement, params: &[&dyn ToSql]) -> Result<Vec<Row>> {
        let outputs = outputs(params)?;
        let values = values(&outputs)?;
        let refs: Vec<&(dyn PgToSql + Sync)> = values.iter().map(|v| v as _).collect();
        self.with(|c| c.query(s, &refs)).map_err(pg)
    }

    pub(super) fn batch(&self, sql: &str) -> Result<()> {
        self.with(|c| c.batch_execute(sql)).map_err(pg)
    }
}

impl Drop for PgConnection {
    fn drop(&mut self) {
        // Closing the session blocks on the client's runtime too.
        if let Some(client) = self.client.get_mut().take() {
            off_runtime(move || drop(client));
        }
    }
}

thread_local! {
    /// Set while this thread runs a [`blocking`] section.
    static BLOCKING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` as a section that may block (on tokio's blocking pool, or a
/// thread of its own): PostgreSQL calls in it run on this thread, not on a
/// helper thread each.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    let was = BLOCKING.replace(true);
    let result = f();
    BLOCKING.set(was);
    result
}

/// Runs `f` where the blocking client may start its runtime: here, on a
/// thread outside any runtime or in a [`blocking`] section; or on a helper
/// thread when called from async code (which should go through a
/// [`blocking`] section on the blocking pool instead).
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if BLOCKING.get() || tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// `?N` placeholders become `$N`, and bare `?` the next number.
fn translate(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut next = 0;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '?' {
            out.push(c);
            continue;
        }
        let mut digits = String::new();
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            digits.push(*d);
            chars.next();
        }
        if digits.is_empty() {
            next += 1;
            digits = next.to_string();
        }
        out.push('$');
        out.push_str(&digits);
    }
    out
}

fn pg(e: postgres::Error) -> Error {
    // A closed or failed socket, or the server ending the session (an
    // administrator, a shutdown: class 57; a connection failure: class 08).
    let ended = e
        .as_db_error()
        .is_some_and(|db| matches!(&db.code().code()[..2], "57" | "08"));
    let io = StdError::source(&e).is_some_and(|s| s.is::<std::io::Error>());
    if e.is_closed() || ended || io {
        return closed(e);
    }
    match e.as_db_error() {
        Some(db) => Error::PostgresRefused {
            message: db.message().to_owned(),
            sqlstate: db.code().code().to_owned(),
        },
        None => Error::Postgres(e.to_string()),
    }
}

fn closed(e: postgres::Error) -> Error {
    Error::Closed(e.to_string())
}

fn outputs<'a>(params: &'a [&'a dyn ToSql]) -> Result<Vec<ToSqlOutput<'a>>> {
    params.iter().map(|p| p.to_sql().map_err(Error::from)).collect()
}

fn values<'a>(outputs: &'a [ToSqlOutput<'a>]) -> Result<Vec<Param<'a>>> {
    outputs
        .iter()
        .map(|o| match o {
            ToSqlOutput::Borrowed(v) => Ok(Param(*v)),
            ToSqlOutput::Owned(v) => Ok(Param(ValueRef::from(v))),
            _ => Err(Error::Postgres("unsupported parameter kind".into())),
        })
        .collect()
}

/// A SQLite value bound to a PostgreSQL parameter of whatever type the
/// server inferred for it.
#[derive(Debug)]
struct Param<'a>(ValueRef<'a>);

impl PgToSql for Param<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self.0 {
            ValueRef::Null => Ok(IsNull::Yes),
            ValueRef::Integer(i) => match *ty {
                Type::INT8 => PgToSql::to_sql(&i, ty, out),
                Type::INT4 => PgToSql::to_sql(&i32::try_from(i)?, ty, out),
                Type::INT2 => PgToSql::to_sql(&i16::try_from(i)?, ty, out),
                Type::BOOL => PgToSql::to_sql(&(i != 0), ty, out),
                _ => Err(format!("an integer given for a {ty} parameter").into()),
            },
            ValueRef::Real(f) => PgToSql::to_sql(&f, ty, out),
            ValueRef::Text(t) => PgToSql::to_sql(&std::str::from_utf8(t)?, ty, out),
            ValueRef::Blob(b) => PgToSql::to_sql(&b, ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// Column `i` of a PostgreSQL row, converted as rusqlite converts SQLite's.
pub(super) fn column<T: FromSql>(row: &Row, i: usize) -> Result<T> {
    let ty = row
        .columns()
        .get(i)
        .ok_or_else(|| Error::Postgres(format!("no column {i}")))?
        .type_()
        .clone();
    let get_err = |e: postgres::Error| Error::Postgres(format!("column {i}: {e}"));
    let value: Value = match ty {
        Type::INT8 => row.try_get::<_, Option<i64>>(i).map_err(get_err)?.map(Value::Integer),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(i)
            .map_err(get_err)?
            .map(|v| Value::Integer(v.into())),
        Type::INT2 => row
            .try_get::<_, Option<i16>>(i)
            .map_err(get_err)?
            .map(|v| Value::Integer(v.into())),
        Type::BOOL => row
            .try_get::<_, Option<bool>>(i)
            .map_err(get_err)?
            .map(|v| Value::Integer(v.into())),
        Type::FLOAT8 => row.try_get::<_, Option<f64>>(i).map_err(get_err)?.map(Value::Real),
        Type::BYTEA => row.try_get::<_, Option<Vec<u8>>>(i).map_err(get_err)?.map(Value::Blob),
        _ => row.try_get::<_, Option<String>>(i).map_err(get_err)?.map(Value::Text),
    }
    .unwrap_or(Value::Null);
    T::column_result(ValueRef::from(&value)).map_err(|e| Error::Postgres(format!("column {i} ({ty}): {e}")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbered_and_bare_placeholders_become_dollar_numbers() {
        assert_eq!(
            crate::db::postgres::translate("a = ?1 OR b = ?1 AND c = ?12"),
            "a = $1 OR b = $1 AND c = $12"
        );
        assert_eq!(crate::db::postgres::translate("VALUES (?, ?)"), "VALUES ($1, $2)");
    }
}
