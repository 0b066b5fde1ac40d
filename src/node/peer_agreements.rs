//! Which agreement each peer says it holds. Every delivery and its answer
//! carry the sender's agreement version and text hash; another text under
//! the version number we hold is a fork, reported once per peer and text.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use crate::proto::AgreementRef;

/// What each peer said of its agreement.
#[derive(Default)]
pub struct PeerAgreements {
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    versions: HashMap<String, u64>,
    forks: HashSet<(String, Vec<u8>)>,
}

impl PeerAgreements {
    /// Records what `party` said it holds; the first time it names another
    /// text under the version number of `ours`, says so in words.
    pub fn note(&self, party: &str, theirs: Option<&AgreementRef>, ours: &AgreementRef) -> Option<String> {
        let theirs = theirs?;
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        match seen.versions.get_mut(party) {
            Some(version) => *version = theirs.version,
            None => {
                seen.versions.insert(party.to_owned(), theirs.version);
            }
        }
        let fork = theirs.version == ours.version && theirs.text_sha256 != ours.text_sha256;
        (fork && seen.forks.insert((party.to_owned(), theirs.text_sha256.clone()))).then(|| {
            format!(
                "{party} holds agreement version {} with text SHA-256 {}; ours is {}",
                theirs.version,
                hex::encode(&theirs.text_sha256),
                hex::encode(&ours.text_sha256)
            )
        })
    }

    /// Refuses a reference of the wrong shape before anything is noted or
    /// logged of it: its text hash is a SHA-256, 32 bytes.
    pub fn check_shape(theirs: Option<&AgreementRef>) -> Result<(), super::error::NodeError> {
        match theirs {
            Some(r) if r.text_sha256.len() != 32 => Err(super::error::NodeError::BadAgreementRef(format!(
                "field agreement.text_sha256 has {} bytes; a SHA-256 has 32",
                r.text_sha256.len()
            ))),
            _ => Ok(()),
        }
    }

    /// The version `party` last said it holds; 0 before it said any.
    pub fn version_of(&self, party: &str) -> u64 {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.versions.get(party).copied().unwrap_or(0)
    }
}
