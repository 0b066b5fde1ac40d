//! gRPC over mutual TLS: the server every node runs (with health checking
//! and reflection beside the real services) and the client channels that
//! nodes, operators and auditors open.

use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Server, ServerTlsConfig};

use crate::tls::CertKey;

/// Why a connection could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
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
        s.http2_keepalive_interval(Some(Duration::from_secs(30)))
            .tcp_nodelay(true)
    })
}

/// A lazily connecting channel to `endpoint` (`https://host:port`), trusting
/// only `server_ca` (PEM) and presenting `client` as our certificate.
pub fn channel(endpoint: &str, server_ca: &str, client: &CertKey) -> Result<Channel, TransportError> {
    let setup = |source| TransportError::Setup {
        endpoint: endpoint.to_owned(),
        source,
    };
    let host = endpoint
        .trim_start_matches("https://")
        .rsplit_once(':')
        .map(|(h, _)| h.trim_matches(['[', ']']))
        .unwrap_or("localhost")
        .to_owned();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(server_ca))
        .identity(Identity::from_pem(&client.cert, &client.key))
        .domain_name(host)
        .timeout(Duration::from_secs(5));
    Ok(Endpoint::from_shared(endpoint.to_owned())
        .map_err(setup)?
        .tls_config(tls)
        .map_err(setup)?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .connect_lazy())
}

/// The standard gRPC health service, reporting every hotline service as serving.
pub async fn health() -> tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health> {
    let (reporter, service) = tonic_health::server::health_reporter();
    for name in ["hotline.v1.Federation", "hotline.v1.Operator", "hotline.v1.Audit"] {
        reporter
            .set_service_status(name, tonic_health::ServingStatus::Serving)
            .await;
    }
    service
}

/// gRPC server reflection over the hotline protocol, so stock tools can call it.
pub fn reflection() -> Result<
    tonic_reflection::server::v1::ServerReflectionServer<impl tonic_reflection::server::v1::ServerReflection>,
    tonic_reflection::server::Error,
> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
}
