//! The agreement versions a reconciliation trusts: the version the auditor
//! gives, then each later version some export adopted that follows it by
//! the chain rule. A party that joined by amendment is known once a version
//! naming it is reached; the keys of a party are those of every version, so
//! a checkpoint signed before a rotation still verifies.

use time::OffsetDateTime;

use crate::agreement::{Party, SignedAgreement};
use crate::keys::{Keyring, VerifierKey};

/// The chain of versions, from the one trusted.
pub struct Chain {
    versions: Vec<SignedAgreement>,
}

impl Chain {
    /// Starts from the version the auditor trusts.
    pub fn new(trusted: SignedAgreement) -> Self {
        Self {
            versions: vec![trusted],
        }
    }

    /// Takes in the notes of adopted versions (each with the time it was
    /// adopted), keeping each that follows the newest held.
    pub fn extend(&mut self, adopted: &[(Vec<u8>, OffsetDateTime)]) {
        loop {
            let newest = self.versions.last().expect("a chain holds its first version");
            let next = adopted.iter().find_map(|(note, at)| {
                let s = SignedAgreement::parse(note).ok()?;
                (s.agreement.version == newest.agreement.version + 1 && s.verify_successor(newest, *at).is_ok())
                    .then_some(s)
            });
            match next {
                Some(s) => self.versions.push(s),
                None => return,
            }
        }
    }

    /// The party whose log has this checkpoint origin, in the newest version naming it.
    pub fn party_by_origin(&self, origin: &str) -> Option<&Party> {
        self.versions
            .iter()
            .rev()
            .find_map(|v| v.agreement.party_by_origin(origin))
    }

    /// Every key any version lists for `party`.
    pub fn keys(&self, party: &str) -> Vec<&VerifierKey> {
        let mut keys: Vec<&VerifierKey> = Vec::new();
        for p in self.versions.iter().filter_map(|v| v.agreement.party(party)) {
            for k in &p.keys {
                if !keys.contains(&&k.key) {
                    keys.push(&k.key);
                }
            }
        }
        keys
    }

    /// The keyring of the newest version: what a receipt's signature is checked against.
    pub fn keyring(&self) -> Keyring {
        self.versions
            .last()
            .expect("a chain holds its first version")
            .agreement
            .keyring()
    }

    /// The newest version held.
    pub fn newest(&self) -> u64 {
        self.versions.last().map_or(0, |v| v.agreement.version)
    }
}
