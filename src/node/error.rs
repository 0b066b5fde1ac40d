//! Why a node operation failed, in the node's own terms. `status.rs` maps
//! each variant to a gRPC status; internal failures never reach a caller
//! with their text.

use crate::envelope::{AMENDMENT_TYPE, EnvelopeError, NOTICE_TYPE, RESPONSE_TYPE, ROSTER_TYPE};
use crate::log::LogError;
use crate::message::MessageError;

/// Why a node operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A message breaks one of its own rules (a field, its size, TLP).
    #[error(transparent)]
    Message(#[from] MessageError),
    /// A required request field is absent.
    #[error("field {0} is required")]
    MissingField(&'static str),
    /// The envelope's payload type is not one that is delivered.
    #[error(
        "payload type {0:?} cannot be delivered; expected {NOTICE_TYPE}, {RESPONSE_TYPE}, {AMENDMENT_TYPE} or {ROSTER_TYPE}"
    )]
    NotDeliverable(String),
    /// The envelope is not signed by a key of the agreement valid now.
    #[error("envelope from {caller}: {source}")]
    BadSignature {
        /// The delivering party.
        caller: String,
        /// What is wrong with the signatures.
        source: EnvelopeError,
    },
    /// The envelope's signatures are more, larger or other than the agreement allows.
    #[error("field signatures: {0}")]
    Signatures(String),
    /// The envelope is signed by a party other than the one delivering it.
    #[error("envelope is signed by party {signer} but was delivered by {caller}")]
    SignerIsNotCaller {
        /// Whose key signed.
        signer: String,
        /// Who delivered.
        caller: String,
    },
    /// The message says it is from a party other than the one delivering it.
    #[error("field from is {from:?} but the sender is {caller}")]
    FromIsNotCaller {
        /// What the message says.
        from: String,
        /// Who delivered.
        caller: String,
    },
    /// The message is not addressed to us.
    #[error("message {id} is addressed to {} and not to {us}", to.join(", "))]
    NotForUs {
        /// The message id.
        id: String,
        /// Its recipients.
        to: Vec<String>,
        /// Our party id.
        us: String,
    },
    /// The message carries no usable `created_at`.
    #[error("field created_at is missing or out of range")]
    NoCreatedAt,
    /// The message was written further in the future than the agreed clock skew.
    #[error("field created_at {at} is ahead of our clock by more than the agreed clock_skew of {skew}")]
    FromTheFuture {
        /// The claimed instant, RFC 3339.
        at: String,
        /// The agreed skew, as the agreement writes it.
        skew: String,
    },
    /// The payload is over the agreed size.
    #[error("payload is {size} bytes, over the agreed max_notice_bytes of {max}")]
    PayloadTooLarge {
        /// Its size in bytes.
        size: usize,
        /// The agreed `max_notice_bytes`.
        max: u64,
    },
    /// A delivered message reuses the id of a different message.
    #[error("message id {0} was already used for a different message")]
    IdReused(String),
    /// A notice an operator sends reuses the id of a different message.
    #[error("message id {0} is already used for a different message; send with a new id, or none")]
    IdTaken(String),
    /// The sender's checkpoint does not verify; the text says why.
    #[error("field sender_checkpoint: {0}")]
    SenderCheckpoint(String),
    /// A recipient is not a peer of the agreement.
    #[error("field to: {0} is not a peer party of the agreement")]
    NotAPeer(String),
    /// An operator names a recipient that is not a peer.
    #[error("{party} is not a peer party of the agreement; the peers are {peers}")]
    NoSuchRecipient {
        /// The party named.
        party: String,
        /// The agreement's peers, comma-separated.
        peers: String,
    },
    /// An operator typed the start of several messages' ids.
    #[error("{prefix} is the start of several messages' ids ({ids}); give more of it")]
    AmbiguousId {
        /// What was typed.
        prefix: String,
        /// The ids it starts, comma-separated.
        ids: String,
    },
    /// An operator names a party an amendment removed.
    #[error("{party} was removed from the agreement by version {version}; the peers now are {peers}")]
    RemovedRecipient {
        /// The party named.
        party: String,
        /// The version that no longer names it.
        version: u64,
        /// The agreement's peers, comma-separated.
        peers: String,
    },
    /// A delivered message names a recipient outside the agreement.
    #[error("field to: {0} is not a party of the agreement")]
    UnknownRecipient(String),
    /// A response comes from a party the notice it answers was not sent to.
    #[error("{party} was not a recipient of notice {notice}; only its recipients may answer it")]
    NotARecipient {
        /// The responding party.
        party: String,
        /// The notice it answers.
        notice: String,
    },
    /// A party carries others' envelopes, or asks us to, though the
    /// agreement does not let it (or us) relay.
    #[error("{0} is not a relay: the agreement's norms.relays names the parties that carry others' envelopes")]
    NotARelay(String),
    /// As a relay, we could not reach the recipient, or it did not answer.
    #[error("the relay could not reach {party}: {why}")]
    RecipientUnreachable {
        /// The recipient.
        party: String,
        /// The failure, in words.
        why: String,
    },
    /// A relay names a sender it cannot carry for (itself, us, or no party).
    #[error("field sender: {0} is not a party a relay can carry envelopes for")]
    BadRelaySender(String),
    /// This node never adopted that agreement version.
    #[error("this node has not adopted agreement version {asked}; the latest it holds is {held}")]
    NoSuchAgreement {
        /// The version asked for.
        asked: u64,
        /// The latest version adopted.
        held: u64,
    },
    /// An amendment, or the version it proposes, breaks the agreement's rules.
    #[error("amendment: {0}")]
    BadAmendment(String),
    /// The agreement a peer says it holds is named in a malformed reference.
    #[error("{0}")]
    BadAgreementRef(String),
    /// No pending proposal has this version or hash.
    #[error("no pending proposal {0}; hotline agreement pending lists them")]
    NoSuchProposal(String),
    /// A roster, or the update that carries it, breaks the roster's rules or is not its party's.
    #[error(transparent)]
    BadRoster(#[from] crate::roster::RosterError),
    /// A roster update's roster is not for the party that sends it, or not the version it names.
    #[error("roster update {id}: {reason}")]
    RosterMismatch {
        /// The update's id (or "publish").
        id: String,
        /// What does not match.
        reason: String,
    },
    /// A roster version not above the one held.
    #[error("roster version {version} of {party} is not above version {held}, which is in force; bump its version")]
    RosterNotNewer {
        /// The party.
        party: String,
        /// The version offered.
        version: u64,
        /// The version held.
        held: u64,
    },
    /// A local operator certificate that no contact of our roster uses.
    #[error(
        "operator certificate {name:?} (SHA-256 {fingerprint}) is named by no contact of {party}'s roster{}; whoever holds {party}'s identity key adds it with hotline roster set",
        match version { 0 => " (none is published)".to_owned(), v => format!(" version {v}") }
    )]
    NotInRoster {
        /// The certificate's name in hotline.toml.
        name: String,
        /// Its SHA-256, hex.
        fingerprint: String,
        /// Our party.
        party: String,
        /// The roster version in force (0: none).
        version: u64,
    },
    /// No roster of this party is held.
    #[error("no roster of {0} is held")]
    NoRoster(String),
    /// No notice has this id.
    #[error("no notice with id {0}")]
    NoSuchNotice(String),
    /// Operators respond to notices they received, not to their own.
    #[error("notice {0} was sent by us; respond to notices you received")]
    OwnNotice(String),
    /// A delivered response answers a notice this node did not send.
    #[error("response {response} answers unknown notice {notice}: this node sent no such notice")]
    UnknownNotice {
        /// The response id.
        response: String,
        /// The notice it names.
        notice: String,
    },
    /// A message above TLP:CLEAR cannot be sealed to one of its readers.
    #[error(
        "{0} lists no encryption key valid now in the agreement in force: a message above TLP:CLEAR is sealed to each of its recipients, so it cannot be sent to {0}"
    )]
    NoEncryptionKey(String),
    /// This node holds no encryption key (`encryption_key` in hotline.toml).
    #[error("this node holds no encryption key ({0}): it can neither seal nor open messages above TLP:CLEAR")]
    NoOwnEncryptionKey(String),
    /// A sealed message does not open for us, or says other than its body.
    #[error("sealed message: {0}")]
    Sealed(String),
    /// The log or the database failed, or the node is stopping.
    #[error(transparent)]
    Log(#[from] LogError),
    /// Something inside the node failed (a task panicked); logged, never shown to callers.
    #[error("{0}")]
    Internal(String),
    /// Startup failed: configuration, agreement, keys or certificates.
    #[error("{0}")]
    Setup(String),
    /// At start, the log is behind or not a prefix of what peers witnessed of it.
    #[error("{0}")]
    RolledBack(String),
}

