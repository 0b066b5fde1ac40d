//! One run of exchanges for `hotline bench`: two real `hotline serve`
//! processes on loopback, mutual TLS and fsync on, driven through the
//! Operator service; node A's log may first be filled with any number of
//! entries, so the same run on an empty and on a long log can be compared.
//! Measures A's startup, sustained exchanges per second, latency at a fixed
//! offered load, inclusion-proof latency over the Audit service and each
//! node's peak RSS.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use hotline::config::Config;
use hotline::proto::audit_client::AuditClient;
use hotline::proto::operator_client::OperatorClient;
use hotline::proto::{
    Category, InclusionProofRequest, Notice, NoticeKind, SendNoticeRequest, Severity, StatusRequest, Tlp,
    WatchEventsRequest, event, send_notice_outcome,
};
use tonic::transport::Channel;

use crate::cli::view::Out;

/// What the end-to-end run measures, and how hard it pushes.
#[derive(clap::Args)]
pub struct E2eArgs {
    /// Exchanges in the throughput run.
    #[arg(long, default_value_t = 20_000)]
    pub exchanges: u64,
    /// Exchanges in flight at once in the throughput run.
    #[arg(long, default_value_t = 512)]
    pub concurrency: u64,
    /// Offered load of the latency run, exchanges per second.
    #[arg(long, default_value_t = 1_000)]
    pub rate: u64,
    /// Length of the latency run, seconds.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Entries of the log whose `audit verify` rate is measured (0 to skip).
    #[arg(long, default_value_t = 1_000_000)]
    pub log_entries: u64,
    /// Also run the exchanges on a node whose log already holds this many
    /// entries, beside the run on an empty log (0 to skip; 10000000 is the
    /// figure of record, about 4 GB of temporary disk and 3 minutes more).
    #[arg(long, default_value_t = 0)]
    pub full_log: u64,
    /// Also run the exchanges with both nodes' stores in PostgreSQL, beside
    /// the run on SQLite: a URL of a server where a new database may be made
    /// for each node, such as postgresql://postgres@127.0.0.1:55432/postgres.
    #[arg(long)]
    pub postgres: Option<String>,
}

/// Inclusion proofs asked of node A after the exchanges, at random indices.
const PROOFS: usize = 1_000;

/// What one run measured.
pub(super) struct Exchanges {
    /// From starting A's process to its first answer.
    pub startup: Duration,
    /// Receipts per second while the pipeline was full, and over the whole run.
    pub throughput: f64,
    pub overall: f64,
    /// The latency run's achieved rate and sorted latencies.
    pub achieved: f64,
    pub latencies: Vec<Duration>,
    /// Sorted latencies of GetInclusionProof at A, and A's log size then.
    pub proofs: Vec<Duration>,
    pub log_size: u64,
    /// Peak RSS of A and B, MiB.
    pub rss: Vec<f64>,
    /// A's `/metrics` over the throughput run: deliveries receipted, log commits.
    pub scraped: (f64, f64),
}

pub(crate) struct Node(pub(crate) Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn spawn_node(config: &Path) -> anyhow::Result<Node> {
    let child = Command::new(std::env::current_exe()?)
        .args(["serve", "--config"])
        .arg(config)
        // The nodes' warnings too when asked for (RUST_LOG=warn hotline drill ...).
        .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "error".into()))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting hotline serve")?;
    Ok(Node(child))
}

/// Peak resident memory of a process, from /proc (Linux), in MiB.
pub(crate) fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

fn bench_notice(i: u64) -> Notice {
    Notice {
        to: vec!["B".into()],
        kind: NoticeKind::Notification as i32,
        severity: Severity::Low as i32,
        category: Category::Test as i32,
        tlp: Tlp::Green as i32,
        title: format!("bench exchange {i}"),
        summary: "x".repeat(300),
        ..Default::default()
    }
}

/// Flushes every process's dirty pages to disk, and lets the nodes finish
/// background work (witnessing, WAL checkpoints). Without it, the kernel's
/// writeback of another program's output (a build that just finished, say)
/// can start mid-run and queue the nodes' fsyncs behind it: with 3.5 GB being
/// written back, p99.9 latency went from 7 to 32 ms on this machine.
async fn settle() {
    match Command::new("sync").status() {
        Ok(s) if s.success() => {}
        other => tracing::warn!(?other, "sync failed; figures may include other programs' disk writes"),
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// Receipts per second while the pipeline is full: between the arrivals of
/// the first and the last tenth of the run, leaving out the start, when the
/// first notices are still on their way, and the end, when fewer and fewer
/// remain in flight. None if there are too few arrivals to tell.
fn steady_rate(arrived: &mut [Instant]) -> Option<f64> {
    arrived.sort();
    let (from, to) = (arrived.len() / 10, arrived.len() * 9 / 10);
    let span = arrived.get(to)?.duration_since(*arrived.get(from)?).as_secs_f64();
    (span > 0.0).then(|| (to - from) as f64 / span)
}

pub(super) fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).map(|d| d.as_secs_f64() * 1e3).unwrap_or(f64::NAN)
}

