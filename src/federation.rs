//! The `hotline.v1.Federation` service: what peers call. Handlers identify
//! the peer by its TLS certificate and hand over to the node.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::node::Node;
use crate::proto::federation_server::Federation;
use crate::proto::{
    ConsistencyProof, ConsistencyProofRequest, DeliverRequest, DeliverResponse, GetCheckpointRequest,
    GetCheckpointResponse, SignedCheckpoint,
};
use crate::status::caller;
use crate::tls::Caller;

/// Serves peers.
pub struct FederationService {
    node: Arc<Node>,
}

impl FederationService {
    /// Serves `node` to its peers.
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }

    fn peer<T>(&self, req: &Request<T>) -> Result<String, Status> {
        match caller(&self.node.identifier, req)? {
            Caller::Party(p) if p != self.node.party => Ok(p),
            Caller::Party(_) => Err(Status::permission_denied("a node does not deliver to itself")),
            Caller::Local { name, .. } => Err(Status::permission_denied(format!(
                "{name} is a local certificate; Federation is for the parties' nodes"
            ))),
        }
    }
}

#[tonic::async_trait]
impl Federation for FederationService {
    #[tracing::instrument(name = "Federation.Deliver", skip_all, err, fields(peer))]
    async fn deliver(&self, req: Request<DeliverRequest>) -> Result<Response<DeliverResponse>, Status> {
        let peer = self.peer(&req)?;
        tracing::Span::current().record("peer", peer.as_str());
        let _admitted = self.node.limits.admit(&peer)?;
        let receipt = self.node.deliver(&peer, req.into_inner()).await?;
        Ok(Response::new(DeliverResponse { receipt: Some(receipt) }))
    }

    #[tracing::instrument(name = "Federation.GetCheckpoint", skip_all, err)]
    async fn get_checkpoint(
        &self,
        req: Request<GetCheckpointRequest>,
    ) -> Result<Response<GetCheckpointResponse>, Status> {
        self.peer(&req)?;
        Ok(Response::new(GetCheckpointResponse {
            checkpoint: Some(SignedCheckpoint {
                note: self.node.log.head().note.to_vec(),
            }),
        }))
    }

    #[tracing::instrument(name = "Federation.ProveConsistency", skip_all, err)]
    async fn prove_consistency(
        &self,
        req: Request<ConsistencyProofRequest>,
    ) -> Result<Response<ConsistencyProof>, Status> {
        let peer = self.peer(&req)?;
        let _admitted = self.node.limits.admit(&peer)?;
        Ok(Response::new(crate::audit::consistency_proof(
            self.node.log.reader(),
            req.into_inner(),
        )?))
    }
}
