//! Why an agreement was refused; every message names the field or party at fault.

use std::path::PathBuf;

use crate::note::NoteError;

/// Why an agreement was refused.
#[derive(Debug, thiserror::Error)]
pub enum AgreementError {
    /// The agreement file could not be read or written.
    #[error("agreement file {}: {source}", path.display())]
    Io {
        /// The file at fault.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The text is not valid TOML for the schema (the message names line and field).
    #[error("agreement is not valid: {0}")]
    Toml(String),
    /// A field has a value the schema allows but hotline does not.
    #[error("agreement field {field}: {reason}")]
    Field {
        /// The field at fault.
        field: String,
        /// Why it is wrong.
        reason: String,
    },
    /// The signed-note wrapping is broken.
    #[error("agreement note: {0}")]
    Note(#[from] NoteError),
    /// A party's signature does not verify over this text.
    #[error(
        "signature of party {party} (key {key}) does not verify: the agreement text changed after signing, or the signature is corrupt"
    )]
    BadSignature {
        /// The party.
        party: String,
        /// The key, as written.
        key: String,
    },
    /// Fewer parties signed than the agreement requires.
    #[error("agreement is signed by {signed} of the {required} parties required; missing: {}", missing.join(", "))]
    NotSigned {
        /// How many parties of the agreement signed.
        signed: usize,
        /// How many signatures the quorum needs.
        required: usize,
        /// The parties whose signatures are missing.
        missing: Vec<String>,
    },
    /// A version that is not the one after the version it must follow.
    #[error("agreement version {version} cannot follow here: version {expected} is next")]
    NotNext {
        /// The version found.
        version: u64,
        /// The version that must come next.
        expected: u64,
    },
    /// A version whose `previous` is not the hash of the version before it.
    #[error(
        "agreement version {version} does not chain from version {previous}: its previous is not the SHA-256 of that version's text"
    )]
    DoesNotChain {
        /// The version found.
        version: u64,
        /// The version it had to name.
        previous: u64,
    },
    /// One version of a chain is at fault.
    #[error("version {version}: {source}")]
    InChain {
        /// The version at fault.
        version: u64,
        /// What is wrong with it.
        source: Box<AgreementError>,
    },
    /// A version adds parties that did not sign it.
    #[error("the agreement adds parties that did not sign it: {}", .0.join(", "))]
    AddedWithoutConsent(Vec<String>),
    /// The local key is not one the agreement lists.
    #[error("key {0} is not listed for any party of the agreement")]
    NotAParty(String),
}

pub(crate) fn field(field: impl Into<String>, reason: impl Into<String>) -> AgreementError {
    AgreementError::Field {
        field: field.into(),
        reason: reason.into(),
    }
}
