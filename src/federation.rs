//! The `hotline.v1.Federation` service: what peers call. Handlers identify
//! the peer by its TLS certificate and hand over to the node.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::gate::Gate;
use crate::node::{Node, NodeError, PeerAgreements};
use crate::proto::federation_server::Federation;
use crate::proto::{
    ConsistencyProof, ConsistencyProofRequest, DeliverBatchRequest, DeliverBatchResponse, DeliverOutcome,
    DeliverRequest, DeliverResponse, Envelope, GetAgreementRequest, GetAgreementResponse, GetCheckpointRequest,
    GetCheckpointResponse, GetWitnessedCheckpointRequest, GetWitnessedCheckpointResponse, Receipt, Refusal,
    RelayRequest, SignedCheckpoint, deliver_outcome,
};
use crate::state;
use prost::Message;

/// The most envelopes one `DeliverBatch` call may carry.
pub const MAX_BATCH: usize = 256;

/// Refuses a call carrying no envelope or more than [`MAX_BATCH`]; `what`
/// names the call in the message (`a batch`, `a relay`).
fn envelopes_within_batch(n: usize, what: &str) -> Result<(), Status> {
    if n == 0 || n > MAX_BATCH {
        return Err(Status::invalid_argument(format!(
            "field envelopes has {n} envelopes; {what} carries 1 to {MAX_BATCH}"
        )));
    }
    Ok(())
}

/// The size of the largest checkpoint our receipts among `outcomes` carry
/// (0 when none does): the one the caller witnesses next.
fn receipts_checkpoint(outcomes: &[Result<Envelope, NodeError>]) -> u64 {
    outcomes
        .iter()
        .filter_map(|o| Receipt::decode(&o.as_ref().ok()?.payload[..]).ok()?.checkpoint)
        .filter_map(|c| crate::log::checkpoint::parse_size(&c.note))
        .max()
        .unwrap_or(0)
}

/// Serves peers: `gate` says which peer calls, `node` takes what it delivers.
pub struct FederationService {
    gate: Gate,
    node: Arc<Node>,
}

impl FederationService {
    /// Serves `node` to the peers `gate` knows.
    pub fn new(gate: Gate, node: Arc<Node>) -> Self {
        Self { gate, node }
    }
}

#[tonic::async_trait]
impl Federation for FederationService {
    #[tracing::instrument(name = "Federation.Deliver", skip_all, fields(peer))]
    async fn deliver(&self, req: Request<DeliverRequest>) -> Result<Response<DeliverResponse>, Status> {
        let peer = self.gate.peer(&req)?;
        tracing::Span::current().record("peer", peer.as_str());
        let _admitted = self.gate.admit_peer(&peer, 1)?;
        let req = req.into_inner();
        PeerAgreements::check_shape(req.agreement.as_ref())?;
        let claim = req.agreement.clone();
        self.node.heard_from(&peer, claim.as_ref());
        let receipt = self.node.deliver(&peer, req).await?;
        self.node.peer_holds(&peer, claim.as_ref()).await;
        Ok(Response::new(DeliverResponse {
            receipt: Some(receipt),
            agreement: Some(self.node.in_force().reference()),
        }))
    }

    #[tracing::instrument(name = "Federation.DeliverBatch", skip_all, fields(peer, envelopes))]
    async fn deliver_batch(&self, req: Request<DeliverBatchRequest>) -> Result<Response<DeliverBatchResponse>, Status> {
        let peer = self.gate.peer(&req)?;
        let req = req.into_inner();
        let n = req.envelopes.len();
        let span = tracing::Span::current();
        span.record("peer", peer.as_str());
        span.record("envelopes", n);
        envelopes_within_batch(n, "a batch")?;
        // Each envelope counts against the peer's limits as one Deliver would.
        let _admitted = self.gate.admit_peer(&peer, n)?;
        PeerAgreements::check_shape(req.agreement.as_ref())?;
        self.node.heard_from(&peer, req.agreement.as_ref());
        // The peer's own envelopes come with its checkpoint's proof, and our
        // receipts go back with theirs: neither side calls the other to witness.
        let (outcomes, proof) = match req.sender.as_str() {
            "" => {
                let outcomes = self
                    .node
                    .deliver_batch(&peer, req.envelopes, req.sender_checkpoint, req.sender_consistency)
                    .await;
                let proof = self.node.witness().show(&peer, receipts_checkpoint(&outcomes)).await;
                (outcomes, proof)
            }
            sender => (self.node.deliver_relayed(&peer, sender, req.envelopes).await?, None),
        };
        // A claim is weighed only from a peer whose delivery we accepted.
        if outcomes.iter().any(Result::is_ok) {
            self.node.peer_holds(&peer, req.agreement.as_ref()).await;
        }
        let outcomes = outcomes
            .into_iter()
            .map(|outcome| DeliverOutcome {
                result: Some(match outcome {
                    Ok(receipt) => deliver_outcome::Result::Receipt(receipt),
                    Err(e) => deliver_outcome::Result::Error(Refusal::from(Status::from(e))),
                }),
            })
            .collect();
        Ok(Response::new(DeliverBatchResponse {
            outcomes,
            agreement: Some(self.node.in_force().reference()),
            receiver_consistency: proof,
        }))
    }

