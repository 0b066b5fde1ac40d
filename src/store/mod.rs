//! Embedded SQLite: one database file per node, in WAL mode with
//! `synchronous=FULL`, so a commit is on disk before anything is acknowledged.
//!
//! The audit log and the node's state share this database, so a state change
//! and the log entries that record it commit in one transaction. The schema
//! is versioned with `PRAGMA user_version` and migrated forward on open.

use std::path::{Path, PathBuf};

use rusqlite::OpenFlags;

use crate::db::{self, Connection, PgConnection};

mod lock;
mod migrations;
pub use lock::{DirLock, LOCK_FILE, LockError};
pub use migrations::{MIGRATIONS, POSTGRES_MIGRATIONS};

/// The database file inside a node's data directory.
pub const DB_FILE: &str = "hotline.db";

/// Why the database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed on this store.
    #[error("database {}: {source}", path.display())]
    Database {
        /// The file (or, for PostgreSQL, the binding file) at fault.
        path: PathBuf,
        /// The underlying error.
        source: db::Error,
    },
    /// The store's schema is newer than this build understands.
    #[error("database {} has schema version {found}, newer than this hotline ({known}); upgrade hotline", path.display())]
    NewerSchema {
        /// The file at fault.
        path: PathBuf,
        /// The schema version found.
        found: i64,
        /// The newest schema version this build knows.
        known: usize,
    },
    /// The directory given is not a node's data directory: missing, a file,
    /// or holding no store.
    #[error("{}: {reason}; give a node's data directory (the `data` folder its hotline.toml names)", path.display())]
    NotADataDir {
        /// The directory given.
        path: PathBuf,
        /// What it is instead.
        reason: &'static str,
    },
    /// The data directory's binding to PostgreSQL cannot be read or written,
    /// or disagrees with the configuration.
    #[error("{}: {reason}", path.display())]
    Binding {
        /// The binding file.
        path: PathBuf,
        /// What is wrong, for the operator.
        reason: String,
    },
}

/// Names the database in an error.
pub trait Context<T> {
    /// Attaches the database path to the error.
    fn at(self, path: &Path) -> Result<T, StoreError>;
}

impl<T, E: Into<db::Error>> Context<T> for Result<T, E> {
    fn at(self, path: &Path) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::Database {
            path: path.to_owned(),
            source: e.into(),
        })
    }
}

/// The file in a data directory that binds it to a PostgreSQL database: it
/// holds the database URL, so every tool opening the directory (the node,
/// `audit verify`, `backup`, `export`) reaches the same store.
pub const POSTGRES_BINDING: &str = "postgresql.url";

/// Records which engine the data directory `dir` uses: PostgreSQL at `url`,
/// or SQLite when `None`. A directory bound to PostgreSQL is not silently
/// switched back to an empty SQLite file.
pub fn bind(dir: &Path, url: Option<&str>) -> Result<(), StoreError> {
    let path = dir.join(POSTGRES_BINDING);
    let binding_error = |reason: String| StoreError::Binding {
        path: path.clone(),
        reason,
    };
    let bound = postgres_url(dir)?;
    match (url, bound) {
        (None, None) => Ok(()),
        (None, Some(_)) => Err(binding_error(
            "this data directory keeps its log in PostgreSQL, but the configuration sets no `database`; \
             set `database` to that URL, or remove this file to start an empty SQLite store"
                .into(),
        )),
        (Some(url), Some(bound)) if bound == url => Ok(()),
        (Some(url), _) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| binding_error(format!("cannot create the data directory: {e}")))?;
            let partial = dir.join(format!("{POSTGRES_BINDING}.partial"));
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let written = options.open(&partial).and_then(|mut f| {
                std::io::Write::write_all(&mut f, url.as_bytes())?;
                f.sync_all()
            });
            written
                .and_then(|()| std::fs::rename(&partial, &path))
                .map_err(|e| binding_error(format!("cannot record the database URL: {e}")))
        }
    }
}

/// The PostgreSQL URL the data directory `dir` is bound to, if any.
pub fn postgres_url(dir: &Path) -> Result<Option<String>, StoreError> {
    let path = dir.join(POSTGRES_BINDING);
    match std::fs::read_to_string(&path) {
        Ok(url) => Ok(Some(url.trim().to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::Binding {
            path,
            reason: format!("cannot read: {e}"),
        }),
    }
}

/// Where errors of the store in `dir` are reported: the SQLite file, or the binding file.
pub fn location(dir: &Path) -> PathBuf {
    if dir.join(POSTGRES_BINDING).exists() {
        dir.join(POSTGRES_BINDING)
    } else {
        dir.join(DB_FILE)
    }
}

/// Opens (creating if needed) the node database for writing and migrates it.
pub fn open_writer(dir: &Path) -> Result<Connection, StoreError> {
    if let Some(url) = postgres_url(dir)? {
        let conn = open_postgres(dir, &url)?;
        migrate_postgres(&conn, &dir.join(POSTGRES_BINDING))?;
        return Ok(conn);
    }
    let path = dir.join(DB_FILE);
    create_private(&path);
    let conn = rusqlite::Connection::open(&path).at(&path)?;
    // The writer keeps 4 MiB of pages cached: appends touch the right edges of
    // the tables and the upper levels of their indexes, and the rest is in the
    // system's page cache. 16 MiB, the figure before, filled up in the bench
    // (13 MiB more per node) for no more speed, on a 10-million-entry log too
    // (docs/performance.md, session 29). A background thread folds the
    // WAL back into the database file (`log::Checkpointer`); the writer does
    // it itself only if the WAL passes 16384 pages, and then little is left to copy.
    // The per-job savepoints of a batch journal in memory, not in a temporary file.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;
         PRAGMA cache_size = -4096; PRAGMA wal_autocheckpoint = 16384; PRAGMA temp_store = MEMORY;",
    )
    .at(&path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10)).at(&path)?;
    migrate(conn, &path)
}

