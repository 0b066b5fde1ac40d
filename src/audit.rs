//! The `hotline.v1.Audit` service: read-only access to the audit log for
//! auditors and operators, over mutual TLS.

use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::gate::{Gate, Reader};
use crate::keys::VerifierKey;
use crate::limits::Admitted;
use crate::log::Log;
use crate::log::tree::proof_to_wire;
use crate::log::verify::{Replay, Report, VerifyError};
use crate::opener::Opener;
use crate::proto::audit_client::AuditClient;
use crate::proto::audit_server::Audit;
use crate::proto::{
    AuditEntry, ConsistencyProof, ConsistencyProofRequest, GetCheckpointRequest, GetCheckpointResponse,
    GetEntriesRequest, InclusionProof, InclusionProofRequest, ListWitnessedCheckpointsRequest,
    ListWitnessedCheckpointsResponse, OpenedBody, SignedCheckpoint, WitnessedCheckpoint,
};

/// Entries read from the database per round trip of a stream.
const ENTRY_CHUNK: usize = 256;

/// Serves the audit log to local auditors and operators.
pub struct AuditService {
    log: Arc<Log>,
    gate: Gate,
    /// Opens sealed envelopes for the local auditors cleared for them.
    opener: Opener,
}

impl AuditService {
    /// Serves `log` to the local operators and auditors `gate` knows, each
    /// call counted against the caller's limits (those of the Operator
    /// service); `opener` opens the sealed envelopes a caller is cleared for.
    pub fn new(log: Arc<Log>, gate: Gate, opener: Opener) -> Self {
        Self { log, gate, opener }
    }

    /// A local auditor or operator, or an observer the agreement names,
    /// within its rate and in-flight limits.
    fn allow<T>(&self, req: &Request<T>) -> Result<Admitted, Status> {
        Ok(self.reader(req)?.1)
    }

    /// Like [`AuditService::allow`], with what the caller may read.
    fn reader<T>(&self, req: &Request<T>) -> Result<(Reader, Admitted), Status> {
        self.gate.audit_reader(req)
    }
}

/// A sealed envelope's body and salt, opened with our key; none for one
/// not sealed, or sealed to others only (a message we relayed).
fn opened(opener: &Opener, envelope: &[u8]) -> Option<OpenedBody> {
    let env = <crate::proto::Envelope as prost::Message>::decode(envelope).ok()?;
    let (body, salt) = opener.open_salted(&env).ok()?;
    Some(OpenedBody {
        salt: salt?,
        body: body.payload,
    })
}

type EntryStream = Pin<Box<dyn Stream<Item = Result<AuditEntry, Status>> + Send>>;

#[tonic::async_trait]
impl Audit for AuditService {
    #[tracing::instrument(name = "Audit.GetCheckpoint", skip_all)]
    async fn get_checkpoint(
        &self,
        req: Request<GetCheckpointRequest>,
    ) -> Result<Response<GetCheckpointResponse>, Status> {
        let _admitted = self.allow(&req)?;
        Ok(Response::new(GetCheckpointResponse {
            checkpoint: Some(SignedCheckpoint {
                note: self.log.head().note.to_vec(),
            }),
        }))
    }

    type GetEntriesStream = EntryStream;

