//! The impairing proxy: a TCP relay on loopback that does to the bytes
//! crossing it what a bad network does (this machine's kernel has no
//! `netem`). It sits at the endpoint a party publishes, with the party's
//! node listening behind it, so every peer reaches that party through it.
//!
//! Each direction of a connection is a reader and a writer joined by a
//! bounded queue of chunks: the reader stamps each chunk with the time it
//! may leave (latency and jitter, never before the chunk ahead of it), the
//! writer waits for that time, writes at most a slice at once and then waits
//! as long as the bandwidth asks. A full queue stops the reader, so TCP's own
//! flow control holds the sender back as a slow link would.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::impairment::Impairment;

/// Whether bytes cross the link at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Passage {
    /// Bytes cross, as impaired.
    Open,
    /// Connections are accepted and their bytes read, but nothing is
    /// forwarded either way and nothing is closed: a silent stall.
    Stalled,
    /// Connections are reset, those open and each new one: a cut link.
    Cut,
}

/// How the link is now: its impairment, whether it passes bytes, and the
/// source addresses cut off from it (a partition).
#[derive(Clone, Debug)]
struct LinkState {
    impairment: Impairment,
    passage: Passage,
    cut_off: HashSet<IpAddr>,
}

impl LinkState {
    /// Whether a connection from `source` is cut.
    fn cuts(&self, source: IpAddr) -> bool {
        self.passage == Passage::Cut || self.cut_off.contains(&source)
    }
}

