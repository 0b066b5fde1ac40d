//! The append-only audit log: every envelope sent or received, every norm
//! event, agreement adoption, operator action and witnessed checkpoint.
//!
//! Entries are hashed into an RFC 6962 Merkle tree whose stored hashes live
//! beside them in SQLite. One writer thread groups concurrent appends into one
//! transaction and one signed checkpoint per batch, and answers callers only
//! after the batch is durable (WAL, `synchronous=FULL`).

pub mod checkpoint;
pub mod entry;
pub mod export;
pub mod tree;
pub mod verify;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension};
use tlog_tiles::{Hash, HashReader, prove_record, prove_tree, stored_hashes_for_record_hash, tree_hash};
use tokio::sync::{mpsc, oneshot, watch};

use crate::keys::IdentityKey;
use crate::store::{self, Context, StoreError};
use tree::DbHashes;

/// The most appends one batch takes; more wait for the next batch.
const MAX_BATCH: usize = 512;

/// Why a log operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A requested index or size is outside the tree.
    #[error("{what} {value} is out of range: {valid}")]
    OutOfRange {
        what: &'static str,
        value: u64,
        valid: String,
    },
    /// A request is malformed whatever the tree's size.
    #[error("{what} {value} is invalid: {valid}")]
    Invalid {
        what: &'static str,
        value: u64,
        valid: String,
    },
    /// The stored log does not match its own signed checkpoint.
    #[error("log at {}: {what}", path.display())]
    Corrupt { path: PathBuf, what: String },
    /// The writer has stopped (the node is shutting down).
    #[error("the log writer has stopped")]
    Closed,
    /// A state change that had to commit with the entries refused; nothing was appended.
    #[error(transparent)]
    Refused(#[from] StateError),
}

/// Why a state change refused to commit with its log entries. Callers match
/// on it: a duplicate is a replay or a race, not a failure.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The row exists already (a replayed message, a receipt recorded twice).
    #[error("{0} is already recorded")]
    Duplicate(String),
    /// What was to change has moved on (a deadline met or missed meanwhile).
    #[error("{0} is no longer running")]
    NotRunning(String),
    /// The database failed.
    #[error("database: {0}")]
    Storage(#[from] rusqlite::Error),
}

/// A state change that commits in the same transaction as its log entries.
/// It receives the index its first entry will get, and may refuse the append.
/// The writer may run it a second time, from scratch, if another job in the
/// same batch fails (see `Writer::commit_batch`).
pub type StateChange = Box<dyn Fn(&Connection, u64) -> Result<(), StateError> + Send>;

/// What an append returns once durable.
#[derive(Clone, Debug)]
pub struct Appended {
    /// Index of the first entry appended.
    pub first_index: u64,
    /// Tree size of the checkpoint that covers the entries.
    pub tree_size: u64,
    /// The signed checkpoint covering the entries.
    pub checkpoint: Arc<Vec<u8>>,
    /// Inclusion proof of the first entry in that checkpoint, if asked for.
    pub proof: Vec<Hash>,
}

struct Job {
    entries: Vec<Vec<u8>>,
    change: Option<StateChange>,
    want_proof: bool,
    reply: oneshot::Sender<Result<Appended, LogError>>,
}

/// The latest signed checkpoint and its tree.
#[derive(Clone, Debug)]
pub struct Head {
    /// Tree size.
    pub size: u64,
    /// Root hash.
    pub root: Hash,
    /// The signed checkpoint note.
    pub note: Arc<Vec<u8>>,
}

/// Read access to a log: proofs, roots, entries and witnessed checkpoints,
/// through a small pool of read-only connections. Auditors use it on a data
/// directory directly; a running node shares it with its writer.
pub struct LogReader {
    dir: PathBuf,
    pool: Mutex<Vec<Connection>>,
}

