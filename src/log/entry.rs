//! Log entries: how the node records each kind of event, how an entry
//! commits to the envelope it records (kept beside the log, so the log can
//! be verified without reading the message), and how an entry reads to a person.

use prost::Message;
use sha2::{Digest, Sha256};

use crate::clock;
use crate::envelope::{AMENDMENT_TYPE, NOTICE_TYPE, RECEIPT_TYPE, RESPONSE_TYPE, ROSTER_TYPE};
use crate::proto::log_entry::Body;
use crate::proto::{
    AgreementAdopted, Amendment, Envelope, EnvelopeReceived, EnvelopeSent, LogEntry, MessageMeta, NormEventKind,
    Notice, Receipt, Response, RosterUpdate, Tlp,
};

/// The largest entry a tlog-tiles entry bundle can hold (a 16-bit length
/// prefix); the log refuses anything larger so that it stays exportable.
pub const MAX_ENTRY_BYTES: usize = 65_535;

/// How every reader of stored entries selects them: index, entry, and the
/// envelope kept beside it (NULL if none); callers add the range and order.
pub(crate) const STORED: &str = "SELECT e.idx, e.data, o.data FROM entries e LEFT JOIN envelopes o ON o.idx = e.idx";

/// A log entry ready to append: the bytes hashed into the tree and, when the
/// entry names its envelope by hash, that envelope's encoding, kept beside it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    /// The encoded `LogEntry`, exactly as hashed.
    pub data: Vec<u8>,
    /// The encoded `Envelope` the entry names by `envelope_sha256`, if any.
    pub envelope: Option<Vec<u8>>,
}

impl From<Vec<u8>> for Entry {
    fn from(data: Vec<u8>) -> Self {
        Self { data, envelope: None }
    }
}

/// Wraps `body` in a log entry stamped `at`, encoded as it will be hashed.
/// An adopted agreement's note that would make the entry larger than an
/// entry bundle allows is named by its SHA-256 instead, and carried beside
/// the entry.
pub fn encode(at: time::OffsetDateTime, body: Body) -> Entry {
    let mut entry = LogEntry {
        logged_at: Some(clock::to_proto(at)),
        body: Some(body),
    };
    let mut outside = None;
    if entry.encoded_len() > MAX_ENTRY_BYTES
        && let Some(Body::AgreementAdopted(a)) = &mut entry.body
    {
        let note = std::mem::take(&mut a.signed_note);
        a.signed_note_sha256 = Sha256::digest(&note).to_vec();
        outside = Some(note);
    }
    Entry {
        data: entry.encode_to_vec(),
        envelope: outside,
    }
}

/// An entry that commits to `envelope` (its SHA-256, in `body`) and keeps it beside itself.
fn committing(at: time::OffsetDateTime, envelope: &Envelope, body: impl FnOnce(Vec<u8>) -> Body) -> Entry {
    let bytes = envelope.encode_to_vec();
    let entry = LogEntry {
        logged_at: Some(clock::to_proto(at)),
        body: Some(body(Sha256::digest(&bytes).to_vec())),
    };
    Entry {
        data: entry.encode_to_vec(),
        envelope: Some(bytes),
    }
}

/// The entry recording an envelope this node signed for `to`: it commits
/// to the envelope, kept beside it, and says of the message only `meta`.
pub fn sent(at: time::OffsetDateTime, envelope: &Envelope, meta: MessageMeta, to: Vec<String>) -> Entry {
    committing(at, envelope, |envelope_sha256| {
        Body::Sent(EnvelopeSent {
            envelope: None,
            to,
            envelope_sha256,
            meta: Some(meta),
        })
    })
}

/// The entry recording an envelope accepted from the party `from`, carried
/// by the relay `via` if any: as [`sent`], a commitment and `meta`.
pub fn received(
    at: time::OffsetDateTime,
    envelope: &Envelope,
    meta: MessageMeta,
    from: &str,
    via: Option<&str>,
) -> Entry {
    committing(at, envelope, |envelope_sha256| {
        Body::Received(EnvelopeReceived {
            envelope: None,
            from: from.to_owned(),
            envelope_sha256,
            meta: Some(meta),
            via: via.unwrap_or_default().to_owned(),
        })
    })
}

