//! Embedded SQLite: one database file per node, in WAL mode with
//! `synchronous=FULL`, so a commit is on disk before anything is acknowledged.
//!
//! The audit log and the node's state share this database, so a state change
//! and the log entries that record it commit in one transaction. The schema
//! is versioned with `PRAGMA user_version` and migrated forward on open.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

/// The database file inside a node's data directory.
pub const DB_FILE: &str = "hotline.db";

/// Schema migrations, applied in order; index + 1 is the schema version.
const MIGRATIONS: &[&str] = &[r#"
    -- The audit log: entries verbatim, and the RFC 6962 tree's stored hashes
    -- indexed as in Go's sumdb/tlog (stored_hash_index).
    CREATE TABLE entries (idx INTEGER PRIMARY KEY, data BLOB NOT NULL) STRICT;
    CREATE TABLE hashes (idx INTEGER PRIMARY KEY, hash BLOB NOT NULL) STRICT;
    -- Every checkpoint this node signed, one per committed batch.
    CREATE TABLE checkpoints (size INTEGER PRIMARY KEY, note BLOB NOT NULL) STRICT;
    -- Peers' checkpoints this node verified and keeps as evidence.
    CREATE TABLE witnessed (
        party TEXT NOT NULL,
        size INTEGER NOT NULL,
        note BLOB NOT NULL,
        PRIMARY KEY (party, size)
    ) STRICT;
"#];

/// Why the database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed on this file.
    #[error("database {}: {source}", path.display())]
    Sqlite { path: PathBuf, source: rusqlite::Error },
    /// The file's schema is newer than this build understands.
    #[error("database {} has schema version {found}, newer than this hotline ({known}); upgrade hotline", path.display())]
    NewerSchema { path: PathBuf, found: i64, known: usize },
}

/// Names the database file in a SQLite error.
pub trait Context<T> {
    /// Attaches the database path to the error.
    fn at(self, path: &Path) -> Result<T, StoreError>;
}

impl<T> Context<T> for Result<T, rusqlite::Error> {
    fn at(self, path: &Path) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Sqlite {
            path: path.to_owned(),
            source,
        })
    }
}

/// Opens (creating if needed) the node database for writing and migrates it.
pub fn open_writer(dir: &Path) -> Result<Connection, StoreError> {
    let path = dir.join(DB_FILE);
    let mut conn = Connection::open(&path).at(&path)?;
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
        .at(&path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10)).at(&path)?;
    migrate(&mut conn, &path)?;
    Ok(conn)
}

/// Opens the node database for reading only; it must exist and be current.
pub fn open_reader(dir: &Path) -> Result<Connection, StoreError> {
    let path = dir.join(DB_FILE);
    let conn = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .at(&path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10)).at(&path)?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).at(&path)?;
    if version as usize > MIGRATIONS.len() {
        return Err(StoreError::NewerSchema {
            path,
            found: version,
            known: MIGRATIONS.len(),
        });
    }
    Ok(conn)
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).at(path)?;
    if version as usize > MIGRATIONS.len() {
        return Err(StoreError::NewerSchema {
            path: path.to_owned(),
            found: version,
            known: MIGRATIONS.len(),
        });
    }
    let tx = conn.transaction().at(path)?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(sql).at(path)?;
        tx.pragma_update(None, "user_version", i as i64 + 1).at(path)?;
    }
    tx.commit().at(path)
}
