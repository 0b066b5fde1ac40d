//! `hotline bench`: two real `hotline serve` processes on loopback, mutual
//! TLS and fsync on, driven through the Operator service. Measures the
//! crypto bound of this machine, the maximum sustained exchanges per second
//! (notice signed, delivered, verified, logged, receipt signed, verified and
//! logged at the sender), latency at a fixed offered load, each node's peak
//! RSS, and `audit verify` on a large log.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use ed25519_dalek::{Signer, SigningKey};
use hotline::config::Config;
use hotline::proto::operator_client::OperatorClient;
use hotline::proto::{
    Category, Notice, NoticeKind, SendNoticeRequest, Severity, StatusRequest, Tlp, WatchEventsRequest, event,
    send_notice_outcome,
};
use serde_json::json;
use tonic::transport::Channel;

use super::bench_log::{LogArgs, log_bench};
use super::view::Out;

/// Ed25519 operations on the critical path of one exchange: the sender signs
/// the notice, the receiver verifies it and the sender's checkpoint, signs
/// the receipt, and the sender verifies the receipt and its checkpoint.
const SIGNS_PER_EXCHANGE: f64 = 2.0;
const VERIFIES_PER_EXCHANGE: f64 = 4.0;

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
}

pub(super) struct Node(pub(super) Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(super) fn spawn_node(config: &Path) -> anyhow::Result<Node> {
    let child = Command::new(std::env::current_exe()?)
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting hotline serve")?;
    Ok(Node(child))
}

/// Peak resident memory of a process, from /proc (Linux), in MiB.
pub(super) fn peak_rss_mib(pid: u32) -> Option<f64> {
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

/// Ed25519 signatures and strict verifications per second on one core.
fn crypto_rates() -> (f64, f64) {
    let key = SigningKey::from_bytes(&[7; 32]);
    let msg = [0x42u8; 600];
    let t = Instant::now();
    let mut n = 0u64;
    let mut sig = key.sign(&msg);
    while t.elapsed() < Duration::from_millis(700) {
        sig = key.sign(&msg);
        n += 1;
    }
    let sign = n as f64 / t.elapsed().as_secs_f64();
    let vk = key.verifying_key();
    let t = Instant::now();
    let mut m = 0u64;
    while t.elapsed() < Duration::from_millis(700) {
        let _ = vk.verify_strict(&msg, &sig);
        m += 1;
    }
    let verify = m as f64 / t.elapsed().as_secs_f64();
    (sign, verify)
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

pub fn run(args: E2eArgs, out: Out) -> anyhow::Result<ExitCode> {
    let root = std::env::temp_dir().join(format!("hotline-bench-{}", std::process::id()));
    let say = |s: &str| {
        if !out.json {
            eprintln!("  {s}");
        }
    };
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
    say("measuring Ed25519 sign and verify rates on one core...");
    let (sign_rate, verify_rate) = crypto_rates();
    let crypto_bound = cores / (SIGNS_PER_EXCHANGE / sign_rate + VERIFIES_PER_EXCHANGE / verify_rate);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let result = rt.block_on(async {
        let made = hotline::setup::local_cluster(&root, &["A", "B"], hotline::setup::LOAD_NORMS).await?;
        let configs: Vec<Config> = made
            .into_iter()
            .map(|(c, listener)| {
                drop(listener); // the serve processes bind these ports
                c
            })
            .collect();
        // A serves its metrics, scraped before and after the throughput run.
        let metrics_at = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let mut a_config = std::fs::read_to_string(&configs[0].path)?;
        a_config += &format!("\n[metrics]\nlisten = \"{metrics_at}\"\n");
        std::fs::write(&configs[0].path, a_config)?;
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
        say("starting two nodes (hotline serve, mutual TLS, SQLite WAL synchronous=FULL)...");
        let start = Instant::now();
        loop {
            if a.clone().status(StatusRequest {}).await.is_ok() && b.clone().status(StatusRequest {}).await.is_ok() {
                break;
            }
            anyhow::ensure!(start.elapsed() < Duration::from_secs(30), "nodes did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
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
        let scraped_before = hotline::metrics::scrape(metrics_at).await?;
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
        let scraped_after = hotline::metrics::scrape(metrics_at).await?;
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
        let rss: Vec<f64> = nodes
            .iter()
            .map(|n| peak_rss_mib(n.0.id()).unwrap_or(f64::NAN))
            .collect();
        for n in &nodes {
            let _ = Command::new("kill").arg("-TERM").arg(n.0.id().to_string()).status();
        }
        drop(nodes);
        anyhow::Ok((throughput, overall, achieved, latencies, rss, scraped))
    });
    let _ = std::fs::remove_dir_all(&root);
    let (throughput, overall, achieved, latencies, rss, (deliveries, commits)) = result?;

    let log = if args.log_entries > 0 {
        say(&format!(
            "audit log: building and verifying {} entries...",
            args.log_entries
        ));
        let (figures, _) = log_bench(LogArgs::with_entries(args.log_entries), Out { json: true })?;
        Some(figures)
    } else {
        None
    };
    let verify_s = log.as_ref().and_then(|l| l["verify_seconds"].as_f64());
    let proof_us = log.as_ref().and_then(|l| l["inclusion_proof_us"]["p50"].as_f64());
    let share = throughput / crypto_bound;
    let machine = format!("{} cores, {}", cores, std::env::consts::ARCH);
    let figures = json!({
        "machine": machine,
        "ed25519_sign_per_second_per_core": sign_rate, "ed25519_verify_per_second_per_core": verify_rate,
        "crypto_bound_exchanges_per_second": crypto_bound,
        "exchanges_per_second": throughput, "share_of_crypto_bound": share,
        "exchanges_per_second_with_fill_and_drain": overall,
        "latency_ms": {"offered_per_second": args.rate, "achieved_per_second": achieved, "samples": latencies.len(),
                       "p50": percentile_ms(&latencies, 0.5), "p99": percentile_ms(&latencies, 0.99), "p999": percentile_ms(&latencies, 0.999)},
        "peak_rss_mib": {"A": rss.first(), "B": rss.get(1)},
        "metrics_scraped_from_a": {"deliveries_receipted": deliveries, "log_commits": commits},
        "log": log,
    });
    out.print(&figures, || {
        let row = |what: &str, got: String, target: &str| format!("{what:<52} {got:>22}   {target}\n");
        let mut t =
            format!("hotline bench  ({machine}; two hotline serve processes, mutual TLS, SQLite synchronous=FULL)\n");
        t += &row("figure", "measured".into(), "target");
        t += &row(
            "Ed25519 sign / verify_strict, one core",
            format!("{sign_rate:.0} / {verify_rate:.0} /s"),
            "",
        );
        t += &row(
            "crypto bound (2 signs + 4 verifies per exchange)",
            format!("{crypto_bound:.0} /s"),
            "",
        );
        t += &row(
            "exchanges end to end, sustained (middle 80 %)",
            format!("{throughput:.0} /s"),
            ">= 5000 /s",
        );
        t += &row("  the whole run, with fill and drain", format!("{overall:.0} /s"), "");
        t += &row(
            "  as a share of the crypto bound",
            format!("{:.0} %", share * 100.0),
            ">= 50 %",
        );
        t += &row(
            &format!("latency at {} /s offered (achieved {achieved:.0} /s)", args.rate),
            format!(
                "p50 {:.1} p99 {:.1} ms",
                percentile_ms(&latencies, 0.5),
                percentile_ms(&latencies, 0.99)
            ),
            "p99 <= 10 ms",
        );
        t += &row("  p99.9", format!("{:.1} ms", percentile_ms(&latencies, 0.999)), "");
        t += &row(
            "peak RSS of each node",
            format!("{:.0} / {:.0} MiB", rss[0], rss[1]),
            "<= 150 MB",
        );
        t += &row(
            "/metrics of A over the throughput run",
            format!("+{deliveries:.0} receipted, +{commits:.0} commits"),
            "",
        );
        if let (Some(v), Some(p)) = (verify_s, proof_us) {
            t += &row(
                &format!("audit verify of {} entries", args.log_entries),
                format!("{v:.2} s"),
                "<= 10 s",
            );
            t += &row(
                &format!("inclusion proof at {} entries (p50)", args.log_entries),
                format!("{p:.0} µs"),
                "<= 1 ms",
            );
        }
        t
    });
    Ok(ExitCode::SUCCESS)
}
