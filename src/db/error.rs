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
    /// A query that must return a row returned none.
    #[error("query returned no rows")]
    NoRows,
    /// The PostgreSQL connection is gone (the server stopped, or the
    /// network failed): a node holding the writer lease has lost it.
    #[error("PostgreSQL connection lost: {0}")]
    Closed(String),
}

impl Error {
    /// Whether a uniqueness or other constraint refused the statement.
    pub fn is_constraint(&self) -> bool {
        match self {
            Error::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => e.code == rusqlite::ErrorCode::ConstraintViolation,
            Error::Postgres(m) => m.starts_with("constraint:"),
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
