//! The single writer of a log: it takes every append waiting, writes them in
//! one SQLite transaction with their state changes and one signed
//! checkpoint, and answers callers once the batch is durable; beside it, a
//! thread that folds the WAL back into the database file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::db::Connection;
use tlog_tiles::{Hash, prove_record};
use tokio::sync::{mpsc, oneshot, watch};

use super::checkpoint;
use super::entry::{Entry, MAX_ENTRY_BYTES};
use super::error::{LogError, StateError, corrupt, signing_keys, tree_error};
use super::tree::{self, DbHashes};
use crate::own_keys::OwnKeys;
use crate::store::{self, Context};

/// The most appends one batch takes; more wait for the next batch.
pub(crate) const MAX_BATCH: usize = 512;

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

/// One append waiting for the writer.
pub(crate) struct Job {
    pub(crate) entries: Vec<Entry>,
    pub(crate) change: Option<StateChange>,
    pub(crate) want_proof: bool,
    pub(crate) reply: oneshot::Sender<Result<Appended, LogError>>,
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

/// How often the checkpointer folds the WAL back into the database file,
/// when something was committed since its last round. A page that several
/// commits change is copied once a round, so folding seldom copies less:
/// every 50 ms, one fold per commit or two, the checkpointer threads took
/// 8 % of the machine in a 100-party round; once a second, the round took
/// 11 % less time and the bench ran 3.9 % faster (docs/performance.md). A
/// node's WAL holds what a second commits at most (the writer folds it
/// itself past 64 MiB); an idle node's checkpointer wakes once a second.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// A thread that copies committed WAL pages into the database file in the
/// background, so the writer rarely stalls on a large checkpoint of its own;
/// it stops when its sender is dropped.
pub(crate) struct Checkpointer {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the checkpointer of the store in `dir`, counting its failed rounds in `failures`.
    /// A round runs every [`CHECKPOINT_EVERY`], only when `commits` (the writer's count) has
    /// moved since the last.
    pub(crate) fn start(
        dir: &Path,
        failures: prometheus_client::metrics::counter::Counter,
        commits: Arc<AtomicU64>,
    ) -> Result<Self, LogError> {
        if store::postgres_url(dir)?.is_some() {
            // PostgreSQL manages its own write-ahead log.
            return Ok(Self {
                stop: None,
                thread: None,
            });
        }
        let conn = store::open_writer(dir)?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let db = dir.join(store::DB_FILE);
        // A full disk fails every round: one line a minute, with how many were held back.
        let repeats = crate::repeats::Repeats::new(std::time::Duration::from_secs(60));
        let thread = std::thread::Builder::new()
            .name("hotline-log-checkpointer".into())
            .spawn(move || {
                let mut done_through = 0;
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_EVERY) {
                    let committed = commits.load(Ordering::Relaxed);
                    if committed == done_through {
                        continue;
                    }
                    // PASSIVE never blocks the writer or readers; frames it cannot copy yet, or a
                    // round that failed, wait for the next round.
                    let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                        Ok((r.get::<i64>(1)?, r.get::<i64>(2)?))
                    });
                    match done {
                        Ok((in_wal, copied)) if copied >= in_wal => done_through = committed,
                        _ => {}
                    }
                    if let Err(e) = done {
                        failures.inc();
                        let error = e.to_string();
                        if let Some(held_back) = repeats.check(&error, std::time::Instant::now()) {
                            tracing::warn!(db = %db.display(), %error, held_back, "background WAL checkpoint failed");
                        }
                    }
                }
            })
            .map_err(|e| corrupt(dir, format!("cannot start the checkpointer: {e}")))?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub(crate) fn stop(&mut self) {
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

/// The single writer: owns the read-write connection and the signing key.
pub(crate) struct Writer {
    pub(crate) conn: Connection,
    pub(crate) key: OwnKeys,
    /// Where the writer reads the time its checkpoints are signed at.
    pub(crate) clock: crate::clock::Clock,
    pub(crate) dir: PathBuf,
    pub(crate) head: watch::Sender<Head>,
    /// The right edge of the committed tree: each appended entry's stored
    /// hashes and the new root come from it, with no read.
    pub(crate) frontier: tree::Frontier,
    /// The readers' recent hashes: each committed batch's go in, so that
    /// showing a peer a new checkpoint proves it without a read.
    pub(crate) recent: std::sync::Arc<tree::RecentHashes>,
    /// Failing batches (a full disk, say) are logged once a minute with a count.
    pub(crate) repeats: crate::repeats::Repeats,
    /// Counts the batches committed, for the checkpointer.
    pub(crate) commits: Arc<AtomicU64>,
    /// Observes how long each batch took to commit.
    pub(crate) commit_seconds: prometheus_client::metrics::histogram::Histogram,
    /// The data directory's lock, if the node took one: released only when
    /// the writer has stopped, after its connection closes, so another
    /// process (or a restart) never writes beside it.
    pub(crate) _lock: Option<crate::store::DirLock>,
}

impl Writer {
    pub(crate) fn run(mut self, mut rx: mpsc::Receiver<Job>) {
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
        let started = std::time::Instant::now();
        let outcome = match self.run_batch(&jobs, false) {
            Ok(Batch::JobFailed) => self.run_batch(&jobs, true),
            other => other,
        };
        self.commit_seconds.observe(started.elapsed().as_secs_f64());
        self.commits.fetch_add(1, Ordering::Relaxed);
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
                let lost_lease = matches!(
                    &outcome,
                    Err(LogError::Store(store::StoreError::Database {
                        source: crate::db::Error::Closed(_),
                        ..
                    }))
                );
                let message = match outcome {
                    Err(e) => e.to_string(),
                    _ => "a job failed outside its savepoint".into(),
                };
                if let Some(held_back) = self.repeats.check(&message, std::time::Instant::now()) {
                    tracing::error!(error = %message, held_back, "log batch failed; nothing in it was committed");
                }
                for job in jobs {
                    let _ = job
                        .reply
                        .send(Err(corrupt(&self.dir, format!("batch not committed: {message}"))));
                }
                if lost_lease {
                    // The writer lease was this session: a standby may be writing already.
                    // Serving on would only answer peers with errors, so the node stops,
                    // and its supervisor starts it again as a standby.
                    tracing::error!(error = %message, "lost the PostgreSQL session and with it the writer lease; stopping");
                    std::process::exit(75);
                }
            }
        }
    }

    /// One attempt at a batch. Without `isolate`, the first failing job
    /// abandons the attempt (`JobFailed`) and nothing is committed; the
    /// attempt's writes are held back (on PostgreSQL) and sent together.
    fn run_batch(&mut self, jobs: &[Job], isolate: bool) -> Result<Batch, LogError> {
        let before = self.frontier.clone();
        let outcome = self.try_batch(jobs, isolate);
        if !matches!(outcome, Ok(Batch::Committed { .. })) {
            self.frontier = before;
        }
        outcome
    }

    fn try_batch(&mut self, jobs: &[Job], isolate: bool) -> Result<Batch, LogError> {
        let db = self.dir.join(store::DB_FILE);
        let start_size = self.head.borrow().size;
        // Without isolation, the attempt's statements go to PostgreSQL in one round trip, the
        // writes with the commit (the proofs need no read). A failure among them is some job's,
        // found by the isolated attempt.
        self.conn.set_deferring(!isolate).at(&db)?;
        let tx = self.conn.transaction().at(&db)?;
        let failed = |e: LogError| if isolate { Err(e) } else { Ok(Batch::JobFailed) };
        let mut size = start_size;
        // Each job's first index (or why it failed) and its proof.
        let mut results: Vec<(Result<u64, LogError>, Vec<Hash>)> = Vec::with_capacity(jobs.len());
        // The entries, envelopes and hashes of the jobs applied, written together.
        let mut rows = Rows::default();
        // The stored hashes the proofs may need, known without a read: the tree's right edge
        // and every hash this batch adds.
        let mut known: Vec<(u64, Hash)> = self.frontier.stored().collect();
        for job in jobs {
            let result = if isolate {
                let sp = tx.savepoint().at(&db)?;
                let before = self.frontier.clone();
                let mut own = Rows::default();
                let result = append_job(&sp, size, job, &mut self.frontier, &mut own).and_then(|first| {
                    let hashes = own.known_hashes();
                    own.write(&sp).at(&db)?;
                    known.extend(hashes);
                    Ok(first)
                });
                match result {
                    Ok(_) => sp.commit().at(&db)?,
                    Err(_) => self.frontier = before,
                }
                result
            } else {
                append_job(&tx, size, job, &mut self.frontier, &mut rows)
            };
            match result {
                Ok(_) => size += job.entries.len() as u64,
                Err(_) if !isolate => return Ok(Batch::JobFailed),
                Err(_) => {}
            }
            results.push((result, Vec::new()));
        }
        known.extend(rows.known_hashes());
        if let Err(e) = rows.write(&tx).at(&db) {
            return failed(e.into());
        }
        if size == start_size {
            if let Err(e) = tx.commit().at(&db) {
                return failed(e.into());
            }
            return Ok(Batch::Committed { head: None, results });
        }
        let root = self.frontier.root();
        let note = checkpoint::sign(&signing_keys(&self.key, self.clock.now())?, size, root)?;
        tx.prepare_cached("INSERT INTO checkpoints (size, note) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute_later(crate::db::params![size as i64, note]))
            .at(&db)?;
        if let Err(e) = prove(&tx, size, jobs, &known, &mut results) {
            return failed(tree_error(&self.dir, e));
        }
        if let Err(e) = tx.commit().at(&db) {
            return failed(e.into());
        }
        self.recent.remember(known);
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

/// The inclusion proofs the batch's jobs asked for, at tree size `size`:
/// the stored hashes they need come from `known`, the right edge before the
/// batch and the batch's own hashes, which hold them all.
fn prove(
    c: &Connection,
    size: u64,
    jobs: &[Job],
    known: &[(u64, Hash)],
    results: &mut [(Result<u64, LogError>, Vec<Hash>)],
) -> Result<(), tlog_tiles::Error> {
    // The reads fall back to the database only for a hash not known, which
    // tree.rs's tests show never happens: a gap would cost a query, not the batch.
    let hashes = tree::CachedHashes::new(DbHashes(c));
    hashes.know(known.iter().copied());
    for (job, (result, proof)) in jobs.iter().zip(results.iter_mut()) {
        if let (Ok(first), true) = (result.as_ref(), job.want_proof) {
            *proof = prove_record(size, *first, &hashes)?;
        }
    }
    Ok(())
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

/// Applies one job: its state change, then its entries and their tree
/// hashes (from `frontier`, which takes the entries), as rows to write.
fn append_job(
    c: &Connection,
    size: u64,
    job: &Job,
    frontier: &mut tree::Frontier,
    rows: &mut Rows,
) -> Result<u64, LogError> {
    if let Some(change) = &job.change {
        change(c, size)?;
    }
    for (n, entry) in (size..).zip(&job.entries) {
        if entry.data.len() > MAX_ENTRY_BYTES {
            return Err(LogError::TooLarge {
                bytes: entry.data.len(),
            });
        }
        rows.entries.0.push(n as i64);
        rows.entries.1.push(entry.data.clone());
        if let Some(envelope) = &entry.envelope {
            rows.envelopes.0.push(n as i64);
            rows.envelopes.1.push(envelope.clone());
        }
        let base = tlog_tiles::stored_hash_index(0, n);
        for (i, h) in (0..).zip(frontier.push_leaf(tlog_tiles::record_hash(&entry.data))) {
            rows.hashes.0.push((base + i) as i64);
            rows.hashes.1.push(h.0.to_vec());
        }
    }
    Ok(size)
}

/// Rows of the log's tables: each table's keys and values.
#[derive(Default)]
struct Rows {
    entries: (Vec<i64>, Vec<Vec<u8>>),
    envelopes: (Vec<i64>, Vec<Vec<u8>>),
    hashes: (Vec<i64>, Vec<Vec<u8>>),
}

impl Rows {
    /// The tree hashes held, by stored-hash index.
    fn known_hashes(&self) -> Vec<(u64, Hash)> {
        let (keys, values) = &self.hashes;
        keys.iter()
            .zip(values)
            .filter_map(|(k, v)| Some((*k as u64, Hash(v.as_slice().try_into().ok()?))))
            .collect()
    }

    /// Writes the rows, a statement per table on PostgreSQL (held back
    /// with the batch's other writes while it defers).
    fn write(self, c: &Connection) -> crate::db::Result<()> {
        for (table, column, (keys, values)) in [
            ("entries", "data", self.entries),
            ("envelopes", "data", self.envelopes),
            ("hashes", "hash", self.hashes),
        ] {
            if !keys.is_empty() {
                c.insert_rows(table, "idx", column, keys, values)?;
            }
        }
        Ok(())
    }
}
