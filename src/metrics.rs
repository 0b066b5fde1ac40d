//! Prometheus metrics for operations teams: counters and histograms the
//! node updates as it works (deliveries, refusals, norm events, witnessed
//! checkpoints, communication-check answer times, log commits, signature
//! checks), and figures read from the database at each scrape (outbox
//! depth, running and missed deadlines, log size). Every family has its
//! series at zero from the start (each peer's, each norm's, each code's),
//! so a dashboard or an alert rule sees a zero, not an absent series.
//! Served on the `[metrics]` address, plain HTTP, localhost by default, in
//! OpenMetrics text for a scraper that asks for it and in Prometheus' classic
//! text format (0.0.4) otherwise, as the Prometheus project's own clients
//! negotiate.

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

/// The content type of OpenMetrics text, for a scraper whose `Accept` names it.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The content type of Prometheus' classic text format, for every other scraper.
pub const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

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
    refusals: Family<Labels, Counter>,
    /// Norm events logged, by kind and the clock they concern.
    pub norm_events: Family<Labels, Counter>,
    /// Checkpoints witnessed, by peer.
    pub witnessed: Family<Labels, Counter>,
    /// `ProveConsistency` calls made to witness a peer's checkpoints, by peer:
    /// most checkpoints come with their proof and need none.
    pub proofs_asked: Family<Labels, Counter>,
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
            proofs_asked: Family::default(),
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
            "consistency_proofs_asked",
            "ProveConsistency calls made to a peer to witness its checkpoints",
            m.proofs_asked.clone(),
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
        let metrics = Self { registry, ..metrics };
        metrics.zeroed();
        metrics
    }

    /// The series known from the start, at zero: every refusal code, and
    /// each kind of norm event with the clocks it can concern.
    fn zeroed(&self) {
        for code in (1..=16).map(tonic::Code::from_i32) {
            let _ = self.refusals.get_or_create(&vec![("code", format!("{code:?}"))]);
        }
        let norms = || (1..).map_while(|k| Deadline::try_from(k).ok());
        let kinds = (1..).map_while(|k| NormEventKind::try_from(k).ok());
        for kind in kinds {
            let concerns: Vec<Deadline> = match kind {
                NormEventKind::DeadlineMissed | NormEventKind::DeadlineClosed => norms().collect(),
                NormEventKind::Escalated => vec![Deadline::Acknowledge, Deadline::Response],
                NormEventKind::CommCheckOk => vec![Deadline::CommCheckAnswer],
                _ => vec![Deadline::Unspecified],
            };
            for deadline in concerns {
                let _ = self.norm_events.get_or_create(&norm_labels(kind, deadline));
            }
        }
    }

    /// A peer's series, at zero until its first event.
    fn peer_zeroed(&self, peer: &str) {
        for outcome in ["receipted", "failed"] {
            let _ = self
                .deliveries
                .get_or_create(&vec![("peer", peer.to_owned()), ("outcome", outcome.to_owned())]);
        }
        let _ = self.witnessed.get_or_create(&vec![("peer", peer.to_owned())]);
        let _ = self.proofs_asked.get_or_create(&vec![("peer", peer.to_owned())]);
        for human in [false, true] {
            let _ = self
                .comm_check_answer
                .get_or_create(&vec![("peer", peer.to_owned()), ("human", human.to_string())]);
        }
    }

    /// Counts a call refused with `code`.
    pub fn refused(&self, code: tonic::Code) {
        self.refusals.get_or_create(&vec![("code", format!("{code:?}"))]).inc();
    }

    /// Counts a norm event.
    pub fn norm_event(&self, kind: NormEventKind, deadline: Deadline) {
        self.norm_events.get_or_create(&norm_labels(kind, deadline)).inc();
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

    /// The text a scrape returns, with the database figures as `figures`
    /// reads them now: OpenMetrics, or with `classic` Prometheus' text format 0.0.4.
    pub fn render(&self, figures: &Figures, classic: bool) -> String {
        // The figures name every peer of the agreement in force, joined ones too.
        for (peer, n) in &figures.outbox {
            self.peer_zeroed(peer);
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
        if classic { to_classic(&text) } else { text }
    }
}

/// OpenMetrics text in Prometheus' classic text format (0.0.4): a counter
/// family is named with its `_total` there, as its samples are, and the
/// `# UNIT` and `# EOF` lines go. Only what `prometheus-client` writes is
/// handled: counters, gauges and histograms, no exemplars.
fn to_classic(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut text = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# TYPE ", "# HELP "].iter().find_map(|tag| {
            let (name, rest) = line.strip_prefix(tag)?.split_once(' ')?;
            counters.contains(name).then(|| format!("{tag}{name}_total {rest}"))
        });
        text += renamed.as_deref().unwrap_or(line);
        text.push('\n');
    }
    text
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

fn norm_labels(kind: NormEventKind, deadline: Deadline) -> Labels {
    vec![
        ("kind", short(kind.as_str_name(), "NORM_EVENT_KIND_")),
        clock_label(deadline),
    ]
}

/// A histogram for a log to observe its commits with.
pub fn log_commit_histogram() -> Histogram {
    short_buckets()
}

/// Serves `GET /metrics` on `listener` until `stop` resolves; `figures`
/// reads the database figures for each scrape. OpenMetrics goes to a
/// scraper whose `Accept` names it (Prometheus does, first), the classic
/// format to every other.
pub async fn serve(
    listener: impl axum::serve::Listener<Addr = SocketAddr>,
    metrics: Arc<Metrics>,
    figures: impl Fn() -> Figures + Clone + Send + Sync + 'static,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/metrics",
        get(move |headers: http::HeaderMap| {
            let (metrics, figures) = (metrics.clone(), figures.clone());
            let classic = !headers
                .get_all(http::header::ACCEPT)
                .iter()
                .any(|v| v.to_str().is_ok_and(|v| v.contains("application/openmetrics-text")));
            async move {
                let text = tokio::task::spawn_blocking(move || metrics.render(&figures(), classic))
                    .await
                    .unwrap_or_default();
                let content_type = if classic { CLASSIC } else { OPENMETRICS };
                ([(http::header::CONTENT_TYPE, content_type)], text)
            }
        }),
    );
    axum::serve(listener, app).with_graceful_shutdown(stop).await
}

/// Fetches `GET /metrics` from `addr` as a Prometheus server does (plain
/// HTTP/1.1), asking for `accept` (a content type, or empty for none): for
/// `hotline bench`, which shows the counters moving, and tests.
pub async fn scrape(addr: SocketAddr, accept: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let accept = match accept {
        "" => String::new(),
        a => format!("Accept: {a}\r\n"),
    };
    let request = format!("GET /metrics HTTP/1.1\r\nHost: localhost\r\n{accept}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
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
