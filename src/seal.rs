//! Sealing a message body to its readers, so that whoever stores or carries
//! its envelope (a node's own database, a backup, a PostgreSQL dump, a
//! relay) holds ciphertext only. The body is encrypted once under a fresh
//! content key; the content key is sealed to each reader's encryption key
//! with HPKE (RFC 9180: base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
//! ChaCha20-Poly1305). The result carries a salted SHA-256 commitment to
//! the plaintext, which the sender's signature covers: a reader that
//! decrypts any other text than the one committed to refuses it, so one
//! signature never shows two readers two texts (ChaCha20-Poly1305 alone is
//! not key-committing).

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use hpke::{Deserializable as _, Kem as _, Serializable as _};
use rand_core::{OsRng, RngCore as _};
use sha2::{Digest, Sha256};

use crate::keys::{KeyError, check_private};
use crate::proto::{Sealed, SealedKey};

type Kem = hpke::kem::X25519HkdfSha256;
type Kdf = hpke::kdf::HkdfSha256;
type Aead = hpke::aead::ChaCha20Poly1305;

/// HPKE's `info`: what the content keys are sealed for.
const INFO: &[u8] = b"hotline seal v1";
/// The salt before the plaintext, and the content key: 32 bytes each.
const SALT_BYTES: usize = 32;

/// Why a sealed body could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// No content key in it is sealed to one of our keys.
    #[error("it is sealed to no encryption key {party} holds")]
    NotForUs {
        /// The party that tried to open it.
        party: String,
    },
    /// Our sealed content key, or the ciphertext, does not decrypt.
    #[error("it does not decrypt with our key: {0}")]
    Undecryptable(&'static str),
    /// It decrypts to another text than the one its sender committed to and signed.
    #[error("it decrypts to another text than the one its sender signed (the commitment does not match)")]
    Commitment,
    /// The envelope is not a well-formed sealed message.
    #[error("not a sealed message: {0}")]
    Malformed(String),
    /// Its metadata in clear says other than its body.
    #[error("its metadata in clear is not what its body says (ids, parties, times, TLP, severity or thread)")]
    Metadata,
    /// A reader's public key is not an X25519 key.
    #[error("encryption key of {party}: {reason}")]
    BadKey {
        /// Whose key.
        party: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// A party's public encryption key, as the agreement lists it (base64 of
/// the 32-byte X25519 key).
#[derive(Clone, PartialEq, Eq)]
pub struct SealPublicKey(<Kem as hpke::Kem>::PublicKey);

impl SealPublicKey {
    /// Parses the base64 text the agreement holds.
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let bytes = B64.decode(text.trim()).map_err(|_| "not base64")?;
        <Kem as hpke::Kem>::PublicKey::from_bytes(&bytes)
            .map(Self)
            .map_err(|_| "not a 32-byte X25519 public key")
    }

    /// The base64 text the agreement holds.
    pub fn encode(&self) -> String {
        B64.encode(self.0.to_bytes())
    }

    /// Which key this is, in a sealed body: the first 8 bytes of the SHA-256 of the key.
    pub fn key_id(&self) -> Vec<u8> {
        Sha256::digest(self.0.to_bytes())[..8].to_vec()
    }
}

impl std::fmt::Debug for SealPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealPublicKey({})", self.encode())
    }
}

/// A node's private encryption key (`encryption.key`, mode 0600).
#[derive(Clone)]
pub struct SealKey {
    secret: <Kem as hpke::Kem>::PrivateKey,
    public: SealPublicKey,
}

impl SealKey {
    /// A new random key.
    pub fn generate() -> Self {
        let (secret, public) = Kem::gen_keypair(&mut OsRng);
        Self {
            secret,
            public: SealPublicKey(public),
        }
    }

    /// Its public half, for the agreement.
    pub fn public(&self) -> &SealPublicKey {
        &self.public
    }

    /// Loads a key file written by [`SealKey::save`], refusing one that group or others can read.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        check_private(path)?;
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
            path: path.to_owned(),
            source,
        })?;
        let bad = |why: &'static str| KeyError::File {
            path: path.to_owned(),
            source: Box::new(KeyError::MalformedPrivateKey(why)),
        };
        let b64 = text
            .trim()
            .strip_prefix("PRIVATE+X25519+")
            .ok_or(bad("an encryption key file starts PRIVATE+X25519+"))?;
        let bytes = B64.decode(b64).map_err(|_| bad("not base64"))?;
        let secret = <Kem as hpke::Kem>::PrivateKey::from_bytes(&bytes).map_err(|_| bad("not an X25519 key"))?;
        let public = SealPublicKey(Kem::sk_to_pk(&secret));
        Ok(Self { secret, public })
    }

    /// Writes the key to a new file with mode 0600; never overwrites.
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        let text = format!("PRIVATE+X25519+{}\n", B64.encode(self.secret.to_bytes()));
        crate::keys::write_private(path, &text)
    }
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealKey({:?}, private)", self.public)
    }
}