/// Fills node A's log with `entries` operator-action entries of 400 bytes
/// before its node starts, in batches of 1000, signed by A's key, then opens
/// it once more so the start-up check of entries appended since the last
/// start is done here, as a restarted node would have done it before.
async fn fill_log(a: &Config, entries: u64, out: Out) -> anyhow::Result<()> {
    let key = hotline::keys::IdentityKey::load(&a.identity_key)?;
    let log = hotline::log::Log::open(&a.data, key.clone())?;
    let bar = crate::cli::view::progress_bar(out, "filling A's log", "entries");
    bar.set_length(entries);
    let mut size = log.head().size;
    while size < entries {
        let n = 1000.min(entries - size);
        let batch = (size..size + n).map(|i| super::log::sample_entry(i, 400)).collect();
        size = log.append(batch).await?.tree_size;
        bar.set_position(size);
    }
    bar.finish_and_clear();
    log.close();
    let t = Instant::now();
    hotline::log::Log::open(&a.data, key)?.close();
    say(
        out,
        &format!(
            "A's log holds {entries} entries; the first open re-hashed them in {:.1} s",
            t.elapsed().as_secs_f64()
        ),
    );
    Ok(())
}

/// Runs the exchanges on a fresh two-node hotline in `root`, A's log first
/// filled with `fill` entries.
pub(super) async fn exchanges(
    root: &Path,
    args: &E2eArgs,
    fill: u64,
    postgres: Option<&str>,
    out: Out,
) -> anyhow::Result<Exchanges> {
    let say = |s: &str| say(out, s);
    let made = hotline::setup::local_cluster(root, &["A", "B"], hotline::setup::LOAD_NORMS).await?;
    let configs: Vec<Config> = made
        .into_iter()
        .map(|(c, listener)| {
            drop(listener); // the serve processes bind these ports
            c
        })
        .collect();
    if let Some(admin) = postgres {
        for c in &configs {
            let name = format!("hotline_bench_{}", uuid::Uuid::new_v4().simple());
            let url = hotline::store::create_database(admin, &name)?;
            let text = std::fs::read_to_string(&c.path)?;
            std::fs::write(&c.path, format!("database = {url:?}\n{text}"))?;
            hotline::store::bind(&c.data, Some(&url))?;
        }
    }
    // A serves its metrics, scraped before and after the throughput run.
    let metrics_at = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let mut a_config = std::fs::read_to_string(&configs[0].path)?;
    a_config += &format!("\n[metrics]\nlisten = \"{metrics_at}\"\n");
    std::fs::write(&configs[0].path, a_config)?;
    if fill > 0 {
        fill_log(&configs[0], fill, out).await?;
    }
    settle().await;
    let nodes = configs
        .iter()
        .map(|c| spawn_node(&c.path))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let client = |c: &Config| -> anyhow::Result<OperatorClient<Channel>> {
        Ok(OperatorClient::new(hotline::transport::channel(
            &c.client_node,
            &c.ca_pem()?,
            &c.client_cert()?,
        )?))
    };
    let a = client(&configs[0])?;
    let b = client(&configs[1])?;
    say(match postgres {
        None => "starting two nodes (hotline serve, mutual TLS, SQLite WAL synchronous=FULL)...",
        Some(_) => "starting two nodes (hotline serve, mutual TLS, PostgreSQL)...",
    });
    let start = Instant::now();
    let mut startup = None;
    loop {
        if startup.is_none() && a.clone().status(StatusRequest {}).await.is_ok() {
            startup = Some(start.elapsed());
        }
        if startup.is_some() && b.clone().status(StatusRequest {}).await.is_ok() {
            break;
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(120),
            "nodes did not start within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let startup = startup.unwrap_or_default();
    settle().await;

    // Receipts arriving at A, by message id.
    let receipted = Arc::new(AtomicU64::new(0));
    let arrivals: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut events = a.clone().watch_events(WatchEventsRequest {}).await?.into_inner();
    {
        let (receipted, arrivals) = (receipted.clone(), arrivals.clone());
        tokio::spawn(async move {
            while let Ok(Some(e)) = events.message().await {
                if let Some(event::Body::ReceiptReceived(r)) = e.body {
                    arrivals
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(r.message_id, Instant::now());
                    receipted.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }

    say(&format!(
        "throughput: {} exchanges A -> B, {} in flight, notices sent over one SendNotices stream...",
        args.exchanges, args.concurrency
    ));
    let (notices, queued) = tokio::sync::mpsc::channel(1024);
    let mut outcomes = a
        .clone()
        .send_notices(tokio_stream::wrappers::ReceiverStream::new(queued))
        .await?
        .into_inner();
    // A refused notice never gets a receipt: stop at the first, with its reason.
    let refused: Arc<Mutex<Option<String>>> = Arc::default();
    {
        let refused = refused.clone();
        tokio::spawn(async move {
            while let Ok(Some(o)) = outcomes.message().await {
                if let Some(send_notice_outcome::Result::Refused(r)) = o.result {
                    *refused.lock().unwrap_or_else(|e| e.into_inner()) = Some(r.message);
                }
            }
        });
    }
    let failed = || refused.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let scraped_before = hotline::metrics::scrape(metrics_at, hotline::metrics::OPENMETRICS).await?;
    let t = Instant::now();
    let mut sent = 0;
    while sent < args.exchanges {
        if let Some(why) = failed() {
            anyhow::bail!("node A refused a notice: {why}");
        }
        if sent.saturating_sub(receipted.load(Ordering::Relaxed)) >= args.concurrency {
            tokio::time::sleep(Duration::from_micros(200)).await;
            continue;
        }
        notices
            .send(SendNoticeRequest {
                notice: Some(bench_notice(sent)),
            })
            .await
            .context("node A closed the SendNotices stream")?;
        sent += 1;
    }
    drop(notices);
    while receipted.load(Ordering::Relaxed) < args.exchanges {
        if let Some(why) = failed() {
            anyhow::bail!("node A refused a notice: {why}");
        }
        anyhow::ensure!(t.elapsed() < Duration::from_secs(600), "throughput run did not finish");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let overall = args.exchanges as f64 / t.elapsed().as_secs_f64();
    let mut arrived: Vec<Instant> = arrivals
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .copied()
        .collect();
    let throughput = steady_rate(&mut arrived).unwrap_or(overall);
    let scraped_after = hotline::metrics::scrape(metrics_at, hotline::metrics::OPENMETRICS).await?;
    let moved = |name: &str, labels: &[&str]| {
        hotline::metrics::sample_sum(&scraped_after, name, labels)
            - hotline::metrics::sample_sum(&scraped_before, name, labels)
    };
    let scraped = (
        moved("hotline_deliveries_total", &["outcome=\"receipted\""]),
        moved("hotline_log_commit_seconds_count", &[]),
    );
    settle().await;

    say(&format!(
        "latency: {} exchanges/s offered for {} s...",
        args.rate, args.seconds
    ));
    let total = args.rate * args.seconds;
    let base = receipted.load(Ordering::Relaxed);
    let sends: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let t = Instant::now();
    for k in 0..total {
        let due = t + Duration::from_secs_f64(k as f64 / args.rate as f64);
        tokio::time::sleep_until(due.into()).await;
        let (mut c, sends) = (a.clone(), sends.clone());
        tokio::spawn(async move {
            let began = Instant::now();
            if let Ok(r) = c
                .send_notice(SendNoticeRequest {
                    notice: Some(bench_notice(k)),
                })
                .await
            {
                sends
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((r.into_inner().id, began));
            }
        });
    }
    while receipted.load(Ordering::Relaxed) < base + total {
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(args.seconds + 120),
            "latency run did not finish"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let achieved = total as f64 / t.elapsed().as_secs_f64();
    let mut latencies: Vec<Duration> = {
        let arrivals = arrivals.lock().unwrap_or_else(|e| e.into_inner());
        sends
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(|(id, began)| arrivals.get(id).map(|at| *at - *began))
            .collect()
    };
    latencies.sort();
    let log_size = a.clone().status(StatusRequest {}).await?.into_inner().log_size;
    let proofs = proof_latencies(&configs[0], log_size).await?;
    let rss: Vec<f64> = nodes
        .iter()
        .map(|n| peak_rss_mib(n.0.id()).unwrap_or(f64::NAN))
        .collect();
    for n in &nodes {
        let _ = Command::new("kill").arg("-TERM").arg(n.0.id().to_string()).status();
    }
    drop(nodes);
    Ok(Exchanges {
        startup,
        throughput,
        overall,
        achieved,
        latencies,
        proofs,
        log_size,
        rss,
        scraped,
    })
}

/// Latencies of GetInclusionProof at A for random entries of its log of
/// `size` entries, sorted.
async fn proof_latencies(a: &Config, size: u64) -> anyhow::Result<Vec<Duration>> {
    let mut audit = AuditClient::new(hotline::transport::channel(
        &a.client_node,
        &a.ca_pem()?,
        &a.client_cert()?,
    )?);
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut took = Vec::with_capacity(PROOFS);
    for _ in 0..PROOFS {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let t = Instant::now();
        audit
            .get_inclusion_proof(InclusionProofRequest {
                index: x % size.max(1),
                tree_size: size,
            })
            .await
            .context("GetInclusionProof at A")?;
        took.push(t.elapsed());
    }
    took.sort();
    Ok(took)
}

fn say(out: Out, s: &str) {
    if !out.json {
        eprintln!("  {s}");
    }
}
