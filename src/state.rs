//! The node's state tables (messages, outbox, receipts, deadlines, norm
//! events): small SQL helpers used inside log transactions, so every state
//! change commits with the log entries that record it.

use prost::Message;
use rusqlite::{Connection, OptionalExtension, params};

use crate::log::StateError;
use crate::message::Kind;
use crate::proto::{Deadline, Envelope, LogEntry, NormEvent};

/// Whether we sent a message or received it. Stored as `sent` or `received`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// We signed and sent it.
    Sent,
    /// A peer delivered it to us.
    Received,
}

impl Direction {
    /// The name stored in the database and shown to people.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Sent => "sent",
            Direction::Received => "received",
        }
    }
}

/// A notice, response or amendment as stored.
#[derive(Clone, Debug)]
pub struct StoredMessage {
    /// UUIDv7.
    pub id: String,
    /// Notice or response.
    pub kind: Kind,
    /// Sent or received.
    pub direction: Direction,
    /// The sending party.
    pub sender: String,
    /// The notice id the message belongs to.
    pub thread: String,
    /// SHA-256 of the payload.
    pub payload_sha256: Vec<u8>,
    /// The envelope, verbatim (stored in the log entry, not in the row).
    pub envelope: Envelope,
    /// Its index in our log: the entry that records it.
    pub log_index: u64,
    /// When it was created, ms since the epoch.
    pub created_ms: i64,
    /// Whether it is exercise traffic, left out of compliance figures.
    pub exercise: bool,
}

impl StoredMessage {
    /// The notice this message is, decoded from its envelope; none for a response.
    pub fn notice(&self) -> Option<crate::proto::Notice> {
        (self.kind == Kind::Notice)
            .then(|| crate::message::decode_notice(&self.envelope.payload).ok())
            .flatten()
    }
}

fn row_to_message(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredMessage> {
    let entry: Vec<u8> = r.get(6)?;
    let kind: String = r.get(1)?;
    let direction: String = r.get(2)?;
    Ok(StoredMessage {
        id: r.get(0)?,
        kind: Kind::from_str_name(&kind),
        direction: if direction == "sent" {
            Direction::Sent
        } else {
            Direction::Received
        },
        sender: r.get(3)?,
        thread: r.get(4)?,
        payload_sha256: r.get(5)?,
        envelope: envelope_in_entry(&entry, r.get(9)?),
        log_index: r.get::<_, i64>(7)? as u64,
        created_ms: r.get(8)?,
        exercise: r.get(10)?,
    })
}

/// The envelope a log entry records as sent or received, inline or kept
/// beside it as `outside` (empty if none).
fn envelope_in_entry(entry: &[u8], outside: Option<Vec<u8>>) -> Envelope {
    LogEntry::decode(entry)
        .ok()
        .and_then(|e| crate::log::entry::envelope(e, outside.as_deref()).ok().flatten())
        .unwrap_or_default()
}

/// A message row with the log entry that holds its envelope.
const MESSAGE_COLUMNS: &str = "m.id, m.kind, m.direction, m.sender, m.thread, m.payload_sha256, e.data, m.log_index, m.created_ms, \
     o.data, m.exercise FROM messages m JOIN entries e ON e.idx = m.log_index LEFT JOIN envelopes o ON o.idx = e.idx";

/// The message with this id, if any.
pub fn message(c: &Connection, id: &str) -> rusqlite::Result<Option<StoredMessage>> {
    c.prepare_cached(&format!("SELECT {MESSAGE_COLUMNS} WHERE m.id = ?1"))?
        .query_row([id], row_to_message)
        .optional()
}

/// Messages of a thread (a notice and its responses), oldest first.
pub fn thread(c: &Connection, notice_id: &str) -> rusqlite::Result<Vec<StoredMessage>> {
    c.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} WHERE m.thread = ?1 ORDER BY m.created_ms, m.id"
    ))?
    .query_map([notice_id], row_to_message)?
    .collect()
}

/// The latest notices, newest first.
pub fn recent_notices(c: &Connection, limit: u32) -> rusqlite::Result<Vec<StoredMessage>> {
    c.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} WHERE m.kind = 'notice' ORDER BY m.created_ms DESC, m.id DESC LIMIT ?1"
    ))?
    .query_map([limit], row_to_message)?
    .collect()
}

