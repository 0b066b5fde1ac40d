//! Prometheus metrics for operations teams: counters and histograms the
//! node updates as it works (deliveries, refusals, norm events, witnessed
//! checkpoints, communication-check answer times, log commits, signature
//! checks), and figures read from the database at each scrape (outbox
//! depth, running and missed deadlines, log size). Served in the text
//! format of the Prometheus project's own client on the `[metrics]`
//! address, plain HTTP, localhost by default.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::proto::{Deadline, NormEventKind};

/// Labels as name and value pairs.
type Labels = Vec<(&'static str, String)>;

/// The content type of the text the scrape returns (OpenMetrics text, which Prometheus reads).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Buckets from 100 µs doubling to about 3.3 s: log commits and signature checks.
fn short_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.000_1, 2.0, 16))
}

/// Buckets from 10 ms doubling to about 11 h: communication-check answers, machine or human.
fn answer_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 22))
}

/// One node's metrics.
pub struct Metrics {
    registry: Registry,
    /// Delivery attempts by peer and outcome (`receipted`, `failed`).
    pub deliveries: Family<Labels, Counter>,
    /// Calls refused, by gRPC status code.
    pub refusals: Family<Labels, Counter>,
    /// Norm events logged, by kind and the clock they concern.
    pub norm_events: Family<Labels, Counter>,
    /// Checkpoints witnessed, by peer.
    pub witnessed: Family<Labels, Counter>,
    /// How long peers took to answer our communication checks, machine and human.
    pub comm_check_answer: Family<Labels, Histogram, fn() -> Histogram>,
    /// How long checking a delivered envelope's signatures took.
    pub signature_verify: Histogram,
    outbox: Family<Labels, Gauge>,
    running: Family<Labels, Gauge>,
    missed: Family<Labels, Counter>,
    log_size: Gauge,
}

impl Metrics {
    /// A node's metrics; `log_commit` is the histogram its log observes commits with.
    pub fn new(log_commit: Histogram, checkpoint_failures: Counter) -> Self {
        let mut registry = Registry::with_prefix("hotline");
        let metrics = Self {
            deliveries: Family::default(),
            refusals: Family::default(),
            norm_events: Family::default(),
            witnessed: Family::default(),
            comm_check_answer: Family::new_with_constructor(answer_buckets),
            signature_verify: short_buckets(),
            outbox: Family::default(),
            running: Family::default(),
            missed: Family::default(),
            log_size: Gauge::default(),
            registry: Registry::default(),
        };
        let m = &metrics;
        registry.register(
            "deliveries",
            "Delivery attempts to a peer, by outcome",
            m.deliveries.clone(),
        );
        registry.register("refusals", "Calls refused, by gRPC status code", m.refusals.clone());
        registry.register(
            "norm_events",
            "Norm events logged, by kind and clock",
            m.norm_events.clone(),
        );
        registry.register(
            "witnessed_checkpoints",
            "Peer checkpoints witnessed and logged",
            m.witnessed.clone(),
        );
        registry.register(
            "comm_check_answer_seconds",
            "Round trip of communication checks answered, machine or human",
            m.comm_check_answer.clone(),
        );
        registry.register(
            "signature_verify_seconds",
            "Time to check the signatures of a delivered envelope",
            m.signature_verify.clone(),
        );
        registry.register(
            "log_commit_seconds",
            "Time to commit one batch of log entries",
            log_commit,
        );
        registry.register(
            "outbox_depth",
            "Messages queued for a peer and not yet receipted",
            m.outbox.clone(),
        );
        registry.register("deadlines_running", "Clocks running, by norm", m.running.clone());
        registry.register(
            "deadlines_missed",
            "Clocks missed, by norm (real traffic only)",
            m.missed.clone(),
        );
        registry.register("log_size", "Entries in the audit log", m.log_size.clone());
        registry.register(
            "wal_checkpoint_failures",
            "Background WAL checkpoints that failed (a full disk, say); logged once a minute",
            checkpoint_failures,
        );
        Self { registry, ..metrics }
    }

