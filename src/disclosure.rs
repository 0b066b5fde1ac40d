//! Disclosure to an arbiter: everything a neutral party needs to read and
//! check one message, and nothing else. A disclosure holds the signed
//! envelope, the entries that log it with their inclusion proofs against
//! checkpoints the logging party signed (the discloser's own log), and the
//! receipts its recipients signed, each of which carries the recipient's
//! entry, proof and checkpoint. It is checked with public keys only: the
//! arbiter learns that this message was sent, received and receipted, with
//! exactly this text, and learns no other message.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use prost::Message as _;
use sha2::{Digest, Sha256};

use crate::agreement::Agreement;
use crate::envelope::RECEIPT_TYPE;
use crate::log::{LogReader, checkpoint, entry, tree};
use crate::message::{Kind, Message};
use crate::proto::{Envelope, LogEntry, Receipt};

/// What a disclosure file says it is.
pub const FORMAT: &str = "hotline-disclosure/v1";

/// Why a disclosure could not be made or does not hold.
#[derive(Debug, thiserror::Error)]
pub enum DisclosureError {
    /// The data directory could not be read.
    #[error("{0}")]
    Log(#[from] crate::log::LogError),
    /// The node holds no message with this id.
    #[error("no message with id {0} in this log")]
    NoSuchMessage(String),
    /// Something in the disclosure does not check out; says what.
    #[error("{0}")]
    Invalid(String),
}

fn invalid(what: impl Into<String>) -> DisclosureError {
    DisclosureError::Invalid(what.into())
}

/// One log's evidence that it holds the message: its entry, an inclusion
/// proof, and the checkpoint its party signed.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Inclusion {
    /// The entry's index in that log.
    pub index: u64,
    /// The entry, base64 of its protobuf encoding.
    pub entry: String,
    /// The signed checkpoint (a C2SP signed note) the proof is against.
    pub checkpoint: String,
    /// The RFC 6962 inclusion proof, base64 hashes.
    pub proof: Vec<String>,
}

/// A disclosure file.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Disclosure {
    /// Always [`FORMAT`].
    pub format: String,
    /// The message disclosed.
    pub message_id: String,
    /// Its signed envelope, base64 of its protobuf encoding.
    pub envelope: String,
    /// The discloser's own log holding it.
    pub logged: Inclusion,
    /// Receipts its recipients signed (a sender's disclosure), base64 envelopes.
    pub receipts: Vec<String>,
    /// For a message sealed to its recipients: its body and the salt of the
    /// commitment it is sealed under (base64 each), which open this message
    /// and no other; the arbiter checks them against the signed commitment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opened: Option<Opened>,
}

/// The decryption material of one sealed message: its body and salt.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Opened {
    /// The salt the commitment is over, base64.
    pub salt: String,
    /// The body (the notice's or response's protobuf encoding), base64.
    pub body: String,
}

/// What a disclosure proves, once checked.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Disclosed {
    /// The message's id, kind, sender and recipients.
    pub message_id: String,
    /// `notice`, `response`, ...
    pub kind: String,
    /// Who signed it.
    pub from: String,
    /// Whom it was for.
    pub to: Vec<String>,
    /// Which party's log holds it (the discloser's), at which index, under a checkpoint of which size.
    pub logged_by: (String, u64, u64),
    /// The recipients whose signed receipts say they logged it: (party, their index, their checkpoint's size).
    pub receipted_by: Vec<(String, u64, u64)>,
    /// The message, as JSON (its protobuf fields).
    pub text: serde_json::Value,
}

