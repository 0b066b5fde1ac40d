//! The storage seam: one connection type over the two engines a node can
//! keep its log and state in, embedded SQLite (the default) or PostgreSQL
//! (a replicated store shared by a party's standby nodes).
//!
//! Callers write SQL once, in the dialect both engines accept, with `?N`
//! placeholders and rusqlite's parameter and column conversions; the
//! PostgreSQL side (`postgres.rs`) translates placeholders and values. Which
//! engine a data directory uses is decided in `store/`, and nowhere else.

mod error;
mod merge;
mod postgres;

use std::cell::Cell;

pub use self::postgres::{PgConnection, blocking, on_blocking_pool};
pub use error::{Error, OptionalExtension, Result};
use rusqlite::ToSql;
pub use rusqlite::params;
use rusqlite::types::FromSql;

/// Statement parameters: `params![...]`, an array of one type, or `[]`.
pub trait Params {
    /// The parameters in order.
    fn values(&self) -> Vec<&dyn ToSql>;
}

impl Params for &[&dyn ToSql] {
    fn values(&self) -> Vec<&dyn ToSql> {
        self.to_vec()
    }
}

impl Params for [&dyn ToSql; 0] {
    fn values(&self) -> Vec<&dyn ToSql> {
        Vec::new()
    }
}

macro_rules! array_params {
    ($($n:literal)*) => {$(
        impl<T: ToSql> Params for [T; $n] {
            fn values(&self) -> Vec<&dyn ToSql> {
                self.iter().map(|v| v as &dyn ToSql).collect()
            }
        }
    )*};
}
array_params!(1 2 3 4 5 6);

/// A connection to the node's store, on either engine.
pub enum Connection {
    /// Embedded SQLite.
    Sqlite(rusqlite::Connection),
    /// PostgreSQL (boxed: its client is large).
    Postgres(Box<PgConnection>),
}

impl Connection {
    /// Prepares `sql` (kept prepared for the next call).
    pub fn prepare_cached(&self, sql: &str) -> Result<Statement<'_>> {
        Ok(match self {
            Connection::Sqlite(c) => Statement::Sqlite(c.prepare_cached(sql)?),
            Connection::Postgres(c) => Statement::Postgres(c, c.prepare(sql)?),
        })
    }

    /// Prepares `sql` for this use.
    pub fn prepare(&self, sql: &str) -> Result<Statement<'_>> {
        self.prepare_cached(sql)
    }

    /// Runs one statement; returns how many rows it changed.
    pub fn execute(&self, sql: &str, params: impl Params) -> Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    /// Runs a query that returns one row and maps it.
    pub fn query_row<T>(&self, sql: &str, params: impl Params, f: impl FnOnce(&Row<'_>) -> Result<T>) -> Result<T> {
        self.prepare_cached(sql)?.query_row(params, f)
    }

    /// Runs statements with no parameters and no results (schema, transaction control).
    pub fn execute_batch(&self, sql: &str) -> Result<()> {
        match self {
            Connection::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Connection::Postgres(c) => c.batch(sql),
        }
    }

    /// Starts a transaction, rolled back unless committed.
    pub fn transaction(&self) -> Result<Transaction<'_>> {
        self.execute_batch("BEGIN")?;
        Ok(Transaction {
            conn: self,
            savepoint: None,
            done: Cell::new(false),
        })
    }

    /// Whether writes made with [`Statement::execute_later`], and `BEGIN`,
    /// are held back and sent together ahead of the next statement that
    /// needs an answer, or with the commit (PostgreSQL; SQLite runs each at
    /// once, a call costing microseconds). While on, a held-back write's
    /// error comes back from that later call. The commit ends it; turning it
    /// off sends what is held back.
    pub fn set_deferring(&self, on: bool) -> Result<()> {
        match self {
            Connection::Sqlite(_) => Ok(()),
            Connection::Postgres(c) => c.set_deferring(on),
        }
    }

    /// Inserts rows of an integer key and bytes into `table (key, column)`:
    /// on PostgreSQL one statement for them all (held back while deferring),
    /// on SQLite a prepared insert each.
    pub fn insert_rows(&self, table: &str, key: &str, column: &str, keys: Vec<i64>, blobs: Vec<Vec<u8>>) -> Result<()> {
        match self {
            Connection::Sqlite(c) => {
                let mut s = c.prepare_cached(&format!("INSERT INTO {table} ({key}, {column}) VALUES (?1, ?2)"))?;
                for (k, b) in keys.iter().zip(&blobs) {
                    s.execute(rusqlite::params![k, b])?;
                }
                Ok(())
            }
            Connection::Postgres(c) => c.insert_rows(table, key, column, keys, blobs),
        }
    }

    /// Drops the writes held back and stops deferring: the transaction they
    /// belong to is being rolled back.
    fn discard_deferred(&self) {
        if let Connection::Postgres(c) = self {
            c.discard_deferred();
        }
    }

    /// Whether this connection is to PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self, Connection::Postgres(_))
    }
}