/// Records a message whose envelope is in log entry `log_index` (the row's
/// own `log_index` is not read); a duplicate if the id is taken.
pub fn insert_message(c: &Connection, m: &StoredMessage, log_index: u64) -> Result<(), StateError> {
    let inserted = c
        .prepare_cached(
            "INSERT INTO messages (id, kind, direction, sender, thread, payload_sha256, log_index, created_ms, exercise) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(params![
            m.id,
            m.kind.as_str(),
            m.direction.as_str(),
            m.sender,
            m.thread,
            m.payload_sha256,
            log_index as i64,
            m.created_ms,
            m.exercise
        ]);
    match inserted {
        Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
            Err(StateError::Duplicate(format!("message {}", m.id)))
        }
        other => other.map(|_| ()).map_err(StateError::from),
    }
}

/// Queues delivery of a message to a party.
pub fn enqueue(c: &Connection, message_id: &str, party: &str, now_ms: i64) -> Result<(), StateError> {
    c.prepare_cached("INSERT OR IGNORE INTO outbox (message_id, party, next_attempt_ms) VALUES (?1, ?2, ?3)")?
        .execute(params![message_id, party, now_ms])?;
    Ok(())
}

/// One pending delivery.
#[derive(Clone, Debug)]
pub struct Pending {
    /// The message to deliver.
    pub message_id: String,
    /// To whom.
    pub party: String,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When to try next, ms since the epoch.
    pub next_attempt_ms: i64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// The message itself when it was just queued, saving a read.
    pub message: Option<std::sync::Arc<StoredMessage>>,
}

/// Every pending delivery, soonest first.
pub fn outbox(c: &Connection) -> rusqlite::Result<Vec<Pending>> {
    c.prepare_cached(
        "SELECT message_id, party, attempts, next_attempt_ms, last_error FROM outbox ORDER BY next_attempt_ms",
    )?
    .query_map([], |r| {
        Ok(Pending {
            message_id: r.get(0)?,
            party: r.get(1)?,
            attempts: r.get(2)?,
            next_attempt_ms: r.get(3)?,
            last_error: r.get(4)?,
            message: None,
        })
    })?
    .collect()
}

/// Whether a delivery of `message_id` to `party` waits in the outbox.
pub fn is_queued(c: &Connection, message_id: &str, party: &str) -> rusqlite::Result<bool> {
    c.prepare_cached("SELECT 1 FROM outbox WHERE message_id = ?1 AND party = ?2")?
        .exists(params![message_id, party])
}

/// Records a failed attempt and when to retry.
pub fn delivery_failed(c: &Connection, p: &Pending, next_ms: i64, error: &str) -> Result<(), StateError> {
    c.prepare_cached("UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = ?3, last_error = ?4 WHERE message_id = ?1 AND party = ?2")?
        .execute(params![p.message_id, p.party, next_ms, error])?;
    Ok(())
}

