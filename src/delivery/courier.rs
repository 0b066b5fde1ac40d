//! A peer's courier and the sender's half of a delivery: what waits for one
//! peer goes in one `DeliverBatch` call, and each receipt that comes back is
//! checked (signature, the message it names, the receiver's checkpoint, the
//! inclusion proof of our envelope) before it is logged.

use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::Instrument;

use crate::envelope::{self, RECEIPT_TYPE};
use crate::log::tree::proof_from_wire;
use crate::log::{LogError, StateError, entry};
use crate::node::{Node, join_in_order};
use crate::proto::{
    Deadline, DeliverBatchRequest, Envelope, LogEntry, Receipt, SignedCheckpoint, deliver_outcome, event,
};
use crate::state::{self, StoredMessage};

/// The most envelopes one `DeliverBatch` call carries.
pub const BATCH: usize = 64;
/// `DeliverBatch` calls in flight to one peer at once.
pub const CALLS_PER_PEER: usize = 4;
/// How long a peer has to answer one `DeliverBatch` call.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// A message waiting for its peer's courier, and where its outcome goes.
pub type Queued = (StoredMessage, oneshot::Sender<Result<(), String>>);

/// Sends what waits for `party` in batches, a few calls at once, until
/// every sender of the queue is gone.
pub async fn run(node: Arc<Node>, party: String, mut queue: mpsc::UnboundedReceiver<Queued>) {
    let calls = Arc::new(Semaphore::new(CALLS_PER_PEER));
    let mut carried: Option<Queued> = None;
    loop {
        let first = match carried.take() {
            Some(q) => q,
            None => match queue.recv().await {
                Some(q) => q,
                None => return,
            },
        };
        // Waiting for a free call lets the next batch fill up.
        let Ok(call) = calls.clone().acquire_owned().await else {
            return;
        };
        // The receiver reads no batch larger than the agreement in force allows.
        let budget = {
            let in_force = node.in_force();
            let agreement = in_force.agreement();
            agreement.norms.max_batch_bytes(agreement.max_keys_per_party())
        };
        let mut bytes = first.0.envelope.encoded_len();
        let mut batch = vec![first];
        while batch.len() < BATCH {
            let Ok(q) = queue.try_recv() else { break };
            bytes += q.0.envelope.encoded_len();
            if bytes > budget {
                carried = Some(q); // it opens the next batch
                break;
            }
            batch.push(q);
        }
        let (sender, party) = (node.clone(), party.clone());
        let span = tracing::debug_span!("deliver_batch", envelopes = batch.len());
        node.tasks.spawn(
            async move {
                let (messages, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                let outcomes = tokio::select! {
                    outcomes = deliver_batch(&sender, &party, messages) => outcomes,
                    _ = sender.tasks.stopping() => return, // the outbox keeps them for the next start
                };
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome);
                }
                drop(call);
            }
            .instrument(span),
        );
    }
}

/// Delivers queued messages to one peer in one `DeliverBatch` call and
/// handles the receipts; one outcome per message, in order.
async fn deliver_batch(node: &Arc<Node>, party: &str, messages: Vec<StoredMessage>) -> Vec<Result<(), String>> {
    let fail_all = |why: String| messages.iter().map(|_| Err(why.clone())).collect();
    let Some(mut client) = node.in_force().peers.get(party) else {
        return fail_all(format!("{party} is not a peer"));
    };
    let req = DeliverBatchRequest {
        envelopes: messages.iter().map(|m| m.envelope.clone()).collect(),
        sender_checkpoint: Some(SignedCheckpoint {
            note: node.log.head().note.to_vec(),
        }),
        agreement: Some(node.in_force().reference()),
    };
    let outcomes = match tokio::time::timeout(CALL_TIMEOUT, client.deliver_batch(req)).await {
        Err(_) => return fail_all("timed out".into()),
        Ok(Err(s)) => return fail_all(format!("{:?}: {}", s.code(), s.message())),
        Ok(Ok(reply)) => {
            let reply = reply.into_inner();
            node.heard_from(party, reply.agreement.as_ref());
            if crate::node::PeerAgreements::check_shape(reply.agreement.as_ref()).is_ok() {
                node.peer_holds(party, reply.agreement.as_ref()).await;
            }
            reply.outcomes
        }
    };
    if outcomes.len() != messages.len() {
        return fail_all(format!(
            "the peer answered {} outcomes for {} envelopes",
            outcomes.len(),
            messages.len()
        ));
    }
    let receipts: Vec<Result<Envelope, String>> = outcomes
        .into_iter()
        .map(|o| match o.result {
            Some(deliver_outcome::Result::Receipt(env)) => Ok(env),
            Some(deliver_outcome::Result::Error(e)) => Err(format!("{:?}: {}", tonic::Code::from(e.code), e.message)),
            None => Err("the peer's outcome is empty".into()),
        })
        .collect();
    // Accepted concurrently, so the log writer takes them in one batch.
    let accepting: Vec<_> = messages
        .into_iter()
        .zip(receipts)
        .map(|(m, receipt)| {
            let (node, party) = (node.clone(), party.to_owned());
            async move { accept_receipt(&node, &m, &party, receipt?).await }
        })
        .collect();
    join_in_order(accepting, |e| Err(format!("receipt task failed: {e}"))).await
}