/// A transaction or a savepoint inside one; it derefs to its connection.
pub struct Transaction<'c> {
    conn: &'c Connection,
    savepoint: Option<&'static str>,
    done: Cell<bool>,
}

impl<'c> Transaction<'c> {
    /// A savepoint inside this transaction, released on commit and rolled back otherwise.
    pub fn savepoint(&self) -> Result<Transaction<'c>> {
        self.conn.execute_batch("SAVEPOINT job")?;
        Ok(Transaction {
            conn: self.conn,
            savepoint: Some("job"),
            done: Cell::new(false),
        })
    }

    /// Commits (or releases the savepoint). Writes held back go with the
    /// commit; if one fails, the transaction rolls back and its error is
    /// returned.
    pub fn commit(self) -> Result<()> {
        self.done.set(true);
        match self.savepoint {
            None => self.conn.execute_batch("COMMIT"),
            Some(name) => self.conn.execute_batch(&format!("RELEASE {name}")),
        }
    }
}

impl std::ops::Deref for Transaction<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if !self.done.get() {
            if self.savepoint.is_none() {
                self.conn.discard_deferred();
            }
            // Nothing to report: a failed rollback leaves the connection to fail its next call.
            let _ = match self.savepoint {
                None => self.conn.execute_batch("ROLLBACK"),
                Some(name) => self.conn.execute_batch(&format!("ROLLBACK TO {name}; RELEASE {name}")),
            };
        }
    }
}

/// A prepared statement on either engine.
pub enum Statement<'c> {
    /// SQLite's own, from its statement cache.
    Sqlite(rusqlite::CachedStatement<'c>),
    /// PostgreSQL's, prepared on the server.
    Postgres(&'c PgConnection, postgres::Prepared),
}

impl Statement<'_> {
    /// Runs the statement; returns how many rows it changed.
    pub fn execute(&mut self, params: impl Params) -> Result<usize> {
        match self {
            Statement::Sqlite(s) => Ok(s.execute(&params.values()[..])?),
            Statement::Postgres(c, s) => c.execute(s, &params.values()),
        }
    }

    /// Runs a write whose count the caller does not need; with deferring on
    /// (see [`Connection::set_deferring`]) it may go later, with other writes.
    pub fn execute_later(&mut self, params: impl Params) -> Result<()> {
        match self {
            Statement::Sqlite(s) => s.execute(&params.values()[..]).map(|_| ()).map_err(Error::from),
            Statement::Postgres(c, s) => c.execute_later(s, &params.values()),
        }
    }

    /// All rows, each mapped by `f`; collect them as rusqlite's rows are.
    pub fn query_map<T>(
        &mut self,
        params: impl Params,
        mut f: impl FnMut(&Row<'_>) -> Result<T>,
    ) -> Result<std::vec::IntoIter<Result<T>>> {
        let mut out = Vec::new();
        let mut rows = self.query(params)?;
        while let Some(row) = rows.next()? {
            out.push(f(&row));
        }
        Ok(out.into_iter())
    }

    /// The first row, mapped by `f`; [`Error::NoRows`] when there is none.
    pub fn query_row<T>(&mut self, params: impl Params, f: impl FnOnce(&Row<'_>) -> Result<T>) -> Result<T> {
        let mut rows = self.query(params)?;
        match rows.next()? {
            Some(row) => f(&row),
            None => Err(Error::NoRows),
        }
    }

    /// Whether the query returns any row.
    pub fn exists(&mut self, params: impl Params) -> Result<bool> {
        Ok(self.query(params)?.next()?.is_some())
    }

    /// The rows, read one at a time.
    pub fn query(&mut self, params: impl Params) -> Result<Rows<'_>> {
        Ok(match self {
            Statement::Sqlite(s) => Rows::Sqlite(s.query(&params.values()[..])?),
            Statement::Postgres(c, s) => Rows::Postgres(c.query(s, &params.values())?.into_iter()),
        })
    }
}

/// Rows of a query, read with [`Rows::next`].
pub enum Rows<'s> {
    /// SQLite steps through its rows as they are read.
    Sqlite(rusqlite::Rows<'s>),
    /// PostgreSQL's rows, fetched.
    Postgres(std::vec::IntoIter<::tokio_postgres::Row>),
}

impl Rows<'_> {
    /// The next row, if any.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Row<'_>>> {
        Ok(match self {
            Rows::Sqlite(r) => r.next()?.map(Row::Sqlite),
            Rows::Postgres(r) => r.next().map(Row::Postgres),
        })
    }
}

/// One row of either engine.
pub enum Row<'r> {
    /// A SQLite row.
    Sqlite(&'r rusqlite::Row<'r>),
    /// A PostgreSQL row.
    Postgres(::tokio_postgres::Row),
}

impl Row<'_> {
    /// Column `i`, converted as rusqlite converts SQLite's values.
    pub fn get<T: FromSql>(&self, i: usize) -> Result<T> {
        match self {
            Row::Sqlite(r) => Ok(r.get(i)?),
            Row::Postgres(r) => postgres::column(r, i),
        }
    }
}
