//! gRPC over mutual TLS: the server every node runs (with health checking
//! and reflection beside the real services) and the client channels that
//! nodes, operators and auditors open.

use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Server, ServerTlsConfig};

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
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    let bad = |e: &dyn std::fmt::Display| TransportError::Tls(e.to_string());
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in crate::tls::certs_from_pem("client CAs", client_cas).map_err(|e| bad(&e))? {
        roots.add(ca).map_err(|e| bad(&e))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider.clone())
        .build()
        .map_err(|e| bad(&e))?;
    let certs = crate::tls::certs_from_pem("node certificate", &node.cert).map_err(|e| bad(&e))?;
    let key = PrivateKeyDer::from_pem_slice(node.key.as_bytes()).map_err(|e| bad(&e))?;
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

/// How often a connection to a peer with no frame from it is pinged, and
/// how long the answer may take before the connection is closed as dead:
/// a connection silently stalled (bytes accepted, nothing forwarded) is
/// closed within the two, where TCP alone might wait for hours, and the
/// next call dials afresh. A ping waits behind whatever the link has
/// queued: 60 s is 480 KB at 64 kbit/s, more than a link's buffer. A ping
/// costs both ends a TLS record, a wakeup and a system call or two, and a
/// node holds two connections per peer: at 193 parties, pings every 20 s
/// (and the server's every 30 s) took a third of two cores while no
/// message moved (`hotline drill`, docs/performance.md).
const KEEPALIVE_EVERY: Duration = Duration::from_secs(60);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(60);

/// How often the server pings a client connection with no frame from it:
/// only to close, in time, a connection whose client has gone, which
/// holds a place under the connection caps until then (the client's own
/// pings, every [`KEEPALIVE_EVERY`], are what finds a stalled link).
const SERVER_KEEPALIVE_EVERY: Duration = Duration::from_secs(120);

/// A lazily connecting channel to `endpoint` (`https://host:port`), trusting
/// only `server_ca` (PEM) and presenting `client` as our certificate.
pub fn channel(endpoint: &str, server_ca: &str, client: &CertKey) -> Result<Channel, TransportError> {
    channel_from(endpoint, server_ca, client, None)
}

/// Like [`channel`], with connections leaving from the local address
/// `source` (the system's choice if `None`). The TLS is ours ([`dial`]), so
/// tonic is given the endpoint as `http://`.
pub fn channel_from(
    endpoint: &str,
    server_ca: &str,
    client: &CertKey,
    source: Option<std::net::IpAddr>,
) -> Result<Channel, TransportError> {
    let setup = |source| TransportError::Setup {
        endpoint: endpoint.to_owned(),
        source,
    };
    let rest = endpoint
        .strip_prefix("https://")
        .ok_or_else(|| TransportError::Tls(format!("{endpoint}: not an https:// endpoint")))?;
    let name = rustls::pki_types::ServerName::try_from(host_of(endpoint))
        .map_err(|e| TransportError::Tls(format!("{endpoint}: {e}")))?
        .to_owned();
    let tls = tokio_rustls::TlsConnector::from(client_config(server_ca, client)?);
    let dialer = tower::service_fn(move |uri| dial(uri, source, tls.clone(), name.clone()));
    let plain = Endpoint::from_shared(format!("http://{rest}")).map_err(setup)?;
    Ok(settings(plain).connect_with_connector_lazy(dialer))
}

/// How long a TLS handshake with a server may take once its TCP connection is up.
const HANDSHAKE_WITHIN: Duration = Duration::from_secs(5);

/// Our side of the TLS of a connection we dial: only `server_ca` (PEM)
/// trusted, `client` presented, HTTP/2 by ALPN. rustls' default keeps room
/// for 256 servers' session tickets, allocated up front, in each
/// configuration, and a channel dials one server: a handful is room enough
/// (with tonic's own TLS, one such cache per peer cost a node about 15 kB a peer).
fn client_config(server_ca: &str, client: &CertKey) -> Result<std::sync::Arc<rustls::ClientConfig>, TransportError> {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    let bad = |e: &dyn std::fmt::Display| TransportError::Tls(e.to_string());
    let mut roots = rustls::RootCertStore::empty();
    for ca in crate::tls::certs_from_pem("server CA", server_ca).map_err(|e| bad(&e))? {
        roots.add(ca).map_err(|e| bad(&e))?;
    }
    let certs = crate::tls::certs_from_pem("client certificate", &client.cert).map_err(|e| bad(&e))?;
    let key = PrivateKeyDer::from_pem_slice(client.key.as_bytes()).map_err(|e| bad(&e))?;
    let mut config =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(&e))?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .map_err(|e| bad(&e))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    config.resumption = rustls::client::Resumption::in_memory_sessions(4);
    Ok(std::sync::Arc::new(config))
}

/// The most bytes a connection's socket holds unsent (Linux doubles it for
/// its own bookkeeping). Left to itself, Linux grows a socket's buffer to
/// megabytes while a slow link drains it, and a keepalive ping waits behind
/// all of it: a 1 MiB notice over 64 kbit/s had its connection closed as
/// dead after 35 s with 728 KB queued. With this, a ping waits behind at
/// most 128 KB, 16 s at that rate.
const SEND_BUFFER: u32 = 64 * 1024;

