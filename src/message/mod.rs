//! The rules a notice, response or amendment must meet before it is signed
//! or accepted: ids, parties, enum values, languages and sizes here, the
//! rules along a thread (TLP, exercises) in `thread.rs`, what a log entry
//! may say of a message in `meta.rs`, the errors in `error.rs`.

mod error;
pub mod meta;
mod thread;

pub use error::MessageError;
pub use thread::*;

use error::invalid;
use prost::Message as _;

use crate::agreement::{Norms, is_valid_party_id};
use crate::proto::{
    Amendment, AmendmentAction, Category, Deadline, Exercise, Notice, NoticeKind, ReasonCode, Response, ResponseStatus,
    RosterUpdate, Severity, Tlp,
};

/// The longest title accepted, in bytes.
pub const MAX_TITLE_BYTES: usize = 512;

/// Checks that `id` is a UUIDv7 in its canonical hyphenated form.
pub fn check_uuid_v7(field: &'static str, id: &str) -> Result<uuid::Uuid, MessageError> {
    if id.is_empty() {
        return Err(MessageError::Missing(field));
    }
    let uuid = uuid::Uuid::try_parse(id)
        .ok()
        .filter(|u| u.hyphenated().to_string() == id)
        .ok_or_else(|| invalid(field, format!("{id:?} is not a UUID in lowercase hyphenated form")))?;
    if uuid.get_version_num() != 7 {
        return Err(invalid(
            field,
            format!("{id} is a version {} UUID, not version 7", uuid.get_version_num()),
        ));
    }
    Ok(uuid)
}

/// A fresh UUIDv7 for a new message.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().hyphenated().to_string()
}

fn check_party(field: &'static str, id: &str) -> Result<(), MessageError> {
    if id.is_empty() {
        return Err(MessageError::Missing(field));
    }
    if !is_valid_party_id(id) {
        return Err(invalid(
            field,
            format!("{id:?} is not a party id (1 to 32 letters, digits and '-')"),
        ));
    }
    Ok(())
}

fn check_recipients(from: &str, to: &[String]) -> Result<(), MessageError> {
    if to.is_empty() {
        return Err(MessageError::Missing("to"));
    }
    for (i, party) in to.iter().enumerate() {
        check_party("to", party)?;
        if party == from {
            return Err(invalid("to", format!("{party} is the sender itself")));
        }
        if to[..i].contains(party) {
            return Err(invalid("to", format!("{party} is listed twice")));
        }
    }
    Ok(())
}

fn check_enum<E: TryFrom<i32>>(field: &'static str, value: i32) -> Result<(), MessageError> {
    if value == 0 {
        return Err(MessageError::Missing(field));
    }
    E::try_from(value)
        .map(|_| ())
        .map_err(|_| invalid(field, format!("{value} is not a known value")))
}

/// An enum field where 0 is a meaningful default (not an exercise, no reason).
fn check_optional_enum<E: TryFrom<i32>>(field: &'static str, value: i32) -> Result<(), MessageError> {
    E::try_from(value)
        .map(|_| ())
        .map_err(|_| invalid(field, format!("{value} is not a known value")))
}

/// Checks a BCP 47 language tag (RFC 5646 well-formed and valid).
pub(crate) fn check_language(field: &'static str, tag: &str) -> Result<(), MessageError> {
    let parsed = language_tags::LanguageTag::parse(tag)
        .map_err(|e| invalid(field, format!("{tag:?} is not a BCP 47 language tag: {e}")))?;
    parsed
        .validate()
        .map_err(|e| invalid(field, format!("{tag:?} is not a valid BCP 47 language tag: {e}")))
}

/// Checks a notice's language and translations: each a BCP 47 tag used
/// once, each translation with a title, at most one authoritative.
fn check_languages(n: &Notice) -> Result<(), MessageError> {
    if !n.language.is_empty() {
        check_language("language", &n.language)?;
    }
    let mut seen = vec![n.language.to_ascii_lowercase()];
    for t in &n.translations {
        check_language("translations", &t.language)?;
        if seen.contains(&t.language.to_ascii_lowercase()) {
            return Err(invalid(
                "translations",
                format!("language {} is given twice", t.language),
            ));
        }
        seen.push(t.language.to_ascii_lowercase());
        if t.title.trim().is_empty() || t.title.len() > MAX_TITLE_BYTES {
            return Err(invalid(
                "translations",
                format!("the {} title must be 1 to {MAX_TITLE_BYTES} bytes", t.language),
            ));
        }
    }
    if n.translations.iter().filter(|t| t.authoritative).count() > 1 {
        return Err(invalid("translations", "at most one translation is authoritative"));
    }
    Ok(())
}

