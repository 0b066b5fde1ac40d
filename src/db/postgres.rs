//! PostgreSQL behind the storage seam: statements written for SQLite
//! (`?N` placeholders, rusqlite values) run here unchanged, translated once
//! when prepared and kept prepared on the server.
//!
//! The client is tokio-postgres on a small runtime of its own, with rustls
//! for TLS. Each statement is a round trip to the server, so the log's
//! writer *defers* the writes whose outcome it does not need at once: they
//! are queued and go out together, pipelined in one round trip, ahead of
//! the next statement that needs an answer (a read, a count, the commit).
//! The runtime cannot start on a thread already inside one, so a call made
//! from async code runs on a scoped helper thread; the log's writer thread
//! calls it directly.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::error::Error as StdError;

use std::future::Future as _;
use std::task::Poll;

use futures_util::future::MaybeDone;
use rusqlite::ToSql;
use rusqlite::types::{FromSql, ToSqlOutput, Value, ValueRef};
use tokio_postgres::types::{IsNull, ToSql as PgToSql, Type, to_sql_checked};
use tokio_postgres::{Client, Row, Statement};

use super::error::{Error, Result};
use super::merge;

/// A statement prepared on the server, known by the SQL it came from.
#[derive(Clone)]
pub struct Prepared {
    sql: std::sync::Arc<str>,
    statement: Statement,
    /// For a single-row insert: its table, and the statement inserting a
    /// row per element of arrays, which a batch's rows of it go in together.
    merged: Option<std::sync::Arc<(String, Statement)>>,
}