/// Seals `plaintext` to every `(party, key)` of `readers`: once under a
/// fresh content key, that key sealed to each reader.
pub fn seal(plaintext: &[u8], readers: &[(String, SealPublicKey)]) -> Result<Sealed, SealError> {
    let mut salted = vec![0; SALT_BYTES];
    OsRng.fill_bytes(&mut salted);
    salted.extend_from_slice(plaintext);
    let commitment = Sha256::digest(&salted).to_vec();
    let mut content_key = [0u8; SALT_BYTES];
    OsRng.fill_bytes(&mut content_key);
    let ciphertext = content_cipher(&content_key)
        .encrypt(
            &Default::default(),
            Payload {
                msg: &salted,
                aad: &commitment,
            },
        )
        .map_err(|_| SealError::Undecryptable("the content cipher refused"))?;
    let keys = readers
        .iter()
        .map(|(party, key)| {
            let (enc, sealed_key) = hpke::single_shot_seal::<Aead, Kdf, Kem, _>(
                &hpke::OpModeS::Base,
                &key.0,
                INFO,
                &content_key,
                &commitment,
                &mut OsRng,
            )
            .map_err(|_| SealError::BadKey {
                party: party.clone(),
                reason: "HPKE could not seal to it",
            })?;
            Ok(SealedKey {
                party: party.clone(),
                key_id: key.key_id(),
                enc: enc.to_bytes().to_vec(),
                sealed_key,
            })
        })
        .collect::<Result<_, SealError>>()?;
    Ok(Sealed {
        commitment,
        ciphertext,
        keys,
    })
}

/// Opens `sealed` as `party`, holding `keys` (the current and the next
/// during a rotation): the plaintext, once it matches the commitment.
pub fn open(sealed: &Sealed, party: &str, keys: &[SealKey]) -> Result<Vec<u8>, SealError> {
    open_salted(sealed, party, keys).map(|(_, plaintext)| plaintext)
}

/// Like [`open`], with the salt the commitment is over: what a disclosure
/// hands an arbiter so that it checks the body against the signed commitment.
pub fn open_salted(sealed: &Sealed, party: &str, keys: &[SealKey]) -> Result<(Vec<u8>, Vec<u8>), SealError> {
    let (entry, key) = sealed
        .keys
        .iter()
        // An empty party: whoever holds one of the keys (a report read from a data directory).
        .filter(|k| party.is_empty() || k.party == party)
        .find_map(|k| {
            keys.iter()
                .find(|ours| ours.public.key_id() == k.key_id)
                .map(|ours| (k, ours))
        })
        .ok_or_else(|| SealError::NotForUs {
            party: party.to_owned(),
        })?;
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&entry.enc)
        .map_err(|_| SealError::Undecryptable("the encapsulated key is malformed"))?;
    let content_key = hpke::single_shot_open::<Aead, Kdf, Kem>(
        &hpke::OpModeR::Base,
        &key.secret,
        &enc,
        INFO,
        &entry.sealed_key,
        &sealed.commitment,
    )
    .map_err(|_| SealError::Undecryptable("the content key sealed to us"))?;
    let content_key: [u8; SALT_BYTES] = content_key
        .try_into()
        .map_err(|_| SealError::Undecryptable("the content key is not 32 bytes"))?;
    let salted = content_cipher(&content_key)
        .decrypt(
            &Default::default(),
            Payload {
                msg: &sealed.ciphertext,
                aad: &sealed.commitment,
            },
        )
        .map_err(|_| SealError::Undecryptable("the ciphertext"))?;
    if salted.len() < SALT_BYTES || Sha256::digest(&salted).as_slice() != sealed.commitment {
        return Err(SealError::Commitment);
    }
    let (salt, plaintext) = salted.split_at(SALT_BYTES);
    Ok((salt.to_vec(), plaintext.to_vec()))
}

/// Whether `body`, with `salt`, is the text `sealed` commits to.
pub fn commits_to(sealed: &Sealed, salt: &[u8], body: &[u8]) -> bool {
    Sha256::digest([salt, body].concat()).as_slice() == sealed.commitment
}

fn content_cipher(key: &[u8; SALT_BYTES]) -> chacha20poly1305::ChaCha20Poly1305 {
    chacha20poly1305::ChaCha20Poly1305::new(key.into())
}
