//! gRPC over mutual TLS: the server every node runs (with health checking
//! and reflection beside the real services) and the client channels that
//! nodes, operators and auditors open.

use std::time::Duration;

mod dial;

use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

pub use dial::{channel, channel_any, channel_from};

use crate::tls::CertKey;

/// Why a connection could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The node's TLS certificate, key or client CAs were refused.
    #[error("TLS setup: {0}")]
    Tls(String),
    /// The endpoint URL or TLS material was refused.
    #[error("{endpoint}: {source}")]
    Setup {
        /// The endpoint URL.
        endpoint: String,
        /// The underlying error.
        source: tonic::transport::Error,
    },
}

/// A server builder that requires client certificates issued by one of
/// `client_cas` (PEM), and closes a connection that has not completed its
/// TLS handshake within `handshake_timeout`.
pub fn server(
    node: &CertKey,
    client_cas: &str,
    handshake_timeout: Duration,
) -> Result<Server, tonic::transport::Error> {
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(&node.cert, &node.key))
        .client_ca_root(Certificate::from_pem(client_cas))
        .client_auth_optional(false)
        .timeout(handshake_timeout);
    Server::builder().tls_config(tls).map(|s| {
        s.http2_keepalive_interval(Some(SERVER_KEEPALIVE_EVERY))
            .tcp_nodelay(true)
    })
}

/// The node's server, without TLS of its own: [`tls_incoming`] hands it
/// connections whose handshake is done.
pub fn plain_server() -> Server {
    Server::builder()
        .http2_keepalive_interval(Some(SERVER_KEEPALIVE_EVERY))
        .tcp_nodelay(true)
}

/// A node's TLS: its certificate, client certificates required and issued by
/// one of `client_cas` (PEM), HTTP/2 only.
fn server_config(node: &CertKey, client_cas: &str) -> Result<rustls::ServerConfig, TransportError> {
    tls_config(node, client_cas, b"h2")
}

/// HTTPS settings for HTTP/1.1 services beside gRPC (TAXII): `node` as our
/// certificate, clients required to present one issued by `client_cas`.
pub fn https_config(node: &CertKey, client_cas: &str) -> Result<rustls::ServerConfig, TransportError> {
    tls_config(node, client_cas, b"http/1.1")
}

fn tls_config(node: &CertKey, client_cas: &str, alpn: &[u8]) -> Result<rustls::ServerConfig, TransportError> {
    let bad = |e: &dyn std::fmt::Display| TransportError::Tls(e.to_string());
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let roots = crate::tls::roots_of("client CAs", client_cas).map_err(|e| bad(&e))?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| bad(&e))?;
    let (certs, key) = node.decoded("node certificate").map_err(|e| bad(&e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| bad(&e))?;
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}

/// A node's TLS as a server: its certificate, and the client CAs it
/// accepts (every party's `tls_ca` and its own CA, for its operators),
/// rebuilt when an adopted agreement changes them; a connection uses the
/// settings in force when it arrives.
pub struct ServerTls {
    node: std::sync::RwLock<CertKey>,
    own_ca: String,
    config: std::sync::RwLock<std::sync::Arc<rustls::ServerConfig>>,
}

impl ServerTls {
    /// The settings for `agreement`, with `node` as our certificate and `own_ca` (PEM) our CA.
    pub fn new(node: &CertKey, own_ca: &str, agreement: &crate::agreement::Agreement) -> Result<Self, TransportError> {
        let config = config_for(node, own_ca, agreement)?;
        Ok(Self {
            node: std::sync::RwLock::new(node.clone()),
            own_ca: own_ca.to_owned(),
            config: std::sync::RwLock::new(std::sync::Arc::new(config)),
        })
    }

    /// Accepts the client CAs of `agreement` from the next connection on.
    pub fn set_agreement(&self, agreement: &crate::agreement::Agreement) -> Result<(), TransportError> {
        let node = self.certificate();
        let config = std::sync::Arc::new(config_for(&node, &self.own_ca, agreement)?);
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = config;
        Ok(())
    }