/// Why a receipt for one of our messages was refused; the delivery is retried.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptError {
    /// Its signatures are more or other than the agreement allows.
    #[error("receipt: {0}")]
    Signatures(NodeError),
    /// It is not signed by a key of the agreement valid now.
    #[error("receipt: {0}")]
    Signature(#[from] crate::envelope::EnvelopeError),
    /// Another party's key signed it.
    #[error("receipt signed by {signer} instead of {party}")]
    WrongSigner {
        /// Whose key signed.
        signer: String,
        /// Who we delivered to.
        party: String,
    },
    /// Its payload is not a receipt.
    #[error("receipt payload: {0}")]
    Payload(#[from] prost::DecodeError),
    /// It names another message, sender, recipient or payload.
    #[error("receipt from {party} does not match message {id}")]
    Mismatch {
        /// Who we delivered to.
        party: String,
        /// Our message.
        id: String,
    },
    /// The receiver's checkpoint does not verify.
    #[error("receipt checkpoint: {0}")]
    Checkpoint(String),
    /// The log entry it quotes does not hold our envelope byte for byte.
    #[error("receipt log entry does not hold our envelope verbatim")]
    NotOurEnvelope,
    /// The inclusion proof is malformed or does not prove the entry.
    #[error("receipt inclusion proof: {0}")]
    Proof(String),
    /// Logging it failed.
    #[error(transparent)]
    Log(#[from] LogError),
}

impl From<crate::db::Error> for NodeError {
    fn from(e: crate::db::Error) -> Self {
        NodeError::Log(LogError::Refused(e.into()))
    }
}