impl LogReader {
    /// Opens the log in `dir` for reading; the database must exist.
    pub fn open(dir: &Path) -> Result<Self, LogError> {
        let conn = store::open_reader(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            pool: Mutex::new(vec![conn]),
        })
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
            let current = self.current_size(c)?;
            let new = if new == 0 { current } else { new };
            if new > current {
                return Err(out_of_range("new_size", new, format!("the tree has {current} entries")));
            }
            if old == 0 || old > new {
                return Err(LogError::Invalid {
                    what: "old_size",
                    value: old,
                    valid: format!("it must be between 1 and new_size ({new})"),
                });
            }
            Ok((
                new,
                prove_tree(new, old, &DbHashes(c)).map_err(|e| tree_error(&self.dir, e))?,
            ))
        })
    }

    /// A consistency proof as `Federation.ProveConsistency` and
    /// `Audit.GetConsistencyProof` answer it.
    pub fn prove_consistency(
        &self,
        req: &crate::proto::ConsistencyProofRequest,
    ) -> Result<crate::proto::ConsistencyProof, LogError> {
        let (new_size, proof) = self.consistency_proof(req.old_size, req.new_size)?;
        Ok(crate::proto::ConsistencyProof {
            old_size: req.old_size,
            new_size,
            hashes: tree::proof_to_wire(&proof),
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

    /// Entries `[start, end)`, at most `limit` of them.
    pub fn entries(&self, start: u64, end: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, LogError> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached("SELECT idx, data FROM entries WHERE idx >= ?1 AND idx < ?2 ORDER BY idx LIMIT ?3")
                .at(&self.dir)?;
            let rows = stmt
                .query_map([start as i64, end as i64, limit as i64], |r| {
                    Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))
                })
                .at(&self.dir)?;
            Ok(rows.collect::<Result<Vec<_>, _>>().at(&self.dir)?)
        })
    }

    /// The peers' checkpoints this node witnessed, oldest first; one party's or all.
    pub fn witnessed(&self, party: Option<&str>) -> Result<Vec<(String, u64, Vec<u8>)>, LogError> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT party, size, note FROM witnessed WHERE ?1 IS NULL OR party = ?1 ORDER BY party, size",
                )
                .at(&self.dir)?;
            let rows = stmt
                .query_map([party], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64, r.get(2)?)))
                .at(&self.dir)?;
            Ok(rows.collect::<Result<Vec<_>, _>>().at(&self.dir)?)
        })
    }
}

/// A node's audit log: appends go through the single writer thread, reads
/// through [`LogReader`].
pub struct Log {
    reader: LogReader,
    jobs: mpsc::Sender<Job>,
    head: watch::Receiver<Head>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    checkpointer: Checkpointer,
}

/// How often the checkpointer folds the WAL back into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(50);

/// A thread that copies committed WAL pages into the database file in the
/// background, so the writer rarely stalls on a large checkpoint of its own;
/// it stops when its sender is dropped.
struct Checkpointer {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    fn start(dir: &Path) -> Result<Self, LogError> {
        let conn = store::open_writer(dir)?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let db = dir.join(store::DB_FILE);
        let thread = std::thread::Builder::new()
            .name("hotline-log-checkpointer".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_EVERY) {
                    // PASSIVE never blocks the writer or readers; frames it cannot copy yet wait for the next round.
                    let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(0));
                    if let Err(e) = done {
                        tracing::warn!(db = %db.display(), error = %e, "background WAL checkpoint failed");
                    }
                }
            })
            .map_err(|e| corrupt(dir, format!("cannot start the checkpointer: {e}")))?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    fn stop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Log {
    /// Opens the log in `dir` (creating it), checks that the stored tree
    /// matches its latest signed checkpoint, and starts the writer.
    pub fn open(dir: &Path, key: IdentityKey) -> Result<Self, LogError> {
        std::fs::create_dir_all(dir).map_err(|e| corrupt(dir, format!("cannot create data directory: {e}")))?;
        let conn = store::open_writer(dir)?;
        let head = load_head(&conn, dir, &key)?;
        let (jobs, rx) = mpsc::channel(4 * MAX_BATCH);
        let (head_tx, head_rx) = watch::channel(head);
        let writer_dir = dir.to_owned();
        let writer = std::thread::Builder::new()
            .name("hotline-log-writer".into())
            .spawn(move || {
                Writer {
                    conn,
                    key,
                    dir: writer_dir,
                    head: head_tx,
                }
                .run(rx)
            })
            .map_err(|e| corrupt(dir, format!("cannot start the writer: {e}")))?;
        Ok(Self {
            reader: LogReader::open(dir)?,
            jobs,
            head: head_rx,
            writer: Mutex::new(Some(writer)),
            checkpointer: Checkpointer::start(dir)?,
        })
    }

    /// Read access: proofs, entries, roots.
    pub fn reader(&self) -> &LogReader {
        &self.reader
    }

    /// Appends entries; returns once they and their checkpoint are on disk.
    pub async fn append(&self, entries: Vec<Vec<u8>>) -> Result<Appended, LogError> {
        self.submit(entries, None, false).await
    }

    /// Appends entries together with a state change, atomically; with
    /// `want_proof`, also returns the first entry's inclusion proof.
    pub async fn append_with(
        &self,
        entries: Vec<Vec<u8>>,
        change: StateChange,
        want_proof: bool,
    ) -> Result<Appended, LogError> {
        self.submit(entries, Some(change), want_proof).await
    }

    async fn submit(
        &self,
        entries: Vec<Vec<u8>>,
        change: Option<StateChange>,
        want_proof: bool,
    ) -> Result<Appended, LogError> {
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Job {
                entries,
                change,
                want_proof,
                reply,
            })
            .await
            .map_err(|_| LogError::Closed)?;
        rx.await.map_err(|_| LogError::Closed)?
    }

    /// The latest durable checkpoint.
    pub fn head(&self) -> Head {
        self.head.borrow().clone()
    }

    /// A receiver that sees every new checkpoint.
    pub fn watch(&self) -> watch::Receiver<Head> {
        self.head.clone()
    }

    /// Stops accepting appends, lets the writer finish the batches in flight
    /// and waits for it.
    pub fn close(self) {
        let Self {
            reader,
            jobs,
            writer,
            mut checkpointer,
            ..
        } = self;
        // The writer closes last, so SQLite folds the WAL back into the database file.
        checkpointer.stop();
        drop(reader);
        drop(jobs);
        if let Some(handle) = writer.lock().ok().and_then(|mut w| w.take()) {
            let _ = handle.join();
        }
    }
}

