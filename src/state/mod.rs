//! The node's state tables (messages, outbox, receipts, norm events,
//! checks, adopted agreements): small SQL helpers used inside log
//! transactions, so every state change commits with the log entries that
//! record it. The clocks are in `clocks.rs`, amendment proposals in
//! `proposals.rs`, parties' rosters in `rosters.rs`.

use crate::db::{Connection, OptionalExtension, params};
use prost::Message;

mod clocks;
mod proposals;
mod rosters;
pub mod views;

pub use clocks::*;
pub use proposals::*;
pub use rosters::*;

/// What a message adds to the state besides itself, in the transaction that logs it.
#[derive(Clone, Debug)]
pub enum Record {
    /// A step in amending the agreement.
    Amendment(AmendmentStep),
    /// A roster version to keep.
    Roster(KeptRoster),
}

/// Writes what a message adds, logged at `log_index`.
pub fn record(c: &Connection, r: &Record, log_index: u64) -> Result<(), crate::log::StateError> {
    match r {
        Record::Amendment(step) => record_amendment(c, step),
        Record::Roster(kept) => insert_roster(c, kept, log_index),
    }
}

use crate::log::StateError;
use crate::message::Kind;
use crate::proto::{Envelope, LogEntry, NormEvent};

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
    /// The notice this message is, decoded from its envelope (opened by
    /// `opener` if sealed); none for a response, or one that does not open.
    pub fn notice(&self, opener: &crate::opener::Opener) -> Option<crate::proto::Notice> {
        (self.kind == Kind::Notice)
            .then(|| opener.open(&self.envelope).ok())
            .flatten()
            .and_then(|env| crate::message::decode_notice(&env.payload).ok())
    }

    /// Who wrote it, as the message says (a notice's or response's author),
    /// read from `opened`, its envelope as opened.
    pub fn author_in(&self, opened: &crate::proto::Envelope) -> Option<String> {
        match crate::message::Message::decode(self.kind, &opened.payload).ok()? {
            crate::message::Message::Notice(n) => Some(n.author),
            crate::message::Message::Response(r) => Some(r.author),
            crate::message::Message::Amendment(a) => Some(a.author),
            crate::message::Message::Roster(r) => Some(r.author),
        }
    }
}

pub(crate) fn row_to_message(r: &crate::db::Row<'_>) -> crate::db::Result<StoredMessage> {
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
        log_index: r.get::<i64>(7)? as u64,
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

/// A message row's fields, as `row_to_message` reads them (columns 0 to 10).
macro_rules! message_fields {
    () => {
        "m.id, m.kind, m.direction, m.sender, m.thread, m.payload_sha256, e.data, m.log_index, m.created_ms, o.data, m.exercise"
    };
}
/// Where a message row is read from: the row and the log entry that holds its envelope.
macro_rules! message_from {
    () => {
        "FROM messages m JOIN entries e ON e.idx = m.log_index LEFT JOIN envelopes o ON o.idx = e.idx"
    };
}
pub(crate) use {message_fields, message_from};

/// A message row with the log entry that holds its envelope.
const MESSAGE_COLUMNS: &str = concat!(message_fields!(), " ", message_from!());

/// The message with this id, if any.
pub fn message(c: &Connection, id: &str) -> crate::db::Result<Option<StoredMessage>> {
    c.prepare_cached(&format!("SELECT {MESSAGE_COLUMNS} WHERE m.id = ?1"))?
        .query_row([id], row_to_message)
        .optional()
}

/// The ids of messages whose id starts with `prefix` (at most `limit`),
/// for an operator who typed only the start of one, as git takes a commit's.
/// `prefix` holds only hex digits and hyphens, which `LIKE` takes
/// literally. A `LIKE` (not a range on the key, which would follow
/// PostgreSQL's collation) may read every id: an operator's lookup, never
/// on the data path.
pub fn message_ids_starting(c: &Connection, prefix: &str, limit: usize) -> crate::db::Result<Vec<String>> {
    debug_assert!(prefix.chars().all(|ch| ch.is_ascii_hexdigit() || ch == '-'));
    c.prepare_cached("SELECT id FROM messages WHERE id LIKE ?1 ORDER BY id LIMIT ?2")?
        .query_map(params![format!("{prefix}%"), limit as i64], |r| r.get(0))?
        .collect()
}

/// The message logged in entry `log_index`, if that entry logged one.
pub fn message_at(c: &Connection, log_index: u64) -> crate::db::Result<Option<StoredMessage>> {
    c.prepare_cached(&format!("SELECT {MESSAGE_COLUMNS} WHERE m.log_index = ?1"))?
        .query_row([log_index as i64], row_to_message)
        .optional()
}

/// Messages of a thread (a notice and its responses), oldest first.
pub fn thread(c: &Connection, notice_id: &str) -> crate::db::Result<Vec<StoredMessage>> {
    c.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} WHERE m.thread = ?1 ORDER BY m.created_ms, m.id"
    ))?
    .query_map([notice_id], row_to_message)?
    .collect()
}

