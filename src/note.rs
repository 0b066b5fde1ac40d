//! C2SP signed notes: a UTF-8 text, a blank line, and signature lines.
//!
//! Agreements and checkpoints are signed notes. Parsing enforces the exact
//! line rules of the spec; verification is strict Ed25519 and tolerates
//! signatures from keys it does not know, as the spec requires.

use signed_note::{Note, NoteError as RawError, VerifierList};

use crate::keys::{IdentityKey, VerifierKey};

/// Why a signed note was refused.
#[derive(Debug, thiserror::Error)]
pub enum NoteError {
    /// The bytes break the signed-note format (text, blank line, `— name sig` lines).
    #[error("malformed signed note: {0}")]
    Malformed(&'static str),
    /// A signature by a known key does not verify: the text or signature changed.
    #[error("invalid signature by key {0}: the signed text or the signature was altered")]
    InvalidSignature(String),
    /// No signature is by any of the expected keys.
    #[error("no signature by any expected key ({0})")]
    NotSigned(String),
    /// Two expected keys share one name and hash.
    #[error("ambiguous key {0}")]
    AmbiguousKey(String),
    /// The key refused to sign (a token removed or logged out).
    #[error("{0}")]
    Signing(String),
}

/// A parsed signed note: its text and its signature lines.
#[derive(Debug)]
pub struct SignedNote(Note);

impl SignedNote {
    /// Starts an unsigned note. The text must be UTF-8 without control
    /// characters other than newline, and end in a newline.
    pub fn new(text: &str) -> Result<Self, NoteError> {
        Note::new(text.as_bytes(), &[]).map(Self).map_err(|_| {
            NoteError::Malformed(
                "text must be UTF-8 with no control characters but newline (no tabs), ending in a newline",
            )
        })
    }

    /// Parses a signed note exactly as the spec lays it out.
    pub fn parse(bytes: &[u8]) -> Result<Self, NoteError> {
        Note::from_bytes(bytes)
            .map(Self)
            .map_err(|_| NoteError::Malformed("expected UTF-8 text ending in a newline, a blank line, then one or more '— name base64sig' lines each ending in a newline"))
    }

    /// The signed text (ends in a newline).
    pub fn text(&self) -> &str {
        // Note guarantees the text is UTF-8.
        std::str::from_utf8(self.0.text()).unwrap_or_default()
    }

    /// Adds (or replaces) this key's signature.
    pub fn sign(&mut self, key: &IdentityKey) -> Result<(), NoteError> {
        self.0.add_sigs(&[key]).map_err(|e| match e {
            // The key's own error (a token's refusal), carried through the signer.
            signed_note::NoteError::SignatureError(e) => {
                NoteError::Signing(std::error::Error::source(&e).map_or(e.to_string(), ToString::to_string))
            }
            _ => NoteError::Malformed("signer key name is not valid"),
        })
    }

    /// The encoded note: text, blank line, signature lines.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.to_bytes()
    }

    /// The signature lines, each with the key (`name+hexkeyhash`) it names.
    fn signature_lines(&self) -> Vec<(String, String)> {
        let bytes = self.to_bytes();
        let sigs = String::from_utf8_lossy(&bytes[(self.text().len() + 1).min(bytes.len())..]).into_owned();
        sigs.lines()
            .filter_map(|line| {
                let (name, b64) = line.strip_prefix("\u{2014} ")?.split_once(' ')?;
                let raw = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64).ok()?;
                let id = u32::from_be_bytes(raw.get(..4)?.try_into().ok()?);
                Some((format!("{name}+{id:08x}"), format!("{line}\n")))
            })
            .collect()
    }

    /// This note with the signatures of `other` (the same text) added,
    /// keeping only those by `keys` that verify; a signature by one of
    /// `keys` that does not verify refuses `other`, and a signature by any
    /// other key is left out, so a note gathered from several senders
    /// holds nothing that was not checked.
    pub fn merge(&self, other: &SignedNote, keys: &[VerifierKey]) -> Result<SignedNote, NoteError> {
        if self.text() != other.text() {
            return Err(NoteError::Malformed("the notes to merge sign different texts"));
        }
        let verified: Vec<String> = match other.verify(keys) {
            Ok(v) => v.iter().map(|k| k.key_id()).collect(),
            Err(NoteError::NotSigned(_)) => Vec::new(),
            Err(e) => return Err(e),
        };
        self.union(other, |key| verified.iter().any(|k| k == key))
    }

    /// This note with the signatures of `other` (the same text) that `keep`
    /// accepts by key, checked by whoever calls; a key that signed both
    /// keeps this note's line.
    pub fn union(&self, other: &SignedNote, keep: impl Fn(&str) -> bool) -> Result<SignedNote, NoteError> {
        if self.text() != other.text() {
            return Err(NoteError::Malformed("the notes to merge sign different texts"));
        }
        let mut lines = self.signature_lines();
        for (key, line) in other.signature_lines() {
            if keep(&key) && !lines.iter().any(|(k, _)| *k == key) {
                lines.push((key, line));
            }
        }
        if lines.is_empty() {
            return SignedNote::new(self.text());
        }
        let mut bytes = format!("{}\n", self.text()).into_bytes();
        for (_, line) in lines {
            bytes.extend_from_slice(line.as_bytes());
        }
        SignedNote::parse(&bytes)
    }

    /// Verifies the note against `keys` and returns the keys whose signatures
    /// verified. Signatures by other keys are ignored; a bad signature by one
    /// of `keys` fails the whole note.
    pub fn verify(&self, keys: &[VerifierKey]) -> Result<Vec<VerifierKey>, NoteError> {
        let list = VerifierList::new(
            keys.iter()
                .map(|k| Box::new(k.clone()) as Box<dyn signed_note::Verifier>)
                .collect(),
        );
        let expected = || keys.iter().map(|k| k.key_id()).collect::<Vec<_>>().join(", ");
        match self.0.verify(&list) {
            Ok((verified, _unknown)) => Ok(verified
                .iter()
                .filter_map(|sig| {
                    keys.iter()
                        .find(|k| k.name() == sig.name() && signed_note::Verifier::key_id(*k) == sig.id())
                })
                .cloned()
                .collect()),
            Err(RawError::InvalidSignature { name, id }) => {
                Err(NoteError::InvalidSignature(format!("{name}+{id:08x}")))
            }
            Err(RawError::UnverifiedNote) => Err(NoteError::NotSigned(expected())),
            Err(RawError::VerificationError(signed_note::VerificationError::AmbiguousKey { name, id })) => {
                Err(NoteError::AmbiguousKey(format!("{name}+{id:08x}")))
            }
            Err(_) => Err(NoteError::Malformed("signature does not match its verifier")),
        }
    }
}
