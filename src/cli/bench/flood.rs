//! `hotline bench flood`: the flood drill. One peer's node certificate sends
//! the most expensive deliveries the limits allow (full batches of validly
//! signed envelopes, each refused only after its signature is checked) while
//! another peer delivers notices and an operator calls `Status`; the drill
//! prints both callers' latency idle and under the flood, and the node's
//! peak memory. It measures; it asserts nothing.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use hotline::config::Config;
use hotline::envelope::{self, NOTICE_TYPE};
use hotline::keys::IdentityKey;
use hotline::proto::federation_client::FederationClient;
use hotline::proto::operator_client::OperatorClient;
use hotline::proto::{
    Category, DeliverBatchRequest, DeliverRequest, Envelope, Notice, NoticeKind, Severity, StatusRequest, Tlp,
};
use prost::Message;
use serde_json::json;
use tonic::transport::Channel;

use super::exchanges::{peak_rss_mib, percentile_ms, spawn_node};
use crate::cli::view::Out;

/// How long the drill runs, and how hard the flood pushes.
#[derive(clap::Args)]
pub struct FloodArgs {
    /// Seconds of the flood (an idle phase of half as long comes first).
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Calls the flooding peer keeps in flight: by default the node's limit
    /// per peer (8), the most the limits allow; more are refused unread.
    #[arg(long, default_value_t = 8)]
    pub calls: usize,
}

/// A notice from `from` to `to`, valid in every field.
fn notice(from: &str, to: &str, title: String) -> Notice {
    Notice {
        id: hotline::message::new_id(),
        from: from.into(),
        to: vec![to.into()],
        created_at: Some(hotline::clock::to_proto(hotline::clock::now())),
        kind: NoticeKind::Notification as i32,
        severity: Severity::Low as i32,
        category: Category::Test as i32,
        tlp: Tlp::Green as i32,
        title,
        summary: "x".repeat(200),
        author: "drill".into(),
        ..Default::default()
    }
}

fn federation(target: &Config, caller: &Config) -> anyhow::Result<FederationClient<Channel>> {
    let endpoint = format!("https://{}", target.listen);
    Ok(FederationClient::new(hotline::transport::channel(
        &endpoint,
        &target.ca_pem()?,
        &caller.node_cert()?,
    )?))
}

/// Latencies of one probe, idle or under the flood.
#[derive(Default)]
struct Probe {
    idle: Vec<Duration>,
    flood: Vec<Duration>,
    failed: u64,
}

impl Probe {
    fn figures(&mut self) -> serde_json::Value {
        self.idle.sort();
        self.flood.sort();
        let (i99, f99) = (percentile_ms(&self.idle, 0.99), percentile_ms(&self.flood, 0.99));
        json!({"idle_p50_ms": percentile_ms(&self.idle, 0.5), "idle_p99_ms": i99,
               "flood_p50_ms": percentile_ms(&self.flood, 0.5), "flood_p99_ms": f99,
               "p99_ratio": f99 / i99, "calls": self.idle.len() + self.flood.len(), "failed": self.failed})
    }
}

pub fn run(args: FloodArgs, out: Out) -> anyhow::Result<ExitCode> {
    let root = tempfile_dir()?;
    let result = crate::cli::runtime::block_on(drill(&root, &args));
    let _ = std::fs::remove_dir_all(&root);
    let figures = result?;
    out.print(&figures, || {
        let row = |name: &str, v: &serde_json::Value| {
            format!(
                "{name:<34} idle p50 {:>6.2} p99 {:>6.2} ms   flood p50 {:>6.2} p99 {:>7.2} ms   p99 x{:.1}\n",
                v["idle_p50_ms"].as_f64().unwrap_or(f64::NAN),
                v["idle_p99_ms"].as_f64().unwrap_or(f64::NAN),
                v["flood_p50_ms"].as_f64().unwrap_or(f64::NAN),
                v["flood_p99_ms"].as_f64().unwrap_or(f64::NAN),
                v["p99_ratio"].as_f64().unwrap_or(f64::NAN),
            )
        };
        format!(
            "hotline bench flood  (one hotline serve process; the flood comes from one peer's node certificate)\n\
             flood: {} batches of 256 signed envelopes in {} s ({:.0} signatures/s checked), {} refused whole\n{}{}peak RSS of the node: {:.0} MiB (target < 150)\n",
            figures["flood"]["batches"],
            figures["flood"]["seconds"],
            figures["flood"]["signatures_per_second"].as_f64().unwrap_or(0.0),
            figures["flood"]["refused_calls"],
            row("another peer's Deliver", &figures["peer_deliver"]),
            row("an operator's Status", &figures["operator_status"]),
            figures["peak_rss_mib"].as_f64().unwrap_or(f64::NAN),
        )
    });
    Ok(ExitCode::SUCCESS)
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let root = std::env::temp_dir().join(format!("hotline-flood-{}", std::process::id()));
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    Ok(root)
}

