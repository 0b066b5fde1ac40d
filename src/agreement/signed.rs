//! The agreement as stored and exchanged: its text wrapped in a C2SP signed
//! note, one signature line per party, and the quorum rule.

use std::path::Path;

use time::OffsetDateTime;

use super::error::AgreementError;
use super::schema::{Agreement, Party};
use crate::keys::{IdentityKey, TrustedKey, VerifierKey};
use crate::note::{NoteError, SignedNote};
use sha2::{Digest, Sha256};

/// The keys of the parties of `agreements` valid at `at`.
fn signing_keys(agreements: &[&Agreement], at: OffsetDateTime) -> Vec<VerifierKey> {
    let mut keys: Vec<VerifierKey> = Vec::new();
    for k in agreements.iter().flat_map(|a| &a.parties).flat_map(|p| &p.keys) {
        if k.valid_at(at) && !keys.contains(&k.key) {
            keys.push(k.key.clone());
        }
    }
    keys
}

/// An agreement with its signed-note signatures, as stored on disk.
#[derive(Debug)]
pub struct SignedAgreement {
    /// The validated agreement.
    pub agreement: Agreement,
    note: SignedNote,
}

impl SignedAgreement {
    /// Parses a signed agreement, or a plain TOML agreement not yet signed.
    pub fn parse(bytes: &[u8]) -> Result<Self, AgreementError> {
        let note = match SignedNote::parse(bytes) {
            Ok(note) => note,
            Err(_) => {
                let text =
                    std::str::from_utf8(bytes).map_err(|_| AgreementError::Toml("agreement is not UTF-8".into()))?;
                SignedNote::new(text)?
            }
        };
        let agreement = Agreement::parse(note.text())?;
        Ok(Self { agreement, note })
    }

    /// Reads an agreement file.
    pub fn load(path: &Path) -> Result<Self, AgreementError> {
        let bytes = std::fs::read(path).map_err(|source| AgreementError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&bytes)
    }

    /// The exact text the parties sign.
    pub fn text(&self) -> &str {
        self.note.text()
    }