fn latest_checkpoint(c: &Connection, dir: &Path) -> Result<(u64, Option<Vec<u8>>), LogError> {
    // Every consistency proof a peer asks for starts here: keep it prepared.
    let row: Option<(i64, Vec<u8>)> = c
        .prepare_cached("SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1")
        .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?))).optional())
        .at(&dir.join(store::DB_FILE))?;
    Ok(row.map(|(s, n)| (s as u64, Some(n))).unwrap_or((0, None)))
}

fn corrupt(dir: &Path, what: impl Into<String>) -> LogError {
    LogError::Corrupt {
        path: dir.to_owned(),
        what: what.into(),
    }
}

fn out_of_range(what: &'static str, value: u64, valid: String) -> LogError {
    LogError::OutOfRange { what, value, valid }
}

fn tree_error(dir: &Path, e: tlog_tiles::Error) -> LogError {
    corrupt(dir, format!("stored tree: {e}"))
}

fn load_head(conn: &Connection, dir: &Path, key: &IdentityKey) -> Result<Head, LogError> {
    let db = dir.join(store::DB_FILE);
    let entries: i64 = conn
        .query_row("SELECT COUNT(*) FROM entries", [], |r| r.get(0))
        .at(&db)?;
    let corrupt = |what: String| corrupt(dir, what);
    let (size, Some(note)) = latest_checkpoint(conn, dir)? else {
        if entries != 0 {
            return Err(corrupt(format!("{entries} entries but no signed checkpoint")));
        }
        return Ok(Head {
            size: 0,
            root: tlog_tiles::EMPTY_HASH,
            note: Arc::new(checkpoint::sign(key, 0, tlog_tiles::EMPTY_HASH)),
        });
    };
    if entries as u64 != size {
        return Err(corrupt(format!(
            "{entries} entries but the latest signed checkpoint covers {size}; run hotline audit verify"
        )));
    }
    let verified = checkpoint::verify(&note, key.verifier()).map_err(|e| corrupt(format!("latest checkpoint: {e}")))?;
    let root = tree_hash(size, &DbHashes(conn)).map_err(|e| tree_error(dir, e))?;
    if root != verified.root {
        return Err(corrupt(format!(
            "stored tree root at size {size} does not match the signed checkpoint; run hotline audit verify"
        )));
    }
    Ok(Head {
        size,
        root,
        note: Arc::new(note),
    })
}

