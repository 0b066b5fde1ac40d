//! Caps on TCP connections, per remote address and in all, applied before
//! the TLS handshake.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::repeats::Repeats;

/// Caps the TCP connections each remote address, and all addresses
/// together, may hold open at once; a connection over a cap is closed before
/// the TLS handshake, with a log line (one a minute per cap and address,
/// with a count, however many are closed).
pub struct ConnectionLimit {
    per_address: usize,
    total: usize,
    open: OpenConnections,
    closed: Repeats,
}

/// Open connections per remote address.
type OpenConnections = Arc<Mutex<HashMap<std::net::IpAddr, usize>>>;

/// An accepted connection that frees its slot when closed.
pub struct Counted {
    inner: tokio::net::TcpStream,
    slot: Option<(std::net::IpAddr, OpenConnections)>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Some((ip, open)) = self.slot.take() {
            let mut open = open.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = open.get_mut(&ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    open.remove(&ip);
                }
            }
        }
    }
}

impl ConnectionLimit {
    /// At most `per_address` connections from one IP address, `total` in all.
    pub fn new(per_address: usize, total: usize) -> Self {
        Self {
            per_address,
            total,
            open: Arc::default(),
            closed: Repeats::new(Duration::from_secs(60)),
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
        let n = open.entry(ip).or_insert(0);
        if *n >= self.per_address {
            if let Some(held_back) = self.closed.check(&ip.to_string(), Instant::now()) {
                tracing::warn!(%ip, limit = self.per_address, held_back, "connection limit per address reached; closing");
            }
            return None;
        }
        *n += 1;
        // Small gRPC frames must not wait for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        Some(Counted {
            inner: stream,
            slot: Some((ip, self.open.clone())),
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