/// The disclosure of message `id` from the log in `dir` (its own log and,
/// if it sent the message, the receipts its recipients signed); a sealed
/// message is opened with `opener`, the node's key.
pub fn disclose(dir: &Path, id: &str, opener: &crate::opener::Opener) -> Result<Disclosure, DisclosureError> {
    let reader = LogReader::open(dir)?;
    let conn = crate::store::open_reader(dir).map_err(crate::log::LogError::from)?;
    let refused = |e: crate::db::Error| DisclosureError::Log(crate::log::LogError::Refused(e.into()));
    let m = crate::state::message(&conn, id)
        .map_err(refused)?
        .ok_or_else(|| DisclosureError::NoSuchMessage(id.to_owned()))?;
    let receipts = crate::state::receipts(&conn, id).map_err(refused)?;
    let (body, salt) = opener.open_salted(&m.envelope).map_err(|e| {
        invalid(format!(
            "message {id} is sealed and does not open with this node's key: {e}"
        ))
    })?;
    let opened = salt.map(|salt| Opened {
        salt: B64.encode(salt),
        body: B64.encode(&body.payload),
    });
    let (size, note) = reader.latest_checkpoint()?;
    let note = note.ok_or_else(|| invalid("the log has no signed checkpoint yet"))?;
    let (_, _, proof) = reader.inclusion_proof(m.log_index, size)?;
    let stored = reader
        .entries(m.log_index, m.log_index + 1, 1)?
        .pop()
        .ok_or_else(|| DisclosureError::NoSuchMessage(id.to_owned()))?
        .1;
    Ok(Disclosure {
        format: FORMAT.into(),
        message_id: id.to_owned(),
        envelope: B64.encode(m.envelope.encode_to_vec()),
        logged: Inclusion {
            index: m.log_index,
            entry: B64.encode(&stored.data),
            checkpoint: String::from_utf8_lossy(&note).into_owned(),
            proof: tree::proof_to_wire(&proof).iter().map(|h| B64.encode(h)).collect(),
        },
        receipts: receipts.iter().map(|(_, r)| B64.encode(r.encode_to_vec())).collect(),
        opened,
    })
}

/// The envelope as the arbiter reads it: a sealed one opened with the
/// disclosed body, once that is what its sender committed to and signed.
fn readable(envelope: &Envelope, opened: Option<&Opened>) -> Result<Envelope, DisclosureError> {
    if envelope.payload_type != crate::envelope::SEALED_TYPE {
        return Ok(envelope.clone());
    }
    let opened = opened.ok_or_else(|| invalid("the message is sealed and the disclosure carries no body"))?;
    let (salt, body) = (bytes("salt", &opened.salt)?, bytes("body", &opened.body)?);
    crate::opener::reveal(envelope, &salt, &body).map_err(|e| match e {
        crate::seal::SealError::Commitment => {
            invalid("the disclosed body is not the one its sender committed to and signed")
        }
        e => invalid(format!("the sealed message: {e}")),
    })
}

fn bytes(field: &str, b64: &str) -> Result<Vec<u8>, DisclosureError> {
    B64.decode(b64).map_err(|_| invalid(format!("{field} is not base64")))
}

/// Checks an entry of `party`'s log against the envelope: the entry records
/// exactly this envelope (by its commitment, or inline), and the proof puts
/// it under a checkpoint a key of `party` signed. Returns the checkpoint's size.
fn check_logged(
    agreement: &Agreement,
    party: &str,
    index: u64,
    entry_bytes: &[u8],
    note: &[u8],
    proof: &[Vec<u8>],
    envelope: &Envelope,
) -> Result<u64, DisclosureError> {
    let at = |what: String| invalid(format!("{party}'s log entry {index}: {what}"));
    let p = agreement
        .party(party)
        .ok_or_else(|| invalid(format!("{party} is no party of the agreement given")))?;
    let cp = p
        .keys
        .iter()
        .find_map(|k| checkpoint::verify(note, &k.key).ok())
        .ok_or_else(|| at("its checkpoint is not signed by a key of the party".into()))?;
    let logged = LogEntry::decode(entry_bytes).map_err(|_| at("not a hotline.v1.LogEntry".into()))?;
    let commitment = Sha256::digest(envelope.encode_to_vec());
    let holds = match entry::outside_sha256(&logged) {
        Some(sha) => sha == commitment.as_slice(),
        None => entry::envelope(logged, None).ok().flatten().as_ref() == Some(envelope),
    };
    if !holds {
        return Err(at("it records another envelope than the one disclosed".into()));
    }
    let proof = tree::proof_from_wire(proof).map_err(|e| at(format!("the proof has {e}")))?;
    if index >= cp.size {
        return Err(at(format!("outside its checkpoint of size {}", cp.size)));
    }
    tlog_tiles::check_record(&proof, cp.size, cp.root, index, tlog_tiles::record_hash(entry_bytes))
        .map_err(|e| at(format!("the inclusion proof does not hold: {e}")))?;
    Ok(cp.size)
}

