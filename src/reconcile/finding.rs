//! What a reconciliation reports: what was checked, what each pair of
//! parties exchanged and each party missed as both sides logged it, each
//! contradiction between logs as a finding with its signed proof, and why
//! one could not run at all.

use std::collections::BTreeMap;
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
    /// One side logged a deadline as missed; the other, whose log runs past it, did not.
    ClockDisagrees,
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

/// The outcome: what was checked, and every finding.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Reconciliation {
    /// Per party, its export's size and root.
    pub logs: BTreeMap<String, (u64, String)>,
    /// Messages logged as sent to a party whose export was given.
    pub messages: u64,
    /// Of those, logged as received under the same commitment.
    pub delivered: u64,
    /// Of those, neither logged by the recipient nor receipted: undelivered, not denied.
    pub undelivered: u64,
    /// Receipts checked: their signature, their signer's checkpoint, and the inclusion proof.
    pub receipts: u64,
    /// Checkpoints of one party held by another, checked against its export.
    pub checkpoints: u64,
    /// Facts past the end of an export (a checkpoint or receipt of a size
    /// its party's export has not reached, taken before it was signed):
    /// neither held nor contradicted; a later export settles them.
    pub beyond: u64,
    /// Every contradiction, grouped by kind.
    pub findings: Vec<Finding>,
    /// What each party sent each other, as both logs show it.
    pub pairs: Vec<Pair>,
    /// Each party's missed steps, as its own log and its counterparts' show them.
    pub compliance: Vec<Compliance>,
}

/// How many of one kind of step a party missed, as each side logged it.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Compliance {
    /// The party that owed the steps.
    pub party: String,
    /// Which step: `acknowledge`, `response`, `comm_check_answer`, `promise`.
    pub deadline: String,
    /// Missed, as the party's own log shows.
    pub own: u64,
    /// Missed, as the logs of the parties it owed them to show.
    pub counterparts: u64,
}

/// The messages one party sent another, as the two logs show them.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Pair {
    /// The sender.
    pub from: String,
    /// The recipient.
    pub to: String,
    /// Messages the sender logged as sent to it.
    pub sent: u64,
    /// Of those, logged by the recipient under the same commitment.
    pub received: u64,
    /// Of those, whose receipt the sender holds.
    pub receipted: u64,
    /// Notices sent, and of those, answered by a response the recipient logged as sent.
    pub notices: u64,
    /// Of those notices, answered.
    pub answered: u64,
    /// Findings about this pair's messages (indexes into the findings).
    pub findings: Vec<usize>,
}