fn check_size(message: &impl prost::Message, norms: &Norms) -> Result<(), MessageError> {
    let size = message.encoded_len();
    if size as u64 > norms.max_notice_bytes {
        return Err(MessageError::TooLarge {
            size,
            max: norms.max_notice_bytes,
        });
    }
    Ok(())
}

/// Checks every field rule of a notice and its encoded size against the norms.
pub fn validate_notice(n: &Notice, norms: &Norms) -> Result<(), MessageError> {
    check_uuid_v7("id", &n.id)?;
    check_party("from", &n.from)?;
    check_recipients(&n.from, &n.to)?;
    if n.created_at.is_none() {
        return Err(MessageError::Missing("created_at"));
    }
    check_enum::<NoticeKind>("kind", n.kind)?;
    check_enum::<Severity>("severity", n.severity)?;
    check_enum::<Category>("category", n.category)?;
    check_enum::<Tlp>("tlp", n.tlp)?;
    if n.title.trim().is_empty() {
        return Err(MessageError::Missing("title"));
    }
    if n.title.len() > MAX_TITLE_BYTES {
        return Err(invalid(
            "title",
            format!("{} bytes, over the limit of {MAX_TITLE_BYTES}", n.title.len()),
        ));
    }
    if n.author.trim().is_empty() {
        return Err(MessageError::Missing("author"));
    }
    if n.affected_sectors.iter().any(|s| s.trim().is_empty()) {
        return Err(invalid("affected_sectors", "a sector is empty"));
    }
    if n.indicators
        .iter()
        .any(|i| i.r#type.trim().is_empty() || i.value.is_empty())
    {
        return Err(invalid("indicators", "every indicator needs a type and a value"));
    }
    if n.attachments.iter().any(|a| a.media_type.trim().is_empty()) {
        return Err(invalid("attachments", "every attachment needs a media_type"));
    }
    if !n.in_reply_to.is_empty() {
        check_uuid_v7("in_reply_to", &n.in_reply_to)?;
    }
    check_languages(n)?;
    check_optional_enum::<Exercise>("exercise", n.exercise)?;
    let kind = NoticeKind::try_from(n.kind).unwrap_or_default();
    if n.human && kind != NoticeKind::CommCheck {
        return Err(invalid("human", "only a COMM_CHECK is a human check"));
    }
    if matches!(kind, NoticeKind::Update | NoticeKind::Closure) && n.in_reply_to.is_empty() {
        return Err(invalid(
            "in_reply_to",
            "an UPDATE or CLOSURE must name the notice it continues",
        ));
    }
    check_size(n, norms)
}

/// Checks every field rule of a response and its encoded size against the norms.
pub fn validate_response(r: &Response, norms: &Norms) -> Result<(), MessageError> {
    check_uuid_v7("id", &r.id)?;
    check_uuid_v7("notice_id", &r.notice_id)?;
    check_party("from", &r.from)?;
    check_recipients(&r.from, &r.to)?;
    if r.created_at.is_none() {
        return Err(MessageError::Missing("created_at"));
    }
    check_enum::<ResponseStatus>("status", r.status)?;
    check_optional_enum::<Exercise>("exercise", r.exercise)?;
    check_optional_enum::<ReasonCode>("reason", r.reason)?;
    if r.author.trim().is_empty() {
        return Err(MessageError::Missing("author"));
    }
    if let Some(promised) = &r.promised_by {
        if r.status() != ResponseStatus::Investigating {
            return Err(invalid(
                "promised_by",
                "only an INVESTIGATING response promises a further answer",
            ));
        }
        let (Some(by), Some(at)) = (
            crate::clock::from_proto(promised),
            r.created_at.as_ref().and_then(crate::clock::from_proto),
        ) else {
            return Err(invalid("promised_by", "not a valid time"));
        };
        if by <= at {
            return Err(invalid("promised_by", "must be after the response's created_at"));
        }
    }
    check_size(r, norms)
}

/// The clocks a response of `status` stops for the notice it answers: an
/// acknowledgement stops only the acknowledgement clock; any answer stops
/// that and the response clock; an answer beyond INVESTIGATING also keeps
/// the promise an INVESTIGATING response made.
pub fn clocks_met(status: ResponseStatus) -> &'static [Deadline] {
    match status {
        ResponseStatus::Acknowledged => &[Deadline::Acknowledge],
        ResponseStatus::Investigating => &[Deadline::Acknowledge, Deadline::Response],
        _ => &[Deadline::Acknowledge, Deadline::Response, Deadline::Promise],
    }
}

