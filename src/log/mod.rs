//! The append-only audit log: every envelope sent or received, every norm
//! event, agreement adoption, operator action and witnessed checkpoint.
//!
//! Entries are hashed into an RFC 6962 Merkle tree whose stored hashes live
//! beside them in SQLite. One writer thread groups concurrent appends into one
//! transaction and one signed checkpoint per batch, and answers callers only
//! after the batch is durable (WAL, `synchronous=FULL`). The writer is in
//! `writer.rs`, read access in `reader.rs`, their errors in `error.rs`.

pub mod checkpoint;
pub mod entry;
mod error;
pub mod export;
mod reader;
mod startup;
pub mod tree;
pub mod verify;
mod writer;

use std::path::Path;
use std::sync::Mutex;

use tokio::sync::{mpsc, oneshot, watch};

pub(crate) use error::no_valid_key;
pub use error::{LogError, StateError};
pub use reader::{LogReader, MAX_MORE_OLD_SIZES};
pub use startup::Recheck;
pub use writer::{Appended, Head, StateChange};

use crate::clock::Clock;
use crate::keys::IdentityKey;
use crate::own_keys::OwnKeys;
use crate::store;
use entry::Entry;
use error::{corrupt, tree_error};
use startup::{load_head, recheck_entries};
use writer::{Checkpointer, Job, MAX_BATCH, Writer};

/// A node's audit log: appends go through the single writer thread, reads
/// through [`LogReader`].
pub struct Log {
    reader: LogReader,
    jobs: mpsc::Sender<Job>,
    head: watch::Receiver<Head>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    checkpointer: Checkpointer,
    /// How long each batch took to commit, for the node's metrics.
    commit_seconds: prometheus_client::metrics::histogram::Histogram,
    /// Background WAL checkpoints that failed (a full disk, say), for the node's metrics.
    checkpoint_failures: prometheus_client::metrics::counter::Counter,
    /// While true, appends wait (see [`Log::hold`]).
    held: watch::Sender<bool>,
}

impl Log {
    /// Opens the log in `dir` (creating it), checks that the stored tree
    /// matches its latest signed checkpoint and that the entries appended
    /// since the last start still hash to it, and starts the writer.
    pub fn open(dir: &Path, key: IdentityKey) -> Result<Self, LogError> {
        Self::open_with(dir, OwnKeys::single(key), Recheck::NewEntries, Clock::system())
    }

    /// Like [`Log::open`], signing with `keys` (which follow the agreement
    /// in force) at the time `clock` tells, and re-hashing the entries `recheck` says.
    pub fn open_with(dir: &Path, keys: OwnKeys, recheck: Recheck, clock: Clock) -> Result<Self, LogError> {
        Self::open_locked(dir, keys, recheck, clock, None)
    }

