//! Per-caller limits on what the network may ask of a node: a request rate
//! (token bucket) and requests in flight. A caller over a limit gets
//! `RESOURCE_EXHAUSTED` and a log line; nobody else is slowed down.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::Status;

use crate::repeats::Repeats;

/// The configured bounds.
#[derive(Clone, Copy, Debug)]
pub struct LimitConfig {
    /// Sustained requests per second per caller.
    pub requests_per_second: f64,
    /// Requests a caller may make at once above the sustained rate.
    pub burst: f64,
    /// Requests in flight at once per caller.
    pub in_flight: usize,
}

impl Default for LimitConfig {
    fn default() -> Self {
        Self {
            requests_per_second: 20_000.0,
            burst: 5_000.0,
            in_flight: 2_048,
        }
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
    in_flight: usize,
}

/// Tracks every caller's rate and requests in flight.
#[derive(Clone)]
pub struct Limits {
    config: LimitConfig,
    callers: Arc<Mutex<HashMap<String, Bucket>>>,
}

/// Held while a request runs; frees its in-flight slot when dropped.
pub struct Admitted {
    n: usize,
    caller: String,
    callers: Arc<Mutex<HashMap<String, Bucket>>>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Some(b) = self
            .callers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&self.caller)
        {
            b.in_flight = b.in_flight.saturating_sub(self.n);
        }
    }
}

impl Limits {
    fn refill(&self, b: &mut Bucket, now: Instant) {
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * self.config.requests_per_second)
            .min(self.config.burst);
        b.at = now;
    }

    fn over_rate(&self, caller: &str) -> Status {
        Status::resource_exhausted(format!(
            "{caller} is over the limit of {} requests per second (burst {}); retry later",
            self.config.requests_per_second, self.config.burst
        ))
    }

    /// The refusal for a call from `caller` whose rate is spent already, so
    /// that it can be refused before its body is read; none while it has a
    /// request left (the call is then counted in full once decoded).
    pub fn spent(&self, caller: &str) -> Option<Status> {
        let mut callers = self.callers.lock().unwrap_or_else(|e| e.into_inner());
        let b = callers.get_mut(caller)?;
        self.refill(b, Instant::now());
        (b.tokens < 1.0).then(|| self.over_rate(caller))
    }

    /// Limits with the given bounds.
    pub fn new(config: LimitConfig) -> Self {
        Self {
            config,
            callers: Arc::default(),
        }
    }

    /// Admits one request from `caller`, or says which limit it hit.
    pub fn admit(&self, caller: &str) -> Result<Admitted, Status> {
        self.admit_n(caller, 1)
    }

    /// Admits a call that carries `n` requests' worth of work (a batch).
    pub fn admit_n(&self, caller: &str, n: usize) -> Result<Admitted, Status> {
        let mut callers = self.callers.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let b = callers.entry(caller.to_owned()).or_insert(Bucket {
            tokens: self.config.burst,
            at: now,
            in_flight: 0,
        });
        self.refill(b, now);
        // The refusal is logged once, by the server's call layer, at WARN.
        if b.in_flight + n > self.config.in_flight {
            return Err(Status::resource_exhausted(format!(
                "{caller} has {} requests in flight, the limit; retry when some complete",
                self.config.in_flight
            )));
        }
        if b.tokens < n as f64 {
            return Err(self.over_rate(caller));
        }
        b.tokens -= n as f64;
        b.in_flight += n;
        Ok(Admitted {
            n,
            caller: caller.to_owned(),
            callers: self.callers.clone(),
        })
    }
}

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

/// Caps the calls each caller has in flight, counted when a call's headers
/// arrive and before its body is read or decoded: a peer that opens dozens of
/// large calls at once gets `RESOURCE_EXHAUSTED` for those over its share
/// while the bytes of the refused ones stay on the wire, held back by HTTP/2
/// flow control. A tower layer on the whole server.
#[derive(Clone)]
pub struct CallLimitLayer {
    identifier: Arc<crate::tls::Identifier>,
    limits: Limits,
    per_peer: usize,
    per_local: usize,
    open: Arc<Mutex<HashMap<String, usize>>>,
    refusals: Arc<Repeats>,
}

