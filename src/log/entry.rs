//! Log entries: how the node records each kind of event, and how an entry
//! reads to a person.

use prost::Message;

use crate::clock;
use crate::envelope::{NOTICE_TYPE, RECEIPT_TYPE, RESPONSE_TYPE};
use crate::proto::log_entry::Body;
use crate::proto::{Envelope, LogEntry, NormEventKind, Notice, Receipt, Response};

/// Wraps `body` in a log entry stamped `at`, encoded as it will be hashed.
pub fn encode(at: time::OffsetDateTime, body: Body) -> Vec<u8> {
    LogEntry {
        logged_at: Some(clock::to_proto(at)),
        body: Some(body),
    }
    .encode_to_vec()
}

/// A short name of the entry's kind, for tables and JSON.
pub fn kind(entry: &LogEntry) -> &'static str {
    match &entry.body {
        Some(Body::Sent(_)) => "sent",
        Some(Body::Received(_)) => "received",
        Some(Body::NormEvent(_)) => "norm_event",
        Some(Body::AgreementAdopted(_)) => "agreement_adopted",
        Some(Body::OperatorAction(_)) => "operator_action",
        Some(Body::WitnessedCheckpoint(_)) => "witnessed_checkpoint",
        None => "empty",
    }
}

fn describe_envelope(env: &Envelope) -> String {
    match env.payload_type.as_str() {
        NOTICE_TYPE => match Notice::decode(&env.payload[..]) {
            Ok(n) => format!("notice {} {} -> {}: {}", n.id, n.from, n.to.join(","), n.title),
            Err(_) => "notice (undecodable)".into(),
        },
        RESPONSE_TYPE => match Response::decode(&env.payload[..]) {
            Ok(r) => format!(
                "response {} {} -> {} to notice {}: {}",
                r.id,
                r.from,
                r.to.join(","),
                r.notice_id,
                r.status().as_str_name().trim_start_matches("RESPONSE_STATUS_")
            ),
            Err(_) => "response (undecodable)".into(),
        },
        RECEIPT_TYPE => match Receipt::decode(&env.payload[..]) {
            Ok(r) => format!(
                "receipt by {} for {} (their log index {})",
                r.from, r.message_id, r.log_index
            ),
            Err(_) => "receipt (undecodable)".into(),
        },
        other => format!("envelope of type {other}"),
    }
}

/// One line describing the entry for a person.
pub fn describe(entry: &LogEntry) -> String {
    match &entry.body {
        Some(Body::Sent(s)) => format!(
            "sent {}",
            s.envelope.as_ref().map(describe_envelope).unwrap_or_default()
        ),
        Some(Body::Received(r)) => format!(
            "received from {}: {}",
            r.from,
            r.envelope.as_ref().map(describe_envelope).unwrap_or_default()
        ),
        Some(Body::NormEvent(e)) => format!(
            "{} {}: {}",
            NormEventKind::try_from(e.kind)
                .unwrap_or_default()
                .as_str_name()
                .trim_start_matches("NORM_EVENT_KIND_"),
            e.party,
            e.detail
        ),
        Some(Body::AgreementAdopted(a)) => format!("adopted agreement version {}", a.version),
        Some(Body::OperatorAction(a)) => format!("operator {} {} {}", a.operator, a.action, a.detail),
        Some(Body::WitnessedCheckpoint(w)) => {
            let size = w
                .checkpoint
                .as_ref()
                .and_then(|c| {
                    std::str::from_utf8(&c.note)
                        .ok()
                        .and_then(|t| t.lines().nth(1))
                        .map(str::to_owned)
                })
                .unwrap_or_default();
            format!("witnessed checkpoint of {} at size {size}", w.party)
        }
        None => "empty entry".into(),
    }
}
