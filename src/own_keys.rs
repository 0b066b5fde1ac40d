//! A node's own identity keys: where they are held (key files, or a
//! PKCS#11 token) and, of those the agreement in force lists, which are
//! valid now and which signs. `keys.rs` holds the key formats they use.

use std::path::PathBuf;

use time::OffsetDateTime;

use crate::keys::{IdentityKey, KeyError, VerifierKey};

/// Where a node's identity keys are: files, or a PKCS#11 token.
#[derive(Clone, Debug, PartialEq)]
pub enum KeySource {
    /// `identity_key`, and a rotation's next key where it exists.
    Files {
        /// The key in use.
        current: PathBuf,
        /// A rotation's next key (need not exist).
        next: PathBuf,
    },
    /// Keys on a token; `public` (`identity.pub`, written by `hotline init`)
    /// gives their name, the party's log origin, and the key expected.
    Token {
        /// The public key file.
        public: PathBuf,
        /// The key in use.
        current: crate::pkcs11::TokenRef,
        /// A rotation's next key, on the same token or another of the module's (same PIN source).
        next: Option<crate::pkcs11::TokenRef>,
    },
}

impl KeySource {
    /// The keys held: the current one first (required), then a rotation's next.
    pub fn load(&self) -> Result<Vec<IdentityKey>, KeyError> {
        match self {
            Self::Files { current, next } => {
                let mut keys = vec![IdentityKey::load(current)?];
                if next.exists() {
                    keys.push(IdentityKey::load(next)?);
                }
                Ok(keys)
            }
            Self::Token { public, current, next } => {
                let io = |source| KeyError::Io {
                    path: public.clone(),
                    source,
                };
                let expected: VerifierKey =
                    std::fs::read_to_string(public)
                        .map_err(io)?
                        .trim()
                        .parse()
                        .map_err(|e| KeyError::File {
                            path: public.clone(),
                            source: Box::new(e),
                        })?;
                let current = IdentityKey::open_token(expected.name(), current)?;
                if current.verifier() != &expected {
                    return Err(KeyError::NotTheKey {
                        path: public.clone(),
                        found: current.verifier().key_id(),
                    });
                }
                let mut keys = vec![current];
                if let Some(next) = next {
                    keys.push(IdentityKey::open_token(expected.name(), next)?);
                }
                Ok(keys)
            }
        }
    }

    /// Where the key in use is, in words, for messages.
    pub fn describe(&self) -> String {
        match self {
            Self::Files { current, .. } => current.display().to_string(),
            Self::Token { current, .. } => format!(
                "key {:?} on token {:?} ({})",
                current.key,
                current.token,
                current.module.display()
            ),
        }
    }
}

/// A node's own identity keys, each with the window the agreement in force
/// gives it. During a key rotation two are valid at once: checkpoints are
/// signed by both (a signed note may carry several signatures), so a
/// verifier that knows either key follows along, and envelopes by the newer.
#[derive(Clone, Debug)]
pub struct OwnKeys(std::sync::Arc<std::sync::RwLock<Vec<TrustedKeyPair>>>);

/// A private key with the window in which the agreement trusts it.
#[derive(Clone, Debug)]
pub struct TrustedKeyPair {
    /// The private key.
    pub key: IdentityKey,
    /// Valid from this instant, if set.
    pub valid_from: Option<OffsetDateTime>,
    /// Valid until this instant, if set.
    pub valid_until: Option<OffsetDateTime>,
}

impl TrustedKeyPair {
    /// Whether the agreement trusts this key at `at`.
    pub fn is_valid_at(&self, at: OffsetDateTime) -> bool {
        self.valid_from.is_none_or(|f| at >= f) && self.valid_until.is_none_or(|u| at < u)
    }
}

impl OwnKeys {
    /// One key, valid at all times.
    pub fn single(key: IdentityKey) -> Self {
        Self(std::sync::Arc::new(std::sync::RwLock::new(vec![TrustedKeyPair {
            key,
            valid_from: None,
            valid_until: None,
        }])))
    }

    /// Replaces the keys; an empty set is ignored (a node always has a key).
    pub fn set(&self, keys: Vec<TrustedKeyPair>) {
        if !keys.is_empty() {
            *self.0.write().unwrap_or_else(|e| e.into_inner()) = keys;
        }
    }

    /// Every key held, valid or not.
    pub fn all(&self) -> Vec<TrustedKeyPair> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The keys valid at `at`: those that sign checkpoints. None when every
    /// key's window is over (or not begun): then nothing may be signed, for
    /// what a key signs outside its window fails verification for ever.
    pub fn valid_at(&self, at: OffsetDateTime) -> Vec<IdentityKey> {
        let keys = self.0.read().unwrap_or_else(|e| e.into_inner());
        keys.iter()
            .filter(|k| k.is_valid_at(at))
            .map(|k| k.key.clone())
            .collect()
    }

    /// The key that signs envelopes at `at`: of those valid, the one valid
    /// from the latest instant (the new key of a rotation); none if no key is valid.
    pub fn signing(&self, at: OffsetDateTime) -> Option<IdentityKey> {
        let keys = self.0.read().unwrap_or_else(|e| e.into_inner());
        keys.iter()
            .filter(|k| k.is_valid_at(at))
            .max_by_key(|k| k.valid_from)
            .map(|k| k.key.clone())
    }

    /// Each key held with its window, for an error that says why none is valid.
    pub fn describe(&self) -> String {
        let keys = self.0.read().unwrap_or_else(|e| e.into_inner());
        let window = |t: Option<OffsetDateTime>| t.map(crate::clock::rfc3339).unwrap_or_else(|| "-".into());
        keys.iter()
            .map(|k| {
                format!(
                    "{} (valid {} to {})",
                    k.key.verifier().key_id(),
                    window(k.valid_from),
                    window(k.valid_until)
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}