/// Creates the database file readable by its owner only, if it does not
/// exist yet; SQLite gives its WAL and shared-memory files the same mode.
fn create_private(path: &Path) {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    // An existing file is left as it is; SQLite reports any real problem when it opens it.
    let _ = options.open(path);
}

/// Opens the node database for reading only; it must exist and be current.
pub fn open_reader(dir: &Path) -> Result<Connection, StoreError> {
    let not = |reason| StoreError::NotADataDir {
        path: dir.to_owned(),
        reason,
    };
    if !dir.exists() {
        return Err(not("no such directory"));
    }
    if !dir.is_dir() {
        return Err(not("a file, not a directory"));
    }
    if !dir.join(DB_FILE).exists() && !dir.join(POSTGRES_BINDING).exists() {
        return Err(not("holds no hotline.db and no postgresql.url"));
    }
    if let Some(url) = postgres_url(dir)? {
        let path = dir.join(POSTGRES_BINDING);
        let conn = open_postgres(dir, &url)?;
        let version = postgres_version(&conn, &path)?;
        check_version(version, &path)?;
        return Ok(conn);
    }
    let path = dir.join(DB_FILE);
    let conn = rusqlite::Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .at(&path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10)).at(&path)?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).at(&path)?;
    check_version(version, &path)?;
    Ok(Connection::Sqlite(conn))
}

fn check_version(version: i64, path: &Path) -> Result<(), StoreError> {
    if version as usize > MIGRATIONS.len() {
        return Err(StoreError::NewerSchema {
            path: path.to_owned(),
            found: version,
            known: MIGRATIONS.len(),
        });
    }
    Ok(())
}

fn migrate(mut conn: rusqlite::Connection, path: &Path) -> Result<Connection, StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).at(path)?;
    check_version(version, path)?;
    let tx = conn.transaction().at(path)?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(sql).at(path)?;
        tx.pragma_update(None, "user_version", i as i64 + 1).at(path)?;
    }
    tx.commit().at(path)?;
    Ok(Connection::Sqlite(conn))
}

/// The advisory lock whose holder writes a PostgreSQL store: one node of a
/// party at a time. It is tied to the writer's own session, so a holder that
/// dies (or loses its connection) loses it with every write it could make.
const WRITER_LEASE: i64 = 0x0068_6f74_6c69_6e65; // "hotline"

/// Takes the writer lease of the PostgreSQL store on `conn`, the writer's
/// connection; while another node holds it, waits as a standby.
pub fn take_writer_lease(conn: &Connection, dir: &Path) -> Result<(), StoreError> {
    let path = dir.join(POSTGRES_BINDING);
    let taken: bool = conn
        .query_row("SELECT pg_try_advisory_lock(?1)", [WRITER_LEASE], |r| r.get(0))
        .at(&path)?;
    if !taken {
        tracing::warn!(store = %path.display(), "another node of this party holds the writer lease; waiting as a standby");
        let waiting = std::time::Instant::now();
        conn.execute_batch(&format!("SELECT pg_advisory_lock({WRITER_LEASE})"))
            .at(&path)?;
        tracing::warn!(store = %path.display(), waited = ?waiting.elapsed(), "took the writer lease: this node writes the log now");
    }
    Ok(())
}

/// Connects to PostgreSQL at `url`. A `sslrootcert=FILE` parameter names the
/// PEM file of the authorities that sign the server's certificate, as for
/// libpq; with `sslmode=require` the connection is TLS or nothing.
fn open_postgres(dir: &Path, url: &str) -> Result<Connection, StoreError> {
    let path = dir.join(POSTGRES_BINDING);
    let (url, ca) = split_root_cert(url);
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = ca {
        let pem = std::fs::read(&ca).map_err(|e| StoreError::Binding {
            path: path.clone(),
            reason: format!("sslrootcert {ca}: {e}"),
        })?;
        for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
            let added = cert
                .map_err(|e| e.to_string())
                .and_then(|c| roots.add(c).map_err(|e| e.to_string()));
            added.map_err(|reason| StoreError::Binding {
                path: path.clone(),
                reason: format!("sslrootcert {ca}: {reason}"),
            })?;
        }
    }
    Ok(Connection::Postgres(Box::new(
        PgConnection::connect(&url, roots).at(&path)?,
    )))
}

