//! Why a log operation failed, and why a state change refused to commit
//! with its entries.

use std::path::{Path, PathBuf};

use crate::store::StoreError;

/// Why a log operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A requested index or size is outside the tree.
    #[error("{what} {value} is out of range: {valid}")]
    OutOfRange {
        /// The request field.
        what: &'static str,
        /// Its value.
        value: u64,
        /// The valid range, for the message.
        valid: String,
    },
    /// A request is malformed whatever the tree's size.
    #[error("{what} {value} is invalid: {valid}")]
    Invalid {
        /// The request field.
        what: &'static str,
        /// Its value.
        value: u64,
        /// What it must be, for the message.
        valid: String,
    },
    /// The stored log does not match its own signed checkpoint.
    #[error("log at {}: {what}", path.display())]
    Corrupt {
        /// The data directory.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// The writer has stopped (the node is shutting down).
    #[error("the log writer has stopped")]
    Closed,
    /// The identity key refused to sign (a token removed or logged out).
    #[error("signing: {0}")]
    Signing(String),
    /// The node is starting: it has not yet compared its log with its peers'
    /// or published its configured roster (what operators are told; a delivery waits instead).
    #[error("the log takes no entries until the node has compared it with what its peers witnessed")]
    Held,
    /// An entry is larger than a tlog-tiles entry bundle holds even with its
    /// envelope kept beside it; nothing was appended, so the log stays exportable.
    #[error("an entry of {bytes} bytes is larger than the 65,535 bytes a tlog-tiles entry bundle holds")]
    TooLarge {
        /// The entry's size.
        bytes: usize,
    },
    /// No identity key of this node is valid now in the agreement in force:
    /// nothing is signed, since what an expired key signs never verifies.
    #[error(
        "no identity key of this node is valid at {at} in the agreement in force ({keys}); nothing was signed: start the node with the rotation's next key"
    )]
    NoValidKey {
        /// The instant, RFC 3339.
        at: String,
        /// The keys held, with their windows.
        keys: String,
    },
    /// A state change that had to commit with the entries refused; nothing was appended.
    #[error(transparent)]
    Refused(#[from] StateError),
}

/// Why a state change refused to commit with its log entries. Callers match
/// on it: a duplicate is a replay or a race, not a failure.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The row exists already (a replayed message, a receipt recorded twice).
    #[error("{0} is already recorded")]
    Duplicate(String),
    /// What was to change has moved on (a deadline met or missed meanwhile).
    #[error("{0} is no longer running")]
    NotRunning(String),
    /// What is stored cannot be used as it is (a kept proposal that no longer parses).
    #[error("{0}")]
    Invalid(String),
    /// The database failed.
    #[error("database: {0}")]
    Storage(#[from] crate::db::Error),
}

/// The keys that sign at `at`, or why none may.
impl LogError {
    /// The identity key's refusal to sign, in words.
    pub fn signing(e: impl std::fmt::Display) -> Self {
        Self::Signing(e.to_string())
    }
}

pub(crate) fn signing_keys(
    keys: &crate::own_keys::OwnKeys,
    at: time::OffsetDateTime,
) -> Result<Vec<crate::keys::IdentityKey>, LogError> {
    let valid = keys.valid_at(at);
    match valid.is_empty() {
        true => Err(no_valid_key(keys, at)),
        false => Ok(valid),
    }
}

/// Why nothing may be signed at `at` with `keys`: none is valid then.
pub(crate) fn no_valid_key(keys: &crate::own_keys::OwnKeys, at: time::OffsetDateTime) -> LogError {
    LogError::NoValidKey {
        at: crate::clock::rfc3339(at),
        keys: keys.describe(),
    }
}

pub(crate) fn corrupt(dir: &Path, what: impl Into<String>) -> LogError {
    LogError::Corrupt {
        path: dir.to_owned(),
        what: what.into(),
    }
}

pub(crate) fn out_of_range(what: &'static str, value: u64, valid: String) -> LogError {
    LogError::OutOfRange { what, value, valid }
}

pub(crate) fn tree_error(dir: &Path, e: tlog_tiles::Error) -> LogError {
    corrupt(dir, format!("stored tree: {e}"))
}
