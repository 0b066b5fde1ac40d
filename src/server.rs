//! Starting and stopping a node: the gRPC server with its three services,
//! health checking and reflection, and the background workers, all owned by
//! the node's task set. Shutdown stops accepting calls, lets in-flight ones
//! and the log's batches finish, and reports a panic of any task.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tracing::Instrument;

use crate::audit::AuditService;
use crate::clock::Clock;
use crate::config::Config;
use crate::federation::FederationService;
use crate::node::{Node, NodeError};
use crate::operator::OperatorService;
use crate::proto::audit_server::AuditServer;
use crate::proto::federation_server::FederationServer;
use crate::proto::operator_server::OperatorServer;
use crate::tasks::TaskPanicked;
use crate::{delivery, norms, transport};

/// Room in a request besides its envelopes: the sender's checkpoint note and framing.
const REQUEST_FRAMING_BYTES: usize = 16 * 1024;

/// How long calls in flight and background tasks have to finish at shutdown
/// before the rest are aborted (deliveries stay in the outbox).
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A node that is serving.
pub struct Running {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Its shared state.
    pub node: Arc<Node>,
    /// Where its metrics are served, if `[metrics]` is set.
    pub metrics_addr: Option<SocketAddr>,
    /// Where TAXII is served, if `[taxii]` is set.
    pub taxii_addr: Option<SocketAddr>,
    /// The `[metrics]` address configured, and what stops that server (a reload moves it).
    metrics: (Option<SocketAddr>, Option<tokio::sync::oneshot::Sender<()>>),
}

