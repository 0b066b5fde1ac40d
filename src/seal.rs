//! Sealing a message body to its readers, so that whoever stores or carries
//! its envelope (a node's own database, a backup, a PostgreSQL dump, a
//! relay) holds ciphertext only. The body is encrypted once under a fresh
//! content key (ChaCha20-Poly1305); the content key is wrapped for each
//! reader under a key exported from an HPKE context to that reader's
//! encryption key (RFC 9180: base mode, DHKEM(X25519, HKDF-SHA256),
//! HKDF-SHA256, ChaCha20-Poly1305). A sender keeps one context per reader's
//! key for an epoch of messages ([`Contexts`]), so sealing costs an X25519
//! per reader and epoch, and an AEAD per reader and message. The result
//! carries a salted SHA-256 commitment to the plaintext, which the sender's
//! signature covers: a reader that decrypts any other text than the one
//! committed to refuses it, so one signature never shows two readers two
//! texts (ChaCha20-Poly1305 alone is not key-committing).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

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

/// How many messages a sender seals to one reader's key under one HPKE
/// context before it starts the next.
const EPOCH_MESSAGES: u32 = 4096;
/// How many senders' contexts a reader keeps open: a peer that starts a new
/// one with every message costs an X25519 each, and no memory past this.
const OPEN_CONTEXTS: usize = 1024;

/// A sender's context to one reader's key: its encapsulated key, the
/// context, and how many messages it has sealed, by the reader's key.
type Sending = HashMap<Vec<u8>, (Vec<u8>, hpke::aead::AeadCtxS<Aead, Kdf, Kem>, u32)>;
/// A reader's opened contexts, by encapsulated key and our key's id.
type Opening = HashMap<(Vec<u8>, Vec<u8>), hpke::aead::AeadCtxR<Aead, Kdf, Kem>>;

/// The HPKE contexts a party reuses, so that sealing and opening cost an
/// X25519 per reader's key and epoch instead of per message. A sender sets
/// up one context (RFC 9180 base mode, a fresh ephemeral key) per reader's
/// key and keeps it for [`EPOCH_MESSAGES`] messages; each message's content
/// key is wrapped under a key exported from it for that message's
/// commitment. A reader keeps the contexts it opened, keyed by their
/// encapsulated key. Memory only: a restart starts new epochs.
#[derive(Default)]
pub struct Contexts {
    sending: Mutex<Sending>,
    opening: Mutex<Opening>,
}

impl std::fmt::Debug for Contexts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Contexts")
    }
}

impl Contexts {
    /// This epoch's encapsulated key to `key`, and the content key of the
    /// message with `commitment` wrapped for it.
    fn wrap(
        &self,
        party: &str,
        key: &SealPublicKey,
        content_key: &[u8],
        commitment: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>), SealError> {
        let mut sending = self.sending.lock().unwrap_or_else(|e| e.into_inner());
        let id = key.0.to_bytes().to_vec();
        if sending.get(&id).is_none_or(|(_, _, used)| *used >= EPOCH_MESSAGES) {
            let (enc, ctx) = hpke::setup_sender::<Aead, Kdf, Kem, _>(&hpke::OpModeS::Base, &key.0, INFO, &mut OsRng)
                .map_err(|_| SealError::BadKey {
                    party: party.to_owned(),
                    reason: "HPKE could not seal to it",
                })?;
            sending.insert(id.clone(), (enc.to_bytes().to_vec(), ctx, 0));
        }
        let (enc, ctx, used) = sending.get_mut(&id).expect("inserted above");
        *used += 1;
        let wrapping = wrapping_key(|info, out| ctx.export(info, out), commitment)?;
        let sealed_key = content_cipher(&wrapping)
            .encrypt(
                &Default::default(),
                Payload {
                    msg: content_key,
                    aad: commitment,
                },
            )
            .map_err(|_| SealError::Undecryptable("the key wrap refused"))?;
        Ok((enc.clone(), sealed_key))
    }

    /// The content key `entry` wraps for `key`, through the context its
    /// encapsulated key opens (set up once, then kept).
    fn unwrap(&self, entry: &SealedKey, key: &SealKey, commitment: &[u8]) -> Result<[u8; SALT_BYTES], SealError> {
        let mut opening = self.opening.lock().unwrap_or_else(|e| e.into_inner());
        let id = (entry.enc.clone(), entry.key_id.clone());
        if !opening.contains_key(&id) {
            let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&entry.enc)
                .map_err(|_| SealError::Undecryptable("the encapsulated key is malformed"))?;
            let ctx = hpke::setup_receiver::<Aead, Kdf, Kem>(&hpke::OpModeR::Base, &key.secret, &enc, INFO)
                .map_err(|_| SealError::Undecryptable("the encapsulated key"))?;
            if opening.len() >= OPEN_CONTEXTS {
                opening.clear();
            }
            opening.insert(id.clone(), ctx);
        }
        let ctx = &opening[&id];
        let wrapping = wrapping_key(|info, out| ctx.export(info, out), commitment)?;
        content_cipher(&wrapping)
            .decrypt(
                &Default::default(),
                Payload {
                    msg: &entry.sealed_key,
                    aad: commitment,
                },
            )
            .map_err(|_| SealError::Undecryptable("the content key sealed to us"))?
            .try_into()
            .map_err(|_| SealError::Undecryptable("the content key is not 32 bytes"))
    }
}

/// The key that wraps one message's content key: exported from the
/// epoch's HPKE context for that message's commitment, which its salt makes
/// unique, so no two messages share one.
fn wrapping_key(
    export: impl FnOnce(&[u8], &mut [u8]) -> Result<(), hpke::HpkeError>,
    commitment: &[u8],
) -> Result<[u8; SALT_BYTES], SealError> {
    let mut key = [0u8; SALT_BYTES];
    export(&[b"content key ", commitment].concat(), &mut key).map_err(|_| SealError::Undecryptable("HPKE export"))?;
    Ok(key)
}

/// Seals `plaintext` to every `(party, key)` of `readers`: once under a
/// fresh content key, that key wrapped for each reader through `contexts`.
pub fn seal(plaintext: &[u8], readers: &[(String, SealPublicKey)], contexts: &Contexts) -> Result<Sealed, SealError> {
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
            let (enc, sealed_key) = contexts.wrap(party, key, &content_key, &commitment)?;
            Ok(SealedKey {
                party: party.clone(),
                key_id: key.key_id(),
                enc,
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
pub fn open(sealed: &Sealed, party: &str, keys: &[SealKey], contexts: &Contexts) -> Result<Vec<u8>, SealError> {
    open_salted(sealed, party, keys, contexts).map(|(_, plaintext)| plaintext)
}

/// Like [`open`], with the salt the commitment is over: what a disclosure
/// hands an arbiter so that it checks the body against the signed commitment.
pub fn open_salted(
    sealed: &Sealed,
    party: &str,
    keys: &[SealKey],
    contexts: &Contexts,
) -> Result<(Vec<u8>, Vec<u8>), SealError> {
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
    let content_key = contexts.unwrap(entry, key, &sealed.commitment)?;
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
