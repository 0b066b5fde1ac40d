//! What a reconciliation reports: each contradiction between logs as a
//! finding with its signed proof, and why one could not run at all.

use std::path::PathBuf;

/// Why a reconciliation could not run at all (a contradiction is a finding, not an error).
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// An export does not verify on its own.
    #[error("export {path}: {source}")]
    Export {
        /// The export directory.
        path: PathBuf,
        /// What `audit verify` found.
        source: crate::log::verify::VerifyError,
    },
    /// An export's checkpoint names no party of the agreement.
    #[error("export {path}: its checkpoint is signed for {origin:?}, which no party of the agreement uses")]
    UnknownOrigin {
        /// The export directory.
        path: PathBuf,
        /// The origin line of its checkpoint.
        origin: String,
    },
    /// Two exports are of one party's log.
    #[error("exports {0} and {1} are both of {2}'s log")]
    Twice(PathBuf, PathBuf, String),
}

/// What kind of contradiction a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A recipient's export lacks a message its own signed receipt says it logged.
    Denied,
    /// A recipient logged, under a message's id, another envelope than its sender did.
    OtherCommitment,
    /// A party logged a message as received from a sender whose export does not hold it as sent.
    NotSent,
    /// Two checkpoints of one log, both signed by its party, that no history joins.
    Fork,
    /// A receipt that does not hold: its signature, checkpoint or inclusion proof.
    BadReceipt,
    /// Two parties adopted different texts as one version of the agreement.
    AgreementFork,
}

/// One contradiction between logs, with the signed statements that prove it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Finding {
    /// Its kind.
    pub kind: Kind,
    /// The party whose log the finding is about.
    pub party: String,
    /// The message it concerns, if any.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message_id: String,
    /// What cannot be true, in a sentence.
    pub says: String,
    /// The signed statements (checkpoints as signed notes, entries and
    /// receipts as hex) that prove it, each named.
    pub evidence: Vec<(String, String)>,
}