    /// The signed note: text, blank line, one signature line per signer.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.note.to_bytes()
    }

    /// Adds the signature of `key`, which must be a key of one of the parties.
    pub fn sign(&mut self, key: &IdentityKey) -> Result<(), AgreementError> {
        let listed = self.agreement.keyring().get(&key.verifier().key_id()).is_some();
        if !listed {
            return Err(AgreementError::NotAParty(key.verifier().key_id()));
        }
        Ok(self.note.sign(key)?)
    }

    /// Adds the signature of `key`, a key of this version or of `prev`, the
    /// version it would follow: a party that a version removes may still
    /// sign it (as the quorum of `prev` may require).
    pub fn sign_following(&mut self, key: &IdentityKey, prev: &Agreement) -> Result<(), AgreementError> {
        let id = key.verifier().key_id();
        if self.agreement.keyring().get(&id).is_none() && prev.keyring().get(&id).is_none() {
            return Err(AgreementError::NotAParty(id));
        }
        Ok(self.note.sign(key)?)
    }

    /// Adds the signatures of `other`, the same text, made by a key valid at
    /// `at` of a party of this version or of `prev` (the version it would
    /// follow); a signature by one of those keys that does not verify
    /// refuses `other`, and any other signature is left out.
    pub fn merge(
        &mut self,
        other: &SignedAgreement,
        prev: &Agreement,
        at: OffsetDateTime,
    ) -> Result<(), AgreementError> {
        let keys = signing_keys(&[&self.agreement, prev], at);
        self.note = self.note.merge(&other.note, &keys)?;
        Ok(())
    }

    /// Adds every signature of `other`, the same text, whose signatures were
    /// checked already (both were merged from checked notes).
    pub fn union(&mut self, other: &SignedAgreement) -> Result<(), AgreementError> {
        self.note = self.note.union(&other.note, |_| true)?;
        Ok(())
    }

    /// The parties of this version or of `prev` whose signature verifies,
    /// by a key valid at `at`: who has approved it so far.
    pub fn approved_by(&self, prev: &Agreement, at: OffsetDateTime) -> Result<Vec<String>, AgreementError> {
        let mut parties: Vec<Party> = prev.parties.clone();
        parties.extend(
            self.agreement
                .parties
                .iter()
                .filter(|p| prev.party(&p.id).is_none())
                .cloned(),
        );
        self.signers_among(&parties, at)
    }

    /// The SHA-256 of the text the parties sign: what the next version names
    /// as its `previous`.
    pub fn text_sha256(&self) -> [u8; 32] {
        Sha256::digest(self.text().as_bytes()).into()
    }

    /// The parties whose signature, by a key valid at `at`, verifies over the exact text.
    pub fn signers(&self, at: OffsetDateTime) -> Result<Vec<String>, AgreementError> {
        self.signers_among(&self.agreement.parties, at)
    }

    /// Which of `parties` signed this text with one of their keys valid at `at`.
    fn signers_among(&self, parties: &[Party], at: OffsetDateTime) -> Result<Vec<String>, AgreementError> {
        let valid: Vec<&TrustedKey> = parties
            .iter()
            .flat_map(|p| &p.keys)
            .filter(|k| k.valid_at(at))
            .collect();
        let keys: Vec<VerifierKey> = valid.iter().map(|k| k.key.clone()).collect();
        let party_of = |key: &str| {
            valid
                .iter()
                .find(|k| k.key.key_id() == key)
                .map(|k| k.party.clone())
                .unwrap_or_default()
        };
        let verified = match self.note.verify(&keys) {
            Ok(verified) => verified,
            Err(NoteError::NotSigned(_)) => Vec::new(),
            Err(NoteError::InvalidSignature(key)) => {
                return Err(AgreementError::BadSignature {
                    party: party_of(&key),
                    key,
                });
            }
            Err(e) => return Err(e.into()),
        };
        let signed: Vec<String> = verified.iter().map(|k| party_of(&k.key_id())).collect();
        Ok(parties
            .iter()
            .filter(|p| signed.contains(&p.id))
            .map(|p| p.id.clone())
            .collect())
    }

    /// Checks that the quorum of parties signed the exact text; what a node
    /// requires before it runs.
    pub fn verify(&self, at: OffsetDateTime) -> Result<Vec<String>, AgreementError> {
        let signed = self.signers(at)?;
        if signed.len() < self.agreement.quorum {
            return Err(AgreementError::NotSigned {
                signed: signed.len(),
                required: self.agreement.quorum,
                missing: self
                    .agreement
                    .parties
                    .iter()
                    .filter(|p| !signed.contains(&p.id))
                    .map(|p| p.id.clone())
                    .collect(),
            });
        }
        Ok(signed)
    }

    /// Checks that this version may follow `prev`: it is the next version,
    /// names `prev`'s text by its hash, is signed by the quorum of `prev`'s
    /// parties with their keys (a group cannot escape the quorum by rewriting
    /// the party list), and by every party it adds.
    pub fn verify_successor(&self, prev: &SignedAgreement, at: OffsetDateTime) -> Result<(), AgreementError> {
        let (version, expected) = (self.agreement.version, prev.agreement.version + 1);
        if version != expected {
            return Err(AgreementError::NotNext { version, expected });
        }
        if self.agreement.previous != Some(prev.text_sha256()) {
            return Err(AgreementError::DoesNotChain {
                version,
                previous: prev.agreement.version,
            });
        }
        let old = &prev.agreement.parties;
        let by_old = self.signers_among(old, at)?;
        if by_old.len() < prev.agreement.quorum {
            return Err(AgreementError::NotSigned {
                signed: by_old.len(),
                required: prev.agreement.quorum,
                missing: old
                    .iter()
                    .filter(|p| !by_old.contains(&p.id))
                    .map(|p| p.id.clone())
                    .collect(),
            });
        }
        let by_own = self.signers(at)?;
        let added: Vec<String> = self
            .agreement
            .parties
            .iter()
            .filter(|p| prev.agreement.party(&p.id).is_none() && !by_own.contains(&p.id))
            .map(|p| p.id.clone())
            .collect();
        if !added.is_empty() {
            return Err(AgreementError::AddedWithoutConsent(added));
        }
        Ok(())
    }
}

/// Checks a whole chain offline: version 1 signed by its own quorum, and
/// each later version a valid successor of the one before.
pub fn verify_chain(chain: &[SignedAgreement], at: OffsetDateTime) -> Result<(), AgreementError> {
    let Some(first) = chain.first() else {
        return Err(AgreementError::Toml("an empty chain".into()));
    };
    if first.agreement.version != 1 {
        return Err(AgreementError::NotNext {
            version: first.agreement.version,
            expected: 1,
        });
    }
    let in_chain = |version, e| AgreementError::InChain {
        version,
        source: Box::new(e),
    };
    first.verify(at).map_err(|e| in_chain(1, e))?;
    for pair in chain.windows(2) {
        pair[1]
            .verify_successor(&pair[0], at)
            .map_err(|e| in_chain(pair[1].agreement.version, e))?;
    }
    Ok(())
}