/// Checks `d` with the public keys of `agreement` only.
pub fn verify(d: &Disclosure, agreement: &Agreement) -> Result<Disclosed, DisclosureError> {
    if d.format != FORMAT {
        return Err(invalid(format!("format {:?}, not {FORMAT}", d.format)));
    }
    let envelope = Envelope::decode(&bytes("envelope", &d.envelope)?[..])
        .map_err(|_| invalid("envelope: not a hotline.v1.Envelope"))?;
    let body = readable(&envelope, d.opened.as_ref())?;
    let kind = Kind::of_payload_type(&body.payload_type)
        .ok_or_else(|| invalid(format!("envelope: payload type {:?}", body.payload_type)))?;
    let message = Message::decode(kind, &body.payload).map_err(|e| invalid(format!("envelope: {e}")))?;
    if message.id() != d.message_id {
        return Err(invalid(format!(
            "the envelope holds message {}, not {}",
            message.id(),
            d.message_id
        )));
    }
    let at = message
        .created_at()
        .and_then(crate::clock::from_proto)
        .ok_or_else(|| invalid("the message has no valid created_at"))?;
    let keyring = agreement.keyring();
    let signer = crate::envelope::verify(&envelope, &envelope.payload_type, &keyring, at)
        .map_err(|e| invalid(format!("the envelope's signature: {e}")))?;
    if signer.party != message.from() {
        return Err(invalid(format!(
            "signed by {}, but the message says it is from {}",
            signer.party,
            message.from()
        )));
    }
    // The discloser's log: the sender's, or a recipient's.
    let note = d.logged.checkpoint.as_bytes();
    let origin = checkpoint::origin_of(note).unwrap_or_default();
    let logger = agreement.party_by_origin(origin).map(|p| p.id.clone()).ok_or_else(|| {
        invalid(format!(
            "the log's checkpoint is of {origin:?}, no party of the agreement"
        ))
    })?;
    if logger != message.from() && !message.to().contains(&logger) {
        return Err(invalid(format!("{logger} neither sent nor received this message")));
    }
    let proof: Vec<Vec<u8>> = d
        .logged
        .proof
        .iter()
        .map(|h| bytes("proof", h))
        .collect::<Result<_, _>>()?;
    let entry_bytes = bytes("entry", &d.logged.entry)?;
    let size = check_logged(
        agreement,
        &logger,
        d.logged.index,
        &entry_bytes,
        note,
        &proof,
        &envelope,
    )?;
    let payload_sha256 = Sha256::digest(&envelope.payload).to_vec();
    let mut receipted_by = Vec::new();
    for (i, r) in d.receipts.iter().enumerate() {
        let bad = |what: String| invalid(format!("receipt {i}: {what}"));
        let env = Envelope::decode(&bytes("receipt", r)?[..]).map_err(|_| bad("not a hotline.v1.Envelope".into()))?;
        let receipt = Receipt::decode(&env.payload[..]).map_err(|_| bad("not a hotline.v1.Receipt".into()))?;
        let received = receipt
            .received_at
            .as_ref()
            .and_then(crate::clock::from_proto)
            .ok_or_else(|| bad("no valid received_at".into()))?;
        let by = crate::envelope::verify(&env, RECEIPT_TYPE, &keyring, received)
            .map_err(|e| bad(format!("its signature: {e}")))?;
        if by.party != receipt.from
            || receipt.message_id != d.message_id
            || receipt.payload_sha256 != payload_sha256
            || !message.to().contains(&receipt.from)
        {
            return Err(bad(format!(
                "signed by {} for message {}: not a recipient's receipt of this message",
                by.party, receipt.message_id
            )));
        }
        let note = receipt.checkpoint.as_ref().map(|c| c.note.clone()).unwrap_or_default();
        let size = check_logged(
            agreement,
            &receipt.from,
            receipt.log_index,
            &receipt.log_entry,
            &note,
            &receipt.inclusion_proof,
            &envelope,
        )?;
        receipted_by.push((receipt.from.clone(), receipt.log_index, size));
    }
    Ok(Disclosed {
        message_id: d.message_id.clone(),
        kind: kind.as_str().to_owned(),
        from: message.from().to_owned(),
        to: message.to().to_vec(),
        logged_by: (logger, d.logged.index, size),
        receipted_by,
        text: message_json(&message),
    })
}

/// The message's fields, as JSON for a person to read.
fn message_json(m: &Message) -> serde_json::Value {
    match m {
        Message::Notice(n) => serde_json::json!({
            "title": n.title, "summary": n.summary, "tlp": crate::message::tlp_label(n.tlp()),
            "severity": n.severity().as_str_name(), "author": n.author,
            "indicators": n.indicators.iter().map(|i| format!("{}: {}", i.r#type, i.value)).collect::<Vec<_>>(),
        }),
        Message::Response(r) => serde_json::json!({
            "notice_id": r.notice_id, "status": r.status().as_str_name(), "text": r.text, "author": r.author,
        }),
        Message::Amendment(a) => {
            serde_json::json!({"version": a.version, "action": a.action().as_str_name(), "reason": a.reason})
        }
        Message::Roster(r) => serde_json::json!({"version": r.version}),
    }
}
