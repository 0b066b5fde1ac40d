//! The client side of the transport: the channels nodes, operators and
//! auditors open to a node, each connection dialled with its send buffer
//! bounded and our own TLS, and a party with several endpoints probed so
//! calls go only to one that answers.

use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::{SERVICES, TransportError};
use crate::tls::CertKey;
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
    let bad = |e: &dyn std::fmt::Display| TransportError::Tls(e.to_string());
    let roots = crate::tls::roots_of("server CA", server_ca).map_err(|e| bad(&e))?;
    let (certs, key) = client.decoded("client certificate").map_err(|e| bad(&e))?;
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