/// Makes a new, empty database `name` on the PostgreSQL server of `admin`
/// (a URL with the right to create databases); returns its URL.
pub fn create_database(admin: &str, name: &str) -> Result<String, StoreError> {
    let place = PathBuf::from(admin.split('@').next_back().unwrap_or(admin));
    let (url, ca) = split_root_cert(admin);
    let (server, _) = url.rsplit_once('/').ok_or_else(|| StoreError::Binding {
        path: place.clone(),
        reason: "a PostgreSQL URL ends in /database".into(),
    })?;
    let conn = open_postgres(Path::new("."), admin)?;
    conn.execute_batch(&format!("CREATE DATABASE {name}")).at(&place)?;
    Ok(match ca {
        Some(ca) => format!("{server}/{name}?sslrootcert={ca}"),
        None => format!("{server}/{name}"),
    })
}

/// Takes libpq's `sslrootcert` parameter out of a URL, which the driver does not read.
fn split_root_cert(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None);
    };
    let mut ca = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|kv| match kv.strip_prefix("sslrootcert=") {
            Some(file) => {
                ca = Some(file.to_owned());
                false
            }
            None => true,
        })
        .collect();
    match kept.is_empty() {
        true => (base.to_owned(), ca),
        false => (format!("{base}?{}", kept.join("&")), ca),
    }
}

fn postgres_version(conn: &Connection, path: &Path) -> Result<i64, StoreError> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
        .at(path)?;
    let version: Option<i64> =
        db::OptionalExtension::optional(conn.query_row("SELECT version FROM schema_version", [], |r| r.get(0)))
            .at(path)?;
    Ok(version.unwrap_or(0))
}

fn migrate_postgres(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    // One node of a party migrates at a time: the others wait on this lock.
    let tx = conn.transaction().at(path)?;
    tx.execute_batch("SELECT pg_advisory_xact_lock(4242)").at(path)?;
    let version = postgres_version(&tx, path)?;
    check_version(version, path)?;
    for (to, sql) in POSTGRES_MIGRATIONS.iter().filter(|(to, _)| *to as i64 > version) {
        tx.execute_batch(sql).at(path)?;
        tx.execute_batch("DELETE FROM schema_version").at(path)?;
        tx.execute("INSERT INTO schema_version (version) VALUES (?1)", [*to as i64])
            .at(path)?;
    }
    tx.commit().at(path)
}

/// Every table of the schema with its columns, in the order backups copy them.
const TABLES: &[(&str, &str)] = &[
    ("entries", "idx, data"),
    ("hashes", "idx, hash"),
    ("envelopes", "idx, data"),
    ("checkpoints", "size, note"),
    ("witnessed", "party, size, note"),
    ("startup_checked", "through"),
    (
        "messages",
        "id, kind, direction, sender, thread, payload_sha256, log_index, created_ms, exercise",
    ),
    ("outbox", "message_id, party, attempts, next_attempt_ms, last_error"),
    ("receipts", "message_id, party, log_index, entry_index, envelope"),
    ("deadlines", "message_id, party, kind, due_ms, state"),
    ("norm_events", "log_index, message_id, event"),
    ("comm_checks", "party, last_ok_ms"),
    ("adopted", "version, sha256, log_index"),
    ("proposals", "sha256, version, note, proposed_by, proposed_ms"),
    ("rejections", "sha256, party, reason"),
    ("human_checks", "notice_id, party, round_trip_ms, answered_ms"),
    ("escalations", "message_id, party, kind, level, next_ms"),
    ("rosters", "party, version, note, log_index"),
    ("compliance", "party, kind, met, missed"),
];

/// Copies a whole store, as one snapshot of `from`, into the store `to`
/// (of either engine, newly made: what it holds is replaced), in one
/// transaction; returns the number of rows copied. Backups of PostgreSQL
/// and restores into it go through here; SQLite copies itself with `VACUUM INTO`.
pub fn copy_store(from: &Connection, to: &Connection) -> Result<u64, db::Error> {
    let read = from.transaction()?;
    if from.is_postgres() {
        // Every table as of one commit, however long the copy takes.
        read.execute_batch("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")?;
    }
    let write = to.transaction()?;
    let mut rows = 0;
    for (table, columns) in TABLES {
        write.execute_batch(&format!("DELETE FROM {table}"))?;
        let width = columns.split(',').count();
        let placeholders = vec!["?"; width].join(", ");
        let mut insert = write.prepare(&format!("INSERT INTO {table} ({columns}) VALUES ({placeholders})"))?;
        let mut select = read.prepare(&format!("SELECT {columns} FROM {table}"))?;
        let mut source = select.query([])?;
        while let Some(row) = source.next()? {
            let values = (0..width)
                .map(|i| row.get::<rusqlite::types::Value>(i))
                .collect::<Result<Vec<_>, _>>()?;
            let params: Vec<&dyn rusqlite::ToSql> = values.iter().map(|v| v as _).collect();
            insert.execute(&params[..])?;
            rows += 1;
        }
    }
    write.commit()?;
    read.commit()?;
    Ok(rows)
}