/// Opens a channel's connection: the TCP connection ([`connect`]), then its
/// TLS as `tls` says, the server's certificate checked for `name`, within
/// [`HANDSHAKE_WITHIN`], and HTTP/2 agreed by ALPN.
async fn dial(
    uri: http::Uri,
    source: Option<std::net::IpAddr>,
    tls: tokio_rustls::TlsConnector,
    name: rustls::pki_types::ServerName<'static>,
) -> std::io::Result<hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>> {
    let tcp = connect(&uri, source).await?;
    let host = uri.host().unwrap_or("localhost").to_owned();
    let stream = tokio::time::timeout(HANDSHAKE_WITHIN, tls.connect(name, tcp))
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("TLS handshake with {host} not completed within {HANDSHAKE_WITHIN:?}"),
            )
        })?
        .map_err(|e| std::io::Error::new(e.kind(), format!("TLS handshake with {host}: {e}")))?;
    if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
        return Err(std::io::Error::other(format!("{host} did not agree to HTTP/2 (ALPN)")));
    }
    Ok(hyper_util::rt::TokioIo::new(stream))
}

/// Opens the TCP connection under a channel's TLS: the host resolved, each
/// address tried in turn, from `source` if given, the socket's send buffer
/// bounded (see [`SEND_BUFFER`]) and Nagle's delay off.
async fn connect(uri: &http::Uri, source: Option<std::net::IpAddr>) -> std::io::Result<tokio::net::TcpStream> {
    let host = uri.host().unwrap_or("localhost").trim_matches(['[', ']']);
    let port = uri.port_u16().unwrap_or(443);
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, format!("{host} has no address"));
    for addr in tokio::net::lookup_host((host, port)).await? {
        let socket = match addr {
            std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.set_send_buffer_size(SEND_BUFFER)?;
        socket.set_nodelay(true)?;
        if let Some(ip) = source {
            socket.bind(std::net::SocketAddr::new(ip, 0))?;
        }
        match socket.connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = std::io::Error::new(e.kind(), format!("connect to {addr}: {e}")),
        }
    }
    Err(last)
}

/// How often the endpoints of a party with several are probed.
const PROBE_EVERY: Duration = Duration::from_millis(100);

/// A channel to whichever of a party's `endpoints` answers: the nodes that
/// share its store, of which only the writer-lease holder listens. Each
/// endpoint is probed in turn (a gRPC health check on a connection of its
/// own, every 100 ms) and calls go only to those that answer one: a balanced
/// channel that also held the closed endpoint would pick it for some calls
/// and fail them (a lazily connected endpoint counts as ready until a call
/// finds it closed). While none answers, calls wait, within their own
/// deadline. The prober stops with the channel. Must be called inside a
/// tokio runtime. Connections leave from `source` if given; a party with one
/// endpoint is dialled by [`dial`] (its send buffer bounded), one with
/// several by tonic's own connector, which leaves the buffer to the system.
pub fn channel_any(
    endpoints: &[String],
    server_ca: &str,
    client: &CertKey,
    source: Option<std::net::IpAddr>,
) -> Result<Channel, TransportError> {
    match endpoints {
        [one] => channel_from(one, server_ca, client, source),
        several => {
            let dialled = several
                .iter()
                .map(|e| Ok((e.clone(), endpoint_of(e, server_ca, client)?.local_address(source))))
                .collect::<Result<Vec<_>, TransportError>>()?;
            let (channel, changes) = Channel::balance_channel(several.len());
            tokio::spawn(probe_endpoints(dialled, changes));
            Ok(channel)
        }
    }
}

/// Keeps `changes` (a balanced channel's endpoints) to the endpoints that
/// answer a health check, whatever status they report (a node starting
/// answers too), until the channel is gone.
async fn probe_endpoints(
    endpoints: Vec<(String, Endpoint)>,
    changes: tokio::sync::mpsc::Sender<tonic::transport::channel::Change<String, Endpoint>>,
) {
    use tonic::transport::channel::Change;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let mut probes: Vec<(&String, &Endpoint, HealthClient<Channel>, bool)> = endpoints
        .iter()
        .map(|(url, e)| (url, e, HealthClient::new(e.connect_lazy()), false))
        .collect();
    loop {
        for (url, endpoint, probe, listed) in &mut probes {
            let check = probe.check(HealthCheckRequest {
                service: SERVICES[0].into(),
            });
            let up = matches!(tokio::time::timeout(Duration::from_secs(1), check).await, Ok(Ok(_)));
            if up != *listed {
                tracing::info!(endpoint = %url, up, "a peer endpoint answers again or stopped answering");
                let change = match up {
                    true => Change::Insert((*url).clone(), (*endpoint).clone()),
                    false => Change::Remove((*url).clone()),
                };
                if changes.send(change).await.is_err() {
                    return;
                }
                *listed = up;
            }
        }
        if changes.is_closed() {
            return;
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

/// An endpoint of a party with several, with tonic's own TLS (a balanced
/// channel dials through tonic's connector).
fn endpoint_of(endpoint: &str, server_ca: &str, client: &CertKey) -> Result<Endpoint, TransportError> {
    let setup = |source| TransportError::Setup {
        endpoint: endpoint.to_owned(),
        source,
    };
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(server_ca))
        .identity(Identity::from_pem(&client.cert, &client.key))
        .domain_name(host_of(endpoint))
        .timeout(HANDSHAKE_WITHIN);
    Ok(settings(
        Endpoint::from_shared(endpoint.to_owned())
            .map_err(setup)?
            .tls_config(tls)
            .map_err(setup)?,
    ))
}

/// The host of an `https://host:port` endpoint, without an IPv6 address's brackets.
fn host_of(endpoint: &str) -> &str {
    endpoint
        .trim_start_matches("https://")
        .rsplit_once(':')
        .map(|(h, _)| h.trim_matches(['[', ']']))
        .unwrap_or("localhost")
}

/// What every channel to a node is dialled with: time limits and keepalive.
fn settings(endpoint: Endpoint) -> Endpoint {
    endpoint
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(KEEPALIVE_EVERY)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
        .tcp_nodelay(true)
}

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
