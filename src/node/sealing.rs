//! The node's side of sealing: a notice or response above TLP:CLEAR is
//! sealed to its recipients and to us before it is signed, and a sealed
//! message is opened with our key when it arrives and whenever our own
//! operators read it. What the node stores, logs and forwards stays sealed.

use prost::Message as _;

use super::{Node, NodeError};
use crate::envelope::SEALED_TYPE;
use crate::proto::{Envelope, MessageMeta, SealedMessage, Tlp};

impl Node {
    /// The payload to sign for `payload` of `payload_type`: sealed to the
    /// recipients `to` (those of the agreement in force) and to us when
    /// `meta` is above TLP:CLEAR, as it is otherwise.
    pub(super) fn sealed_payload(
        &self,
        payload_type: &'static str,
        payload: Vec<u8>,
        meta: MessageMeta,
        to: &[String],
    ) -> Result<(&'static str, Vec<u8>), NodeError> {
        if meta.tlp() == Tlp::Clear {
            return Ok((payload_type, payload));
        }
        let ours = self
            .sealing
            .0
            .public()
            .ok_or_else(|| NodeError::NoOwnEncryptionKey(self.sealing.1.display().to_string()))?;
        let in_force = self.in_force();
        let now = self.clock.now();
        let mut readers = vec![(self.party.clone(), ours.clone())];
        for party in to.iter().filter(|p| **p != self.party) {
            let Some(p) = in_force.agreement().party(party) else {
                continue; // a party an amendment would add: it gets no copy until it runs
            };
            let key = p
                .encryption_key_at(now)
                .ok_or_else(|| NodeError::NoEncryptionKey(party.clone()))?;
            readers.push((party.clone(), key.clone()));
        }
        let sealed = crate::seal::seal(&payload, &readers, self.sealing.0.contexts())
            .map_err(|e| NodeError::Sealed(e.to_string()))?;
        let message = SealedMessage {
            payload_type: payload_type.to_owned(),
            meta: Some(meta),
            sealed: Some(sealed),
        };
        Ok((SEALED_TYPE, message.encode_to_vec()))
    }

    /// `env` as our operators and checks read it: a sealed message opened
    /// with our key, any other as it is.
    pub fn opened(&self, env: &Envelope) -> Result<Envelope, NodeError> {
        self.sealing.0.open(env).map_err(|e| NodeError::Sealed(e.to_string()))
    }

    /// What opens the messages sealed to us, for reads off the node (views, STIX).
    pub fn opener(&self) -> &crate::opener::Opener {
        &self.sealing.0
    }
}
