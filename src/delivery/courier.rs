//! A peer's courier: what waits for one peer goes in one `DeliverBatch`
//! call, and each receipt that comes back is handed to the node, which
//! checks it before it is logged (`node/receipts.rs`).

use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tracing::Instrument;

use crate::node::{Node, join_in_order};
use crate::proto::{DeliverBatchRequest, Envelope, SignedCheckpoint, deliver_outcome};
use crate::state::StoredMessage;

/// The most envelopes one `DeliverBatch` call carries.
pub const BATCH: usize = 64;
/// `DeliverBatch` calls in flight to one peer at once.
pub const CALLS_PER_PEER: usize = 4;
/// `DeliverBatch` calls in flight from this node at once, to all reachable
/// peers together. Without it a node owing a message to every peer (a
/// roster published to 192, a round of communication checks) opens a call
/// to each at once; when every node does so on shared cores, the calls wait
/// in the peers' queues past their time limit, are sent again, and each
/// retry spends the peers' work once more (the 193-party drill collapsed
/// so). A call's time limit starts once it holds its place.
pub const CALLS_AT_ONCE: usize = 32;
/// `DeliverBatch` calls in flight at once to all peers our last call did
/// not reach: their own smaller share, so peers that are down or silent
/// never hold up the others, and a peer slowed by load is not called harder.
pub const CALLS_AT_ONCE_UNREACHED: usize = 8;

/// The node's places for calls in flight, shared by every peer's courier.
#[derive(Clone)]
pub struct Places {
    reached: Arc<Semaphore>,
    unreached: Arc<Semaphore>,
}

impl Places {
    /// [`CALLS_AT_ONCE`] places for reachable peers, [`CALLS_AT_ONCE_UNREACHED`] for the others.
    pub fn new() -> Self {
        Self {
            reached: Arc::new(Semaphore::new(CALLS_AT_ONCE)),
            unreached: Arc::new(Semaphore::new(CALLS_AT_ONCE_UNREACHED)),
        }
    }

    /// Waits for a place for a call to `party`, from the share its link decides.
    async fn take(&self, node: &Node, party: &str) -> Option<OwnedSemaphorePermit> {
        self.share(node.links().reachable(party)).acquire_owned().await.ok()
    }

    /// The places of calls to reachable peers, or to the others.
    fn share(&self, reachable: bool) -> Arc<Semaphore> {
        if reachable { &self.reached } else { &self.unreached }.clone()
    }
}

/// How long a peer has to answer one `DeliverBatch` call, besides the time
/// its bytes take over the slowest link (`transport::transfer_time`).
pub(super) const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// A message waiting for its peer's courier, and where its outcome goes.
/// Shared, not copied: the delivery holds the same message, and a queue's
/// first block (32 slots, allocated with it, one per peer) stays small.
pub type Queued = (Arc<StoredMessage>, oneshot::Sender<Result<(), String>>);

/// Sends what waits for `party` in batches, a few calls at once and each
/// within one of the node's `places`, until every sender of the queue is gone.
pub async fn run(node: Arc<Node>, party: String, mut queue: mpsc::UnboundedReceiver<Queued>, places: Places) {
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
        let Some(place) = places.take(&node, &party).await else {
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
        node.tasks().spawn(
            async move {
                let (messages, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                let outcomes = tokio::select! {
                    outcomes = deliver_batch(&sender, &party, messages) => outcomes,
                    _ = sender.tasks().stopping() => return, // the outbox keeps them for the next start
                };
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome);
                }
                drop((call, place));
            }
            .instrument(span),
        );
    }
}

/// Delivers queued messages to one peer in one `DeliverBatch` call and
/// handles the receipts; one outcome per message, in order.
async fn deliver_batch(node: &Arc<Node>, party: &str, messages: Vec<Arc<StoredMessage>>) -> Vec<Result<(), String>> {
    let fail_all = |why: String| messages.iter().map(|_| Err(why.clone())).collect();
    let Some(mut client) = node.in_force().peers.get(party) else {
        return fail_all(format!("{party} is not a peer"));
    };
    // Our checkpoint with its proof from the last one we showed the peer, so
    // it need not call us to witness it (see `Witness::carried`).
    let head = node.log().head();
    let req = DeliverBatchRequest {
        envelopes: messages.iter().map(|m| m.envelope.clone()).collect(),
        sender_checkpoint: Some(SignedCheckpoint {
            note: head.note.to_vec(),
        }),
        agreement: Some(node.in_force().reference()),
        sender: String::new(),
        sender_consistency: node.witness().show(party, head.size).await,
    };
    let deadline = CALL_TIMEOUT + crate::transport::transfer_time(req.encoded_len());
    let (outcomes, proof) = match node.call_peer(party, deadline, client.deliver_batch(req)).await {
        Err(why) => return fail_all(why),
        Ok(reply) => {
            node.heard_from(party, reply.agreement.as_ref());
            if crate::node::PeerAgreements::check_shape(reply.agreement.as_ref()).is_ok() {
                node.peer_holds(party, reply.agreement.as_ref()).await;
            }
            (reply.outcomes, reply.receiver_consistency)
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
            let (node, party, proof) = (node.clone(), party.to_owned(), proof.clone());
            Box::pin(async move {
                node.accept_receipt(&m, &party, receipt?, None, proof.as_ref())
                    .await
                    .map_err(|e| e.to_string())
            })
        })
        .collect();
    join_in_order(accepting, |e| Err(format!("receipt task failed: {e}"))).await
}

#[cfg(test)]
mod tests {
    use crate::delivery::courier::*;

    #[test]
    fn reachable_peers_share_32_places_and_unreached_ones_8_of_their_own() {
        let places = Places::new();
        let reached: Vec<_> = (0..CALLS_AT_ONCE)
            .map(|_| {
                places
                    .share(true)
                    .try_acquire_owned()
                    .expect("a place for a reachable peer")
            })
            .collect();
        assert!(places.share(true).try_acquire_owned().is_err(), "the 33rd call waits");
        // Peers that are down still get their calls out, and take none of the others' places.
        let unreached: Vec<_> = (0..CALLS_AT_ONCE_UNREACHED)
            .map(|_| {
                places
                    .share(false)
                    .try_acquire_owned()
                    .expect("a place for an unreached peer")
            })
            .collect();
        assert!(
            places.share(false).try_acquire_owned().is_err(),
            "the 9th call to an unreached peer waits"
        );
        drop(reached);
        assert_eq!(places.share(true).available_permits(), CALLS_AT_ONCE);
        assert_eq!(places.share(false).available_permits(), 0);
        drop(unreached);
    }
}
