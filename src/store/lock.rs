//! One process per data directory: `hotline serve` holds an exclusive lock
//! on `DIR/hotline.pid` for its whole life (as PostgreSQL's `postmaster.pid`
//! does), so a second `serve` on the same directory is refused at start,
//! naming the process that holds it, instead of writing a log beside it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock file in a node's data directory; it holds the holder's process id.
pub const LOCK_FILE: &str = "hotline.pid";

/// Why the data directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the directory.
    #[error("data directory {} is in use by another hotline (process {holder}, see {}); stop it first, or give this node its own data directory", dir.display(), dir.join(LOCK_FILE).display())]
    Held {
        /// The data directory.
        dir: PathBuf,
        /// The holder's process id, as it wrote it (or "unknown").
        holder: String,
    },
    /// The lock file could not be created or locked.
    #[error("{}: {source}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// The held lock; dropping it (or the process ending, however it ends) releases it.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes the exclusive lock on `dir` (creating the directory if needed)
    /// and records this process's id in it; refuses if another holds it.
    pub fn take(dir: &Path) -> Result<DirLock, LockError> {
        let path = dir.join(LOCK_FILE);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(LockError::Held {
                    dir: dir.to_owned(),
                    holder: if holder.is_empty() {
                        "unknown".into()
                    } else {
                        holder.into()
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(DirLock { _file: file })
    }
}