/// The entry a relay writes for each envelope it carried: the commitment,
/// who sent it to whom, and where the recipient logged it.
pub fn relayed(at: time::OffsetDateTime, envelope: &Envelope, from: &str, to: &str, recipient_log_index: u64) -> Entry {
    let envelope_sha256 = Sha256::digest(envelope.encode_to_vec()).to_vec();
    encode(
        at,
        Body::Relayed(crate::proto::Relayed {
            from: from.to_owned(),
            to: to.to_owned(),
            envelope_sha256,
            recipient_log_index,
        }),
    )
}

/// What an entry recording a message says of it (none in entries of
/// earlier releases, which hold the envelope inline).
pub fn meta(entry: &LogEntry) -> Option<&MessageMeta> {
    match &entry.body {
        Some(Body::Sent(s)) => s.meta.as_ref(),
        Some(Body::Received(r)) => r.meta.as_ref(),
        _ => None,
    }
}

/// The TLP that decides who may read what an entry keeps beside it: its
/// metadata's; for entries of earlier releases, the envelope's own
/// (a response's reads as RED); an adopted agreement is for everyone.
pub fn label(entry: &LogEntry, outside: &[u8]) -> Tlp {
    if let Some(meta) = meta(entry) {
        return meta.tlp();
    }
    match &entry.body {
        Some(Body::AgreementAdopted(_)) => Tlp::Clear,
        _ => Envelope::decode(outside).map_or(Tlp::Red, |env| crate::message::meta::of_envelope(&env, None).tlp()),
    }
}

/// The SHA-256 an entry names its envelope by, when it is kept outside.
pub fn outside_sha256(entry: &LogEntry) -> Option<&[u8]> {
    match &entry.body {
        Some(Body::Sent(EnvelopeSent {
            envelope: None,
            envelope_sha256,
            ..
        }))
        | Some(Body::Received(EnvelopeReceived {
            envelope: None,
            envelope_sha256,
            ..
        })) if !envelope_sha256.is_empty() => Some(envelope_sha256),
        Some(Body::AgreementAdopted(a)) if a.signed_note.is_empty() && !a.signed_note_sha256.is_empty() => {
            Some(&a.signed_note_sha256)
        }
        _ => None,
    }
}

/// The signed note an adoption entry records: inline, or `outside`, checked
/// against the SHA-256 the entry names.
pub fn adopted_note(a: &AgreementAdopted, outside: Option<&[u8]>) -> Result<Vec<u8>, String> {
    if a.signed_note_sha256.is_empty() || !a.signed_note.is_empty() {
        return Ok(a.signed_note.clone());
    }
    let bytes = outside.ok_or("names an agreement kept beside the log, which is missing")?;
    if Sha256::digest(bytes).as_slice() != a.signed_note_sha256 {
        return Err("the agreement kept beside the log does not match the SHA-256 the entry names".into());
    }
    Ok(bytes.to_vec())
}

/// The envelope an entry records as sent or received (none for other
/// kinds): moved out of the entry, or `outside` checked against the hash
/// the entry names.
pub fn envelope(entry: LogEntry, outside: Option<&[u8]>) -> Result<Option<Envelope>, String> {
    if let Some(sha) = outside_sha256(&entry) {
        let bytes = outside.ok_or("names an envelope kept beside the log, which is missing")?;
        if Sha256::digest(bytes).as_slice() != sha {
            return Err("the envelope kept beside the log does not match the SHA-256 the entry names".into());
        }
        let env = Envelope::decode(bytes).map_err(|e| format!("the envelope kept beside the log: {e}"))?;
        return Ok(Some(env));
    }
    Ok(match entry.body {
        Some(Body::Sent(s)) => s.envelope,
        Some(Body::Received(r)) => r.envelope,
        _ => None,
    })
}