/// Records a verified receipt, which our log entry `entry_index` holds and
/// the receiver logged at `log_index`, and closes the delivery; a duplicate
/// if it was already recorded.
pub fn record_receipt(
    c: &Connection,
    message_id: &str,
    party: &str,
    log_index: u64,
    entry_index: u64,
) -> Result<(), StateError> {
    c.prepare_cached("DELETE FROM outbox WHERE message_id = ?1 AND party = ?2")?
        .execute(params![message_id, party])?;
    let n = c
        .prepare_cached(
            "INSERT OR IGNORE INTO receipts (message_id, party, log_index, entry_index) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![message_id, party, log_index as i64, entry_index as i64])?;
    match n {
        1 => Ok(()),
        _ => Err(StateError::Duplicate(format!("receipt of {message_id} from {party}"))),
    }
}

/// Receipts for a message: (party, envelope).
pub fn receipts(c: &Connection, message_id: &str) -> rusqlite::Result<Vec<(String, Envelope)>> {
    c.prepare_cached(
        "SELECT r.party, r.envelope, e.data, o.data FROM receipts r LEFT JOIN entries e ON e.idx = r.entry_index \
         LEFT JOIN envelopes o ON o.idx = e.idx WHERE r.message_id = ?1 ORDER BY r.log_index",
    )?
    .query_map([message_id], |r| {
        let envelope = match r.get::<_, Option<Vec<u8>>>(1)? {
            Some(copy) => Envelope::decode(&copy[..]).unwrap_or_default(),
            None => envelope_in_entry(&r.get::<_, Vec<u8>>(2)?, r.get(3)?),
        };
        Ok((r.get(0)?, envelope))
    })?
    .collect()
}

/// Starts a clock: `party` owes `kind` for `message_id` by `due_ms`.
pub fn start_deadline(
    c: &Connection,
    message_id: &str,
    party: &str,
    kind: Deadline,
    due_ms: i64,
) -> Result<(), StateError> {
    c.prepare_cached(
        "INSERT OR IGNORE INTO deadlines (message_id, party, kind, due_ms, state) VALUES (?1, ?2, ?3, ?4, 'running')",
    )?
    .execute(params![message_id, party, kind as i32, due_ms])?;
    Ok(())
}

/// Stops a running clock because the message arrived; true if it was running.
pub fn meet_deadline(c: &Connection, message_id: &str, party: &str, kind: Deadline) -> Result<bool, StateError> {
    let n = c
        .prepare_cached("UPDATE deadlines SET state = 'met' WHERE message_id = ?1 AND party = ?2 AND kind = ?3 AND state = 'running'")?
        .execute(params![message_id, party, kind as i32])?;
    Ok(n == 1)
}

/// Marks a running clock missed; refused as no longer running unless this
/// call did it, so the event is logged once.
pub fn miss_deadline(c: &Connection, d: &Running) -> Result<(), StateError> {
    let n = c
        .prepare_cached("UPDATE deadlines SET state = 'missed' WHERE message_id = ?1 AND party = ?2 AND kind = ?3 AND state = 'running'")?
        .execute(params![d.message_id, d.party, d.kind as i32])?;
    match n {
        1 => Ok(()),
        _ => Err(StateError::NotRunning(format!(
            "the {:?} clock of {} for {}",
            d.kind, d.party, d.message_id
        ))),
    }
}

/// A running clock.
#[derive(Clone, Debug)]
pub struct Running {
    /// The message it belongs to.
    pub message_id: String,
    /// Who owes the message.
    pub party: String,
    /// What is owed.
    pub kind: Deadline,
    /// By when, ms since the epoch.
    pub due_ms: i64,
}

/// Running clocks due by `until_ms` (any time with `i64::MAX`), soonest first, at most `limit`.
pub fn running_deadlines(c: &Connection, until_ms: i64, limit: u32) -> rusqlite::Result<Vec<Running>> {
    c.prepare_cached(
        "SELECT message_id, party, kind, due_ms FROM deadlines WHERE state = 'running' AND due_ms <= ?1 \
         ORDER BY due_ms LIMIT ?2",
    )?
    .query_map(params![until_ms, limit], row_to_running)?
    .collect()
}

fn row_to_running(r: &rusqlite::Row<'_>) -> rusqlite::Result<Running> {
    Ok(Running {
        message_id: r.get(0)?,
        party: r.get(1)?,
        kind: Deadline::try_from(r.get::<_, i32>(2)?).unwrap_or_default(),
        due_ms: r.get(3)?,
    })
}

/// Per party and kind of clock, how many were met and how many missed,
/// real traffic only (exercises are left out): the compliance figures.
pub fn compliance(c: &Connection) -> rusqlite::Result<Vec<(String, Deadline, u64, u64)>> {
    c.prepare_cached(
        "SELECT d.party, d.kind, SUM(d.state = 'met'), SUM(d.state = 'missed') FROM deadlines d \
         JOIN messages m ON m.id = d.message_id WHERE m.exercise = 0 GROUP BY d.party, d.kind ORDER BY d.kind",
    )?
    .query_map([], |r| {
        Ok((
            r.get(0)?,
            Deadline::try_from(r.get::<_, i32>(1)?).unwrap_or_default(),
            r.get::<_, i64>(2)? as u64,
            r.get::<_, i64>(3)? as u64,
        ))
    })?
    .collect()
}

/// Records a peer's answer to our human communication check.
pub fn human_check_answered(
    c: &Connection,
    notice_id: &str,
    party: &str,
    round_trip_ms: i64,
    answered_ms: i64,
) -> Result<(), StateError> {
    c.prepare_cached(
        "INSERT OR IGNORE INTO human_checks (notice_id, party, round_trip_ms, answered_ms) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![notice_id, party, round_trip_ms, answered_ms])?;
    Ok(())
}

/// The round-trip times of `party`'s latest answers to human checks, newest first.
pub fn human_checks(c: &Connection, party: &str, limit: u32) -> rusqlite::Result<Vec<u64>> {
    c.prepare_cached("SELECT round_trip_ms FROM human_checks WHERE party = ?1 ORDER BY answered_ms DESC LIMIT ?2")?
        .query_map(params![party, limit], |r| r.get::<_, i64>(0).map(|ms| ms.max(0) as u64))?
        .collect()
}

/// A missed step being escalated: the clock it was, its level, when the next is due.
#[derive(Clone, Debug)]
pub struct Escalation {
    /// The clock that was missed.
    pub missed: Running,
    /// The level reached.
    pub level: u32,
}

/// Records that a missed step reached `level`, the next level due at `next_ms` (none: the last).
pub fn escalated(c: &Connection, d: &Running, level: u32, next_ms: Option<i64>) -> Result<(), StateError> {
    c.prepare_cached(
        "INSERT INTO escalations (message_id, party, kind, level, next_ms) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (message_id, party, kind) DO UPDATE SET level = excluded.level, next_ms = excluded.next_ms",
    )?
    .execute(params![d.message_id, d.party, d.kind as i32, level, next_ms])?;
    Ok(())
}

/// Escalations whose next level is due by `until_ms`, at most `limit`.
pub fn escalations_due(c: &Connection, until_ms: i64, limit: u32) -> rusqlite::Result<Vec<Escalation>> {
    c.prepare_cached(
        "SELECT message_id, party, kind, next_ms, level FROM escalations WHERE next_ms IS NOT NULL AND next_ms <= ?1 \
         ORDER BY next_ms LIMIT ?2",
    )?
    .query_map(params![until_ms, limit], |r| {
        Ok(Escalation {
            missed: row_to_running(r)?,
            level: r.get(4)?,
        })
    })?
    .collect()
}

/// How many escalations have a further level due.
pub fn escalations_pending(c: &Connection) -> rusqlite::Result<u64> {
    c.prepare_cached("SELECT COUNT(*) FROM escalations WHERE next_ms IS NOT NULL")?
        .query_row([], |r| r.get::<_, i64>(0).map(|n| n as u64))
}

/// How many deadlines are running.
pub fn running_deadline_count(c: &Connection) -> rusqlite::Result<u64> {
    c.prepare_cached("SELECT COUNT(*) FROM deadlines WHERE state = 'running'")?
        .query_row([], |r| r.get::<_, i64>(0).map(|n| n as u64))
}

/// How many deliveries wait in the outbox, per peer.
pub fn outbox_counts(c: &Connection) -> rusqlite::Result<Vec<(String, u64)>> {
    c.prepare_cached("SELECT party, COUNT(*) FROM outbox GROUP BY party")?
        .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?
        .collect()
}

/// Keeps a norm event for status and threads.
pub fn insert_norm_event(c: &Connection, log_index: u64, e: &NormEvent) -> Result<(), StateError> {
    c.prepare_cached("INSERT INTO norm_events (log_index, message_id, event) VALUES (?1, ?2, ?3)")?
        .execute(params![log_index as i64, e.message_id, e.encode_to_vec()])?;
    Ok(())
}

/// Norm events, newest first: all, or one message's.
pub fn norm_events(c: &Connection, message_id: Option<&str>, limit: u32) -> rusqlite::Result<Vec<NormEvent>> {
    c.prepare_cached(
        "SELECT event FROM norm_events WHERE ?1 IS NULL OR message_id = ?1 ORDER BY log_index DESC LIMIT ?2",
    )?
    .query_map(params![message_id, limit], |r| {
        let b: Vec<u8> = r.get(0)?;
        Ok(NormEvent::decode(&b[..]).unwrap_or_default())
    })?
    .collect()
}

/// Records a successful communication check with `party`.
pub fn comm_check_ok(c: &Connection, party: &str, at_ms: i64) -> Result<(), StateError> {
    c.prepare_cached(
        "INSERT INTO comm_checks (party, last_ok_ms) VALUES (?1, ?2) ON CONFLICT (party) DO UPDATE SET last_ok_ms = ?2",
    )?
    .execute(params![party, at_ms])?;
    Ok(())
}

/// The last successful communication check with each party.
pub fn comm_checks(c: &Connection) -> rusqlite::Result<Vec<(String, i64)>> {
    c.prepare_cached("SELECT party, last_ok_ms FROM comm_checks")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect()
}

/// The latest witnessed checkpoint of a party: (size, note).
pub fn last_witnessed(c: &Connection, party: &str) -> rusqlite::Result<Option<(u64, Vec<u8>)>> {
    c.prepare_cached("SELECT size, note FROM witnessed WHERE party = ?1 ORDER BY size DESC LIMIT 1")?
        .query_row([party], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
        .optional()
}

/// Keeps a witnessed checkpoint; one of that size kept already stays.
pub fn insert_witnessed(c: &Connection, party: &str, size: u64, note: &[u8]) -> Result<(), StateError> {
    c.prepare_cached("INSERT OR IGNORE INTO witnessed (party, size, note) VALUES (?1, ?2, ?3)")?
        .execute(params![party, size as i64, note])?;
    Ok(())
}

/// The agreement version adopted last, with its hash.
pub fn adopted(c: &Connection) -> rusqlite::Result<Option<Adopted>> {
    adopted_where(c, "ORDER BY a.version DESC LIMIT 1", [])
}

/// The agreement version `version` as adopted, if it was.
pub fn adopted_version(c: &Connection, version: u64) -> rusqlite::Result<Option<Adopted>> {
    adopted_where(c, "WHERE a.version = ?1", [version as i64])
}

fn adopted_where(c: &Connection, filter: &str, args: impl rusqlite::Params) -> rusqlite::Result<Option<Adopted>> {
    c.prepare_cached(&format!(
        "SELECT a.version, a.sha256, e.data FROM adopted a JOIN entries e ON e.idx = a.log_index {filter}"
    ))?
    .query_row(args, |r| {
        let entry: Vec<u8> = r.get(2)?;
        let signed_note = match LogEntry::decode(&entry[..]).ok().and_then(|e| e.body) {
            Some(crate::proto::log_entry::Body::AgreementAdopted(a)) => a.signed_note,
            _ => Vec::new(),
        };
        Ok(Adopted {
            version: r.get::<_, i64>(0)? as u64,
            sha256: r.get(1)?,
            signed_note,
        })
    })
    .optional()
}

/// The agreement a node adopted last, as its log records it.
pub struct Adopted {
    /// Its version.
    pub version: u64,
    /// The SHA-256 of the signed note as adopted (text and signatures).
    pub sha256: Vec<u8>,
    /// The signed note itself.
    pub signed_note: Vec<u8>,
}

/// Records an agreement adoption.
pub fn adopt(c: &Connection, version: u64, sha256: &[u8], log_index: u64) -> Result<(), StateError> {
    c.execute(
        "INSERT OR REPLACE INTO adopted (version, sha256, log_index) VALUES (?1, ?2, ?3)",
        params![version as i64, sha256, log_index as i64],
    )?;
    Ok(())
}

/// A version of the agreement proposed over the hotline, with every
/// signature gathered so far.
#[derive(Clone, Debug)]
pub struct Proposal {
    /// The SHA-256 of its text.
    pub sha256: Vec<u8>,
    /// Its version number.
    pub version: u64,
    /// The signed note with every signature gathered.
    pub note: Vec<u8>,
    /// The party that proposed it (the first we heard it from).
    pub proposed_by: String,
    /// When we first heard of it, ms since the epoch.
    pub proposed_ms: i64,
}

/// What an amendment message adds to a proposal.
#[derive(Clone, Debug)]
pub enum AmendmentStep {
    /// Signatures, already checked, to add to the proposal (kept if new).
    Signatures(Proposal),
    /// A party's rejection of the proposal with this text hash, and why.
    Rejection {
        /// The SHA-256 of the proposed text.
        sha256: Vec<u8>,
        /// The party that rejects it.
        party: String,
        /// Why.
        reason: String,
    },
}

/// Records an amendment step: a new proposal is kept, a known one gains the
/// signatures it lacked, a rejection is noted.
pub fn record_amendment(c: &Connection, step: &AmendmentStep) -> Result<(), StateError> {
    match step {
        AmendmentStep::Rejection { sha256, party, reason } => reject_proposal(c, sha256, party, reason),
        AmendmentStep::Signatures(p) => {
            let Some(held) = proposal(c, &p.sha256)? else {
                return save_proposal(c, p);
            };
            let merged = crate::note::SignedNote::parse(&held.note)
                .and_then(|held| held.union(&crate::note::SignedNote::parse(&p.note)?, |_| true))
                .map_err(|e| StateError::Invalid(format!("proposal {}: {e}", hex::encode(&p.sha256))))?;
            save_proposal(
                c,
                &Proposal {
                    note: merged.to_bytes(),
                    ..held
                },
            )
        }
    }
}

/// Keeps a proposal, or replaces its note with one holding more signatures.
fn save_proposal(c: &Connection, p: &Proposal) -> Result<(), StateError> {
    c.prepare_cached(
        "INSERT INTO proposals (sha256, version, note, proposed_by, proposed_ms) VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (sha256) DO UPDATE SET note = excluded.note",
    )?
    .execute(params![
        p.sha256,
        p.version as i64,
        p.note,
        p.proposed_by,
        p.proposed_ms
    ])?;
    Ok(())
}

/// Proposals of versions after `adopted`, oldest first: what is pending.
pub fn proposals_after(c: &Connection, adopted: u64) -> rusqlite::Result<Vec<Proposal>> {
    c.prepare_cached(
        "SELECT sha256, version, note, proposed_by, proposed_ms FROM proposals WHERE version > ?1 ORDER BY version, proposed_ms",
    )?
    .query_map([adopted as i64], row_to_proposal)?
    .collect()
}

/// The proposal whose text has SHA-256 `sha256`, if we hold it.
pub fn proposal(c: &Connection, sha256: &[u8]) -> rusqlite::Result<Option<Proposal>> {
    c.prepare_cached("SELECT sha256, version, note, proposed_by, proposed_ms FROM proposals WHERE sha256 = ?1")?
        .query_row([sha256], row_to_proposal)
        .optional()
}

fn row_to_proposal(r: &rusqlite::Row<'_>) -> rusqlite::Result<Proposal> {
    Ok(Proposal {
        sha256: r.get(0)?,
        version: r.get::<_, i64>(1)? as u64,
        note: r.get(2)?,
        proposed_by: r.get(3)?,
        proposed_ms: r.get(4)?,
    })
}

/// Records that `party` rejected a proposal, and why.
fn reject_proposal(c: &Connection, sha256: &[u8], party: &str, reason: &str) -> Result<(), StateError> {
    c.prepare_cached("INSERT OR REPLACE INTO rejections (sha256, party, reason) VALUES (?1, ?2, ?3)")?
        .execute(params![sha256, party, reason])?;
    Ok(())
}

/// Who rejected a proposal, and why.
pub fn rejections(c: &Connection, sha256: &[u8]) -> rusqlite::Result<Vec<(String, String)>> {
    c.prepare_cached("SELECT party, reason FROM rejections WHERE sha256 = ?1 ORDER BY party")?
        .query_map([sha256], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect()
}

/// The running clocks that concern a party that leaves: those it owes, and
/// those `me` owes for messages it sent.
pub fn running_deadlines_of(c: &Connection, party: &str, me: &str) -> rusqlite::Result<Vec<Running>> {
    c.prepare_cached(
        "SELECT d.message_id, d.party, d.kind, d.due_ms FROM deadlines d \
         LEFT JOIN messages m ON m.id = d.message_id \
         WHERE d.state = 'running' AND (d.party = ?1 OR (d.party = ?2 AND m.sender = ?1)) ORDER BY d.due_ms",
    )?
    .query_map(params![party, me], row_to_running)?
    .collect()
}

/// Closes a running clock whose party left: neither met nor missed.
pub fn close_deadline(c: &Connection, d: &Running) -> Result<(), StateError> {
    c.prepare_cached(
        "UPDATE deadlines SET state = 'closed' WHERE message_id = ?1 AND party = ?2 AND kind = ?3 AND state = 'running'",
    )?
    .execute(params![d.message_id, d.party, d.kind as i32])?;
    Ok(())
}

/// The messages waiting in the outbox for `party`.
pub fn queued_for(c: &Connection, party: &str) -> rusqlite::Result<Vec<String>> {
    c.prepare_cached("SELECT message_id FROM outbox WHERE party = ?1 ORDER BY next_attempt_ms")?
        .query_map([party], |r| r.get(0))?
        .collect()
}

/// Cancels a delivery to a party that left.
pub fn cancel_delivery(c: &Connection, message_id: &str, party: &str) -> Result<(), StateError> {
    c.prepare_cached("DELETE FROM outbox WHERE message_id = ?1 AND party = ?2")?
        .execute(params![message_id, party])?;
    Ok(())
}
