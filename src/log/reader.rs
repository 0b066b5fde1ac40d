//! Read access to a log: proofs, roots, entries and witnessed checkpoints,
//! through a small pool of read-only connections.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::db::{Connection, OptionalExtension};
use tlog_tiles::{Hash, HashReader, prove_record, prove_tree, tree_hash};

use super::entry::Entry;
use super::error::{LogError, out_of_range, tree_error};
use super::tree::{self, DbHashes, RecentHashes};
use crate::store::{self, Context};

/// Read access to a log: proofs, roots, entries and witnessed checkpoints,
/// through a small pool of read-only connections. Auditors use it on a data
/// directory directly; a running node shares it with its writer.
pub struct LogReader {
    dir: PathBuf,
    pool: Mutex<Vec<Connection>>,
    /// Stored hashes written or read lately, which consistency proofs use
    /// before the store; a node's writer adds each batch's.
    recent: Arc<RecentHashes>,
}

impl LogReader {
    /// Opens the log in `dir` for reading; the database must exist.
    pub fn open(dir: &Path) -> Result<Self, LogError> {
        let conn = store::open_reader(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            pool: Mutex::new(vec![conn]),
            recent: Arc::default(),
        })
    }

    /// The recent hashes this reader's proofs use, for the writer to add to.
    pub(crate) fn recent(&self) -> Arc<RecentHashes> {
        self.recent.clone()
    }

    /// The consistency proof from `old` to `new` if every hash it needs is
    /// held in memory, without a read; `new` must be a committed size (the
    /// head's). None when a hash is not held or the sizes do not make a proof.
    pub fn recent_consistency(&self, old: u64, new: u64) -> Option<Vec<Hash>> {
        if old == 0 || old > new {
            return None;
        }
        let asked = tree::Recorder::default();
        prove_tree(new, old, &asked).ok()?;
        prove_tree(new, old, &self.recent.held(&asked.indexes())).ok()
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs `f` with a pooled read-only connection.
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T, LogError>) -> Result<T, LogError> {
        let pooled = self.pool.lock().map(|mut p| p.pop()).unwrap_or(None);
        let conn = match pooled {
            Some(c) => c,
            None => store::open_reader(&self.dir)?,
        };
        let result = f(&conn);
        if let Ok(mut pool) = self.pool.lock() {
            pool.push(conn);
        }
        result
    }

    /// The latest signed checkpoint: tree size and note; size 0 and no note when empty.
    pub fn latest_checkpoint(&self) -> Result<(u64, Option<Vec<u8>>), LogError> {
        self.read(|c| latest_checkpoint(c, &self.dir))
    }

    fn current_size(&self, c: &Connection) -> Result<u64, LogError> {
        Ok(latest_checkpoint(c, &self.dir)?.0)
    }

    /// RFC 6962 inclusion proof of entry `index` in the tree of `size`
    /// (the current size when 0): the size used, the leaf hash and the proof.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<(u64, Hash, Vec<Hash>), LogError> {
        self.read(|c| {
            let current = self.current_size(c)?;
            let size = if size == 0 { current } else { size };
            if size > current {
                return Err(out_of_range(
                    "tree_size",
                    size,
                    format!("the tree has {current} entries"),
                ));
            }
            if index >= size {
                let valid = match size {
                    0 => "the tree is empty".to_owned(),
                    n => format!("valid indexes are 0 to {} for tree size {n}", n - 1),
                };
                return Err(out_of_range("index", index, valid));
            }
            let reader = DbHashes(c);
            let leaf = reader
                .read_hashes(&[tlog_tiles::stored_hash_index(0, index)])
                .map_err(|e| tree_error(&self.dir, e))?[0];
            let proof = prove_record(size, index, &reader).map_err(|e| tree_error(&self.dir, e))?;
            Ok((size, leaf, proof))
        })
    }

    /// RFC 6962 consistency proof from tree size `old` to `new` (current when 0).
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<(u64, Vec<Hash>), LogError> {
        self.read(|c| {
            let new = self.new_size(c, new)?;
            Ok((new, prove_from(&self.dir, &DbHashes(c), old, new)?))
        })
    }

    /// The tree size `new` names (the current one when 0), refused past it.
    fn new_size(&self, c: &Connection, new: u64) -> Result<u64, LogError> {
        let current = self.current_size(c)?;
        let new = if new == 0 { current } else { new };
        if new > current {
            return Err(out_of_range("new_size", new, format!("the tree has {current} entries")));
        }
        Ok(new)
    }

    /// Consistency proofs as `Federation.ProveConsistency` and
    /// `Audit.GetConsistencyProof` answer them: from `old_size`, and from each
    /// of `more_old_sizes`, to one new size, read in one session.
    pub fn prove_consistency(
        &self,
        req: &crate::proto::ConsistencyProofRequest,
    ) -> Result<crate::proto::ConsistencyProof, LogError> {
        if req.more_old_sizes.len() > MAX_MORE_OLD_SIZES {
            return Err(LogError::Invalid {
                what: "more_old_sizes",
                value: req.more_old_sizes.len() as u64,
                valid: format!("at most {MAX_MORE_OLD_SIZES} sizes in one request"),
            });
        }
        self.read(|c| {
            let new_size = self.new_size(c, req.new_size)?;
            // The proofs to one new size share most of their hashes: a dry run learns which
            // they read, and one query (on PostgreSQL) reads them all.
            let asked = tree::Recorder::default();
            for &old in std::iter::once(&req.old_size).chain(&req.more_old_sizes) {
                prove_from(&self.dir, &asked, old, new_size)?;
            }
            let wanted = asked.indexes();
            let hashes = tree::CachedHashes::new(DbHashes(c));
            hashes.know(self.recent.held(&wanted).0);
            hashes.read_hashes(&wanted).map_err(|e| tree_error(&self.dir, e))?;
            let proof = |old_size| {
                Ok(crate::proto::ConsistencyProof {
                    old_size,
                    new_size,
                    hashes: tree::proof_to_wire(&prove_from(&self.dir, &hashes, old_size, new_size)?),
                    more: Vec::new(),
                })
            };
            let mut first = proof(req.old_size)?;
            first.more = req
                .more_old_sizes
                .iter()
                .map(|&old| proof(old))
                .collect::<Result<_, LogError>>()?;
            self.recent.remember(hashes.known());
            Ok(first)
        })
    }

    /// The root hash of the tree of `size` entries (any past size).
    pub fn root_at(&self, size: u64) -> Result<Hash, LogError> {
        self.read(|c| {
            let current = self.current_size(c)?;
            if size > current {
                return Err(out_of_range("size", size, format!("the tree has {current} entries")));
            }
            tree_hash(size, &DbHashes(c)).map_err(|e| tree_error(&self.dir, e))
        })
    }

    /// Hands every entry to `each`, in order, a page at a time: memory
    /// holds one page, however long the log.
    pub fn each_entry(&self, mut each: impl FnMut(u64, &Entry)) -> Result<(), LogError> {
        let mut next = 0;
        loop {
            let page = self.entries(next, i64::MAX as u64, 4_096)?;
            let Some((last, _)) = page.last() else { return Ok(()) };
            next = last + 1;
            for (index, e) in &page {
                each(*index, e);
            }
        }
    }

    /// Entries `[start, end)`, at most `limit` of them, each with the
    /// envelope it keeps beside the log, if any.
    pub fn entries(&self, start: u64, end: u64, limit: usize) -> Result<Vec<(u64, Entry)>, LogError> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "{} WHERE e.idx >= ?1 AND e.idx < ?2 ORDER BY e.idx LIMIT ?3",
                    super::entry::STORED
                ))
                .at(&self.dir)?;
            let rows = stmt
                .query_map(
                    [start as i64, end as i64, i64::try_from(limit).unwrap_or(i64::MAX)],
                    |r| {
                        let entry = Entry {
                            data: r.get(1)?,
                            envelope: r.get(2)?,
                        };
                        Ok((r.get::<i64>(0)? as u64, entry))
                    },
                )
                .at(&self.dir)?;
            Ok(rows.collect::<Result<Vec<_>, _>>().at(&self.dir)?)
        })
    }

    /// The peers' checkpoints this node witnessed, oldest first; one party's or all.
    pub fn witnessed(&self, party: Option<&str>) -> Result<Vec<(String, u64, Vec<u8>)>, LogError> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT party, size, note FROM witnessed WHERE CAST(?1 AS TEXT) IS NULL OR party = ?1 ORDER BY party, size",
                )
                .at(&self.dir)?;
            let rows = stmt
                .query_map([party], |r| Ok((r.get(0)?, r.get::<i64>(1)? as u64, r.get(2)?)))
                .at(&self.dir)?;
            Ok(rows.collect::<Result<Vec<_>, _>>().at(&self.dir)?)
        })
    }
}

/// The most extra old sizes one consistency proof request may name.
pub const MAX_MORE_OLD_SIZES: usize = 256;

/// The consistency proof from `old` to `new`, once `old` is checked against `new`.
fn prove_from(dir: &Path, hashes: &impl HashReader, old: u64, new: u64) -> Result<Vec<Hash>, LogError> {
    if old == 0 || old > new {
        return Err(LogError::Invalid {
            what: "old_size",
            value: old,
            valid: format!("it must be between 1 and new_size ({new})"),
        });
    }
    prove_tree(new, old, hashes).map_err(|e| tree_error(dir, e))
}

pub(crate) fn latest_checkpoint(c: &Connection, dir: &Path) -> Result<(u64, Option<Vec<u8>>), LogError> {
    // Every consistency proof a peer asks for starts here: keep it prepared.
    let row: Option<(i64, Vec<u8>)> = c
        .prepare_cached("SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1")
        .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?))).optional())
        .at(&dir.join(store::DB_FILE))?;
    Ok(row.map(|(s, n)| (s as u64, Some(n))).unwrap_or((0, None)))
}
