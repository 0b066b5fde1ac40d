//! Ed25519 identity keys in the C2SP signed-note key formats.
//!
//! A party's public key travels as a verifier key string
//! (`name+hexkeyhash+base64(0x01 || pubkey)`), its private key as the matching
//! `PRIVATE+KEY+name+hexkeyhash+base64(0x01 || seed)` string. The same key signs
//! DSSE envelopes (key id `name+hexkeyhash`) and signed notes.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use time::OffsetDateTime;

/// The algorithm byte of Ed25519 keys in signed-note key encodings.
const ALG_ED25519: u8 = 0x01;

/// Why a key could not be parsed, loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A verifier key string is not `name+hexkeyhash+base64(0x01||pubkey)`.
    #[error("malformed verifier key {key:?}: {reason}")]
    MalformedVerifierKey {
        /// The key, as written.
        key: String,
        /// Why it is wrong.
        reason: &'static str,
    },
    /// A private key string is not `PRIVATE+KEY+name+hexkeyhash+base64(0x01||seed)`.
    #[error("malformed private key: {0}")]
    MalformedPrivateKey(&'static str),
    /// A key name is empty or has a space or a `+`.
    #[error("invalid key name {0:?}: it must be non-empty, with no spaces and no '+'")]
    InvalidName(String),
    /// A key file could not be read or written.
    #[error("key file {}: {source}", path.display())]
    Io {
        /// The file at fault.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A private key file that others may read is refused.
    #[error("key file {} is readable by group or others (mode {mode:o}); run: chmod 600 {}", path.display(), path.display())]
    Permissions {
        /// The file at fault.
        path: PathBuf,
        /// The file's mode bits.
        mode: u32,
    },
    /// A key file's content is not a key.
    #[error("key file {}: {source}", path.display())]
    File {
        /// The file at fault.
        path: PathBuf,
        /// The underlying error.
        source: Box<KeyError>,
    },
    /// The token's key is not the one `identity.pub` names.
    #[error("{}: the token's key {found} is not this key", path.display())]
    NotTheKey {
        /// The public key file.
        path: PathBuf,
        /// The token key's id.
        found: String,
    },
    /// A key on a PKCS#11 token could not be opened, or refused to sign.
    #[error(transparent)]
    Token(#[from] crate::pkcs11::TokenError),
}

/// Reports whether `name` may be a key name (C2SP signed-note rules).
pub fn is_valid_key_name(name: &str) -> bool {
    signed_note::is_key_name_valid(name)
}

fn key_hash(name: &str, public: &VerifyingKey) -> u32 {
    let mut encoded = vec![ALG_ED25519];
    encoded.extend_from_slice(public.as_bytes());
    signed_note::key_id(name, &encoded)
}

/// A public key with its name: what a party publishes and peers trust.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    hash: u32,
    key: VerifyingKey,
}

impl VerifierKey {
    /// Wraps a public key under a key name.
    pub fn new(name: &str, key: VerifyingKey) -> Result<Self, KeyError> {
        if !is_valid_key_name(name) {
            return Err(KeyError::InvalidName(name.to_owned()));
        }
        Ok(Self {
            name: name.to_owned(),
            hash: key_hash(name, &key),
            key,
        })
    }

    /// The key name: the party's log origin, such as `hotline.example/PER`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id used in DSSE signatures: `name+hexkeyhash`.
    pub fn key_id(&self) -> String {
        format!("{}+{:08x}", self.name, self.hash)
    }

    /// The raw Ed25519 public key.
    pub fn public_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Checks an Ed25519 signature strictly (no malleable or small-order forms).
    /// Signatures are checked one at a time on purpose: a batch equation
    /// cannot refuse every signature this refuses (an `R` with a small-order
    /// component passes one about half the time), and a peer could use that
    /// to get a notice receipted that no strict verifier accepts.
    pub fn verify_strict(&self, msg: &[u8], sig: &[u8]) -> bool {
        Signature::from_slice(sig)
            .map(|s| self.key.verify_strict(msg, &s).is_ok())
            .unwrap_or(false)
    }
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut encoded = vec![ALG_ED25519];
        encoded.extend_from_slice(self.key.as_bytes());
        write!(f, "{}+{:08x}+{}", self.name, self.hash, B64.encode(encoded))
    }
}