impl CallLimitLayer {
    /// At most `per_peer` calls in flight from each peer node, `per_local`
    /// from each local operator or auditor; a caller whose rate in `limits`
    /// is spent is refused at once.
    pub fn new(identifier: Arc<crate::tls::Identifier>, limits: Limits, per_peer: usize, per_local: usize) -> Self {
        Self {
            identifier,
            limits,
            per_peer,
            per_local,
            open: Arc::default(),
            refusals: Arc::new(Repeats::new(Duration::from_secs(60))),
        }
    }

    /// Takes a slot for the caller of `extensions`, or says why not. The
    /// caller, once identified, is kept in the extensions, so the service
    /// does not identify it again (`status::caller`). A caller with no
    /// certificate we know is left to the services to refuse.
    fn enter(&self, extensions: &mut http::Extensions) -> Result<Option<CallSlot>, Status> {
        use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
        let Some(certs) = extensions
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(|info| info.peer_certs())
        else {
            return Ok(None);
        };
        let Some(identified) = self.identifier.identify(&certs) else {
            return Ok(None);
        };
        extensions.insert(identified.clone());
        // The same names the services count the rate under.
        let (caller, rate_key, cap) = match identified {
            crate::tls::Caller::Party(p) => (format!("party {p}"), p, self.per_peer),
            crate::tls::Caller::Local { name, .. } => {
                (format!("local {name}"), format!("operator {name}"), self.per_local)
            }
            crate::tls::Caller::PartyNonNode(_) => return Ok(None),
        };
        if let Some(refusal) = self.limits.spent(&rate_key) {
            return Err(refusal);
        }
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(caller.clone()).or_insert(0);
        if *n >= cap {
            return Err(Status::resource_exhausted(format!(
                "{caller} has {cap} calls in flight, the limit; retry when some complete"
            )));
        }
        *n += 1;
        Ok(Some(CallSlot {
            caller,
            open: self.open.clone(),
        }))
    }
}

/// A call in flight; its slot is freed when the call's response is ready.
struct CallSlot {
    caller: String,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for CallSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.caller) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.caller);
            }
        }
    }
}

impl<S> tower::Layer<S> for CallLimitLayer {
    type Service = CallLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallLimit {
            inner,
            limits: self.clone(),
        }
    }
}

/// The service [`CallLimitLayer`] wraps around the server's routes.
#[derive(Clone)]
pub struct CallLimit<S> {
    inner: S,
    limits: CallLimitLayer,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for CallLimit<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<ReqBody>) -> Self::Future {
        let entered = self.limits.enter(req.extensions_mut());
        let refused = Refused {
            caller: req.extensions().get::<crate::tls::Caller>().cloned(),
            method: req.uri().path().to_owned(),
            repeats: self.limits.refusals.clone(),
        };
        match entered {
            Err(status) => {
                refused.log(&status);
                Box::pin(async move {
                    tokio::time::sleep(OVER_LIMIT_DELAY).await;
                    Ok(status.into_http())
                })
            }
            Ok(slot) => {
                let call = self.inner.call(req);
                Box::pin(async move {
                    let mut response = call.await;
                    if let Ok(r) = response.as_mut() {
                        undecodable_is_invalid_argument(r.headers_mut());
                        let failed = r.headers().get("grpc-status").is_some_and(|v| v != "0");
                        if let Some(status) = failed.then(|| Status::from_header_map(r.headers())).flatten() {
                            refused.log(&status);
                            if status.code() == tonic::Code::ResourceExhausted {
                                // Still holding its slot, so that the caller's next calls wait too.
                                tokio::time::sleep(OVER_LIMIT_DELAY).await;
                            }
                        }
                    }
                    drop(slot);
                    response
                })
            }
        }
    }
}

/// How long a call refused for a limit waits before its refusal is sent. A
/// caller over its limits that retries at once would otherwise turn each
/// refusal into another request sent, read and discarded, thousands a
/// second; held back, its refusals come no faster than its calls in flight
/// allow. A caller within its limits never waits.
pub const OVER_LIMIT_DELAY: Duration = Duration::from_millis(100);

/// Who made a call and which, for the one line a refused call logs.
struct Refused {
    caller: Option<crate::tls::Caller>,
    method: String,
    repeats: Arc<Repeats>,
}

