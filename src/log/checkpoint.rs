//! Signed checkpoints: a C2SP tlog-checkpoint (origin, tree size, base64 root
//! hash) wrapped in a C2SP signed note by the party key whose name is the origin.

use tlog_tiles::{Checkpoint, Hash};

use crate::keys::{IdentityKey, VerifierKey};
use crate::note::{NoteError, SignedNote};

/// Why a checkpoint was refused.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The note or its checkpoint body is malformed.
    #[error("malformed checkpoint: {0}")]
    Malformed(String),
    /// The signature is missing or does not verify.
    #[error("checkpoint signature: {0}")]
    Signature(#[from] NoteError),
    /// The origin line is not the expected log's.
    #[error("checkpoint origin {got:?} is not the expected {expected:?}")]
    Origin {
        /// What was found.
        got: String,
        /// What was expected.
        expected: String,
    },
}

/// A checkpoint whose signature was checked.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifiedCheckpoint {
    /// The log origin (the signer's key name).
    pub origin: String,
    /// Tree size.
    pub size: u64,
    /// RFC 6962 root hash of the first `size` entries.
    pub root: Hash,
    /// The signed note, exactly as signed.
    pub note: Vec<u8>,
}

/// Signs the checkpoint of a tree of `size` entries with root `root` by
/// every key of `keys` (two during a key rotation), all named by the origin;
/// a key on a token may refuse.
pub fn sign(keys: &[IdentityKey], size: u64, root: Hash) -> Result<Vec<u8>, super::error::LogError> {
    let origin = keys.first().map(|k| k.name()).unwrap_or_default();
    let body = Checkpoint::new(origin, size, root, "")
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let text = String::from_utf8(body).unwrap_or_default();
    let mut note = SignedNote::new(&text).expect("a checkpoint body is a valid note text");
    for key in keys {
        note.sign(key)
            .map_err(|e| super::error::LogError::Signing(e.to_string()))?;
    }
    Ok(note.to_bytes())
}

/// Parses a checkpoint note and verifies it against `key`, whose name must be the origin.
pub fn verify(note: &[u8], key: &VerifierKey) -> Result<VerifiedCheckpoint, CheckpointError> {
    let parsed = SignedNote::parse(note).map_err(|e| CheckpointError::Malformed(e.to_string()))?;
    let body = Checkpoint::from_bytes(parsed.text().as_bytes())
        .map_err(|_| CheckpointError::Malformed("expected origin, tree size and base64 root hash lines".into()))?;
    if body.origin() != key.name() {
        return Err(CheckpointError::Origin {
            got: body.origin().to_owned(),
            expected: key.name().to_owned(),
        });
    }
    parsed.verify(std::slice::from_ref(key))?;
    Ok(VerifiedCheckpoint {
        origin: body.origin().to_owned(),
        size: body.size(),
        root: *body.hash(),
        note: note.to_vec(),
    })
}

/// Reads the origin line of a checkpoint note without verifying it, to pick the key.
pub fn origin_of(note: &[u8]) -> Option<&str> {
    std::str::from_utf8(note).ok()?.lines().next()
}

/// The tree size a checkpoint note states (its second line), unverified:
/// for reading a checkpoint a peer's signature was already checked on.
pub fn parse_size(note: &[u8]) -> Option<u64> {
    std::str::from_utf8(note).ok()?.lines().nth(1)?.parse().ok()
}
