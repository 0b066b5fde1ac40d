//! The clocks the norms run: who owes what by when (deadlines, met,
//! missed or closed), the compliance figures counted as they end, and the
//! escalations of missed steps.

use crate::db::{Connection, params};

use crate::log::StateError;
use crate::proto::Deadline;

/// Starts a clock: `party` owes `kind` for `message_id` by `due_ms`.
pub fn start_deadline(
    c: &Connection,
    message_id: &str,
    party: &str,
    kind: Deadline,
    due_ms: i64,
) -> Result<(), StateError> {
    c.prepare_cached(
        "INSERT INTO deadlines (message_id, party, kind, due_ms, state) VALUES (?1, ?2, ?3, ?4, 'running') ON CONFLICT DO NOTHING",
    )?
    .execute_later(params![message_id, party, kind as i32, due_ms])?;
    Ok(())
}

/// Stops a running clock because the message arrived, counting it met
/// (two writes whose outcome is not read, so they may go with the batch's).
pub fn meet_deadline(c: &Connection, message_id: &str, party: &str, kind: Deadline) -> Result<(), StateError> {
    c.prepare_cached(
        "INSERT INTO compliance (party, kind, met, missed) \
         SELECT ?2, CAST(?3 AS BIGINT), 1, 0 WHERE COALESCE((SELECT exercise FROM messages WHERE id = ?1), 1) = 0 \
         AND EXISTS (SELECT 1 FROM deadlines WHERE message_id = ?1 AND party = ?2 AND kind = ?3 AND state = 'running') \
         ON CONFLICT (party, kind) DO UPDATE SET met = compliance.met + 1",
    )?
    .execute_later(params![message_id, party, kind as i32])?;
    c.prepare_cached(
        "UPDATE deadlines SET state = 'met' WHERE message_id = ?1 AND party = ?2 AND kind = ?3 AND state = 'running'",
    )?
    .execute_later(params![message_id, party, kind as i32])?;
    Ok(())
}

/// Adds a clock that ended (`met`, `missed`) to the compliance figures,
/// unless its message is exercise traffic (or unknown: not ours to judge).
fn count(
    c: &Connection,
    message_id: &str,
    party: &str,
    kind: Deadline,
    (met, missed): (i64, i64),
) -> Result<(), StateError> {
    c.prepare_cached(
        "INSERT INTO compliance (party, kind, met, missed)          SELECT ?2, CAST(?3 AS BIGINT), CAST(?4 AS BIGINT), CAST(?5 AS BIGINT) WHERE COALESCE((SELECT exercise FROM messages WHERE id = ?1), 1) = 0          ON CONFLICT (party, kind) DO UPDATE SET met = compliance.met + excluded.met, missed = compliance.missed + excluded.missed",
    )?
    .execute(params![message_id, party, kind as i32, met, missed])?;
    Ok(())
}

/// Marks a running clock missed; refused as no longer running unless this
/// call did it, so the event is logged once.
pub fn miss_deadline(c: &Connection, d: &Running) -> Result<(), StateError> {
    let n = c
        .prepare_cached("UPDATE deadlines SET state = 'missed' WHERE message_id = ?1 AND party = ?2 AND kind = ?3 AND state = 'running'")?
        .execute(params![d.message_id, d.party, d.kind as i32])?;
    match n {
        1 => count(c, &d.message_id, &d.party, d.kind, (0, 1)),
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
pub fn running_deadlines(c: &Connection, until_ms: i64, limit: u32) -> crate::db::Result<Vec<Running>> {
    c.prepare_cached(
        "SELECT message_id, party, kind, due_ms FROM deadlines WHERE state = 'running' AND due_ms <= ?1 \
         ORDER BY due_ms LIMIT ?2",
    )?
    .query_map(params![until_ms, limit], row_to_running)?
    .collect()
}

fn row_to_running(r: &crate::db::Row<'_>) -> crate::db::Result<Running> {
    Ok(Running {
        message_id: r.get(0)?,
        party: r.get(1)?,
        kind: Deadline::try_from(r.get::<i32>(2)?).unwrap_or_default(),
        due_ms: r.get(3)?,
    })
}

/// Per party and kind of clock, how many were met and how many missed,
/// real traffic only (exercises are left out): the compliance figures,
/// counted as each clock ends, so reading them costs one row per party and kind.
pub fn compliance(c: &Connection) -> crate::db::Result<Vec<(String, Deadline, u64, u64)>> {
    c.prepare_cached("SELECT party, kind, met, missed FROM compliance ORDER BY kind, party")?
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                Deadline::try_from(r.get::<i32>(1)?).unwrap_or_default(),
                r.get::<i64>(2)? as u64,
                r.get::<i64>(3)? as u64,
            ))
        })?
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
pub fn escalations_due(c: &Connection, until_ms: i64, limit: u32) -> crate::db::Result<Vec<Escalation>> {
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
pub fn escalations_pending(c: &Connection) -> crate::db::Result<u64> {
    c.prepare_cached("SELECT COUNT(*) FROM escalations WHERE next_ms IS NOT NULL")?
        .query_row([], |r| r.get::<i64>(0).map(|n| n as u64))
}

/// How many clocks of each kind are running.
pub fn running_by_kind(c: &Connection) -> crate::db::Result<Vec<(Deadline, u64)>> {
    c.prepare_cached("SELECT kind, COUNT(*) FROM deadlines WHERE state = 'running' GROUP BY kind")?
        .query_map([], |r| {
            Ok((
                Deadline::try_from(r.get::<i32>(0)?).unwrap_or_default(),
                r.get::<i64>(1)? as u64,
            ))
        })?
        .collect()
}

/// How many deadlines are running.
pub fn running_deadline_count(c: &Connection) -> crate::db::Result<u64> {
    c.prepare_cached("SELECT COUNT(*) FROM deadlines WHERE state = 'running'")?
        .query_row([], |r| r.get::<i64>(0).map(|n| n as u64))
}

/// The running clocks that concern a party that leaves: those it owes, and
/// those `me` owes for messages it sent.
pub fn running_deadlines_of(c: &Connection, party: &str, me: &str) -> crate::db::Result<Vec<Running>> {
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
