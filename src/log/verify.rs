//! Offline verification of a whole log, as an auditor runs it: recompute the
//! tree from the entries, compare it with every stored hash and every signed
//! checkpoint, and name the first entry that does not fit.

use std::path::Path;

use prost::Message;
use rusqlite::Connection;
use tlog_tiles::Hash;

use super::checkpoint::{self, VerifiedCheckpoint};
use super::tree::Frontier;
use crate::keys::VerifierKey;
use crate::proto::LogEntry;
use crate::store::{self, Context, StoreError};

/// Why a log failed verification; names the first bad entry or checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// An entry is missing, altered or not a log entry.
    #[error("entry {index}: {what}")]
    Entry { index: u64, what: String },
    /// A checkpoint's signature or root does not match the entries before it.
    #[error("checkpoint at tree size {size}: {what}")]
    Checkpoint { size: u64, what: String },
    /// The log was cut short of what it signed.
    #[error(
        "log ends after {entries} entries but a signed checkpoint covers {signed}: entries {entries}..{signed} were removed"
    )]
    Truncated { entries: u64, signed: u64 },
    /// The database could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A node's Audit service failed to answer.
    #[error("node {node}: {what}")]
    Remote { node: String, what: String },
    /// An export file could not be read.
    #[error("{path}: {what}")]
    File { path: String, what: String },
}

/// What a successful verification covered.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    /// Entries recomputed.
    pub entries: u64,
    /// Signed checkpoints checked.
    pub checkpoints: u64,
    /// The root of the whole log, hex.
    pub root: String,
}

/// Recomputes a log from its entries in index order and checks each signed
/// checkpoint as its size is reached.
pub struct Replay<'k> {
    key: &'k VerifierKey,
    frontier: Frontier,
    checkpoints: u64,
}

impl<'k> Replay<'k> {
    /// Starts a replay whose checkpoints must be signed by `key`.
    pub fn new(key: &'k VerifierKey) -> Self {
        Self {
            key,
            frontier: Frontier::default(),
            checkpoints: 0,
        }
    }

    /// Adds entry `index`, which must be the next one; returns the hashes it
    /// completes in stored order.
    pub fn entry(&mut self, index: u64, data: &[u8]) -> Result<Vec<Hash>, VerifyError> {
        let expected = self.frontier.size();
        if index != expected {
            return Err(VerifyError::Entry {
                index: expected,
                what: format!("missing (the next entry present is {index})"),
            });
        }
        if LogEntry::decode(data).is_err() {
            return Err(VerifyError::Entry {
                index,
                what: "is not a hotline.v1.LogEntry".into(),
            });
        }
        Ok(self.frontier.push(data))
    }

    /// Checks a signed checkpoint against the entries replayed so far, whose
    /// count must equal its size.
    pub fn checkpoint(&mut self, note: &[u8]) -> Result<VerifiedCheckpoint, VerifyError> {
        let size = self.frontier.size();
        let cp = checkpoint::verify(note, self.key).map_err(|e| VerifyError::Checkpoint {
            size,
            what: e.to_string(),
        })?;
        if cp.size != size {
            return Err(VerifyError::Checkpoint {
                size: cp.size,
                what: format!("checked after {size} entries"),
            });
        }
        if cp.root != self.frontier.root() {
            return Err(VerifyError::Checkpoint {
                size,
                what: "signed root hash does not match the entries: an entry before this size was altered, and the stored hashes with it".into(),
            });
        }
        self.checkpoints += 1;
        Ok(cp)
    }

    /// Entries replayed so far.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// The report of a finished replay.
    pub fn report(&self) -> Report {
        Report {
            entries: self.frontier.size(),
            checkpoints: self.checkpoints,
            root: hex::encode(self.frontier.root().0),
        }
    }
}

/// Verifies the log in a node's data directory against `key`; `progress` is
/// told (done, total) as entries are checked.
pub fn verify_data_dir(
    dir: &Path,
    key: &VerifierKey,
    mut progress: impl FnMut(u64, u64),
) -> Result<Report, VerifyError> {
    let db = dir.join(store::DB_FILE);
    let conn = store::open_reader(dir)?;
    let checkpoints = load_checkpoints(&conn, &db)?;
    let total = checkpoints.last().map(|c| c.0).unwrap_or(0);
    let mut next_cp = checkpoints.iter().peekable();
    let mut replay = Replay::new(key);

    let mut hashes_stmt = conn.prepare("SELECT idx, hash FROM hashes ORDER BY idx").at(&db)?;
    let mut hashes = hashes_stmt.query([]).at(&db)?;
    let mut entries_stmt = conn.prepare("SELECT idx, data FROM entries ORDER BY idx").at(&db)?;
    let mut rows = entries_stmt.query([]).at(&db)?;
    let mut stored_index = 0u64;
    while let Some(row) = rows.next().at(&db)? {
        let index = row.get::<_, i64>(0).at(&db)? as u64;
        let data = row.get_ref(1).at(&db)?.as_blob().map_err(|_| VerifyError::Entry {
            index,
            what: "data is not a blob".into(),
        })?;
        for (k, computed) in replay.entry(index, data)?.into_iter().enumerate() {
            let stored = hashes.next().at(&db)?;
            let matches = match stored {
                Some(h) => {
                    let idx = h.get::<_, i64>(0).at(&db)? as u64;
                    let hash = h.get_ref(1).at(&db)?.as_blob().unwrap_or_default();
                    idx == stored_index && hash == computed.0
                }
                None => false,
            };
            if !matches {
                let what = if k == 0 {
                    "content does not match its stored leaf hash: the entry was altered or moved"
                } else {
                    "stored tree hashes above this entry do not match: the tree was altered"
                };
                return Err(VerifyError::Entry {
                    index,
                    what: what.into(),
                });
            }
            stored_index += 1;
        }
        while let Some((size, note)) = next_cp.peek() {
            if *size != replay.size() {
                break;
            }
            replay.checkpoint(note)?;
            next_cp.next();
        }
        if index % 4096 == 0 {
            progress(index + 1, total);
        }
    }
    if let Some((size, _)) = next_cp.next() {
        return Err(VerifyError::Truncated {
            entries: replay.size(),
            signed: *size,
        });
    }
    if hashes.next().at(&db)?.is_some() {
        return Err(VerifyError::Entry {
            index: replay.size(),
            what: "missing, but tree hashes for it remain: entries were deleted".into(),
        });
    }
    progress(replay.size(), total);
    Ok(replay.report())
}

fn load_checkpoints(conn: &Connection, db: &Path) -> Result<Vec<(u64, Vec<u8>)>, VerifyError> {
    let mut stmt = conn
        .prepare("SELECT size, note FROM checkpoints ORDER BY size")
        .at(db)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
        .at(db)?;
    Ok(rows.collect::<Result<Vec<_>, _>>().at(db)?)
}
