//! `hotline drill --parties N`: a hotline of N parties on loopback, one
//! `hotline serve` process per party (processes, not one process for all:
//! each node then has its own file descriptors, memory and TLS state, as on
//! N machines, and a full mesh of N−1 peers each stays far below the open
//! file limit). It runs one full communication-check round and one notice
//! from the first party to all others with every receipt and response,
//! verifies every log, and prints what it cost. With `--link PROFILE`,
//! every party is reached through an impairing proxy ([`links`]).

mod links;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use hotline::config::Config;
use hotline::proto::operator_client::OperatorClient;
use hotline::proto::{
    Category, CommCheckRequest, GetNoticeRequest, Notice, NoticeKind, RespondRequest, ResponseStatus,
    SendNoticeRequest, Severity, StatusRequest, Tlp,
};
use serde_json::json;
use tonic::transport::Channel;

use super::bench::exchanges::{peak_rss_mib, spawn_node};
use super::view::Out;

/// `hotline drill`.
#[derive(clap::Args)]
pub struct Args {
    /// How many parties (2 to 999).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(2..=999))]
    parties: u16,
    /// How long each phase may take before the drill gives up, seconds.
    #[arg(long, default_value_t = 900)]
    timeout: u64,
    /// Reach every party through an impairing proxy: `clean` (none, the
    /// baseline), `satellite` (600 ms round trip, 5 % of connections reset),
    /// `narrowband` (64 kbit/s), `flapping` (each link cut 20 s in every
    /// minute for three minutes), `partition` (a tenth of the parties cut off
    /// for two minutes). Flapping and the partition start with the round.
    #[arg(long, value_enum, ignore_case = true)]
    link: Option<hotline::impair::LinkProfile>,
}

fn operator(c: &Config) -> anyhow::Result<OperatorClient<Channel>> {
    Ok(OperatorClient::new(hotline::transport::channel(
        &c.client_node,
        &c.ca_pem()?,
        &c.client_cert()?,
    )?))
}

/// Waits until `done` says how far along every node is (out of `total`), with a progress bar.
async fn phase<F, Fut>(what: &str, total: u64, timeout: Duration, out: Out, mut done: F) -> anyhow::Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = u64>,
{
    let bar = match out.json {
        true => indicatif::ProgressBar::hidden(),
        false => indicatif::ProgressBar::new(total),
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("  {msg:<44} [{bar:30}] {pos}/{len} {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    let started = Instant::now();
    loop {
        let n = done().await;
        bar.set_position(n);
        if n >= total {
            bar.finish_and_clear();
            return Ok(started.elapsed());
        }
        anyhow::ensure!(started.elapsed() < timeout, "{what}: {n} of {total} after {timeout:?}");
        // Each look asks every node; with many nodes, look less often so looking costs little.
        tokio::time::sleep(Duration::from_millis(250.max(5 * total.min(1_000)))).await;
    }
}

/// Asks every node's Status at once, each within 30 s (on one loaded machine
/// a node's share of the cores is small): the answers, or why there was none.
async fn statuses(clients: &[OperatorClient<Channel>]) -> Vec<Result<hotline::proto::StatusResponse, String>> {
    futures_util::future::join_all(clients.iter().map(|c| {
        let mut c = c.clone();
        async move {
            match tokio::time::timeout(Duration::from_secs(30), c.status(StatusRequest {})).await {
                Ok(Ok(r)) => Ok(r.into_inner()),
                Ok(Err(status)) => Err(format!("{:?}: {}", status.code(), status.message())),
                Err(_) => Err("no answer within 30 s".into()),
            }
        }
    }))
    .await
}

/// Waits until `short` of every node's Status is 0 (how many of its peers it
/// still waits on), with a progress bar of nodes. A node seen done is not
/// asked again (what it waited for stays done), so polling costs less as the
/// phase ends; every 30 s a line names the nodes still waiting.
async fn until_every_node(
    what: &str,
    clients: &[OperatorClient<Channel>],
    timeout: Duration,
    out: Out,
    short: impl Fn(&hotline::proto::StatusResponse) -> usize,
) -> anyhow::Result<Duration> {
    let seen = std::sync::Mutex::new(vec![false; clients.len()]);
    let told = std::sync::Mutex::new(Instant::now());
    phase(what, clients.len() as u64, timeout, out, || async {
        let waiting: Vec<usize> = (0..clients.len())
            .filter(|i| !seen.lock().map(|d| d[*i]).unwrap_or(false))
            .collect();
        let asked: Vec<OperatorClient<Channel>> = waiting.iter().map(|i| clients[*i].clone()).collect();
        let answers = statuses(&asked).await;
        let mut behind = Vec::new();
        let mut d = seen.lock().unwrap_or_else(|e| e.into_inner());
        for (i, s) in waiting.iter().zip(answers) {
            match s.map(|s| short(&s)) {
                Ok(0) => d[*i] = true,
                Ok(n) => behind.push(format!("P{:03} waits on {n}", i + 1)),
                Err(why) => behind.push(format!("P{:03} gave no answer ({why})", i + 1)),
            }
        }
        let mut told = told.lock().unwrap_or_else(|e| e.into_inner());
        if !behind.is_empty() && told.elapsed() > Duration::from_secs(30) {
            *told = Instant::now();
            let first: Vec<&str> = behind.iter().take(3).map(String::as_str).collect();
            tracing::warn!("drill: {what}: {} nodes not done: {}", behind.len(), first.join(", "));
        }
        d.iter().filter(|x| **x).count() as u64
    })
    .await
}

/// Open file descriptors and sockets of a process, from /proc.
fn descriptors(pid: u32) -> (usize, usize) {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return (0, 0);
    };
    let links: Vec<String> = dir
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|l| l.to_string_lossy().into_owned())
        .collect();
    let sockets = links.iter().filter(|l| l.starts_with("socket:")).count();
    (links.len(), sockets)
}