/// Checks a receipt for our message `m` delivered to `party`, then logs it.
async fn accept_receipt(node: &Arc<Node>, m: &StoredMessage, party: &str, env: Envelope) -> Result<(), String> {
    // Checked and logged under one version of the agreement: an adoption waits for us.
    let _version = node.adopting.read().await;
    // A receipt's signatures are bounded like a delivered envelope's before any is verified.
    let keyring = &node.in_force().keyring;
    node.check_signatures(party, &env, keyring)
        .map_err(|e| format!("receipt: {e}"))?;
    let signer =
        envelope::verify(&env, RECEIPT_TYPE, keyring, node.clock.now()).map_err(|e| format!("receipt: {e}"))?;
    if signer.party != party {
        return Err(format!("receipt signed by {} instead of {party}", signer.party));
    }
    let r = Receipt::decode(&env.payload[..]).map_err(|e| format!("receipt payload: {e}"))?;
    if r.message_id != m.id || r.from != party || r.to != node.party || r.payload_sha256 != m.payload_sha256 {
        return Err(format!("receipt from {party} does not match message {}", m.id));
    }
    let note = r.checkpoint.as_ref().map(|c| c.note.clone()).unwrap_or_default();
    let cp = node
        .witness
        .verify(party, &note, &signer.key)
        .map_err(|e| format!("receipt checkpoint: {e}"))?;
    let logged = LogEntry::decode(&r.log_entry[..]).map_err(|e| format!("receipt log entry: {e}"))?;
    if !entry::holds_envelope(&logged, &m.envelope) {
        return Err("receipt log entry does not hold our envelope verbatim".into());
    }
    let proof = proof_from_wire(&r.inclusion_proof).map_err(|e| format!("receipt inclusion proof has {e}"))?;
    if r.log_index >= cp.size {
        return Err(format!(
            "receipt log index {} is outside its checkpoint of size {}",
            r.log_index, cp.size
        ));
    }
    tlog_tiles::check_record(
        &proof,
        cp.size,
        cp.root,
        r.log_index,
        tlog_tiles::record_hash(&r.log_entry),
    )
    .map_err(|e| format!("receipt inclusion proof: {e}"))?;
    let e = entry::received(node.clock.now(), env, party);
    let (mid, p, idx) = (m.id.clone(), party.to_owned(), r.log_index);
    let change = Box::new(move |c: &crate::db::Connection, index: u64| {
        state::record_receipt(c, &mid, &p, idx, index)?;
        state::meet_deadline(c, &mid, &p, Deadline::Receipt)?;
        Ok(())
    });
    match node.log.append_with(vec![e], change, false).await {
        Ok(_) => node.events().emit(event::Body::ReceiptReceived(r)),
        // Another batch recorded this receipt first: it is logged and announced once.
        Err(LogError::Refused(StateError::Duplicate(_))) => {}
        Err(e) => return Err(e.to_string()),
    }
    let (witness, party) = (node.witness.clone(), party.to_owned());
    node.tasks.spawn(async move { witness.witness(&party, cp).await });
    Ok(())
}