    #[tracing::instrument(name = "Audit.GetEntries", skip_all, fields(start = req.get_ref().start, end = req.get_ref().end))]
    async fn get_entries(&self, req: Request<GetEntriesRequest>) -> Result<Response<EntryStream>, Status> {
        let (reader, _admitted) = self.reader(&req)?;
        let size = self.log.head().size;
        let GetEntriesRequest { start, end } = req.into_inner();
        let end = if end == 0 { size } else { end };
        if end > size {
            return Err(Status::out_of_range(format!(
                "end {end} is beyond the tree size {size}"
            )));
        }
        if start > end {
            return Err(Status::invalid_argument(format!("start {start} is after end {end}")));
        }
        let (tx, rx) = tokio::sync::mpsc::channel(ENTRY_CHUNK);
        let log = self.log.clone();
        let opener = self.opener.clone();
        tokio::spawn(async move {
            let mut next = start;
            while next < end {
                let reader_log = log.clone();
                let chunk =
                    tokio::task::spawn_blocking(move || reader_log.reader().entries(next, end, ENTRY_CHUNK)).await;
                let chunk = match chunk {
                    Ok(Ok(c)) if !c.is_empty() => c,
                    Ok(Ok(_)) => break,
                    Ok(Err(e)) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                    Err(e) => {
                        let _ = tx
                            .send(Err(crate::status::internal(&format!("reading entries: {e}"))))
                            .await;
                        return;
                    }
                };
                for (index, entry) in chunk {
                    next = index + 1;
                    // The entry always; what it keeps beside it only to a reader cleared for it.
                    let cleared = |outside: &Vec<u8>| {
                        <crate::proto::LogEntry as prost::Message>::decode(&entry.data[..])
                            .is_ok_and(|e| reader.may_read(crate::log::entry::label(&e, outside)))
                    };
                    let envelope = entry.envelope.as_ref().filter(|o| cleared(o)).cloned();
                    let opened = envelope.as_deref().and_then(|e| opened(&opener, e));
                    let item = AuditEntry {
                        index,
                        data: entry.data,
                        envelope: envelope.unwrap_or_default(),
                        opened,
                    };
                    if tx.send(Ok(item)).await.is_err() {
                        return; // the client went away
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    #[tracing::instrument(name = "Audit.GetInclusionProof", skip_all, fields(index = req.get_ref().index))]
    async fn get_inclusion_proof(
        &self,
        req: Request<InclusionProofRequest>,
    ) -> Result<Response<InclusionProof>, Status> {
        let _admitted = self.allow(&req)?;
        let InclusionProofRequest { index, tree_size } = req.into_inner();
        let (tree_size, leaf, proof) = self.log.reader().inclusion_proof(index, tree_size)?;
        Ok(Response::new(InclusionProof {
            index,
            tree_size,
            leaf_hash: leaf.0.to_vec(),
            hashes: proof_to_wire(&proof),
        }))
    }

    #[tracing::instrument(name = "Audit.GetConsistencyProof", skip_all)]
    async fn get_consistency_proof(
        &self,
        req: Request<ConsistencyProofRequest>,
    ) -> Result<Response<ConsistencyProof>, Status> {
        let _admitted = self.allow(&req)?;
        Ok(Response::new(self.log.reader().prove_consistency(req.get_ref())?))
    }

    #[tracing::instrument(name = "Audit.ListWitnessedCheckpoints", skip_all)]
    async fn list_witnessed_checkpoints(
        &self,
        req: Request<ListWitnessedCheckpointsRequest>,
    ) -> Result<Response<ListWitnessedCheckpointsResponse>, Status> {
        let _admitted = self.allow(&req)?;
        let party = req.into_inner().party;
        let rows = self
            .log
            .reader()
            .witnessed((!party.is_empty()).then_some(party.as_str()))?;
        Ok(Response::new(ListWitnessedCheckpointsResponse {
            checkpoints: rows
                .into_iter()
                .map(|(party, _, note)| WitnessedCheckpoint {
                    party,
                    checkpoint: Some(SignedCheckpoint { note }),
                })
                .collect(),
        }))
    }
}

/// Verifies a running node's log through its Audit service: fetches the
/// latest checkpoint, streams every entry, and recomputes the tree.
pub async fn verify_node(
    node: &str,
    mut client: AuditClient<tonic::transport::Channel>,
    key: &VerifierKey,
    mut progress: impl FnMut(u64, u64),
) -> Result<Report, VerifyError> {
    let remote = |what: String| VerifyError::Remote {
        node: node.to_owned(),
        what,
    };
    let note = client
        .get_checkpoint(GetCheckpointRequest {})
        .await
        .map_err(|s| remote(format!("GetCheckpoint: {}", s.message())))?
        .into_inner()
        .checkpoint
        .ok_or_else(|| remote("GetCheckpoint returned no checkpoint".into()))?
        .note;
    let size = crate::log::checkpoint::verify(&note, key)
        .map_err(|e| remote(e.to_string()))?
        .size;
    // Envelopes above the caller's clearance come as commitments: counted, not read.
    let mut replay = Replay::withholding(key);
    if size > 0 {
        let mut stream = client
            .get_entries(GetEntriesRequest { start: 0, end: size })
            .await
            .map_err(|s| remote(format!("GetEntries: {}", s.message())))?
            .into_inner();
        while let Some(item) = stream
            .message()
            .await
            .map_err(|s| remote(format!("GetEntries: {}", s.message())))?
        {
            let outside = (!item.envelope.is_empty()).then_some(&item.envelope[..]);
            replay.entry(item.index, &item.data, outside)?;
            if item.index % 4096 == 0 {
                progress(item.index, size);
            }
        }
    }
    if replay.size() != size {
        return Err(VerifyError::Truncated {
            entries: replay.size(),
            signed: size,
        });
    }
    replay.checkpoint(&note)?;
    progress(size, size);
    Ok(replay.report())
}
