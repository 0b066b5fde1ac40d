//! Reading sealed messages as their readers do: a node opens what was
//! sealed to its party with its encryption key, and checks that what the
//! message says in clear (its metadata, which logs and carriers read) is
//! what its body says. Used wherever a node or its own tools read a
//! message: on arrival, for operators, STIX, reports and disclosures.

use std::path::Path;
use std::sync::Arc;

use prost::Message as _;

use crate::envelope::SEALED_TYPE;
use crate::keys::KeyError;
use crate::proto::{Envelope, MessageMeta, SealedMessage};
use crate::seal::{Contexts, SealError, SealKey, SealPublicKey, commits_to, open_salted};

/// What opens the sealed messages of one party: its id and its keys (none
/// where its `encryption.key` is missing: then every sealed message stays shut).
#[derive(Clone, Debug, Default)]
pub struct Opener {
    party: String,
    keys: Vec<SealKey>,
    /// Shared by every clone: the contexts opened, and those our own seals reuse.
    contexts: Arc<Contexts>,
}

impl Opener {
    /// Opens for `party` with the key in `file`, if there is one (an empty
    /// `party`: whichever party's copy the key opens).
    pub fn load(party: &str, file: &Path) -> Result<Self, KeyError> {
        let keys = match file.exists() {
            true => vec![SealKey::load(file)?],
            false => Vec::new(),
        };
        Ok(Self {
            party: party.to_owned(),
            keys,
            contexts: Arc::default(),
        })
    }

    /// Our public key (the first held), to seal our own copies to.
    pub fn public(&self) -> Option<&SealPublicKey> {
        self.keys.first().map(SealKey::public)
    }

    /// The HPKE contexts we seal with and open through.
    pub fn contexts(&self) -> &Contexts {
        &self.contexts
    }

    /// `env` as it reads: a sealed message opened (its payload the body, its
    /// type the body's; the signatures stay those over the sealed form), any
    /// other as it is. The metadata in clear must be what the body says.
    pub fn open(&self, env: &Envelope) -> Result<Envelope, SealError> {
        Ok(self.open_salted(env)?.0)
    }

    /// Like [`Opener::open`], with the salt of the commitment (none for an unsealed envelope).
    pub fn open_salted(&self, env: &Envelope) -> Result<(Envelope, Option<Vec<u8>>), SealError> {
        if env.payload_type != SEALED_TYPE {
            return Ok((env.clone(), None));
        }
        let message = sealed_message(env)?;
        let (salt, payload) = open_salted(sealed_body(&message)?, &self.party, &self.keys, &self.contexts)?;
        Ok((as_read(env, message, payload)?, Some(salt)))
    }
}

/// A sealed `env` read with the `body` and `salt` that whoever opened it
/// handed over (a node to its cleared auditor, a discloser to an
/// arbiter), once they are what its sender committed to and signed.
pub fn reveal(env: &Envelope, salt: &[u8], body: &[u8]) -> Result<Envelope, SealError> {
    let message = sealed_message(env)?;
    if !commits_to(sealed_body(&message)?, salt, body) {
        return Err(SealError::Commitment);
    }
    as_read(env, message, body.to_vec())
}

fn sealed_message(env: &Envelope) -> Result<SealedMessage, SealError> {
    SealedMessage::decode(&env.payload[..]).map_err(|e| SealError::Malformed(e.to_string()))
}

fn sealed_body(message: &SealedMessage) -> Result<&crate::proto::Sealed, SealError> {
    message
        .sealed
        .as_ref()
        .ok_or_else(|| SealError::Malformed("no sealed body".into()))
}

/// The envelope as it reads with its body `payload` in place (its type the
/// body's; the signatures stay those over the sealed form), once the
/// metadata in clear is what the body says.
fn as_read(env: &Envelope, message: SealedMessage, payload: Vec<u8>) -> Result<Envelope, SealError> {
    let opened = Envelope {
        payload_type: message.payload_type,
        payload,
        signatures: env.signatures.clone(),
    };
    let said = crate::message::meta::of_envelope(&opened, message.meta.as_ref().map(MessageMeta::tlp));
    if message.meta.as_ref() != Some(&said) {
        return Err(SealError::Metadata);
    }
    Ok(opened)
}
