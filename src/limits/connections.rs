//! Caps on TCP connections, applied on every listener (gRPC, TAXII,
//! metrics). Before a caller is known, connections count against its
//! remote address (handshakes in progress, or plain HTTP); once its TLS
//! client certificate is verified they count against that identity instead,
//! so several parties behind one address (a shared hosting provider, a
//! regional platform, every node of a drill on loopback) each get their own
//! allowance, while silent connections from one address stay capped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::repeats::Repeats;

/// Caps the connections each remote address (before authentication) or
/// each client certificate (after it) may hold open at once, and all
/// together; a connection over a cap is closed, with a log line (one a
/// minute per cap and caller, with a count, however many are closed).
pub struct ConnectionLimit {
    per_caller: usize,
    total: usize,
    open: OpenConnections,
    closed: Arc<Repeats>,
}

/// Who a connection counts against.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Slot {
    /// Not authenticated yet: its remote address.
    Address(std::net::IpAddr),
    /// Its verified client certificate, by SHA-256.
    Identity([u8; 32]),
}

/// Open connections per slot.
type OpenConnections = Arc<Mutex<HashMap<Slot, usize>>>;

/// An accepted connection that frees its slot when closed.
pub struct Counted {
    inner: tokio::net::TcpStream,
    slot: Option<Slot>,
    open: OpenConnections,
    per_caller: usize,
    closed: Arc<Repeats>,
}

fn release(open: &mut HashMap<Slot, usize>, slot: &Slot) {
    if let Some(n) = open.get_mut(slot) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            open.remove(slot);
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            release(&mut self.open.lock().unwrap_or_else(|e| e.into_inner()), &slot);
        }
    }
}

impl Counted {
    /// The remote address.
    pub fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.inner.peer_addr()
    }

    /// The caller proved who it is (`certificate`, DER): the connection
    /// counts against that identity from now on, not its address. False
    /// (and the connection is to be closed) when that identity is at its cap.
    pub fn authenticated(&mut self, certificate: &[u8]) -> bool {
        use sha2::Digest;
        let digest: [u8; 32] = sha2::Sha256::digest(certificate).into();
        let identity = Slot::Identity(digest);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = self.slot.take() {
            release(&mut open, &old);
        }
        let n = open.entry(identity.clone()).or_insert(0);
        if *n >= self.per_caller {
            let certificate = hex::encode(digest);
            if let Some(held_back) = self.closed.check(&certificate, Instant::now()) {
                tracing::warn!(%certificate, limit = self.per_caller, held_back,
                    "connection limit per client certificate reached; closing");
            }
            return false;
        }
        *n += 1;
        self.slot = Some(identity);
        true
    }
}

impl ConnectionLimit {
    /// At most `per_caller` connections from one address before
    /// authentication, or one client certificate after it; `total` in all.
    pub fn new(per_caller: usize, total: usize) -> Self {
        Self {
            per_caller,
            total,
            open: Arc::default(),
            closed: Arc::new(Repeats::new(Duration::from_secs(60))),
        }
    }

    /// Admits an accepted connection, or closes it when its address is at the cap.
    pub fn admit(&self, stream: tokio::net::TcpStream) -> Option<Counted> {
        let ip = stream.peer_addr().ok()?.ip();
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let all: usize = open.values().sum();
        if all >= self.total {
            if let Some(held_back) = self.closed.check("total", Instant::now()) {
                tracing::warn!(%ip, limit = self.total, held_back, "connection limit of the node reached; closing");
            }
            return None;
        }
        let n = open.entry(Slot::Address(ip)).or_insert(0);
        if *n >= self.per_caller {
            if let Some(held_back) = self.closed.check(&ip.to_string(), Instant::now()) {
                tracing::warn!(%ip, limit = self.per_caller, held_back, "connection limit per address reached; closing");
            }
            return None;
        }
        *n += 1;
        // Small gRPC frames must not wait for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        Some(Counted {
            inner: stream,
            slot: Some(Slot::Address(ip)),
            open: self.open.clone(),
            per_caller: self.per_caller,
            closed: self.closed.clone(),
        })
    }
}

impl tokio::io::AsyncRead for Counted {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Counted {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for Counted {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// A plain TCP listener whose connections pass a [`ConnectionLimit`]: the
/// metrics server's, which has no TLS to authenticate callers.
pub struct LimitedListener {
    /// The bound listener.
    pub listener: tokio::net::TcpListener,
    /// The caps its connections pass.
    pub limit: ConnectionLimit,
}

impl axum::serve::Listener for LimitedListener {
    type Io = Counted;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.listener.accept().await {
                Ok((stream, addr)) => {
                    if let Some(counted) = self.limit.admit(stream) {
                        return (counted, addr);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}