/// The single writer: owns the read-write connection and the signing key.
struct Writer {
    conn: Connection,
    key: IdentityKey,
    dir: PathBuf,
    head: watch::Sender<Head>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        while let Some(first) = rx.blocking_recv() {
            let mut jobs = vec![first];
            while jobs.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            let span = tracing::debug_span!("log_batch", jobs = jobs.len());
            let _enter = span.enter();
            self.commit_batch(jobs);
        }
    }

    /// Commits a batch in one transaction, with one checkpoint. Most batches
    /// have no failing job and run without savepoints, whose page copies cost
    /// the writer about a tenth of its time. If any job fails, that attempt is
    /// rolled back and the batch runs again with a savepoint per job, so a
    /// refused job leaves the rest of the batch intact.
    fn commit_batch(&mut self, jobs: Vec<Job>) {
        let outcome = match self.run_batch(&jobs, false) {
            Ok(Batch::JobFailed) => self.run_batch(&jobs, true),
            other => other,
        };
        match outcome {
            Ok(Batch::Committed { head, results }) => {
                let head = head.unwrap_or_else(|| self.head.borrow().clone());
                self.head.send_replace(head.clone());
                for (job, (result, proof)) in jobs.into_iter().zip(results) {
                    let reply = result.map(|first_index| Appended {
                        first_index,
                        tree_size: head.size,
                        checkpoint: head.note.clone(),
                        proof,
                    });
                    let _ = job.reply.send(reply);
                }
            }
            Ok(Batch::JobFailed) | Err(_) => {
                let message = match outcome {
                    Err(e) => e.to_string(),
                    _ => "a job failed outside its savepoint".into(),
                };
                tracing::error!(error = %message, "log batch failed; nothing in it was committed");
                for job in jobs {
                    let _ = job
                        .reply
                        .send(Err(corrupt(&self.dir, format!("batch not committed: {message}"))));
                }
            }
        }
    }

    /// One attempt at a batch. Without `isolate`, the first failing job
    /// abandons the attempt (`JobFailed`) and nothing is committed.
    fn run_batch(&mut self, jobs: &[Job], isolate: bool) -> Result<Batch, LogError> {
        let db = self.dir.join(store::DB_FILE);
        let start_size = self.head.borrow().size;
        let mut tx = self.conn.transaction().at(&db)?;
        let mut size = start_size;
        // Each job's first index (or why it failed) and its proof.
        let mut results: Vec<(Result<u64, LogError>, Vec<Hash>)> = Vec::with_capacity(jobs.len());
        for job in jobs {
            let result = if isolate {
                let sp = tx.savepoint().at(&db)?;
                let result = append_job(&sp, &db, size, job);
                if result.is_ok() {
                    sp.commit().at(&db)?;
                }
                result
            } else {
                append_job(&tx, &db, size, job)
            };
            match result {
                Ok(_) => size += job.entries.len() as u64,
                Err(_) if !isolate => return Ok(Batch::JobFailed),
                Err(_) => {}
            }
            results.push((result, Vec::new()));
        }
        if size == start_size {
            tx.commit().at(&db)?;
            return Ok(Batch::Committed { head: None, results });
        }
        let root = tree_hash(size, &DbHashes(&tx)).map_err(|e| tree_error(&self.dir, e))?;
        let note = checkpoint::sign(&self.key, size, root);
        tx.prepare_cached("INSERT INTO checkpoints (size, note) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute(rusqlite::params![size as i64, note]))
            .at(&db)?;
        {
            let hashes = tree::CachedHashes::new(DbHashes(&tx));
            for (job, (result, proof)) in jobs.iter().zip(&mut results) {
                if let (Ok(first), true) = (result.as_ref(), job.want_proof) {
                    *proof = prove_record(size, *first, &hashes).map_err(|e| tree_error(&self.dir, e))?;
                }
            }
        }
        tx.commit().at(&db)?;
        Ok(Batch::Committed {
            head: Some(Head {
                size,
                root,
                note: Arc::new(note),
            }),
            results,
        })
    }
}

/// How one attempt at a batch ended.
enum Batch {
    /// Committed: the new head (none if nothing was appended), and each
    /// job's first index or why it failed, with its proof.
    Committed {
        head: Option<Head>,
        results: Vec<(Result<u64, LogError>, Vec<Hash>)>,
    },
    /// A job failed outside a savepoint; the attempt was rolled back.
    JobFailed,
}

/// Applies one job: its state change, then its entries and their tree hashes.
fn append_job(c: &Connection, db: &Path, size: u64, job: &Job) -> Result<u64, LogError> {
    if let Some(change) = &job.change {
        change(c, size)?;
    }
    let mut insert_entry = c
        .prepare_cached("INSERT INTO entries (idx, data) VALUES (?1, ?2)")
        .at(db)?;
    let mut insert_hash = c
        .prepare_cached("INSERT INTO hashes (idx, hash) VALUES (?1, ?2)")
        .at(db)?;
    for (n, entry) in (size..).zip(&job.entries) {
        let hashes = stored_hashes_for_record_hash(n, tlog_tiles::record_hash(entry), &DbHashes(c))
            .map_err(|e| corrupt(db, format!("stored tree: {e}")))?;
        insert_entry.execute(rusqlite::params![n as i64, entry]).at(db)?;
        let base = tlog_tiles::stored_hash_index(0, n);
        for (i, h) in hashes.iter().enumerate() {
            insert_hash
                .execute(rusqlite::params![(base + i as u64) as i64, &h.0[..]])
                .at(db)?;
        }
    }
    Ok(size)
}