/// One PostgreSQL session, with the statements it prepared and the writes
/// it holds back for the next round trip.
pub struct PgConnection {
    /// Always `Some` until dropped (the runtime drops after the client).
    session: RefCell<Option<(Client, tokio::runtime::Runtime)>>,
    prepared: RefCell<HashMap<String, Prepared>>,
    /// Whether `execute_later` defers (see [`PgConnection::set_deferring`]).
    deferring: Cell<bool>,
    /// Statements waiting for the next round trip, in order.
    pending: RefCell<Vec<Held>>,
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
        let session = off_runtime(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::Postgres(format!("cannot start the client's runtime: {e}")))?;
            let (client, connection) = runtime.block_on(tokio_postgres::connect(&url, tls)).map_err(closed)?;
            // Driven whenever the client waits on the runtime, which is every call.
            runtime.spawn(connection);
            Ok::<_, Error>((client, runtime))
        })?;
        Ok(Self {
            session: RefCell::new(Some(session)),
            prepared: RefCell::new(HashMap::new()),
            deferring: Cell::new(false),
            pending: RefCell::new(Vec::new()),
        })
    }

    /// Whether writes made with `execute_later` are held back for the next
    /// round trip. A deferred write's error comes back from that later call,
    /// and no earlier: the writer turns it on only where any failure means
    /// running the batch again statement by statement. Turning it off sends
    /// what is held back.
    pub(super) fn set_deferring(&self, on: bool) -> Result<()> {
        self.deferring.set(on);
        if on { Ok(()) } else { self.flush() }
    }

    /// Drops the writes held back, and stops deferring.
    pub(super) fn discard_deferred(&self) {
        self.deferring.set(false);
        self.pending.borrow_mut().clear();
    }

    /// Runs `f` with the client on its runtime, off any other runtime.
    fn with<T: Send>(&self, f: impl AsyncFnOnce(&Client) -> T + Send) -> T {
        let session = self.session.borrow();
        let (client, runtime) = session.as_ref().expect("a PostgreSQL session until dropped");
        off_runtime(move || runtime.block_on(f(client)))
    }

    pub(super) fn prepare(&self, sql: &str) -> Result<Prepared> {
        if let Some(s) = self.prepared.borrow().get(sql) {
            return Ok(s.clone());
        }
        let translated = translate(sql);
        let statement = self.with(async |c| c.prepare(&translated).await).map_err(pg)?;
        let merged = match merge::unnest_form(&translated, statement.params()) {
            Some((table, many)) => {
                let many = self.with(async |c| c.prepare(&many).await).map_err(pg)?;
                Some(std::sync::Arc::new((table, many)))
            }
            None => None,
        };
        let prepared = Prepared {
            sql: sql.into(),
            statement,
            merged,
        };
        self.prepared.borrow_mut().insert(sql.to_owned(), prepared.clone());
        Ok(prepared)
    }

    pub(super) fn execute(&self, s: &Prepared, params: &[&dyn ToSql]) -> Result<usize> {
        let values = owned(params)?;
        let done = self.after_pending(async |c| {
            let binds = binds(&values);
            c.execute(&s.statement, &refs(&binds)).await
        })?;
        Ok(done as usize)
    }

    /// Runs a write whose count nobody reads: held back while deferring. A
    /// single-row insert joins the rows of the same insert held back, unless
    /// a statement held since names its table (and so might see the move).
    pub(super) fn execute_later(&self, s: &Prepared, params: &[&dyn ToSql]) -> Result<()> {
        let row = owned(params)?;
        if let (true, Some(merged)) = (self.deferring.get(), &s.merged) {
            let mut pending = self.pending.borrow_mut();
            for held in pending.iter_mut().rev() {
                match held {
                    Held::Write(same, rows) if same.sql == s.sql => {
                        rows.push(row);
                        return Ok(());
                    }
                    other if other.may_touch(&merged.0) => break,
                    _ => {}
                }
            }
        }
        self.hold(Held::Write(s.clone(), vec![row]))
    }

    /// Holds `held` back for the next round trip, or sends it now with
    /// what is held back when not deferring.
    fn hold(&self, held: Held) -> Result<()> {
        self.pending.borrow_mut().push(held);
        if self.deferring.get() { Ok(()) } else { self.flush() }
    }

    /// Runs `op` in one round trip with the statements held back, which
    /// go first; the first of their failures, if any, else `op`'s outcome.
    fn after_pending<T: Send>(
        &self,
        op: impl AsyncFnOnce(&Client) -> std::result::Result<T, tokio_postgres::Error> + Send,
    ) -> Result<T> {
        let pending = self.pending.take();
        let (sent, done) = self.with(async |c| tokio::join!(send(c, &pending), op(c)));
        sent?;
        done.map_err(pg)
    }

    /// Inserts rows of an integer key and bytes into `table (key, column)`
    /// in one statement (`unnest` of two arrays); held back while deferring.
    pub(super) fn insert_rows(
        &self,
        table: &str,
        key: &str,
        column: &str,
        keys: Vec<i64>,
        blobs: Vec<Vec<u8>>,
    ) -> Result<()> {
        let s = self.prepare(&format!(
            "INSERT INTO {table} ({key}, {column}) SELECT * FROM unnest($1::bigint[], $2::bytea[])"
        ))?;
        self.hold(Held::Rows(s, keys, blobs))
    }

    pub(super) fn query(&self, s: &Prepared, params: &[&dyn ToSql]) -> Result<Vec<Row>> {
        let values = owned(params)?;
        self.after_pending(async |c| {
            let binds = binds(&values);
            c.query(&s.statement, &refs(&binds)).await
        })
    }

    /// Runs statements without parameters. While deferring, transaction
    /// control (`BEGIN`) is held back with the writes; `COMMIT` goes with
    /// what is held back, in one round trip, and ends the deferring.
    pub(super) fn batch(&self, sql: &str) -> Result<()> {
        if self.deferring.get() {
            if sql != "COMMIT" {
                self.pending.borrow_mut().push(Held::Simple(sql.to_owned()));
                return Ok(());
            }
            self.deferring.set(false);
        }
        self.after_pending(async |c| c.batch_execute(sql).await)
    }

    /// Sends the writes held back, in one round trip.
    fn flush(&self) -> Result<()> {
        let pending = self.pending.take();
        if pending.is_empty() {
            return Ok(());
        }
        self.with(async |c| send(c, &pending).await)
    }
}

/// A statement held back for the next round trip.
enum Held {
    /// Transaction control, sent as a simple query.
    Simple(String),
    /// A prepared write and its values: one row's, or several rows' of a
    /// single-row insert.
    Write(Prepared, Vec<Vec<Value>>),
    /// A prepared insert of many rows, its two columns as arrays.
    Rows(Prepared, Vec<i64>, Vec<Vec<u8>>),
}