/// Starts the node of `config`, on `listener` if given (tests bind port 0
/// first), reading the time from `clock`.
pub async fn start(config: &Config, listener: Option<TcpListener>, clock: Clock) -> Result<Running, NodeError> {
    let lock = crate::store::DirLock::take(&config.data).map_err(|e| NodeError::Setup(e.to_string()))?;
    let cert = config.node_cert().map_err(|e| NodeError::Setup(e.to_string()))?;
    let node = Node::open(config, &cert, clock, lock).await?;
    // The largest request each service reads follows from the agreement: a
    // peer's batch of envelopes, an operator's notice. Larger ones are refused
    // before they are decoded.
    // (The agreement at start sets them; an amendment that raises them takes effect at the next start.)
    let (federation_bytes, operator_bytes) = {
        let in_force = node.in_force();
        let agreement = in_force.agreement();
        let keys = agreement.max_keys_per_party();
        (
            agreement.norms.max_batch_bytes(keys) + REQUEST_FRAMING_BYTES,
            agreement.norms.max_envelope_bytes(keys) + REQUEST_FRAMING_BYTES,
        )
    };
    let listener = match listener {
        Some(l) => l,
        None => TcpListener::bind(config.listen)
            .await
            .map_err(|e| NodeError::Setup(format!("listen on {}: {e}", config.listen)))?,
    };
    let addr = listener.local_addr().map_err(|e| NodeError::Setup(e.to_string()))?;
    // NOT_SERVING until the log may take entries (start_writing below).
    let (health_reporter, health) = transport::health_reporting(tonic_health::ServingStatus::NotServing).await;
    // A delivery has time for its bytes over the slowest link we deliver over;
    // every other call has call_timeout (limits::CallLimitLayer).
    let delivery_timeout = config.call_timeout + transport::transfer_time(federation_bytes);
    let router = transport::plain_server()
        .timeout(delivery_timeout)
        .max_concurrent_streams(Some(config.concurrent_streams))
        .layer(crate::limits::CallLimitLayer::new(
            node.gate().identifier().clone(),
            node.gate().limits().clone(),
            (config.peer_calls_in_flight, config.local_calls_in_flight),
            node.metrics().clone(),
            config.call_timeout,
        ))
        .add_service(health)
        .add_service(transport::reflection().map_err(|e| NodeError::Setup(e.to_string()))?)
        .add_service(transport::reflection_v1alpha().map_err(|e| NodeError::Setup(e.to_string()))?)
        .add_service(
            FederationServer::new(FederationService::new(node.gate().clone(), node.clone()))
                .max_decoding_message_size(federation_bytes)
                // Receipts carry the logged envelope with a proof and a checkpoint.
                .max_encoding_message_size(2 * federation_bytes),
        )
        .add_service(
            OperatorServer::new(OperatorService::new(node.gate().clone(), node.clone()))
                .max_decoding_message_size(operator_bytes),
        )
        .add_service(AuditServer::new(AuditService::new(
            node.log().clone(),
            node.gate().clone(),
            node.opener().clone(),
        )));
    let connections = limits(config);
    let server_tls = node.tls().clone();
    let (accept_loop, incoming) = transport::tls_incoming(
        listener,
        connections,
        move || server_tls.acceptor(),
        config.handshake_timeout,
    );
    node.tasks()
        .spawn(accept_loop.instrument(tracing::info_span!("accept", party = %node.party())));
    let party = node.party().to_owned();
    let server = node.clone();
    node.tasks().spawn(
        async move {
            let signal = server.tasks().stopping();
            if let Err(e) = router.serve_with_incoming_shutdown(incoming, signal).await {
                tracing::error!(error = %e, "server stopped");
            }
        }
        .instrument(tracing::info_span!("server", party = %party)),
    );
    if let Err(e) = node
        .start_writing(config.roster.as_deref(), config.startup_check_timeout)
        .await
    {
        let _ = node.tasks().stop(STOP_GRACE).await;
        close(node, config.party.as_str()).await;
        return Err(e);
    }
    transport::set_health(&health_reporter, tonic_health::ServingStatus::Serving).await;
    node.tasks()
        .spawn(delivery::run(node.clone()).instrument(tracing::info_span!("delivery", party = %node.party())));
    node.tasks()
        .spawn(norms::run(node.clone()).instrument(tracing::info_span!("norms", party = %node.party())));
    node.tasks().spawn(
        node.clone()
            .run_alerts()
            .instrument(tracing::info_span!("alerts", party = %node.party())),
    );
    let (metrics_addr, metrics_stop) = match config.metrics {
        Some(at) => {
            let (bound, stop) = serve_metrics(&node, config, at).await?;
            (Some(bound), Some(stop))
        }
        None => (None, None),
    };
    let taxii_addr = match config.taxii {
        Some(at) => Some(serve_taxii(&node, config, &cert, at).await?),
        None => None,
    };
    tracing::info!(party = %node.party(), %addr, ?metrics_addr, ?taxii_addr, "node serving");
    Ok(Running {
        addr,
        node,
        metrics_addr,
        taxii_addr,
        metrics: (config.metrics, metrics_stop),
    })
}

/// The caps every listener's connections pass (each listener counts its own).
fn limits(config: &Config) -> crate::limits::ConnectionLimit {
    crate::limits::ConnectionLimit::new(config.connections_per_address, config.connections)
}

/// Serves TAXII on `at`, to this party's own certificates, until the node stops.
async fn serve_taxii(
    node: &Arc<Node>,
    config: &Config,
    cert: &crate::tls::CertKey,
    at: SocketAddr,
) -> Result<SocketAddr, NodeError> {
    let setup = |e: String| NodeError::Setup(format!("taxii: {e}"));
    let own_ca = config.ca_pem().map_err(|e| setup(e.to_string()))?;
    let tls = Arc::new(transport::https_config(cert, &own_ca).map_err(|e| setup(e.to_string()))?);
    let listener = TcpListener::bind(at)
        .await
        .map_err(|e| setup(format!("listen on {at}: {e}")))?;
    let bound = listener.local_addr().map_err(|e| setup(e.to_string()))?;
    let owner = node.clone();
    let stop = async move { owner.tasks().stopping().await };
    node.tasks().spawn(
        crate::taxii::serve(
            listener,
            limits(config),
            node.clone(),
            tls,
            config.handshake_timeout,
            stop,
        )
        .instrument(tracing::info_span!("taxii", party = %node.party(), %bound)),
    );
    Ok(bound)
}

