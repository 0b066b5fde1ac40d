//! `hotline bench log`: the audit log alone: appends/s with one and with
//! many concurrent writers, bulk build, `audit verify` entries/s, and proof
//! latency at the full size.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hotline::keys::IdentityKey;
use hotline::log::{Log, entry, verify};
use hotline::proto::OperatorAction;
use hotline::proto::log_entry::Body;
use serde_json::json;

use crate::cli::view::Out;

#[derive(clap::Args)]
pub struct LogArgs {
    /// Entries in the log whose verify rate and proof latency are measured.
    #[arg(long, default_value_t = 1_000_000)]
    entries: u64,
    /// Bytes of payload per entry (a typical notice envelope is a few hundred).
    #[arg(long, default_value_t = 400)]
    entry_bytes: usize,
    /// Concurrent writers for the group-commit figure.
    #[arg(long, default_value_t = 64)]
    writers: usize,
    /// Where to put the database (default: a fresh folder under the system temp dir, removed after).
    #[arg(long)]
    dir: Option<PathBuf>,
}

impl LogArgs {
    /// The defaults, with a log of `entries`.
    pub fn with_entries(entries: u64) -> Self {
        Self {
            entries,
            entry_bytes: 400,
            writers: 64,
            dir: None,
        }
    }
}

pub(super) fn sample_entry(i: u64, bytes: usize) -> entry::Entry {
    entry::encode(
        hotline::clock::now(),
        Body::OperatorAction(OperatorAction {
            operator: "bench".into(),
            action: "append".into(),
            detail: format!("{i:>12}{}", "x".repeat(bytes.saturating_sub(12))),
        }),
    )
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).map(|d| d.as_secs_f64() * 1e6).unwrap_or(0.0)
}

/// Runs the audit-log benchmark; returns its figures as JSON and as a table.
pub fn log_bench(args: LogArgs, out: Out) -> anyhow::Result<(serde_json::Value, String)> {
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("hotline-bench-{}", std::process::id())));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let key = IdentityKey::generate("hotline.example/BENCH")?;
    let progress = |msg: &str| {
        if !out.json {
            eprintln!("  {msg}");
        }
    };
    let figures = crate::cli::runtime::block_on(async {
        let log = Arc::new(Log::open(&dir, key.clone())?);
        let bytes = args.entry_bytes;

        progress("appends with 1 writer (each waits for its fsync)...");
        let n_single = 1000u64;
        let t = Instant::now();
        for i in 0..n_single {
            log.append(vec![sample_entry(i, bytes)]).await?;
        }
        let single = n_single as f64 / t.elapsed().as_secs_f64();

        progress(&format!(
            "appends with {} concurrent writers (group commit)...",
            args.writers
        ));
        let per_writer = 20_000 / args.writers.max(1) as u64;
        let t = Instant::now();
        let tasks: Vec<_> = (0..args.writers)
            .map(|w| {
                let log = log.clone();
                tokio::spawn(async move {
                    for i in 0..per_writer {
                        log.append(vec![sample_entry(w as u64 * 1_000_000 + i, bytes)]).await?;
                    }
                    anyhow::Ok(())
                })
            })
            .collect();
        for task in tasks {
            task.await??;
        }
        let concurrent = (per_writer * args.writers as u64) as f64 / t.elapsed().as_secs_f64();

        progress(&format!(
            "building a log of {} entries in batches of 1000...",
            args.entries
        ));
        let t = Instant::now();
        let mut size = log.head().size;
        let before = size;
        while size < args.entries {
            let n = 1000.min(args.entries - size);
            let batch = (size..size + n).map(|i| sample_entry(i, bytes)).collect();
            size = log.append(batch).await?.tree_size;
        }
        let bulk = (size - before) as f64 / t.elapsed().as_secs_f64();

        progress("inclusion and consistency proof latency...");
        let reader = log.reader();
        let mut inclusion = Vec::with_capacity(1000);
        let mut consistency = Vec::with_capacity(1000);
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..1000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let t = Instant::now();
            reader.inclusion_proof(x % size, size)?;
            inclusion.push(t.elapsed());
            let t = Instant::now();
            reader.consistency_proof(1 + x % (size - 1), size)?;
            consistency.push(t.elapsed());
        }
        inclusion.sort();
        consistency.sort();
        Arc::try_unwrap(log)
            .map_err(|_| anyhow::anyhow!("log still shared"))?
            .close();
        anyhow::Ok((single, concurrent, bulk, size, inclusion, consistency))
    })?;
    let (single, concurrent, bulk, size, inclusion, consistency) = figures;

    progress("hotline audit verify of the whole log...");
    let t = Instant::now();
    let report = verify::verify_data_dir(&dir, key.verifier(), |_, _| {})?;
    let verify_secs = t.elapsed().as_secs_f64();
    let verify_rate = report.entries as f64 / verify_secs;
    if args.dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }

    let machine = format!(
        "{} cores, {}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        std::env::consts::ARCH
    );
    let figures = json!({
        "machine": machine, "entry_bytes": args.entry_bytes, "log_entries": size,
        "appends_per_second_1_writer": single,
        "appends_per_second_concurrent": concurrent, "writers": args.writers,
        "bulk_entries_per_second": bulk,
        "verify_seconds": verify_secs, "verify_entries_per_second": verify_rate,
        "inclusion_proof_us": {"p50": percentile(&inclusion, 0.5), "p99": percentile(&inclusion, 0.99)},
        "consistency_proof_us": {"p50": percentile(&consistency, 0.5), "p99": percentile(&consistency, 0.99)},
    });
    let human = format!(
        "hotline bench log  ({machine}; entries of {} bytes; SQLite WAL, synchronous=FULL)\n\
                 {:<44} {:>12.0} /s\n{:<44} {:>12.0} /s\n{:<44} {:>12.0} /s\n{:<44} {:>12.2} s ({:.0} entries/s)\n\
                 {:<44} {:>9.1} µs p50, {:.1} µs p99\n{:<44} {:>9.1} µs p50, {:.1} µs p99\n",
        args.entry_bytes,
        "appends, 1 writer (one fsync each)",
        single,
        format!("appends, {} concurrent writers", args.writers),
        concurrent,
        "bulk build, 1000 entries per append",
        bulk,
        format!("audit verify of {size} entries"),
        verify_secs,
        verify_rate,
        format!("inclusion proof at {size} entries"),
        percentile(&inclusion, 0.5),
        percentile(&inclusion, 0.99),
        format!("consistency proof at {size} entries"),
        percentile(&consistency, 0.5),
        percentile(&consistency, 0.99),
    );
    Ok((figures, human))
}