/// A running proxy to one upstream address. Dropping it stops it and
/// closes every connection through it.
pub struct Proxy {
    addr: SocketAddr,
    state: watch::Sender<LinkState>,
    bytes: Arc<AtomicU64>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Bytes read from one side before they are queued for the other.
const CHUNK: usize = 16 * 1024;
/// Chunks queued in one direction before the reader stops reading.
const QUEUED_CHUNKS: usize = 4;
/// The kernel's buffer for each socket of the proxy: a link's own queue.
/// Loopback sockets otherwise grow theirs to megabytes, which a narrow
/// link would take minutes to drain, far more than a real link queues.
const LINK_BUFFER: usize = 32 * 1024;

impl Proxy {
    /// Relays connections accepted on `listener` to `upstream`, impaired by
    /// `impairment`. Must be called inside a tokio runtime.
    pub fn start(listener: TcpListener, upstream: SocketAddr, impairment: Impairment) -> std::io::Result<Proxy> {
        let addr = listener.local_addr()?;
        // Accepted sockets take the listener's buffer sizes.
        let socket = socket2::SockRef::from(&listener);
        socket.set_recv_buffer_size(LINK_BUFFER)?;
        socket.set_send_buffer_size(LINK_BUFFER)?;
        let (state, _) = watch::channel(LinkState {
            impairment,
            passage: Passage::Open,
            cut_off: HashSet::new(),
        });
        let bytes = Arc::new(AtomicU64::new(0));
        let (watching, counted) = (state.clone(), bytes.clone());
        let accept = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((client, from)) = listener.accept().await else {
                    continue;
                };
                let link = watching.subscribe();
                connections.spawn(relay(client, from.ip(), upstream, link, counted.clone()));
                while connections.try_join_next().is_some() {}
            }
        });
        Ok(Proxy {
            addr,
            state,
            bytes,
            accept,
        })
    }

    /// Where the proxy listens: the address peers dial.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sets the link's passage: open, stalled or cut. Connections already
    /// open follow at once.
    pub fn set_passage(&self, passage: Passage) {
        self.state.send_modify(|s| s.passage = passage);
    }

    /// Cuts connections from `sources` (their own and new ones), and only
    /// those: the parties that dial from them are partitioned from this
    /// one. An empty set joins them again.
    pub fn cut_off(&self, sources: HashSet<IpAddr>) {
        self.state.send_modify(|s| s.cut_off = sources);
    }

    /// The link's passage now.
    pub fn passage(&self) -> Passage {
        self.state.borrow().passage
    }

    /// Replaces the impairment; every connection takes it at its next chunk.
    pub fn impair(&self, impairment: Impairment) {
        self.state.send_modify(|s| s.impairment = impairment);
    }

    /// Every byte forwarded so far, both ways: what crossed the wire.
    pub fn bytes_forwarded(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// One connection through the link, until both sides have closed it, the
/// link is cut, or its chance of being reset comes up.
async fn relay(
    client: TcpStream,
    source: IpAddr,
    upstream: SocketAddr,
    mut link: watch::Receiver<LinkState>,
    bytes: Arc<AtomicU64>,
) {
    let state = link.borrow_and_update().clone();
    if state.cuts(source) {
        reset(client);
        return;
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        reset(client);
        return;
    };
    let sized = socket2::SockRef::from(&server);
    let _ = (
        sized.set_recv_buffer_size(LINK_BUFFER),
        sized.set_send_buffer_size(LINK_BUFFER),
    );
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    let (mut client, mut server) = (client, server);
    let reset_after = state.impairment.reset_after();
    let ended = {
        let (client_read, client_write) = client.split();
        let (server_read, server_write) = server.split();
        let up = direction(client_read, server_write, link.clone(), &bytes);
        let down = direction(server_read, client_write, link.clone(), &bytes);
        let cut = async {
            while link.changed().await.is_ok() {
                if link.borrow_and_update().cuts(source) {
                    return;
                }
            }
            std::future::pending::<()>().await
        };
        let reset_in = async {
            match reset_after {
                Some(after) => tokio::time::sleep(after).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = async { tokio::join!(up, down) } => true,
            _ = cut => false,
            _ = reset_in => false,
        }
    };
    if !ended {
        reset(client);
        reset(server);
    }
}

/// Closes `stream` with a reset rather than an orderly close, as a cut
/// link or a middlebox that gives up does.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

/// Carries one direction: reads chunks, stamps them, and a writer
/// sends each at its time, as fast as the bandwidth allows. The link's
/// impairment is read for each chunk, so a change applies at once.
async fn direction(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    mut link: watch::Receiver<LinkState>,
    bytes: &AtomicU64,
) {
    let impairment = |link: &watch::Receiver<LinkState>| link.borrow().impairment.clone();
    let stamping = link.clone();
    let (queue, mut queued) = mpsc::channel::<(Instant, Vec<u8>)>(QUEUED_CHUNKS);
    let reader = async move {
        let mut last_due = Instant::now();
        let mut buf = vec![0u8; CHUNK];
        loop {
            // A narrow link queues at most about a second of its bytes (four chunks).
            let room = impairment(&stamping)
                .bytes_per_second
                .map_or(CHUNK, |rate| (rate as usize / 4).clamp(1, CHUNK));
            let n = match from.read(&mut buf[..room]).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let due = (Instant::now() + impairment(&stamping).delay()).max(last_due);
            last_due = due;
            if queue.send((due, buf[..n].to_vec())).await.is_err() {
                return;
            }
        }
    };
    let writer = async {
        while let Some((due, chunk)) = queued.recv().await {
            tokio::time::sleep_until(due).await;
            let now = impairment(&link);
            // A narrow link writes at most a tenth of a second's worth at once.
            let paced = now.bytes_per_second.map_or(CHUNK, |rate| (rate / 10) as usize);
            for slice in chunk.chunks(now.slice.unwrap_or(CHUNK).min(paced).max(1)) {
                // A stall holds every byte until the link passes them again.
                while link.borrow_and_update().passage == Passage::Stalled {
                    if link.changed().await.is_err() {
                        return;
                    }
                }
                if to.write_all(slice).await.is_err() {
                    return;
                }
                bytes.fetch_add(slice.len() as u64, Ordering::Relaxed);
                if let Some(rate) = now.bytes_per_second {
                    let secs = slice.len() as f64 / rate.max(1) as f64;
                    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
                }
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