    #[tracing::instrument(name = "Federation.Relay", skip_all, fields(peer, to))]
    async fn relay(&self, req: Request<RelayRequest>) -> Result<Response<DeliverBatchResponse>, Status> {
        let peer = self.gate.peer(&req)?;
        let req = req.into_inner();
        let span = tracing::Span::current();
        span.record("peer", peer.as_str());
        span.record("to", req.to.as_str());
        let n = req.envelopes.len();
        envelopes_within_batch(n, "a relay")?;
        // Each envelope counts against the caller's limits as its own delivery would.
        let _admitted = self.gate.admit_peer(&peer, n)?;
        PeerAgreements::check_shape(req.agreement.as_ref())?;
        self.node.heard_from(&peer, req.agreement.as_ref());
        let outcomes = self.node.relay(&peer, req).await?;
        Ok(Response::new(DeliverBatchResponse {
            outcomes,
            agreement: Some(self.node.in_force().reference()),
            ..Default::default()
        }))
    }

    #[tracing::instrument(name = "Federation.GetCheckpoint", skip_all)]
    async fn get_checkpoint(
        &self,
        req: Request<GetCheckpointRequest>,
    ) -> Result<Response<GetCheckpointResponse>, Status> {
        self.gate.peer(&req)?;
        Ok(Response::new(GetCheckpointResponse {
            checkpoint: Some(SignedCheckpoint {
                note: self.node.log().head().note.to_vec(),
            }),
        }))
    }

    #[tracing::instrument(name = "Federation.GetWitnessedCheckpoint", skip_all, fields(peer))]
    async fn get_witnessed_checkpoint(
        &self,
        req: Request<GetWitnessedCheckpointRequest>,
    ) -> Result<Response<GetWitnessedCheckpointResponse>, Status> {
        let peer = self.gate.peer(&req)?;
        tracing::Span::current().record("peer", peer.as_str());
        // One indexed row, asked once per start, bounded like GetCheckpoint by the call
        // layer (calls in flight, connections, call time) and not against the peer's
        // request rate: a peer starting must not spend the budget of its first deliveries.
        // Only the caller's own log: its checkpoints are what it needs to see.
        let asker = peer.clone();
        let witnessed = self.node.query(move |c| state::last_witnessed(c, &asker)).await?;
        Ok(Response::new(GetWitnessedCheckpointResponse {
            checkpoint: witnessed.map(|(_, note)| SignedCheckpoint { note }),
        }))
    }

    #[tracing::instrument(name = "Federation.ProveConsistency", skip_all)]
    async fn prove_consistency(
        &self,
        req: Request<ConsistencyProofRequest>,
    ) -> Result<Response<ConsistencyProof>, Status> {
        let peer = self.gate.peer(&req)?;
        let _admitted = self.gate.admit_peer(&peer, 1)?;
        Ok(Response::new(
            self.node.log().reader().prove_consistency(req.get_ref())?,
        ))
    }

    #[tracing::instrument(name = "Federation.GetAgreement", skip_all, fields(version = req.get_ref().version))]
    async fn get_agreement(&self, req: Request<GetAgreementRequest>) -> Result<Response<GetAgreementResponse>, Status> {
        let peer = self.gate.peer(&req)?;
        let _admitted = self.gate.admit_peer(&peer, 1)?;
        // Version 0 asks for the version in force: what a party that just joined starts from.
        let asked = match req.get_ref().version {
            0 => self.node.in_force().version(),
            v => v,
        };
        let adopted = self.node.query(move |c| state::adopted_version(c, asked)).await?;
        let Some(adopted) = adopted else {
            let held = self.node.in_force().version();
            return Err(NodeError::NoSuchAgreement { asked, held }.into());
        };
        Ok(Response::new(GetAgreementResponse {
            signed_note: adopted.signed_note,
        }))
    }
}