/// Real notices (not exercises) logged after entry `after` (all with
/// `None`), in log order, at most `limit`: what STIX export and TAXII page through.
pub fn notices_after(c: &Connection, after: Option<u64>, limit: u32) -> crate::db::Result<Vec<StoredMessage>> {
    let after = after.map_or(-1, |a| a as i64);
    c.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} WHERE m.kind = 'notice' AND m.exercise = 0 AND m.log_index > ?1 \
         ORDER BY m.log_index LIMIT ?2"
    ))?
    .query_map(params![after, limit], row_to_message)?
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
        .execute_later(params![
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
        Err(e) if e.is_unique_violation() => Err(StateError::Duplicate(format!("message {}", m.id))),
        other => other.map_err(StateError::from),
    }
}

/// Queues delivery of a message to a party.
pub fn enqueue(c: &Connection, message_id: &str, party: &str, now_ms: i64) -> Result<(), StateError> {
    c.prepare_cached(
        "INSERT INTO outbox (message_id, party, next_attempt_ms) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
    )?
    .execute_later(params![message_id, party, now_ms])?;
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
pub fn outbox(c: &Connection) -> crate::db::Result<Vec<Pending>> {
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
pub fn is_queued(c: &Connection, message_id: &str, party: &str) -> crate::db::Result<bool> {
    c.prepare_cached("SELECT 1 FROM outbox WHERE message_id = ?1 AND party = ?2")?
        .exists(params![message_id, party])
}

/// The failed attempts to deliver `message_id` to `party` so far, and the
/// last failure; `None` once it is receipted (or was never queued).
pub fn delivery_attempts(c: &Connection, message_id: &str, party: &str) -> crate::db::Result<Option<(u32, String)>> {
    c.prepare_cached("SELECT attempts, last_error FROM outbox WHERE message_id = ?1 AND party = ?2")?
        .query_row(params![message_id, party], |r| {
            Ok((r.get::<i64>(0)? as u32, r.get::<Option<String>>(1)?.unwrap_or_default()))
        })
        .optional()
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
        .execute_later(params![message_id, party])?;
    let inserted = c
        .prepare_cached("INSERT INTO receipts (message_id, party, log_index, entry_index) VALUES (?1, ?2, ?3, ?4)")?
        .execute_later(params![message_id, party, log_index as i64, entry_index as i64]);
    match inserted {
        Err(e) if e.is_unique_violation() => {
            Err(StateError::Duplicate(format!("receipt of {message_id} from {party}")))
        }
        other => other.map_err(StateError::from),
    }
}

/// Receipts for a message: (party, envelope).
pub fn receipts(c: &Connection, message_id: &str) -> crate::db::Result<Vec<(String, Envelope)>> {
    c.prepare_cached(
        "SELECT r.party, r.envelope, e.data, o.data FROM receipts r LEFT JOIN entries e ON e.idx = r.entry_index \
         LEFT JOIN envelopes o ON o.idx = e.idx WHERE r.message_id = ?1 ORDER BY r.log_index",
    )?
    .query_map([message_id], |r| {
        let envelope = match r.get::<Option<Vec<u8>>>(1)? {
            Some(copy) => Envelope::decode(&copy[..]).unwrap_or_default(),
            None => envelope_in_entry(&r.get::<Vec<u8>>(2)?, r.get(3)?),
        };
        Ok((r.get(0)?, envelope))
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
        "INSERT INTO human_checks (notice_id, party, round_trip_ms, answered_ms) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
    )?
    .execute(params![notice_id, party, round_trip_ms, answered_ms])?;
    Ok(())
}

/// The round-trip times of `party`'s latest answers to human checks, newest first.
pub fn human_checks(c: &Connection, party: &str, limit: u32) -> crate::db::Result<Vec<u64>> {
    c.prepare_cached("SELECT round_trip_ms FROM human_checks WHERE party = ?1 ORDER BY answered_ms DESC LIMIT ?2")?
        .query_map(params![party, limit], |r| r.get::<i64>(0).map(|ms| ms.max(0) as u64))?
        .collect()
}

/// The latest `limit` human check round trips of every party, newest first,
/// in one query: `Status` shows them for every peer.
pub fn human_checks_by_party(
    c: &Connection,
    limit: u32,
) -> crate::db::Result<std::collections::HashMap<String, Vec<u64>>> {
    let rows = c
        .prepare_cached(
            "SELECT party, round_trip_ms FROM (SELECT party, round_trip_ms, answered_ms, \
             ROW_NUMBER() OVER (PARTITION BY party ORDER BY answered_ms DESC) AS n FROM human_checks) AS h \
             WHERE n <= ?1 ORDER BY party, answered_ms DESC",
        )?
        .query_map(params![limit], |r| {
            Ok((r.get::<String>(0)?, r.get::<i64>(1)?.max(0) as u64))
        })?
        .collect::<crate::db::Result<Vec<_>>>()?;
    let mut by = std::collections::HashMap::<String, Vec<u64>>::new();
    for (party, ms) in rows {
        by.entry(party).or_default().push(ms);
    }
    Ok(by)
}

/// How many deliveries wait in the outbox, per peer.
pub fn outbox_counts(c: &Connection) -> crate::db::Result<Vec<(String, u64)>> {
    c.prepare_cached("SELECT party, COUNT(*) FROM outbox GROUP BY party")?
        .query_map([], |r| Ok((r.get(0)?, r.get::<i64>(1)? as u64)))?
        .collect()
}

/// Keeps a norm event for status and threads.
pub fn insert_norm_event(c: &Connection, log_index: u64, e: &NormEvent) -> Result<(), StateError> {
    c.prepare_cached("INSERT INTO norm_events (log_index, message_id, event) VALUES (?1, ?2, ?3)")?
        .execute_later(params![log_index as i64, e.message_id, e.encode_to_vec()])?;
    Ok(())
}

/// Norm events, newest first: all, or one message's.
pub fn norm_events(c: &Connection, message_id: Option<&str>, limit: u32) -> crate::db::Result<Vec<NormEvent>> {
    c.prepare_cached(
        "SELECT event FROM norm_events WHERE CAST(?1 AS TEXT) IS NULL OR message_id = ?1 ORDER BY log_index DESC LIMIT ?2",
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
    .execute_later(params![party, at_ms])?;
    Ok(())
}

/// The last successful communication check with each party.
pub fn comm_checks(c: &Connection) -> crate::db::Result<Vec<(String, i64)>> {
    c.prepare_cached("SELECT party, last_ok_ms FROM comm_checks")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect()
}

/// The latest witnessed checkpoint of a party: (size, note).
pub fn last_witnessed(c: &Connection, party: &str) -> crate::db::Result<Option<(u64, Vec<u8>)>> {
    c.prepare_cached("SELECT size, note FROM witnessed WHERE party = ?1 ORDER BY size DESC LIMIT 1")?
        .query_row([party], |r| Ok((r.get::<i64>(0)? as u64, r.get(1)?)))
        .optional()
}

/// Keeps a witnessed checkpoint; one of that size kept already stays.
pub fn insert_witnessed(c: &Connection, party: &str, size: u64, note: &[u8]) -> Result<(), StateError> {
    c.prepare_cached("INSERT INTO witnessed (party, size, note) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING")?
        .execute_later(params![party, size as i64, note])?;
    Ok(())
}

/// The agreement version adopted last, with its hash.
pub fn adopted(c: &Connection) -> crate::db::Result<Option<Adopted>> {
    adopted_where(c, "ORDER BY a.version DESC LIMIT 1", [])
}

/// The agreement version `version` as adopted, if it was.
pub fn adopted_version(c: &Connection, version: u64) -> crate::db::Result<Option<Adopted>> {
    adopted_where(c, "WHERE a.version = ?1", [version as i64])
}

fn adopted_where(c: &Connection, filter: &str, args: impl crate::db::Params) -> crate::db::Result<Option<Adopted>> {
    c.prepare_cached(&format!(
        "SELECT a.version, a.sha256, e.data, o.data FROM adopted a JOIN entries e ON e.idx = a.log_index \
         LEFT JOIN envelopes o ON o.idx = e.idx {filter}"
    ))?
    .query_row(args, |r| {
        let entry: Vec<u8> = r.get(2)?;
        let outside: Option<Vec<u8>> = r.get(3)?;
        let signed_note = match LogEntry::decode(&entry[..]).ok().and_then(|e| e.body) {
            Some(crate::proto::log_entry::Body::AgreementAdopted(a)) => {
                crate::log::entry::adopted_note(&a, outside.as_deref()).unwrap_or_default()
            }
            _ => Vec::new(),
        };
        Ok(Adopted {
            version: r.get::<i64>(0)? as u64,
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
        "INSERT INTO adopted (version, sha256, log_index) VALUES (?1, ?2, ?3)
         ON CONFLICT (version) DO UPDATE SET sha256 = excluded.sha256, log_index = excluded.log_index",
        params![version as i64, sha256, log_index as i64],
    )?;
    Ok(())
}

/// The messages waiting in the outbox for `party`.
pub fn queued_for(c: &Connection, party: &str) -> crate::db::Result<Vec<String>> {
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