/// Checks every field rule of an amendment and its encoded size against the
/// norms; whether its signed note holds the version it names is the node's
/// check, which parses it.
pub fn validate_amendment(a: &Amendment, norms: &Norms) -> Result<(), MessageError> {
    check_uuid_v7("id", &a.id)?;
    check_party("from", &a.from)?;
    check_recipients(&a.from, &a.to)?;
    if a.created_at.is_none() {
        return Err(MessageError::Missing("created_at"));
    }
    check_enum::<AmendmentAction>("action", a.action)?;
    if a.version < 2 {
        return Err(invalid("version", "an amendment proposes version 2 or later"));
    }
    if a.text_sha256.len() != 32 {
        return Err(invalid("text_sha256", "must be 32 bytes (a SHA-256)"));
    }
    match a.action() {
        AmendmentAction::Reject if !a.signed_note.is_empty() => {
            return Err(invalid("signed_note", "a rejection signs nothing"));
        }
        AmendmentAction::Propose | AmendmentAction::Approve if a.signed_note.is_empty() => {
            return Err(MessageError::Missing("signed_note"));
        }
        _ => {}
    }
    if a.author.trim().is_empty() {
        return Err(MessageError::Missing("author"));
    }
    check_size(a, norms)
}

/// Checks every field rule of a roster update and its encoded size; the
/// roster it carries and who signed it are the node's check, which parses it.
pub fn validate_roster(r: &RosterUpdate, norms: &Norms) -> Result<(), MessageError> {
    check_uuid_v7("id", &r.id)?;
    check_party("from", &r.from)?;
    check_recipients(&r.from, &r.to)?;
    if r.created_at.is_none() {
        return Err(MessageError::Missing("created_at"));
    }
    if r.version == 0 {
        return Err(invalid("version", "roster versions start at 1"));
    }
    if r.signed_roster.is_empty() {
        return Err(MessageError::Missing("signed_roster"));
    }
    if r.author.trim().is_empty() {
        return Err(MessageError::Missing("author"));
    }
    check_size(r, norms)
}

/// Decodes a notice payload; the bytes stay the signed ones.
pub fn decode_notice(payload: &[u8]) -> Result<Notice, MessageError> {
    Notice::decode(payload).map_err(|e| invalid("payload", format!("not a hotline.v1.Notice: {e}")))
}

/// Decodes a response payload; the bytes stay the signed ones.
pub fn decode_response(payload: &[u8]) -> Result<Response, MessageError> {
    Response::decode(payload).map_err(|e| invalid("payload", format!("not a hotline.v1.Response: {e}")))
}

/// What a message is: a notice, a response or an amendment, stored under its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A notice (an incident, request, communication check, ...).
    Notice,
    /// A response to a notice.
    Response,
    /// A step in amending the agreement.
    Amendment,
    /// A party's roster of points of contact.
    Roster,
}

impl Kind {
    /// The kind of an envelope's payload type, if it is one that can be delivered.
    pub fn of_payload_type(payload_type: &str) -> Option<Self> {
        match payload_type {
            crate::envelope::NOTICE_TYPE => Some(Kind::Notice),
            crate::envelope::RESPONSE_TYPE => Some(Kind::Response),
            crate::envelope::AMENDMENT_TYPE => Some(Kind::Amendment),
            crate::envelope::ROSTER_TYPE => Some(Kind::Roster),
            _ => None,
        }
    }