    /// Like [`Log::open_with`], the writer holding `lock` (the data
    /// directory's) until it stops: what a serving node opens.
    pub fn open_locked(
        dir: &Path,
        keys: OwnKeys,
        recheck: Recheck,
        clock: Clock,
        lock: Option<store::DirLock>,
    ) -> Result<Self, LogError> {
        let key = keys;
        std::fs::create_dir_all(dir).map_err(|e| corrupt(dir, format!("cannot create data directory: {e}")))?;
        let conn = store::open_writer(dir)?;
        if conn.is_postgres() {
            // One writer per store: a standby waits here until the holder is gone.
            store::take_writer_lease(&conn, dir)?;
        }
        let head = load_head(&conn, dir, &key, &clock)?;
        recheck_entries(&conn, dir, head.size, recheck)?;
        let frontier = tree::Frontier::at(head.size, &tree::DbHashes(&conn)).map_err(|e| tree_error(dir, e))?;
        if frontier.root() != head.root {
            return Err(corrupt(
                dir,
                format!(
                    "the stored tree's right edge does not give the root of the checkpoint of size {}",
                    head.size
                ),
            ));
        }
        let (jobs, rx) = mpsc::channel(4 * MAX_BATCH);
        let (head_tx, head_rx) = watch::channel(head);
        let writer_dir = dir.to_owned();
        let reader = LogReader::open(dir)?;
        let recent = reader.recent();
        let commit_seconds = crate::metrics::log_commit_histogram();
        let checkpoint_failures = prometheus_client::metrics::counter::Counter::default();
        let observed = commit_seconds.clone();
        let commits = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = commits.clone();
        let writer = std::thread::Builder::new()
            .name("hotline-log-writer".into())
            .spawn(move || {
                Writer {
                    conn,
                    key,
                    clock,
                    dir: writer_dir,
                    head: head_tx,
                    frontier,
                    recent,
                    repeats: crate::repeats::Repeats::new(std::time::Duration::from_secs(60)),
                    commit_seconds: observed,
                    commits: counted,
                    _lock: lock,
                }
                .run(rx)
            })
            .map_err(|e| corrupt(dir, format!("cannot start the writer: {e}")))?;
        Ok(Self {
            reader,
            jobs,
            head: head_rx,
            writer: Mutex::new(Some(writer)),
            checkpointer: Checkpointer::start(dir, checkpoint_failures.clone(), commits)?,
            checkpoint_failures,
            commit_seconds,
            held: watch::Sender::new(false),
        })
    }

    /// The histogram of batch commit times, to register with the node's metrics.
    pub fn commit_histogram(&self) -> prometheus_client::metrics::histogram::Histogram {
        self.commit_seconds.clone()
    }

    /// How many background WAL checkpoints failed, to register with the node's metrics.
    pub fn checkpoint_failures(&self) -> prometheus_client::metrics::counter::Counter {
        self.checkpoint_failures.clone()
    }

    /// Read access: proofs, entries, roots.
    pub fn reader(&self) -> &LogReader {
        &self.reader
    }

    /// Appends entries; returns once they and their checkpoint are on disk.
    pub async fn append(&self, entries: Vec<Entry>) -> Result<Appended, LogError> {
        self.submit(entries, None, false, false).await
    }

    /// Appends entries together with a state change, atomically; with
    /// `want_proof`, also returns the first entry's inclusion proof.
    pub async fn append_with(
        &self,
        entries: Vec<Entry>,
        change: StateChange,
        want_proof: bool,
    ) -> Result<Appended, LogError> {
        self.submit(entries, Some(change), want_proof, false).await
    }

    /// Appends entries with their state change while the log is still held:
    /// what a starting node logs once its peers' check passed and before any
    /// delivery waiting on the hold (the agreement it adopts), so that a
    /// verifier meets that agreement's keys before the first checkpoint.
    pub async fn append_before_release(&self, entries: Vec<Entry>, change: StateChange) -> Result<Appended, LogError> {
        self.submit(entries, Some(change), false, true).await
    }

    /// Makes appends wait until [`Log::release`], so nothing is signed while
    /// a starting node compares its log with what its peers witnessed: a log
    /// restored from an old copy must not sign a checkpoint that forks it. A
    /// peer's delivery meanwhile waits (within its call's time) rather than
    /// being refused and retried.
    pub fn hold(&self) {
        self.held.send_replace(true);
    }

    /// Whether appends wait (the node is starting).
    pub fn is_held(&self) -> bool {
        *self.held.borrow()
    }

    /// Lets appends through again.
    pub fn release(&self) {
        self.held.send_replace(false);
    }

    async fn submit(
        &self,
        entries: Vec<Entry>,
        change: Option<StateChange>,
        want_proof: bool,
        while_held: bool,
    ) -> Result<Appended, LogError> {
        if self.is_held() && !while_held {
            let mut released = self.held.subscribe();
            released.wait_for(|held| !held).await.map_err(|_| LogError::Closed)?;
        }
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
