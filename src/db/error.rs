//! Errors of the storage seam, from either engine, and rusqlite's
//! `optional()` for them.

/// Why a database call failed, from either engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// SQLite failed.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL failed, or a value did not convert.
    #[error("PostgreSQL: {0}")]
    Postgres(String),
    /// PostgreSQL refused a statement with this SQLSTATE (class 23: a constraint).
    #[error("PostgreSQL: {message} (SQLSTATE {sqlstate})")]
    PostgresRefused {
        /// The server's message.
        message: String,
        /// The five-character SQLSTATE code.
        sqlstate: String,
    },
    /// A query that must return a row returned none.
    #[error("query returned no rows")]
    NoRows,
    /// The PostgreSQL connection is gone (the server stopped, or the
    /// network failed): a node holding the writer lease has lost it.
    #[error("PostgreSQL connection lost: {0}")]
    Closed(String),
}

impl Error {
    /// Whether the row's key is taken (a primary key or unique constraint):
    /// a replay or a race, not a failure. Other constraints (a CHECK, a NOT
    /// NULL) are failures and are not mistaken for it.
    pub fn is_unique_violation(&self) -> bool {
        match self {
            Error::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.extended_code,
                rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY | rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            ),
            // unique_violation, as PostgreSQL's errcodes list it.
            Error::PostgresRefused { sqlstate, .. } => sqlstate == "23505",
            _ => false,
        }
    }
}

/// A database result.
pub type Result<T> = std::result::Result<T, Error>;

/// Turns "no rows" into `None`, as rusqlite's extension of the same name does.
pub trait OptionalExtension<T> {
    /// `Ok(None)` where the query returned no row.
    fn optional(self) -> Result<Option<T>>;
}

impl<T> OptionalExtension<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(Error::NoRows | Error::Sqlite(rusqlite::Error::QueryReturnedNoRows)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
