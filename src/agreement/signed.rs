//! The agreement as stored and exchanged: its text wrapped in a C2SP signed
//! note, one signature line per party, and the quorum rule.

use std::path::Path;

use time::OffsetDateTime;

use super::error::AgreementError;
use super::schema::Agreement;
use crate::keys::{IdentityKey, TrustedKey, VerifierKey};
use crate::note::{NoteError, SignedNote};

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

    /// The parties whose signature, by a key valid at `at`, verifies over the exact text.
    pub fn signers(&self, at: OffsetDateTime) -> Result<Vec<String>, AgreementError> {
        let valid: Vec<&TrustedKey> = self
            .agreement
            .parties
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
        Ok(self
            .agreement
            .parties
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
}
