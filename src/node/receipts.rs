//! The receipts peers sign for our messages, checked on the node's inbound
//! side before they are logged: the signature, the message it names, the
//! receiver's checkpoint and the inclusion proof of our envelope. The
//! courier only carries them here.

use std::sync::Arc;

use prost::Message as _;

use super::{Node, ReceiptError};
use crate::envelope::{self, RECEIPT_TYPE};
use crate::log::tree::proof_from_wire;
use crate::log::{LogError, StateError, entry};
use crate::proto::{ConsistencyProof, Deadline, Envelope, LogEntry, Receipt, event};
use crate::state::{self, StoredMessage};

impl Node {
    /// Checks a receipt for our message `m` delivered to `party` (through
    /// the relay `via`, if any), then logs it with the clock it stops, and
    /// witnesses the checkpoint it carries, with `consistency` if the peer sent one
    /// (see [`crate::witness::Witness::carried`]).
    pub async fn accept_receipt(
        self: &Arc<Self>,
        m: &StoredMessage,
        party: &str,
        env: Envelope,
        via: Option<&str>,
        consistency: Option<&ConsistencyProof>,
    ) -> Result<(), ReceiptError> {
        // Checked and logged under one version of the agreement: an adoption waits for us.
        let _version = self.adopting.read().await;
        // A receipt's signatures are bounded like a delivered envelope's before any is verified.
        let keyring = &self.in_force().keyring;
        self.check_signatures(party, &env, keyring)
            .map_err(ReceiptError::Signatures)?;
        let signer = envelope::verify(&env, RECEIPT_TYPE, keyring, self.clock.now())?;
        if signer.party != party {
            return Err(ReceiptError::WrongSigner {
                signer: signer.party.clone(),
                party: party.to_owned(),
            });
        }
        let r = Receipt::decode(&env.payload[..])?;
        if r.message_id != m.id || r.from != party || r.to != self.party || r.payload_sha256 != m.payload_sha256 {
            return Err(ReceiptError::Mismatch {
                party: party.to_owned(),
                id: m.id.clone(),
            });
        }
        let note = r.checkpoint.as_ref().map(|c| c.note.clone()).unwrap_or_default();
        let cp = self
            .witness
            .verify(party, &note, &signer.key)
            .map_err(|e| ReceiptError::Checkpoint(e.to_string()))?;
        let logged = LogEntry::decode(&r.log_entry[..])?;
        if !entry::holds_envelope(&logged, &m.envelope) {
            return Err(ReceiptError::NotOurEnvelope);
        }
        let proof = proof_from_wire(&r.inclusion_proof).map_err(|e| ReceiptError::Proof(format!("has {e}")))?;
        if r.log_index >= cp.size {
            return Err(ReceiptError::Proof(format!(
                "log index {} is outside its checkpoint of size {}",
                r.log_index, cp.size
            )));
        }
        tlog_tiles::check_record(
            &proof,
            cp.size,
            cp.root,
            r.log_index,
            tlog_tiles::record_hash(&r.log_entry),
        )
        .map_err(|e| ReceiptError::Proof(e.to_string()))?;
        let meta = crate::message::meta::of_envelope(&env, None);
        let e = entry::received(self.clock.now(), &env, meta, party, via);
        let (mid, p, idx) = (m.id.clone(), party.to_owned(), r.log_index);
        let change = Box::new(move |c: &crate::db::Connection, index: u64| {
            state::record_receipt(c, &mid, &p, idx, index)?;
            state::meet_deadline(c, &mid, &p, Deadline::Receipt)?;
            Ok(())
        });
        match self.log.append_with(vec![e], change, false).await {
            Ok(_) => self.events().emit(event::Body::ReceiptReceived(r)),
            // Another batch recorded this receipt first: it is logged and announced once.
            Err(LogError::Refused(StateError::Duplicate(_))) => {}
            Err(e) => return Err(e.into()),
        }
        if let Some(witnessing) = self.witness.carried(party, cp, consistency) {
            self.tasks.spawn(witnessing);
        }
        Ok(())
    }
}
