//! The fault drill: one peer unreachable, answering garbage, presenting a
//! certificate that is not the agreed one, or silent. Deliveries to the other
//! peer are not held up, and everything completes once the fault clears.

mod common;

use common::{Cluster, FAST_NORMS, RETRY_MAX, notice};
use hotline::state;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

fn receipted(c: &Cluster, id: &str, party: &str) -> bool {
    c.node(0)
        .read(|db| state::receipts(db, id))
        .unwrap()
        .iter()
        .any(|(p, _)| p == party)
}

/// A fault standing in for ARG at its address until dropped.
async fn fault(kind: &str, addr: std::net::SocketAddr) -> tokio::task::JoinHandle<()> {
    let listener = TcpListener::bind(addr).await.unwrap();
    match kind {
        "garbage" => tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let _ = s.write_all(b"\x16\x03\x01garbage garbage garbage\r\n\r\n").await;
            }
        }),
        "silent" => tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s); // accept and never answer
            }
        }),
        "wrong-cert" => {
            let ca = hotline::tls::new_ca("ARG").unwrap();
            let cert =
                hotline::tls::issue("ARG", &ca, "ARG", &["127.0.0.1".into()], hotline::tls::Usage::Node).unwrap();
            let server = hotline::transport::server(&cert, &ca.cert, std::time::Duration::from_secs(10))
                .unwrap()
                .add_service(hotline::transport::health().await);
            tokio::spawn(async move {
                let _ = server
                    .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                    .await;
            })
        }
        _ => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faulty_peer_holds_up_nobody_and_catches_up_once_it_is_back() {
    let mut c = Cluster::start(&["PER", "CHL", "ARG"], FAST_NORMS).await;
    let arg_addr = c.configs[2].listen_addr();
    c.stop(2).await;
    let mut ids = Vec::new();
    for kind in ["unreachable", "garbage", "wrong-cert", "silent"] {
        let stand_in = if kind == "unreachable" {
            None
        } else {
            Some(fault(kind, arg_addr).await)
        };
        let id = c
            .send(0, notice(&["CHL", "ARG"], &format!("while ARG is {kind}")))
            .await;
        c.eventually(5, &format!("CHL's receipt while ARG is {kind}"), |c| {
            receipted(c, &id, "CHL")
        })
        .await;
        assert!(!receipted(&c, &id, "ARG"), "ARG cannot have receipted while {kind}");
        if let Some(task) = stand_in {
            task.abort();
            let _ = task.await;
        }
        ids.push(id);
    }
    c.restart(2).await;
    c.eventually_advancing(40, RETRY_MAX, "ARG receipts everything once back", |c| {
        ids.iter().all(|id| receipted(c, id, "ARG"))
    })
    .await;
    for id in &ids {
        assert_eq!(c.times_received(2, id), 1, "{id} is logged once at ARG");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_messages_stuck_at_a_silent_peer_hold_up_nobody() {
    let mut c = Cluster::start(&["PER", "CHL", "ARG"], FAST_NORMS).await;
    let arg_addr = c.configs[2].listen_addr();
    c.stop(2).await;
    let stand_in = fault("silent", arg_addr).await;
    // More than a node keeps in flight to one peer: every slot ARG has is taken.
    for i in 0..600 {
        c.send(0, notice(&["ARG"], &format!("stuck {i}"))).await;
    }
    let id = c.send(0, notice(&["CHL"], "while ARG is silent")).await;
    c.eventually(5, "CHL's receipt while 600 wait for ARG", |c| receipted(c, &id, "CHL"))
        .await;
    stand_in.abort();
}

/// A peer that answers every delivery with a receipt carrying one valid
/// signature twenty thousand times.
struct HostileReceipts {
    key: hotline::keys::IdentityKey,
}

#[tonic::async_trait]
impl hotline::proto::federation_server::Federation for HostileReceipts {
    async fn deliver(
        &self,
        _: tonic::Request<hotline::proto::DeliverRequest>,
    ) -> Result<tonic::Response<hotline::proto::DeliverResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("hostile"))
    }

    async fn deliver_batch(
        &self,
        req: tonic::Request<hotline::proto::DeliverBatchRequest>,
    ) -> Result<tonic::Response<hotline::proto::DeliverBatchResponse>, tonic::Status> {
        use hotline::proto::{DeliverOutcome, deliver_outcome};
        let mut receipt =
            hotline::envelope::sign(hotline::envelope::RECEIPT_TYPE, b"receipt".to_vec(), &self.key).unwrap();
        receipt.signatures = vec![receipt.signatures[0].clone(); 20_000];
        let outcomes = req
            .into_inner()
            .envelopes
            .iter()
            .map(|_| DeliverOutcome {
                result: Some(deliver_outcome::Result::Receipt(receipt.clone())),
            })
            .collect();
        Ok(tonic::Response::new(hotline::proto::DeliverBatchResponse {
            outcomes,
            ..Default::default()
        }))
    }

    async fn get_checkpoint(
        &self,
        _: tonic::Request<hotline::proto::GetCheckpointRequest>,
    ) -> Result<tonic::Response<hotline::proto::GetCheckpointResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("hostile"))
    }

    async fn prove_consistency(
        &self,
        _: tonic::Request<hotline::proto::ConsistencyProofRequest>,
    ) -> Result<tonic::Response<hotline::proto::ConsistencyProof>, tonic::Status> {
        Err(tonic::Status::unimplemented("hostile"))
    }
    async fn get_agreement(
        &self,
        _: tonic::Request<hotline::proto::GetAgreementRequest>,
    ) -> Result<tonic::Response<hotline::proto::GetAgreementResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("hostile"))
    }
    async fn get_witnessed_checkpoint(
        &self,
        _: tonic::Request<hotline::proto::GetWitnessedCheckpointRequest>,
    ) -> Result<tonic::Response<hotline::proto::GetWitnessedCheckpointResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("hostile"))
    }
    async fn relay(
        &self,
        _: tonic::Request<hotline::proto::RelayRequest>,
    ) -> Result<tonic::Response<hotline::proto::DeliverBatchResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("hostile"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_with_thousands_of_signatures_is_refused_before_any_is_verified() {
    let mut c = Cluster::start(&["PER", "ARG"], FAST_NORMS).await;
    let arg = c.configs[1].clone();
    c.stop(1).await;
    let listener = TcpListener::bind(arg.listen_addr()).await.unwrap();
    let hostile = HostileReceipts {
        key: hotline::keys::IdentityKey::load(&arg.identity_key).unwrap(),
    };
    let server = hotline::transport::server(
        &arg.node_cert().unwrap(),
        &c.configs[0].ca_pem().unwrap(),
        std::time::Duration::from_secs(10),
    )
    .unwrap()
    .add_service(hotline::proto::federation_server::FederationServer::new(hostile));
    let stand_in = tokio::spawn(async move {
        let _ = server
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await;
    });
    let id = c.send(0, notice(&["ARG"], "to a hostile peer")).await;
    c.eventually(10, "the hostile receipt refused and the attempt recorded", |c| {
        c.node(0)
            .read(state::outbox)
            .unwrap()
            .iter()
            .any(|p| p.message_id == id && p.last_error.as_deref().is_some_and(|e| e.contains("20000 signatures")))
    })
    .await;
    assert!(!receipted(&c, &id, "ARG"));
    stand_in.abort();
}