    /// Counts a norm event.
    pub fn norm_event(&self, kind: NormEventKind, deadline: Deadline) {
        self.norm_events
            .get_or_create(&vec![
                ("kind", short(kind.as_str_name(), "NORM_EVENT_KIND_")),
                clock_label(deadline),
            ])
            .inc();
    }

    /// Counts one delivery attempt to `peer`.
    pub fn delivery(&self, peer: &str, receipted: bool) {
        let outcome = if receipted { "receipted" } else { "failed" };
        self.deliveries
            .get_or_create(&vec![("peer", peer.to_owned()), ("outcome", outcome.to_owned())])
            .inc();
    }

    /// Observes the round trip of a communication check `peer` answered.
    pub fn comm_check_answered(&self, peer: &str, human: bool, round_trip: Duration) {
        self.comm_check_answer
            .get_or_create(&vec![("peer", peer.to_owned()), ("human", human.to_string())])
            .observe(round_trip.as_secs_f64());
    }

    /// The text a scrape returns, with the database figures as `figures` reads them now.
    pub fn render(&self, figures: &Figures) -> String {
        for (peer, n) in &figures.outbox {
            self.outbox.get_or_create(&vec![("peer", peer.clone())]).set(*n as i64);
        }
        for (deadline, n) in &figures.running {
            self.running.get_or_create(&vec![clock_label(*deadline)]).set(*n as i64);
        }
        for (deadline, n) in &figures.missed {
            let counter = self.missed.get_or_create(&vec![clock_label(*deadline)]);
            counter.inner().store(*n, std::sync::atomic::Ordering::Relaxed);
        }
        self.log_size.set(figures.log_size as i64);
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

/// What a scrape reads from the database.
#[derive(Default, Debug)]
pub struct Figures {
    /// Per peer, messages not yet receipted.
    pub outbox: Vec<(String, u64)>,
    /// Per kind of clock, how many run.
    pub running: Vec<(Deadline, u64)>,
    /// Per kind of clock, how many were missed.
    pub missed: Vec<(Deadline, u64)>,
    /// Entries in the log.
    pub log_size: u64,
}

fn short(name: &str, prefix: &str) -> String {
    name.trim_start_matches(prefix).to_ascii_lowercase()
}

fn clock_label(d: Deadline) -> (&'static str, String) {
    ("norm", short(d.as_str_name(), "DEADLINE_"))
}

/// A histogram for a log to observe its commits with.
pub fn log_commit_histogram() -> Histogram {
    short_buckets()
}

/// Serves `GET /metrics` on `listener` until `stop` resolves; `figures`
/// reads the database figures for each scrape.
pub async fn serve(
    listener: impl axum::serve::Listener<Addr = SocketAddr>,
    metrics: Arc<Metrics>,
    figures: impl Fn() -> Figures + Clone + Send + Sync + 'static,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let (metrics, figures) = (metrics.clone(), figures.clone());
            async move {
                let text = tokio::task::spawn_blocking(move || metrics.render(&figures()))
                    .await
                    .unwrap_or_default();
                ([(http::header::CONTENT_TYPE, CONTENT_TYPE)], text)
            }
        }),
    );
    axum::serve(listener, app).with_graceful_shutdown(stop).await
}

/// Fetches `GET /metrics` from `addr` as a Prometheus server does (plain
/// HTTP/1.1): for `hotline bench`, which shows the counters moving, and tests.
pub async fn scrape(addr: SocketAddr) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8(raw).map_err(std::io::Error::other)?;
    match text.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_owned()),
        _ => Err(std::io::Error::other(format!(
            "metrics at {addr}: not a 200 answer: {}",
            text.lines().next().unwrap_or_default()
        ))),
    }
}

/// The sum of the samples of `name` whose line holds every one of `labels`
/// (such as `outcome="receipted"`) in a scrape's text: what the bench reads.
pub fn sample_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(['{', ' '])))
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The address a `[metrics]` table without `listen` serves on.
pub fn default_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}