impl fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifierKey({self})")
    }
}

impl FromStr for VerifierKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, KeyError> {
        let bad = |reason| KeyError::MalformedVerifierKey {
            key: s.to_owned(),
            reason,
        };
        let mut parts = s.splitn(3, '+');
        let (Some(name), Some(hash), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected name+hexkeyhash+base64key"));
        };
        if !is_valid_key_name(name) {
            return Err(bad("invalid key name"));
        }
        let hash = parse_hash(hash).ok_or_else(|| bad("key hash is not 8 hex digits"))?;
        let raw = B64.decode(b64).map_err(|_| bad("key is not base64"))?;
        let key = parse_alg_key(&raw).ok_or_else(|| bad("not an Ed25519 key (0x01 || 32 bytes)"))?;
        let key = VerifyingKey::from_bytes(&key).map_err(|_| bad("not a valid Ed25519 point"))?;
        let vk = VerifierKey::new(name, key)?;
        if vk.hash != hash {
            return Err(bad("key hash does not match the name and key"));
        }
        Ok(vk)
    }
}

impl signed_note::Verifier for VerifierKey {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.hash
    }
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        self.verify_strict(msg, sig)
    }
}

fn parse_hash(hex8: &str) -> Option<u32> {
    (hex8.len() == 8 && hex8.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u32::from_str_radix(hex8, 16).ok())
        .flatten()
}

fn parse_alg_key(raw: &[u8]) -> Option<[u8; 32]> {
    match raw.split_first() {
        Some((&ALG_ED25519, rest)) => rest.try_into().ok(),
        _ => None,
    }
}

/// A party's private identity key: signs envelopes, receipts, checkpoints
/// and the agreement. Held in a file, or on a PKCS#11 token that signs
/// without letting it out.
#[derive(Clone)]
pub struct IdentityKey {
    secret: Secret,
    verifier: VerifierKey,
}

/// Where the private half is. A file key is kept inline, unboxed: keys are
/// cloned for each message signed, and an allocation there would cost more
/// than the size.
#[derive(Clone)]
#[allow(clippy::large_enum_variant)]
enum Secret {
    File(SigningKey),
    Token(std::sync::Arc<crate::pkcs11::TokenKey>),
}

impl IdentityKey {
    /// Makes a fresh key from the operating system's random source.
    pub fn generate(name: &str) -> Result<Self, KeyError> {
        Self::from_seed(name, SigningKey::generate(&mut rand_core::OsRng).to_bytes())
    }

    /// Makes the key of a known 32-byte seed (RFC 8032 secret key).
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self, KeyError> {
        let signing = SigningKey::from_bytes(&seed);
        let verifier = VerifierKey::new(name, signing.verifying_key())?;
        Ok(Self {
            secret: Secret::File(signing),
            verifier,
        })
    }

    /// The key named `name` on a PKCS#11 token, logged in and found.
    pub fn open_token(name: &str, token: &crate::pkcs11::TokenRef) -> Result<Self, KeyError> {
        let key = token.open()?;
        let public = VerifyingKey::from_bytes(&key.public())
            .map_err(|_| KeyError::MalformedPrivateKey("the token's public key is not an Ed25519 point"))?;
        Ok(Self {
            verifier: VerifierKey::new(name, public)?,
            secret: Secret::Token(key),
        })
    }

    /// Whether the private key is on a token (and cannot be written out).
    pub fn on_token(&self) -> bool {
        matches!(self.secret, Secret::Token(_))
    }

    /// The public half, as peers see it.
    pub fn verifier(&self) -> &VerifierKey {
        &self.verifier
    }

    /// The key name (the party's log origin).
    pub fn name(&self) -> &str {
        self.verifier.name()
    }

    /// Signs `msg` with Ed25519; a token may refuse (removed, logged out).
    pub fn sign(&self, msg: &[u8]) -> Result<Signature, KeyError> {
        match &self.secret {
            Secret::File(k) => Ok(k.sign(msg)),
            Secret::Token(t) => Ok(Signature::from_bytes(&t.sign(msg)?)),
        }
    }