impl Held {
    /// Whether running it might read or change `table`'s rows.
    fn may_touch(&self, table: &str) -> bool {
        match self {
            Held::Simple(_) => true,
            Held::Write(s, _) | Held::Rows(s, _, _) => merge::mentions(&s.sql, table),
        }
    }
}

/// Runs one held write: its one row, or its rows as arrays, one per column.
async fn write(c: &Client, s: &Prepared, rows: &[Vec<Value>]) -> std::result::Result<(), tokio_postgres::Error> {
    match (&s.merged, rows) {
        (Some(merged), [first, _, ..]) => {
            let columns: Vec<Vec<Param<'_>>> = (0..first.len())
                .map(|j| {
                    rows.iter()
                        .map(|row| Param(row.get(j).map_or(ValueRef::Null, ValueRef::from)))
                        .collect()
                })
                .collect();
            let params: Vec<&(dyn PgToSql + Sync)> = columns.iter().map(|c| c as _).collect();
            c.execute(&merged.1, &params).await.map(|_| ())
        }
        _ => {
            for row in rows {
                let binds = binds(row);
                c.execute(&s.statement, &refs(&binds)).await?;
            }
            Ok(())
        }
    }
}

/// Runs the held-back statements pipelined: each is sent, in order, before
/// any answer is awaited. The first failure among them, if any.
async fn send(c: &Client, pending: &[Held]) -> Result<()> {
    let mut sent: Vec<_> = pending
        .iter()
        .map(|held| {
            MaybeDone::Future(Box::pin(async move {
                match held {
                    Held::Simple(sql) => c.batch_execute(sql).await,
                    Held::Write(s, rows) => write(c, s, rows).await,
                    Held::Rows(s, keys, blobs) => c.execute(&s.statement, &[keys, blobs]).await.map(|_| ()),
                }
            }))
        })
        .collect();
    // Each first poll sends its request, so one pass in order sends them all, in order; the
    // answers come back in the same order, and are awaited one after another.
    std::future::poll_fn(|cx| {
        for s in &mut sent {
            let _ = std::pin::Pin::new(s).poll(cx);
        }
        Poll::Ready(())
    })
    .await;
    let mut first_error = None;
    for s in &mut sent {
        (&mut *s).await;
        if let Some(Err(e)) = std::pin::Pin::new(s).take_output() {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), |e| Err(pg(e)))
}

impl Drop for PgConnection {
    fn drop(&mut self) {
        // Closing the session blocks on the client's runtime too.
        if let Some(session) = self.session.get_mut().take() {
            off_runtime(move || drop(session));
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

/// Runs `f` on tokio's blocking pool as a [`blocking`] section: how async
/// code reads or writes a store without holding an async worker, and
/// without a helper thread per PostgreSQL call.
pub async fn on_blocking_pool<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> std::result::Result<T, tokio::task::JoinError> {
    tokio::task::spawn_blocking(move || blocking(f)).await
}

/// Runs `f` where the blocking client may start its runtime: here, on a
/// thread outside any runtime or in a [`blocking`] section; or on a helper
/// thread when called from async code (which should go through a
/// [`blocking`] section on the blocking pool instead: [`on_blocking_pool`]).
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

fn pg(e: tokio_postgres::Error) -> Error {
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

fn closed(e: tokio_postgres::Error) -> Error {
    Error::Closed(e.to_string())
}

/// The parameters as owned values, so held-back writes outlive their caller's borrows.
fn owned(params: &[&dyn ToSql]) -> Result<Vec<Value>> {
    params
        .iter()
        .map(|p| match p.to_sql()? {
            ToSqlOutput::Borrowed(v) => Ok(v.into()),
            ToSqlOutput::Owned(v) => Ok(v),
            _ => Err(Error::Postgres("unsupported parameter kind".into())),
        })
        .collect()
}

/// Values bound as PostgreSQL parameters.
fn binds(values: &[Value]) -> Vec<Param<'_>> {
    values.iter().map(|v| Param(ValueRef::from(v))).collect()
}

/// The bound values as the client takes them.
fn refs<'a>(binds: &'a [Param<'a>]) -> Vec<&'a (dyn PgToSql + Sync)> {
    binds.iter().map(|v| v as _).collect()
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
    let get_err = |e: tokio_postgres::Error| Error::Postgres(format!("column {i}: {e}"));
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
