//! Norm events: how each is built (one constructor, whoever observes it) and
//! the one way it is logged, kept for `status` and announced to operators.

use crate::db::Connection;
use time::OffsetDateTime;

use crate::clock;
use crate::events::Events;
use crate::log::{Log, LogError, StateError, entry};
use crate::proto::log_entry::Body;
use crate::proto::{Deadline, NormEvent, NormEventKind, event};
use crate::state;

/// A norm event of `kind` about `party` and `message_id` (empty when none),
/// observed `at`; `deadline` names the clock it concerns (if any) and
/// `due_ms` when it was due.
pub fn new(
    kind: NormEventKind,
    party: &str,
    message_id: &str,
    deadline: Deadline,
    due_ms: Option<i64>,
    at: OffsetDateTime,
    detail: String,
) -> NormEvent {
    NormEvent {
        kind: kind as i32,
        party: party.to_owned(),
        message_id: message_id.to_owned(),
        deadline: deadline as i32,
        due_at: due_ms.and_then(clock::ms_to_proto),
        observed_at: Some(clock::to_proto(at)),
        detail,
        attempts: None,
    }
}

/// The log entry that records `event`, stamped when it was observed.
pub fn entry(event: &NormEvent) -> entry::Entry {
    let at = event
        .observed_at
        .as_ref()
        .and_then(clock::from_proto)
        .unwrap_or_else(clock::now);
    entry::encode(at, Body::NormEvent(event.clone()))
}

/// Logs `event` in one transaction with `guard`, which may refuse it (a
/// deadline met meanwhile), keeps it for status, and announces it once logged.
pub async fn log(
    log: &Log,
    events: &Events,
    event: NormEvent,
    guard: impl Fn(&Connection) -> Result<(), StateError> + Send + 'static,
) -> Result<(), LogError> {
    let kept = event.clone();
    let change = Box::new(move |c: &Connection, index: u64| {
        guard(c)?;
        state::insert_norm_event(c, index, &kept)
    });
    log.append_with(vec![entry(&event)], change, false).await?;
    events.emit(event::Body::NormEvent(event));
    Ok(())
}
