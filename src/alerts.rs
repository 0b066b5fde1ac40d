//! Alerts, so a duty officer can be paged: for each event of a configured
//! kind (a missed deadline, a checkpoint fork, a failed communication
//! check, a change of the agreement, a peer unreachable too long) the `[alerts]` command runs with the
//! event as one JSON line on its standard input. Each kind is limited to so
//! many alerts a minute; those held back are counted in the next one sent.
//! A command that fails or hangs is logged and killed, and never holds up
//! the node: each runs as a task of its own, a few at a time
//! (`node/alerting.rs` runs them; this module says what and when).

use serde::Deserialize;
use serde_json::json;

use crate::clock;
use crate::proto::{Deadline, Event, NormEventKind, event};

/// What an alert is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A deadline passed without the message owed (but a communication check's answer).
    DeadlineMissed,
    /// A peer's checkpoint forks from one it signed before.
    CheckpointFork,
    /// A communication check went unanswered in time.
    CommCheckFailed,
    /// A new version of the agreement was adopted, or a peer holds another text under ours.
    AgreementChanged,
    /// A peer could not be reached for longer than the agreement's `link_down_alert`.
    LinkDown,
}

impl AlertKind {
    /// Every kind, the default of `kinds`.
    pub const ALL: [AlertKind; 5] = [
        AlertKind::DeadlineMissed,
        AlertKind::CheckpointFork,
        AlertKind::CommCheckFailed,
        AlertKind::AgreementChanged,
        AlertKind::LinkDown,
    ];

    /// The name configured, and sent in each alert.
    pub fn name(self) -> &'static str {
        match self {
            AlertKind::DeadlineMissed => "deadline_missed",
            AlertKind::CheckpointFork => "checkpoint_fork",
            AlertKind::CommCheckFailed => "comm_check_failed",
            AlertKind::AgreementChanged => "agreement_changed",
            AlertKind::LinkDown => "link_down",
        }
    }
}

/// The `[alerts]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertConfig {
    /// The program and its arguments (no shell).
    pub command: Vec<String>,
    /// The kinds of event alerted (default: all).
    #[serde(default = "all_kinds")]
    pub kinds: Vec<AlertKind>,
    /// At most this many alerts of each kind a minute.
    #[serde(default = "per_minute")]
    pub per_minute: u32,
    /// A command still running after this long is killed, as `"10s"`.
    #[serde(default = "timeout")]
    pub timeout: String,
}

fn all_kinds() -> Vec<AlertKind> {
    AlertKind::ALL.to_vec()
}

fn per_minute() -> u32 {
    6
}

fn timeout() -> String {
    "10s".into()
}

/// Per kind, how many alerts went in the current minute and how many were held back.
#[derive(Debug, Default)]
pub struct RateLimit {
    per_minute: u32,
    counts: std::collections::HashMap<AlertKind, (i64, u32, u64)>,
}

impl RateLimit {
    /// At most `per_minute` alerts of each kind in a minute of the node's clock.
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            counts: Default::default(),
        }
    }

    /// Whether an alert of `kind` at `now_ms` goes: `Some(held back since the last one sent)`, or `None`.
    pub fn admit(&mut self, kind: AlertKind, now_ms: i64) -> Option<u64> {
        let minute = now_ms.div_euclid(60_000);
        let (at, sent, held) = self.counts.entry(kind).or_insert((minute, 0, 0));
        if *at != minute {
            (*at, *sent) = (minute, 0);
        }
        if *sent >= self.per_minute {
            *held += 1;
            return None;
        }
        *sent += 1;
        Some(std::mem::take(held))
    }
}

/// The kind of alert an event is, if any.
pub fn kind_of(e: &Event) -> Option<AlertKind> {
    match e.body.as_ref()? {
        event::Body::NormEvent(n) => match n.kind() {
            NormEventKind::DeadlineMissed if n.deadline() == Deadline::CommCheckAnswer => {
                Some(AlertKind::CommCheckFailed)
            }
            NormEventKind::DeadlineMissed => Some(AlertKind::DeadlineMissed),
            NormEventKind::CheckpointFork => Some(AlertKind::CheckpointFork),
            NormEventKind::AgreementFork => Some(AlertKind::AgreementChanged),
            _ => None,
        },
        event::Body::AgreementAdopted(_) => Some(AlertKind::AgreementChanged),
        event::Body::Link(l) if l.down_too_long => Some(AlertKind::LinkDown),
        _ => None,
    }
}

/// The JSON line a command reads.
pub fn line(node: &str, kind: AlertKind, e: &Event, held_back: u64) -> String {
    let at = |t: &Option<prost_types::Timestamp>| t.as_ref().and_then(clock::from_proto).map(clock::rfc3339);
    let detail = match e.body.as_ref() {
        Some(event::Body::NormEvent(n)) => json!({
            "norm_event": n.kind().as_str_name(), "party": n.party, "message_id": n.message_id,
            "deadline": n.deadline().as_str_name(), "due_at": at(&n.due_at), "observed_at": at(&n.observed_at),
            "detail": n.detail,
        }),
        Some(event::Body::AgreementAdopted(a)) => json!({
            "agreement_version": a.version, "text_sha256": hex::encode(&a.text_sha256),
        }),
        Some(event::Body::Link(l)) => json!({
            "party": l.party, "reachable": l.reachable, "since": at(&l.since),
            "failed_attempts": l.failed_attempts, "last_failure": l.last_failure, "next_try": at(&l.next_try),
        }),
        _ => json!({}),
    };
    let value = json!({"node": node, "kind": kind.name(), "at": at(&e.at), "held_back": held_back, "event": detail});
    format!("{value}\n")
}