    /// The name stored in the database and shown to people.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Notice => "notice",
            Kind::Response => "response",
            Kind::Amendment => "amendment",
            Kind::Roster => "roster",
        }
    }

    /// The kind stored under `name`; an unknown name reads as a notice.
    pub fn from_str_name(name: &str) -> Self {
        match name {
            "response" => Kind::Response,
            "amendment" => Kind::Amendment,
            "roster" => Kind::Roster,
            _ => Kind::Notice,
        }
    }
}

/// A decoded notice, response or amendment, with what every message has in common.
#[derive(Clone, Debug)]
pub enum Message {
    /// A notice.
    Notice(Notice),
    /// A response to a notice.
    Response(Response),
    /// A step in amending the agreement.
    Amendment(Amendment),
    /// A party's roster of points of contact.
    Roster(RosterUpdate),
}

impl Message {
    /// Decodes a payload of `kind`; the bytes stay the signed ones.
    pub fn decode(kind: Kind, payload: &[u8]) -> Result<Self, MessageError> {
        Ok(match kind {
            Kind::Notice => Message::Notice(decode_notice(payload)?),
            Kind::Response => Message::Response(decode_response(payload)?),
            Kind::Amendment => Message::Amendment(
                Amendment::decode(payload)
                    .map_err(|e| invalid("payload", format!("not a hotline.v1.Amendment: {e}")))?,
            ),
            Kind::Roster => Message::Roster(
                RosterUpdate::decode(payload)
                    .map_err(|e| invalid("payload", format!("not a hotline.v1.RosterUpdate: {e}")))?,
            ),
        })
    }

    /// Notice or response.
    pub fn kind(&self) -> Kind {
        match self {
            Message::Notice(_) => Kind::Notice,
            Message::Response(_) => Kind::Response,
            Message::Amendment(_) => Kind::Amendment,
            Message::Roster(_) => Kind::Roster,
        }
    }

    /// The message id (UUIDv7), its idempotency key.
    pub fn id(&self) -> &str {
        match self {
            Message::Notice(n) => &n.id,
            Message::Response(r) => &r.id,
            Message::Amendment(a) => &a.id,
            Message::Roster(r) => &r.id,
        }
    }

    /// The sending party.
    pub fn from(&self) -> &str {
        match self {
            Message::Notice(n) => &n.from,
            Message::Response(r) => &r.from,
            Message::Amendment(a) => &a.from,
            Message::Roster(r) => &r.from,
        }
    }

    /// The recipients.
    pub fn to(&self) -> &[String] {
        match self {
            Message::Notice(n) => &n.to,
            Message::Response(r) => &r.to,
            Message::Amendment(a) => &a.to,
            Message::Roster(r) => &r.to,
        }
    }

    /// When the sender says it was written.
    pub fn created_at(&self) -> Option<&prost_types::Timestamp> {
        match self {
            Message::Notice(n) => n.created_at.as_ref(),
            Message::Response(r) => r.created_at.as_ref(),
            Message::Amendment(a) => a.created_at.as_ref(),
            Message::Roster(r) => r.created_at.as_ref(),
        }
    }

    /// The notice the message belongs to; for an amendment, the hex
    /// SHA-256 of the version it is about; a roster update is its own.
    pub fn thread(&self) -> String {
        match self {
            Message::Notice(n) => thread_of(n).to_owned(),
            Message::Response(r) => r.notice_id.clone(),
            Message::Amendment(a) => hex::encode(&a.text_sha256),
            Message::Roster(r) => r.id.clone(),
        }
    }

    /// Whether it is exercise traffic.
    pub fn exercise(&self) -> bool {
        match self {
            Message::Notice(n) => n.exercise != 0,
            Message::Response(r) => r.exercise != 0,
            Message::Amendment(_) | Message::Roster(_) => false,
        }
    }

    /// Checks every field rule of the message.
    pub fn validate(&self, norms: &Norms) -> Result<(), MessageError> {
        match self {
            Message::Notice(n) => validate_notice(n, norms),
            Message::Response(r) => validate_response(r, norms),
            Message::Amendment(a) => validate_amendment(a, norms),
            Message::Roster(r) => validate_roster(r, norms),
        }
    }
}