impl Refused {
    /// Logs a refused call once: a caller's mistake or a limit at WARN, a
    /// failure of ours at ERROR (those `status::internal` answered are logged
    /// there, with their cause). The same refusal of the same caller repeated
    /// gives one line a minute, with how many were held back.
    fn log(&self, status: &Status) {
        let ours = status.code() == tonic::Code::Internal;
        if ours && status.message().starts_with("internal error ") {
            return;
        }
        let caller = match &self.caller {
            Some(crate::tls::Caller::Party(p)) => format!("party {p}"),
            Some(crate::tls::Caller::PartyNonNode(p)) => format!("a certificate of {p} that is not its node's"),
            Some(crate::tls::Caller::Local { name, .. }) => format!("local {name}"),
            None => "an unidentified caller".into(),
        };
        let key = format!("{caller} {} {:?} {}", self.method, status.code(), status.message());
        let Some(held_back) = self.repeats.check(&key, Instant::now()) else {
            return;
        };
        let (method, code, message) = (&self.method, status.code(), status.message());
        if ours {
            tracing::error!(caller, method, ?code, ?message, held_back, "call failed");
        } else {
            tracing::warn!(caller, method, ?code, ?message, held_back, "call refused");
        }
    }
}

/// A request body that is not the protobuf message a call takes is the
/// caller's mistake: tonic answers it `INTERNAL`, which says the node failed;
/// this answers `INVALID_ARGUMENT` with tonic's text, which names what did
/// not decode. Only the status of an answer that failed before any message
/// was sent (trailers-only) is in its headers, and only that is rewritten.
fn undecodable_is_invalid_argument(headers: &mut http::HeaderMap) {
    let internal = headers.get("grpc-status").is_some_and(|v| v == "13");
    let undecodable = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .is_some_and(|m| m.starts_with("failed%20to%20decode") || m.starts_with("failed to decode"));
    if internal && undecodable {
        headers.insert("grpc-status", http::HeaderValue::from_static("3"));
    }
}

/// Where CPU-heavy work (checking a batch's signatures) runs: never on the
/// async workers that answer every caller, at most one job per core at once
/// and at most `per_caller` of them for one caller, so one peer's flood can
/// neither stall the workers nor take every core. While callers compete, a
/// heavy one (whose checks took more than a tenth of a core in the last
/// second, or that has more jobs waiting than its share: a peer sending as
/// fast as it can) has its jobs run on background threads at the lowest
/// scheduling priority (Linux `SCHED_IDLE`): they get every cycle no one else
/// wants, and give way at once to a light caller's check, an operator's
/// `Status` or the node's own I/O.
pub struct CpuShare {
    all: Arc<tokio::sync::Semaphore>,
    per_caller: usize,
    callers: Mutex<HashMap<String, Arc<Share>>>,
    background: std::sync::mpsc::Sender<Job>,
    mixed: Mutex<Mixed>,
}

/// Whether callers compete: the caller of the last job and when it started,
/// and until when the share counts as contended (a second after two callers'
/// jobs came within a second of each other). A lone busy peer has nobody to
/// yield to and runs at normal priority.
struct Mixed {
    caller: String,
    at: Instant,
    until: Instant,
}

/// One caller's share: its permits, how many of its jobs are waiting or
/// running, and the CPU time its jobs took lately.
struct Share {
    permits: tokio::sync::Semaphore,
    outstanding: std::sync::atomic::AtomicUsize,
    usage: Mutex<Usage>,
}

/// CPU time a caller's jobs took in the current one-second window and the one before.
#[derive(Clone, Copy)]
struct Usage {
    window: Instant,
    this: Duration,
    last: Duration,
}

/// Checks taking more than this per second (a tenth of a core) make a caller heavy.
const HEAVY: Duration = Duration::from_millis(100);

impl Share {
    /// Moves the window on to `now`.
    fn usage(&self, now: Instant) -> std::sync::MutexGuard<'_, Usage> {
        let mut u = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        let age = now.saturating_duration_since(u.window);
        if age >= Duration::from_secs(1) {
            u.last = if age < Duration::from_secs(2) {
                u.this
            } else {
                Duration::ZERO
            };
            u.this = Duration::ZERO;
            u.window = now;
        }
        u
    }

    fn heavy(&self, now: Instant) -> bool {
        let u = self.usage(now);
        u.this.max(u.last) >= HEAVY
    }

    fn spent(&self, took: Duration, now: Instant) {
        self.usage(now).this += took;
    }
}

/// Counts a job as outstanding until it is dropped.
struct Outstanding(Arc<Share>);