/// Serves the node's metrics on `at` until it stops; returns the address bound.
/// Serves the metrics on `at` until the node stops or the sender returned is used (a reload moves them).
async fn serve_metrics(
    node: &Arc<Node>,
    config: &Config,
    at: SocketAddr,
) -> Result<(SocketAddr, tokio::sync::oneshot::Sender<()>), NodeError> {
    let listener = TcpListener::bind(at)
        .await
        .map_err(|e| NodeError::Setup(format!("metrics: listen on {at}: {e}")))?;
    let bound = listener.local_addr().map_err(|e| NodeError::Setup(e.to_string()))?;
    let listener = crate::limits::LimitedListener {
        listener,
        limit: limits(config),
    };
    let reader = node.clone();
    // A scrape reads on the blocking pool (`metrics::serve`), as a blocking
    // section: PostgreSQL's reads run there, not on a helper thread each.
    let figures = move || {
        crate::db::blocking(|| reader.figures()).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "metrics: cannot read the figures");
            Default::default()
        })
    };
    let (metrics, owner) = (node.metrics().clone(), node.clone());
    let (moved, moved_rx) = tokio::sync::oneshot::channel::<()>();
    let stop = async move {
        tokio::select! {
            _ = owner.tasks().stopping() => {}
            _ = moved_rx => {}
        }
    };
    node.tasks().spawn(
        async move {
            if let Err(e) = crate::metrics::serve(listener, metrics, figures, stop).await {
                tracing::error!(error = %e, "metrics server stopped");
            }
        }
        .instrument(tracing::info_span!("metrics", party = %node.party(), %bound)),
    );
    Ok((bound, moved))
}

impl Running {
    /// Takes up what changed in `new` that a running node can (see
    /// [`Node::reload`]), and moves the metrics to a new `[metrics]` address
    /// (or stops or starts them); names what needs a restart.
    pub async fn reload(&mut self, started: &Config, new: &Config) -> crate::node::reload::Reloaded {
        let mut done = self.node.reload(started, new).await;
        if new.metrics != self.metrics.0 {
            if let Some(stop) = self.metrics.1.take() {
                let _ = stop.send(());
            }
            self.metrics_addr = None;
            if let Some(at) = new.metrics {
                match serve_metrics(&self.node, new, at).await {
                    Ok((bound, stop)) => {
                        self.metrics_addr = Some(bound);
                        self.metrics.1 = Some(stop);
                    }
                    Err(e) => tracing::warn!(error = %e, "reload: the metrics are not served"),
                }
            }
            self.metrics.0 = new.metrics;
            done.applied.push(match self.metrics_addr {
                Some(at) => format!("metrics served on {at}"),
                None => "metrics not served".into(),
            });
        }
        done
    }

    /// Stops serving, finishes in-flight calls and log batches, awaits every
    /// background task and closes the log; a panic in any task is the error.
    pub async fn stop(self) -> Result<(), TaskPanicked> {
        let party = self.node.party().to_owned();
        let stopped = self.node.tasks().stop(STOP_GRACE).await;
        close(self.node, &party).await;
        tracing::info!(%party, "node stopped");
        stopped
    }
}

/// Drops `node` and closes its log once no connection's task holds it any
/// more, within the grace: the writer, which holds the data directory's
/// lock, has stopped when this returns (or the grace ran out, logged).
async fn close(node: Arc<Node>, party: &str) {
    // A connection's task may hold the services (and so the node and its
    // log) for a moment after the server stops.
    let mut log = node.log().clone();
    drop(node);
    let until = tokio::time::Instant::now() + STOP_GRACE;
    loop {
        match Arc::try_unwrap(log) {
            Ok(owned) => return owned.close(),
            Err(shared) if tokio::time::Instant::now() < until => {
                log = shared;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            // The log, and the data directory's lock, close when the last call ends.
            Err(_) => {
                return tracing::warn!(%party, "log still shared at shutdown; it closes when the last call ends");
            }
        }
    }
}