    /// The node certificate in use.
    pub fn certificate(&self) -> CertKey {
        self.node.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Presents `node` (a certificate renewed on disk) from the next
    /// connection on; connections open keep theirs.
    pub fn set_certificate(
        &self,
        node: CertKey,
        agreement: &crate::agreement::Agreement,
    ) -> Result<(), TransportError> {
        let config = std::sync::Arc::new(config_for(&node, &self.own_ca, agreement)?);
        *self.node.write().unwrap_or_else(|e| e.into_inner()) = node;
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = config;
        Ok(())
    }

    /// The acceptor for a new connection, with the client CAs of the agreement in force.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

/// The server settings for `agreement`: every party's and observer's
/// `tls_ca` and `own_ca` accepted as client CAs.
fn config_for(
    node: &CertKey,
    own_ca: &str,
    agreement: &crate::agreement::Agreement,
) -> Result<rustls::ServerConfig, TransportError> {
    let client_cas: String = agreement
        .parties
        .iter()
        .filter_map(|p| match &p.tls {
            crate::agreement::TlsIdentity::Ca(pem) => Some(pem.as_str()),
            _ => None,
        })
        .chain(agreement.observers.iter().map(|o| o.tls_ca.as_str()))
        .chain(std::iter::once(own_ca))
        .collect::<Vec<_>>()
        .join("\n");
    server_config(node, &client_cas)
}

/// A connection whose TLS handshake is done.
pub type TlsConnection = tokio_rustls::server::TlsStream<crate::limits::Counted>;

/// A listener's incoming connections (gRPC's and TAXII's): each admitted
/// by `limit` (per address and in all), then its TLS handshake, with the
/// acceptor `acceptor` gives at that moment, run on its own within
/// `timeout`; once the client certificate is verified the connection counts
/// against it, not its address. A handshake that fails or times out closes
/// the connection and is logged at INFO with the peer's address and the
/// reason. Returns the accept loop, to run until the server stops taking
/// the connections, and the stream of connections ready to serve.
pub fn tls_incoming(
    listener: tokio::net::TcpListener,
    limit: crate::limits::ConnectionLimit,
    acceptor: impl Fn() -> tokio_rustls::TlsAcceptor + Send + 'static,
    timeout: Duration,
) -> (
    impl std::future::Future<Output = ()> + Send + 'static,
    tokio_stream::wrappers::ReceiverStream<std::io::Result<TlsConnection>>,
) {
    let (ready, incoming) = tokio::sync::mpsc::channel(64);
    let accept_loop = async move {
        loop {
            let (stream, addr) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                },
                _ = ready.closed() => return,
            };
            let Some(counted) = limit.admit(stream) else { continue };
            let (acceptor, ready) = (acceptor(), ready.clone());
            // Each handshake on its own, bounded in time: one slow client holds up no one.
            tokio::spawn(async move {
                match tokio::time::timeout(timeout, acceptor.accept(counted)).await {
                    Ok(Ok(mut tls)) => {
                        let (io, session) = tls.get_mut();
                        let certificate = session.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec());
                        if certificate.is_none_or(|c| io.authenticated(&c)) {
                            let _ = ready.send(Ok(tls)).await;
                        }
                    }
                    Ok(Err(e)) => tracing::info!(peer = %addr, reason = %e, "TLS handshake refused"),
                    Err(_) => tracing::info!(peer = %addr, ?timeout, "TLS handshake not completed in time; closed"),
                }
            });
        }
    };
    (accept_loop, tokio_stream::wrappers::ReceiverStream::new(incoming))
}

/// The largest reply the CLI accepts from its own node (a thread of notices
/// or a log entry's envelope, each up to the largest size an agreement may set).
pub const LOCAL_REPLY_BYTES: usize = 64 << 20;

/// The slowest link a delivery is given time for, in bytes a second: half
/// of 64 kbit/s, so that a narrowband link shared with other traffic still
/// carries the largest envelope before its deadline.
pub const SLOWEST_LINK_BYTES_PER_SECOND: u64 = 4_000;

/// How long `bytes` take over the slowest link a delivery is made for.
pub fn transfer_time(bytes: usize) -> Duration {
    Duration::from_millis(bytes as u64 * 1_000 / SLOWEST_LINK_BYTES_PER_SECOND)
}

/// How often the server pings a client connection with no frame from it:
/// only to close, in time, a connection whose client has gone, which
/// holds a place under the connection caps until then (the client's own
/// pings, every 60 s, are what finds a stalled link).
const SERVER_KEEPALIVE_EVERY: Duration = Duration::from_secs(120);

/// The standard gRPC health service, reporting every hotline service as serving.
pub async fn health() -> tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health> {
    health_reporting(tonic_health::ServingStatus::Serving).await.1
}

/// The hotline services as the health service names them.
const SERVICES: [&str; 3] = ["hotline.v1.Federation", "hotline.v1.Operator", "hotline.v1.Audit"];

/// The health service with every hotline service at `status`, and the
/// reporter that changes it: a node reports NOT_SERVING until its log may
/// take entries (see `Node::start_writing`).
pub async fn health_reporting(
    status: tonic_health::ServingStatus,
) -> (
    tonic_health::server::HealthReporter,
    tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
) {
    let (reporter, service) = tonic_health::server::health_reporter();
    set_health(&reporter, status).await;
    (reporter, service)
}

/// Reports every hotline service at `status`.
pub async fn set_health(reporter: &tonic_health::server::HealthReporter, status: tonic_health::ServingStatus) {
    for name in SERVICES {
        reporter.set_service_status(name, status).await;
    }
}

/// gRPC server reflection over the hotline protocol, so stock tools can call it.
pub fn reflection() -> Result<
    tonic_reflection::server::v1::ServerReflectionServer<impl tonic_reflection::server::v1::ServerReflection>,
    tonic_reflection::server::Error,
> {
    reflection_builder().build_v1()
}

/// The same reflection under `grpc.reflection.v1alpha`, which many older
/// clients ask for alone.
pub fn reflection_v1alpha() -> Result<
    tonic_reflection::server::v1alpha::ServerReflectionServer<impl tonic_reflection::server::v1alpha::ServerReflection>,
    tonic_reflection::server::Error,
> {
    reflection_builder().build_v1alpha()
}

fn reflection_builder() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}