impl Drop for Outstanding {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A job for the background threads.
type Job = Box<dyn FnOnce() + Send>;

/// A job that gave no result: it panicked, or the node is shutting down.
#[derive(Debug, thiserror::Error)]
#[error("the check panicked or the node is stopping")]
pub struct JobFailed;

impl CpuShare {
    /// `cores` jobs at once, `per_caller` of them for any one caller.
    pub fn new(cores: usize, per_caller: usize) -> Self {
        let cores = cores.max(1);
        let (background, queue) = std::sync::mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..cores {
            let queue = queue.clone();
            let started = std::thread::Builder::new()
                .name(format!("hotline-cpu-bg-{i}"))
                .spawn(move || {
                    lowest_priority();
                    // Ends when the share is dropped and the queue closes.
                    while let Ok(job) = queue.lock().unwrap_or_else(|e| e.into_inner()).recv() {
                        job();
                    }
                });
            if let Err(e) = started {
                tracing::error!(error = %e, "cannot start a background CPU thread");
            }
        }
        Self {
            all: Arc::new(tokio::sync::Semaphore::new(cores)),
            per_caller: per_caller.clamp(1, cores),
            callers: Mutex::default(),
            background,
            mixed: Mutex::new(Mixed {
                caller: String::new(),
                at: Instant::now(),
                until: Instant::now(),
            }),
        }
    }

    /// Records a job of `caller` starting `now`; whether another caller's came within the last second.
    fn contended(&self, caller: &str, now: Instant) -> bool {
        let mut m = self.mixed.lock().unwrap_or_else(|e| e.into_inner());
        if m.caller != caller {
            if !m.caller.is_empty() && now.saturating_duration_since(m.at) < Duration::from_secs(1) {
                m.until = now + Duration::from_secs(1);
            }
            caller.clone_into(&mut m.caller);
        }
        m.at = now;
        now < m.until
    }

    /// Sized to this machine: one job per core, half of them for one caller.
    pub fn for_this_machine() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self::new(cores, cores.div_ceil(2))
    }

    /// Runs `work` for `caller` once its share and a core are free; in the
    /// background class when the caller has more jobs than its share.
    pub async fn run<T: Send + 'static>(
        &self,
        caller: &str,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, JobFailed> {
        let share = {
            let mut callers = self.callers.lock().unwrap_or_else(|e| e.into_inner());
            callers
                .entry(caller.to_owned())
                .or_insert_with(|| {
                    Arc::new(Share {
                        permits: tokio::sync::Semaphore::new(self.per_caller),
                        outstanding: Default::default(),
                        usage: Mutex::new(Usage {
                            window: Instant::now(),
                            this: Duration::ZERO,
                            last: Duration::ZERO,
                        }),
                    })
                })
                .clone()
        };
        let excess = share.outstanding.fetch_add(1, std::sync::atomic::Ordering::Relaxed) >= self.per_caller;
        let _outstanding = Outstanding(share.clone());
        // The semaphores are never closed, so these always hold a permit.
        let _mine = share.permits.acquire().await.ok();
        let _core = self.all.clone().acquire_owned().await.ok();
        let timed = {
            let share = share.clone();
            move || {
                let started = Instant::now();
                let value = work();
                share.spent(started.elapsed(), Instant::now());
                value
            }
        };
        let now = Instant::now();
        // Every job counts towards contention, a light caller's above all.
        let contended = self.contended(caller, now);
        let yields = contended && (excess || share.heavy(now));
        if !yields {
            return tokio::task::spawn_blocking(timed).await.map_err(|_| JobFailed);
        }
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            // A panic fails this job only; the thread goes on to the next.
            if let Ok(value) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(timed)) {
                let _ = done.send(value);
            }
        });
        self.background.send(job).map_err(|_| JobFailed)?;
        result.await.map_err(|_| JobFailed)
    }
}

/// Puts the calling thread in the lowest scheduling class there is: Linux's
/// `SCHED_IDLE`, elsewhere the lowest priority; where that is refused, the
/// thread runs at the normal one.
fn lowest_priority() {
    use thread_priority::ThreadPriority;
    #[cfg(target_os = "linux")]
    let set = thread_priority::set_thread_priority_and_policy(
        thread_priority::thread_native_id(),
        ThreadPriority::Min,
        thread_priority::ThreadSchedulePolicy::Normal(thread_priority::NormalThreadSchedulePolicy::Idle),
    );
    #[cfg(not(target_os = "linux"))]
    let set = thread_priority::set_current_thread_priority(ThreadPriority::Min);
    if let Err(e) = set {
        tracing::warn!(error = ?e, "background CPU threads run at normal priority");
    }
}
