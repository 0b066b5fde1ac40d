//! What a log entry may say of the message it records: the metadata that
//! anyone who verifies the log may see (kind, ids, parties, times, TLP,
//! severity, the thread), never the text, which stays in the envelope the
//! entry commits to.

use prost::Message as _;

use super::{Kind, Message};
use crate::envelope::RECEIPT_TYPE;
use crate::proto::{Envelope, MessageMeta, Notice, Receipt, Tlp};

/// The metadata of the message `env` carries. `thread_tlp` is the TLP of
/// the notice a response answers (a response has no label of its own; none
/// known reads as RED, the most restricted). An envelope that does not
/// decode yields its kind alone.
pub fn of_envelope(env: &Envelope, thread_tlp: Option<Tlp>) -> MessageMeta {
    of_payload(&env.payload_type, &env.payload, thread_tlp)
}

/// Like [`of_envelope`], of a payload of `payload_type` not yet signed.
pub fn of_payload(payload_type: &str, payload: &[u8], thread_tlp: Option<Tlp>) -> MessageMeta {
    if payload_type == crate::envelope::SEALED_TYPE {
        // Sealed: what it says in clear, which its readers check against its body.
        return crate::proto::SealedMessage::decode(payload)
            .ok()
            .and_then(|m| m.meta)
            .unwrap_or_else(|| unreadable("sealed"));
    }
    if payload_type == RECEIPT_TYPE {
        return match Receipt::decode(payload) {
            Ok(r) => MessageMeta {
                kind: "receipt".into(),
                id: r.message_id.clone(),
                from: r.from,
                to: vec![r.to],
                created_at: r.received_at,
                tlp: Tlp::Clear as i32,
                thread: r.message_id,
                ..Default::default()
            },
            Err(_) => unreadable("receipt"),
        };
    }
    let Some(kind) = Kind::of_payload_type(payload_type) else {
        return unreadable("unknown");
    };
    let Ok(message) = Message::decode(kind, payload) else {
        return unreadable(kind.as_str());
    };
    let mut meta = MessageMeta {
        kind: kind.as_str().into(),
        id: message.id().into(),
        from: message.from().into(),
        to: message.to().to_vec(),
        created_at: message.created_at().cloned(),
        thread: message.thread(),
        ..Default::default()
    };
    match &message {
        Message::Notice(n) => {
            meta.tlp = n.tlp;
            meta.severity = n.severity;
            meta.notice_kind = n.kind;
            meta.exercise = n.exercise;
        }
        Message::Response(r) => {
            meta.tlp = thread_tlp.unwrap_or(Tlp::Red) as i32;
            meta.status = r.status;
            meta.exercise = r.exercise;
        }
        Message::Amendment(_) => meta.tlp = Tlp::Green as i32,
        Message::Roster(_) => meta.tlp = Tlp::Amber as i32,
    }
    meta
}

/// A notice as a reader not cleared for it may see it: what its log entry
/// says (ids, parties, times, kind, severity, TLP, thread, exercise), no text.
pub fn redacted(n: &Notice) -> Notice {
    Notice {
        id: n.id.clone(),
        from: n.from.clone(),
        to: n.to.clone(),
        created_at: n.created_at,
        kind: n.kind,
        severity: n.severity,
        tlp: n.tlp,
        in_reply_to: n.in_reply_to.clone(),
        exercise: n.exercise,
        ..Default::default()
    }
}

/// The metadata of an envelope whose payload does not decode: its kind, and
/// the most restricted label.
fn unreadable(kind: &str) -> MessageMeta {
    MessageMeta {
        kind: kind.into(),
        tlp: Tlp::Red as i32,
        ..Default::default()
    }
}
