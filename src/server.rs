//! Starting and stopping a node: the gRPC server with its three services,
//! health checking and reflection, and the background workers. Shutdown
//! stops accepting calls, lets in-flight ones and the log's batches finish.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::audit::AuditService;
use crate::config::Config;
use crate::federation::FederationService;
use crate::node::{Node, NodeError};
use crate::operator::OperatorService;
use crate::proto::audit_server::AuditServer;
use crate::proto::federation_server::FederationServer;
use crate::proto::operator_server::OperatorServer;
use crate::{delivery, norms, transport};

/// The largest gRPC message a node accepts (the agreement's notice limit plus envelope overhead).
const MAX_MESSAGE_BYTES: usize = crate::agreement::MAX_NOTICE_BYTES_LIMIT as usize + 64 * 1024;

/// A node that is serving.
pub struct Running {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Its shared state.
    pub node: Arc<Node>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Starts the node of `config`, on `listener` if given (tests bind port 0 first).
pub async fn start(config: &Config, listener: Option<TcpListener>) -> Result<Running, NodeError> {
    let node = Node::open(config).await?;
    let listener = match listener {
        Some(l) => l,
        None => TcpListener::bind(config.listen)
            .await
            .map_err(|e| NodeError::Setup(format!("listen on {}: {e}", config.listen)))?,
    };
    let addr = listener.local_addr().map_err(|e| NodeError::Setup(e.to_string()))?;
    let client_cas: String = node
        .agreement
        .parties
        .iter()
        .filter_map(|p| match &p.tls {
            crate::agreement::TlsIdentity::Ca(pem) => Some(pem.as_str()),
            _ => None,
        })
        .chain(std::iter::once(
            config.ca_pem().map_err(|e| NodeError::Setup(e.to_string()))?.as_str(),
        ))
        .collect::<Vec<_>>()
        .join("\n");
    let cert = config.node_cert().map_err(|e| NodeError::Setup(e.to_string()))?;
    let (stop, stopped) = watch::channel(false);
    let mut shutdown = stopped.clone();
    let router = transport::server(&cert, &client_cas)
        .map_err(|e| NodeError::Setup(format!("TLS setup: {e}")))?
        .max_concurrent_streams(Some(config.concurrent_streams))
        .add_service(transport::health().await)
        .add_service(transport::reflection().map_err(|e| NodeError::Setup(e.to_string()))?)
        .add_service(
            FederationServer::new(FederationService::new(node.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            OperatorServer::new(OperatorService::new(node.clone())).max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(AuditServer::new(AuditService::new(
            node.log.clone(),
            node.identifier.clone(),
        )));
    let connections = crate::limits::ConnectionLimit::new(config.connections_per_address);
    let incoming = tokio_stream::StreamExt::filter_map(
        tokio_stream::wrappers::TcpListenerStream::new(listener),
        move |s| match s {
            Ok(stream) => connections.admit(stream).map(Ok),
            Err(e) => Some(Err(e)),
        },
    );
    let party = node.party.clone();
    let serve = tokio::spawn(
        async move {
            let signal = async move {
                let _ = shutdown.wait_for(|s| *s).await;
            };
            if let Err(e) = router.serve_with_incoming_shutdown(incoming, signal).await {
                tracing::error!(error = %e, "server stopped");
            }
        }
        .instrument(tracing::info_span!("server", party = %party)),
    );
    let deliveries = tokio::spawn(
        delivery::run(node.clone(), stopped.clone()).instrument(tracing::info_span!("delivery", party = %node.party)),
    );
    let clocks =
        tokio::spawn(norms::run(node.clone(), stopped).instrument(tracing::info_span!("norms", party = %node.party)));
    tracing::info!(party = %node.party, %addr, "node serving");
    Ok(Running {
        addr,
        node,
        stop,
        tasks: vec![serve, deliveries, clocks],
    })
}

impl Running {
    /// Stops serving, finishes in-flight calls and log batches, and closes the log.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        let party = self.node.party.clone();
        // Spawned tasks (witnessing, auto-answers) may still hold the node briefly.
        let mut node = self.node;
        for _ in 0..100 {
            match Arc::try_unwrap(node) {
                Ok(n) => {
                    n.close();
                    tracing::info!(%party, "node stopped");
                    return;
                }
                Err(shared) => {
                    node = shared;
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            }
        }
        tracing::warn!(%party, "node still shared at shutdown; its log closes when the last task ends");
    }
}