/// Whether a peer's logged entry holds `ours` verbatim, inline or by hash.
pub fn holds_envelope(entry: &LogEntry, ours: &Envelope) -> bool {
    match (&entry.body, outside_sha256(entry)) {
        (Some(Body::Received(_)), Some(sha)) => Sha256::digest(ours.encode_to_vec()).as_slice() == sha,
        (Some(Body::Received(r)), None) => r.envelope.as_ref() == Some(ours),
        _ => false,
    }
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
        Some(Body::Relayed(_)) => "relayed",
        None => "empty",
    }
}

/// "EXERCISE " before exercise traffic, so it is never mistaken for real.
fn exercise_mark(exercise: i32) -> &'static str {
    match exercise {
        0 => "",
        _ => "EXERCISE ",
    }
}

fn describe_envelope(env: &Envelope) -> String {
    match env.payload_type.as_str() {
        NOTICE_TYPE => match Notice::decode(&env.payload[..]) {
            Ok(n) => format!(
                "{}notice {} {} -> {}: {}",
                exercise_mark(n.exercise),
                n.id,
                n.from,
                n.to.join(","),
                n.title
            ),
            Err(_) => "notice (undecodable)".into(),
        },
        RESPONSE_TYPE => match Response::decode(&env.payload[..]) {
            Ok(r) => format!(
                "{}response {} {} -> {} to notice {}: {}",
                exercise_mark(r.exercise),
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
        AMENDMENT_TYPE => match Amendment::decode(&env.payload[..]) {
            Ok(a) => format!(
                "amendment {} {} -> {}: {} agreement version {} (text SHA-256 {}…){}",
                a.id,
                a.from,
                a.to.join(","),
                a.action().as_str_name().trim_start_matches("AMENDMENT_ACTION_"),
                a.version,
                hex::encode(a.text_sha256.get(..8).unwrap_or_default()),
                match a.reason.is_empty() {
                    true => String::new(),
                    false => format!(": {}", a.reason),
                }
            ),
            Err(_) => "amendment (undecodable)".into(),
        },
        ROSTER_TYPE => match RosterUpdate::decode(&env.payload[..]) {
            Ok(r) => format!(
                "roster {} {} -> {}: version {}",
                r.id,
                r.from,
                r.to.join(","),
                r.version
            ),
            Err(_) => "roster (undecodable)".into(),
        },
        other => format!("envelope of type {other}"),
    }
}

/// An envelope the entry holds inline (entries of earlier releases), or
/// what its metadata says of the one it commits to.
fn describe_held(env: Option<&Envelope>, meta: Option<&MessageMeta>, sha256: &[u8]) -> String {
    match (env, meta) {
        (Some(env), _) => describe_envelope(env),
        (None, Some(m)) => {
            let tlp = crate::message::tlp_label(m.tlp());
            format!(
                "{}{} {} {} -> {} [TLP:{tlp}] (envelope {}…)",
                exercise_mark(m.exercise),
                m.kind,
                m.id,
                m.from,
                m.to.join(","),
                hex::encode(sha256.get(..8).unwrap_or_default())
            )
        }
        (None, None) => format!("envelope {} kept beside the log", hex::encode(sha256)),
    }
}

/// One line describing the entry for a person.
pub fn describe(entry: &LogEntry) -> String {
    match &entry.body {
        Some(Body::Sent(s)) => format!(
            "sent {}",
            describe_held(s.envelope.as_ref(), s.meta.as_ref(), &s.envelope_sha256)
        ),
        Some(Body::Received(r)) => format!(
            "received from {}{}: {}",
            r.from,
            match r.via.as_str() {
                "" => String::new(),
                via => format!(" via {via}"),
            },
            describe_held(r.envelope.as_ref(), r.meta.as_ref(), &r.envelope_sha256)
        ),
        Some(Body::Relayed(r)) => format!(
            "relayed {} from {} to {} (their log index {})",
            hex::encode(&r.envelope_sha256),
            r.from,
            r.to,
            r.recipient_log_index
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