    /// The private key string (`PRIVATE+KEY+...`); keep it secret. A key on
    /// a token has none: it gives the empty string.
    pub fn encode_private(&self) -> String {
        let Secret::File(signing) = &self.secret else {
            return String::new();
        };
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(&signing.to_bytes());
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.verifier.name,
            self.verifier.hash,
            B64.encode(raw)
        )
    }

    /// Parses a private key string and checks its key hash.
    pub fn parse_private(s: &str) -> Result<Self, KeyError> {
        let bad = KeyError::MalformedPrivateKey;
        let rest = s
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(bad("it must start with PRIVATE+KEY+"))?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(hash), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected PRIVATE+KEY+name+hexkeyhash+base64key"));
        };
        let hash = parse_hash(hash).ok_or(bad("key hash is not 8 hex digits"))?;
        let raw = B64.decode(b64).map_err(|_| bad("key is not base64"))?;
        let seed = parse_alg_key(&raw).ok_or(bad("not an Ed25519 key (0x01 || 32 bytes)"))?;
        let key = Self::from_seed(name, seed)?;
        if key.verifier.hash != hash {
            return Err(bad("key hash does not match the name and key"));
        }
        Ok(key)
    }

    /// Loads a private key file, refusing one that group or others can read.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_owned(),
            source,
        };
        check_private(path)?;
        let text = std::fs::read_to_string(path).map_err(io)?;
        Self::parse_private(text.trim()).map_err(|e| KeyError::File {
            path: path.to_owned(),
            source: Box::new(e),
        })
    }

    /// Writes the private key to a new file with mode 0600; never overwrites.
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        write_private(path, &format!("{}\n", self.encode_private()))
    }
}

/// Writes `text` to a new file with mode 0600, synced; never overwrites:
/// how every private key file is made.
pub fn write_private(path: &Path, text: &str) -> Result<(), KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

impl fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentityKey({}, private)", self.verifier.key_id())
    }
}

impl signed_note::Signer for IdentityKey {
    fn name(&self) -> &str {
        self.verifier.name()
    }
    fn key_id(&self) -> u32 {
        self.verifier.hash
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, ed25519_dalek::SignatureError> {
        IdentityKey::sign(self, msg)
            .map(|s| s.to_vec())
            .map_err(ed25519_dalek::SignatureError::from_source)
    }
}

/// A key a party is trusted to sign with, and when.
#[derive(Clone, Debug)]
pub struct TrustedKey {
    /// The party id the key speaks for.
    pub party: String,
    /// The public key.
    pub key: VerifierKey,
    /// Signatures are accepted from this instant on, if set.
    pub valid_from: Option<OffsetDateTime>,
    /// Signatures are accepted until this instant, if set (key rotation).
    pub valid_until: Option<OffsetDateTime>,
    /// The key was compromised: no signature by it is accepted from this
    /// instant on, and those accepted before are flagged by audit verify.
    pub revoked: Option<OffsetDateTime>,
}

impl TrustedKey {
    /// Reports whether the key may be used at `at`.
    pub fn valid_at(&self, at: OffsetDateTime) -> bool {
        self.valid_from.is_none_or(|from| at >= from)
            && self.valid_until.is_none_or(|until| at < until)
            && self.revoked.is_none_or(|revoked| at < revoked)
    }
}

/// The keys of every party, looked up by DSSE key id.
#[derive(Clone, Debug, Default)]
pub struct Keyring {
    by_id: HashMap<String, TrustedKey>,
}

impl Keyring {
    /// Builds a keyring; a later key with the same id replaces an earlier one.
    pub fn new(keys: impl IntoIterator<Item = TrustedKey>) -> Self {
        Self {
            by_id: keys.into_iter().map(|k| (k.key.key_id(), k)).collect(),
        }
    }

    /// The trusted key with DSSE key id `keyid`, if any.
    pub fn get(&self, keyid: &str) -> Option<&TrustedKey> {
        self.by_id.get(keyid)
    }

    /// Every key, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &TrustedKey> {
        self.by_id.values()
    }
}

/// Refuses a private key file (an identity key, a TLS key) that group or
/// others may read.
pub fn check_private(path: &Path) -> Result<(), KeyError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|source| KeyError::Io {
            path: path.to_owned(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions {
                path: path.to_owned(),
                mode,
            });
        }
    }
    Ok(())
}