/// Runs the drill.
pub fn run(args: Args, out: Out) -> anyhow::Result<ExitCode> {
    super::files::init_tracing("warn", super::files::LogFormat::Text);
    let n = args.parties as usize;
    let root = std::env::temp_dir().join(format!("hotline-drill-{}", std::process::id()));
    let timeout = Duration::from_secs(args.timeout);
    let result = super::runtime::block_on(drill(&root, n, timeout, args.link, out));
    let _ = std::fs::remove_dir_all(&root);
    result
}

async fn drill(
    root: &Path,
    n: usize,
    timeout: Duration,
    link: Option<hotline::impair::LinkProfile>,
    out: Out,
) -> anyhow::Result<ExitCode> {
    let say = |line: String| super::demo::step::say(out, &line);
    let ids: Vec<String> = (1..=n).map(|i| format!("P{i:03}")).collect();
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    say(format!("hotline drill: {n} parties on loopback in {}", root.display()));
    let t = Instant::now();
    let made = hotline::setup::local_cluster(root, &id_refs, hotline::setup::LOAD_NORMS).await?;
    // Every peer dials from 127.0.0.1 here, on the configuration's defaults:
    // once authenticated, a connection counts against its peer, not its address.
    // Behind proxies, each dials from an address of its own.
    let (configs, network) = match link {
        Some(profile) => {
            let (configs, network) = links::Network::build(made, profile).await?;
            (configs, Some(std::sync::Arc::new(network)))
        }
        None => {
            // Each serve process binds its own port.
            (made.into_iter().map(|(config, _)| config).collect(), None)
        }
    };
    let agreement_bytes = std::fs::metadata(&configs[0].agreement)?.len();
    let setup_s = t.elapsed().as_secs_f64();
    say(format!(
        "  {n} parties created and an agreement of {agreement_bytes} bytes signed by all, in {setup_s:.1} s"
    ));

    let t = Instant::now();
    let nodes = configs
        .iter()
        .map(|c| spawn_node(&c.path))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let clients = configs.iter().map(operator).collect::<anyhow::Result<Vec<_>>>()?;
    let up = phase("starting the nodes", n as u64, timeout, out, || async {
        statuses(&clients).await.iter().filter(|s| s.is_ok()).count() as u64
    })
    .await?;
    // Started means settled too: what each node sends its peers as it starts
    // (its roster, its checkpoint) delivered, so that the round measures the
    // round and not the tail of the start.
    until_every_node("start-up deliveries (outboxes empty)", &clients, timeout, out, |s| {
        s.peers.iter().map(|p| p.outbox as usize).sum()
    })
    .await?;
    let start_s = t.elapsed().as_secs_f64().max(up.as_secs_f64());
    say(format!(
        "  {n} nodes serving, their start-up deliveries done, {start_s:.1} s"
    ));

    // Phase 1: every node checks every peer, and every peer answers.
    let t = Instant::now();
    if let Some(network) = &network {
        network.start_schedule();
    }
    let checks = futures_util::future::join_all(clients.iter().map(|c| {
        let mut c = c.clone();
        async move { c.comm_check(CommCheckRequest::default()).await }
    }))
    .await;
    for (i, check) in checks.into_iter().enumerate() {
        check.with_context(|| format!("{}: CommCheck", ids[i]))?;
    }
    let pairs = (n * (n - 1)) as u64;
    until_every_node("communication-check round (nodes done)", &clients, timeout, out, |s| {
        s.peers.iter().filter(|p| p.last_comm_check_ok.is_none()).count()
    })
    .await?;
    let round = t.elapsed();
    // A check and its answer are two messages, each delivered and receipted.
    let round_rate = 2.0 * pairs as f64 / round.as_secs_f64();
    say(format!(
        "  communication-check round: {pairs} checks answered in {:.1} s ({round_rate:.0} messages/s)",
        round.as_secs_f64()
    ));

    // Phase 2: one notice from the first party to every other, each answering it.
    let t = Instant::now();
    let notice = Notice {
        to: ids[1..].to_vec(),
        kind: NoticeKind::Notification as i32,
        severity: Severity::High as i32,
        category: Category::MaliciousCode as i32,
        tlp: Tlp::Green as i32,
        title: "Drill: wiper malware at a grid operator".into(),
        summary: format!("A notice to all {} other parties; each answers.", n - 1),
        ..Default::default()
    };
    let id = clients[0]
        .clone()
        .send_notice(SendNoticeRequest { notice: Some(notice) })
        .await
        .context("SendNotice")?
        .into_inner()
        .id;
    // Each party answers once the notice reached it (NOT_FOUND until then).
    let mut waiting: Vec<usize> = (1..n).collect();
    while !waiting.is_empty() {
        let mut still = Vec::new();
        for i in waiting {
            let respond = RespondRequest {
                notice_id: id.clone(),
                status: ResponseStatus::Investigating as i32,
                text: "Received; looking.".into(),
                ..Default::default()
            };
            if clients[i].clone().respond(respond).await.is_err() {
                still.push(i);
            }
        }
        waiting = still;
        anyhow::ensure!(
            t.elapsed() < timeout,
            "{} parties could not answer within {timeout:?}",
            waiting.len()
        );
        if !waiting.is_empty() {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    let answers = phase(
        "receipts and answers back at P001",
        (n - 1) as u64,
        timeout,
        out,
        || async {
            let mut c = clients[0].clone();
            let thread = tokio::time::timeout(
                Duration::from_secs(30),
                c.get_notice(GetNoticeRequest { id: id.clone() }),
            );
            thread.await.ok().and_then(|t| t.ok()).map_or(0, |t| {
                let t = t.into_inner();
                t.responses.len().min(t.receipts.len()) as u64
            })
        },
    )
    .await?;
    let notice_s = t.elapsed().as_secs_f64().max(answers.as_secs_f64());
    // Every outbox empty: each answer receipted too.
    until_every_node("every outbox drained", &clients, timeout, out, |s| {
        s.peers.iter().map(|p| p.outbox as usize).sum()
    })
    .await?;
    say(format!(
        "  notice {id} receipted and answered by all {} peers, {notice_s:.1} s",
        n - 1
    ));
    // From the last time a link came back to every outbox empty.
    let drained_s = network
        .as_ref()
        .and_then(|n| n.last_return())
        .map(|at| at.elapsed().as_secs_f64());

    // What it cost, per node.
    let sizes: Vec<u64> = statuses(&clients)
        .await
        .iter()
        .map(|s| s.as_ref().map_or(0, |s| s.log_size))
        .collect();
    let rss: Vec<f64> = nodes.iter().map(|p| peak_rss_mib(p.0.id()).unwrap_or(0.0)).collect();
    let fds: Vec<(usize, usize)> = nodes.iter().map(|p| descriptors(p.0.id())).collect();
    for p in &nodes {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(p.0.id().to_string())
            .status();
    }
    drop(nodes);

    let t = Instant::now();
    let mut verified = 0u64;
    for (i, c) in configs.iter().enumerate() {
        let key = hotline::keys::IdentityKey::load(&c.identity_key)?;
        hotline::log::verify::verify_data_dir(&c.data, key.verifier(), |_, _| {})
            .with_context(|| format!("verifying {}'s log", ids[i]))?;
        verified += 1;
    }
    let verify_s = t.elapsed().as_secs_f64();
    let delivery = match &network {
        Some(_) => Some(links::delivery(&configs)?),
        None => None,
    };
    let wire_bytes = network.as_ref().map(|n| n.bytes());

    // The public exports of every log, reconciled as a neutral auditor would,
    // with this process's peak memory reset first so it measures that alone.
    let exports: Vec<PathBuf> = configs.iter().map(|c| root.join("exports").join(&c.party)).collect();
    for (c, at) in configs.iter().zip(&exports) {
        hotline::log::export::export(&c.data, at, hotline::proto::Tlp::Clear, |_, _| {})
            .with_context(|| format!("exporting {}'s log", c.party))?;
    }
    let _ = std::fs::write(format!("/proc/{}/clear_refs", std::process::id()), "5");
    let t = Instant::now();
    let agreement = hotline::agreement::SignedAgreement::load(&configs[0].agreement)?;
    let reconciled = hotline::reconcile::reconcile(&exports, agreement, |_| {})?;
    let reconcile_s = t.elapsed().as_secs_f64();
    let reconcile_mib = peak_rss_mib(std::process::id()).unwrap_or(0.0);
    if !reconciled.findings.is_empty() {
        anyhow::bail!(
            "the drill's logs do not reconcile: {}",
            serde_json::to_string(&reconciled.findings)?
        );
    }

    let stats = |v: &[f64]| {
        let max = v.iter().copied().fold(0.0, f64::max);
        let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
        (mean, max, v.iter().sum::<f64>())
    };
    let (rss_mean, rss_max, rss_total) = stats(&rss);
    let (fd_mean, fd_max, _) = stats(&fds.iter().map(|f| f.0 as f64).collect::<Vec<_>>());
    let (sock_mean, sock_max, _) = stats(&fds.iter().map(|f| f.1 as f64).collect::<Vec<_>>());
    let (log_mean, log_max, _) = stats(&sizes.iter().map(|s| *s as f64).collect::<Vec<_>>());
    let figures = json!({
        "parties": n, "agreement_bytes": agreement_bytes,
        "seconds": {"setup": setup_s, "start": start_s, "comm_check_round": round.as_secs_f64(),
                    "notice_to_all": notice_s, "verify_every_log": verify_s},
        "comm_check_round_messages_per_second": round_rate,
        "peak_rss_mib": {"mean": rss_mean, "max": rss_max, "total": rss_total},
        "file_descriptors_per_node": {"mean": fd_mean, "max": fd_max},
        "sockets_per_node": {"mean": sock_mean, "max": sock_max},
        "log_entries_per_node": {"mean": log_mean, "max": log_max},
        "logs_verified": verified,
        "link": link.map(|l| format!("{l:?}").to_lowercase()),
        "delivery": delivery, "wire_bytes": wire_bytes, "drained_after_last_return_seconds": drained_s,
        "reconciled": {"seconds": reconcile_s, "peak_rss_mib": reconcile_mib, "messages": reconciled.messages,
                       "receipts": reconciled.receipts, "checkpoints": reconciled.checkpoints, "findings": 0},
    });
    out.print(&figures, || {
        let row = |what: &str, v: String| format!("  {what:<44} {v}\n");
        let mut t = format!("\nhotline drill: {n} parties, one hotline serve process each\n");
        t += &row("agreement (signed by all)", format!("{agreement_bytes} bytes"));
        t += &row("setup (keys, certificates, agreement)", format!("{setup_s:.1} s"));
        t += &row("nodes started (start-up deliveries done)", format!("{start_s:.1} s"));
        t += &row(
            &format!("communication-check round ({pairs} pairs)"),
            format!("{:.1} s, {round_rate:.0} messages/s", round.as_secs_f64()),
        );
        t += &row("notice to all, every receipt and answer", format!("{notice_s:.1} s"));
        t += &row(
            "peak RSS per node (mean / max)",
            format!("{rss_mean:.0} / {rss_max:.0} MiB"),
        );
        t += &row("peak RSS of all nodes", format!("{:.1} GiB", rss_total / 1024.0));
        t += &row(
            "file descriptors per node (mean / max)",
            format!("{fd_mean:.0} / {fd_max:.0}"),
        );
        t += &row(
            "sockets per node (mean / max)",
            format!("{sock_mean:.0} / {sock_max:.0}"),
        );
        t += &row(
            "log entries per node (mean / max)",
            format!("{log_mean:.0} / {log_max:.0}"),
        );
        t += &row("every log verified", format!("{verified} of {n}, {verify_s:.1} s"));
        if let (Some(profile), Some(d), Some(bytes)) = (link, &delivery, wire_bytes) {
            t += &row("link profile", format!("{profile:?}").to_lowercase());
            t += &row(
                "messages receipted (of owed), duplicates",
                format!("{} of {}, {} duplicates", d.receipted, d.owed, d.duplicates),
            );
            t += &row(
                "time to receipt (median / p99)",
                format!("{} / {} ms", d.median_ms, d.p99_ms),
            );
            t += &row("bytes on the wire (through the proxies)", format!("{bytes}"));
            if let Some(s) = drained_s {
                t += &row("every outbox empty after the last return", format!("{s:.1} s"));
            }
        }
        t += &row(
            "public exports reconciled (no finding)",
            format!(
                "{} messages, {} receipts, {} checkpoints: {reconcile_s:.1} s, peak RSS {reconcile_mib:.0} MiB",
                reconciled.messages, reconciled.receipts, reconciled.checkpoints
            ),
        );
        t
    });
    Ok(ExitCode::SUCCESS)
}