async fn drill(root: &std::path::Path, args: &FloodArgs) -> anyhow::Result<serde_json::Value> {
    let made = hotline::setup::local_cluster(root, &["PER", "CHL", "ARG"], hotline::setup::LOAD_NORMS).await?;
    let configs: Vec<Config> = made.into_iter().map(|(c, _listener)| c).collect(); // ports freed for PER
    let (per, chl, arg) = (&configs[0], &configs[1], &configs[2]);
    let node = spawn_node(&per.path)?;
    let mut status = OperatorClient::new(hotline::transport::channel(
        &per.client_node,
        &per.ca_pem()?,
        &per.client_cert()?,
    )?);
    let up = Instant::now() + Duration::from_secs(30);
    while status.status(StatusRequest {}).await.is_err() {
        anyhow::ensure!(Instant::now() < up, "the node did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let chl_key = IdentityKey::load(&chl.identity_key)?;
    let arg_key = IdentityKey::load(&arg.identity_key)?;
    // Valid signatures, each checked, then refused: addressed to ARG, not to PER. Nothing is logged.
    let batch: Vec<Envelope> = (0..256)
        .map(|i| {
            envelope::sign(
                NOTICE_TYPE,
                notice("CHL", "ARG", format!("flood {i}")).encode_to_vec(),
                &chl_key,
            )
        })
        .collect::<Result<_, _>>()?;
    let flooding = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let (batches, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    // The flood runs on a runtime of its own, so that the probes' latencies
    // never include time their replies waited behind the flood's own work in
    // the drill (its encoding and encryption); it still shares the two cores.
    let flood_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let mut flood = Vec::new();
    for _ in 0..args.calls {
        let mut client = {
            let _on_flood_runtime = flood_rt.enter();
            federation(per, chl)?
        };
        let batch = batch.clone();
        let (flooding, stop, batches, refused) = (flooding.clone(), stop.clone(), batches.clone(), refused.clone());
        flood.push(flood_rt.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if !flooding.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                let req = DeliverBatchRequest {
                    agreement: None,
                    envelopes: batch.clone(),
                    ..Default::default()
                };
                match client.deliver_batch(req).await {
                    Ok(_) => batches.fetch_add(1, Ordering::Relaxed),
                    Err(_) => refused.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    let mut peer = federation(per, arg)?;
    let (mut deliver, mut operator) = (Probe::default(), Probe::default());
    let idle = Duration::from_secs(args.seconds.div_ceil(2));
    let started = Instant::now();
    let mut flood_started = None;
    let mut i = 0u64;
    loop {
        let elapsed = started.elapsed();
        if elapsed >= idle && flood_started.is_none() {
            flooding.store(true, Ordering::Relaxed);
            flood_started = Some(Instant::now());
        }
        if flood_started.is_some_and(|t| t.elapsed() >= Duration::from_secs(args.seconds)) {
            break;
        }
        let under_flood = flood_started.is_some();
        // Another peer's notice, and an operator's Status, fifty of each a second:
        // enough calls that a p99 is not just the slowest one.
        let env = envelope::sign(
            NOTICE_TYPE,
            notice("ARG", "PER", format!("probe {i}")).encode_to_vec(),
            &arg_key,
        )?;
        let t = Instant::now();
        let ok = peer
            .deliver(DeliverRequest {
                agreement: None,
                envelope: Some(env),
                sender_checkpoint: None,
            })
            .await
            .is_ok();
        record(&mut deliver, t.elapsed(), ok, under_flood);
        let t = Instant::now();
        let ok = status.status(StatusRequest {}).await.is_ok();
        record(&mut operator, t.elapsed(), ok, under_flood);
        i += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let flood_seconds = flood_started.map_or(0.0, |t| t.elapsed().as_secs_f64());
    stop.store(true, Ordering::Relaxed);
    for f in flood {
        let _ = f.await;
    }
    flood_rt.shutdown_background();
    let rss = peak_rss_mib(node.0.id());
    drop(node);
    let done = batches.load(Ordering::Relaxed);
    Ok(json!({
        "flood": {"seconds": flood_seconds.round(), "batches": done, "refused_calls": refused.load(Ordering::Relaxed),
                  "signatures_per_second": done as f64 * 256.0 / flood_seconds.max(1e-9)},
        "peer_deliver": deliver.figures(),
        "operator_status": operator.figures(),
        "peak_rss_mib": rss,
    }))
}

fn record(probe: &mut Probe, took: Duration, ok: bool, under_flood: bool) {
    if !ok {
        probe.failed += 1;
    } else if under_flood {
        probe.flood.push(took);
    } else {
        probe.idle.push(took);
    }
}
