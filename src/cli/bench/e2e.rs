//! `hotline bench`: the crypto bound of this machine, then one run of
//! exchanges between two real `hotline serve` processes (see
//! `exchanges.rs`) on an empty log and, when asked, the same run on a
//! node whose log already holds millions of entries, side by side; then
//! `audit verify` on a large log.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer, SigningKey};
use serde_json::json;

use super::exchanges::{E2eArgs, Exchanges, exchanges, percentile_ms};
use super::log::{LogArgs, log_bench};
use crate::cli::view::Out;
use hotline::seal::{self, SealKey};

/// Ed25519 operations on the critical path of one exchange: the sender signs
/// the notice, the receiver verifies it and the sender's checkpoint, signs
/// the receipt, and the sender verifies the receipt and its checkpoint.
const SIGNS_PER_EXCHANGE: f64 = 2.0;
const VERIFIES_PER_EXCHANGE: f64 = 4.0;

/// How many times per second `f` runs on one core, over 0.7 s.
fn per_second(mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < Duration::from_millis(700) {
        f();
        n += 1;
    }
    n as f64 / t.elapsed().as_secs_f64()
}

/// The cryptography of one exchange, each operation's rate on one core.
struct Rates {
    /// Ed25519 signatures, and strict verifications.
    sign: f64,
    verify: f64,
    /// A 400-byte body sealed to its sender and one recipient, and opened by one of them.
    seal: f64,
    open: f64,
}

impl Rates {
    fn measure() -> Self {
        let key = SigningKey::from_bytes(&[7; 32]);
        let msg = [0x42u8; 600];
        let sig = key.sign(&msg);
        let vk = key.verifying_key();
        let (ours, theirs) = (SealKey::generate(), SealKey::generate());
        let readers = [
            ("A".to_owned(), ours.public().clone()),
            ("B".to_owned(), theirs.public().clone()),
        ];
        let body = [0x42u8; 400];
        // Each operation as a node does it, its contexts reused: a new
        // context on every call would cost an X25519 more per reader.
        let (sending, opening) = (seal::Contexts::default(), seal::Contexts::default());
        let sealed = seal::seal(&body, &readers, &sending).expect("sealing to two fresh keys");
        let theirs = [theirs];
        Self {
            sign: per_second(|| {
                key.sign(&msg);
            }),
            verify: per_second(|| drop(vk.verify_strict(&msg, &sig))),
            seal: per_second(|| drop(seal::seal(&body, &readers, &sending))),
            open: per_second(|| drop(seal::open(&sealed, "B", &theirs, &opening))),
        }
    }

    /// Exchanges per second on `cores` if nothing but this cryptography ran:
    /// with sealing, as a notice above TLP:CLEAR is, or without.
    fn bound(&self, cores: f64, sealed: bool) -> f64 {
        let sealing = match sealed {
            true => 1.0 / self.seal + 1.0 / self.open,
            false => 0.0,
        };
        cores / (SIGNS_PER_EXCHANGE / self.sign + VERIFIES_PER_EXCHANGE / self.verify + sealing)
    }
}

/// The figures of one run of exchanges, as JSON.
fn run_json(x: &Exchanges, rate: u64) -> serde_json::Value {
    let ms = |sorted: &[Duration]| json!({"samples": sorted.len(), "p50": percentile_ms(sorted, 0.5), "p99": percentile_ms(sorted, 0.99), "p999": percentile_ms(sorted, 0.999)});
    let mut latency = ms(&x.latencies);
    latency["offered_per_second"] = json!(rate);
    latency["achieved_per_second"] = json!(x.achieved);
    json!({
        "log_entries_at_end": x.log_size,
        "startup_ms": x.startup.as_secs_f64() * 1e3,
        "exchanges_per_second": x.throughput,
        "exchanges_per_second_with_fill_and_drain": x.overall,
        "latency_ms": latency,
        "inclusion_proof_ms": ms(&x.proofs),
        "peak_rss_mib": {"A": x.rss.first(), "B": x.rss.get(1)},
    })
}

pub fn run(args: E2eArgs, out: Out) -> anyhow::Result<ExitCode> {
    let say = |s: &str| {
        if !out.json {
            eprintln!("  {s}");
        }
    };
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
    say("measuring Ed25519 and sealing rates on one core...");
    let rates = Rates::measure();
    let (sign_rate, verify_rate) = (rates.sign, rates.verify);
    // The bench's notices are TLP:GREEN, so sealed.
    let crypto_bound = rates.bound(cores, true);
    let unsealed_bound = rates.bound(cores, false);

    // The load generator's own runtime, one worker: its work competes for the
    // two cores the same way in every run, the nodes being separate processes.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let on = |fill: u64, postgres: Option<&str>, run: &str| {
        let at = std::env::temp_dir().join(format!("hotline-bench-{}-{run}", std::process::id()));
        let got = rt.block_on(exchanges(&at, &args, fill, postgres, out));
        let _ = std::fs::remove_dir_all(&at);
        got
    };
    let empty = on(0, None, "empty")?;
    let full = match args.full_log {
        0 => None,
        n => {
            say(&format!(
                "the same run on a node whose log already holds {n} entries..."
            ));
            Some(on(n, None, "full")?)
        }
    };
    let postgres = match &args.postgres {
        None => None,
        Some(url) => {
            say("the same run with both nodes' stores in PostgreSQL...");
            Some(on(0, Some(url), "postgres")?)
        }
    };
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
    let Exchanges {
        throughput,
        overall,
        achieved,
        ref latencies,
        ref rss,
        scraped: (deliveries, commits),
        ..
    } = empty;
    let share = throughput / crypto_bound;
    let machine = format!("{} cores, {}", cores, std::env::consts::ARCH);
    let mut figures = run_json(&empty, args.rate);
    let more = json!({
        "machine": machine,
        "ed25519_sign_per_second_per_core": sign_rate, "ed25519_verify_per_second_per_core": verify_rate,
        "seal_per_second_per_core": rates.seal, "open_per_second_per_core": rates.open,
        "crypto_bound_exchanges_per_second": crypto_bound,
        "crypto_bound_unsealed_exchanges_per_second": unsealed_bound,
        "share_of_crypto_bound": share,
        "metrics_scraped_from_a": {"deliveries_receipted": deliveries, "log_commits": commits},
        "log": log,
        "postgres": postgres.as_ref().map(|p| {
            let mut j = run_json(p, args.rate);
            j["share_of_sqlite_throughput"] = json!(p.throughput / throughput);
            j
        }),
        "full_log": full.as_ref().map(|f| {
            let mut j = run_json(f, args.rate);
            j["entries_before"] = json!(args.full_log);
            j["share_of_empty_log_throughput"] = json!(f.throughput / throughput);
            j
        }),
    });
    if let (Some(all), Some(add)) = (figures.as_object_mut(), more.as_object()) {
        all.extend(add.clone());
    }
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
            "seal to 2 readers / open, one core",
            format!("{:.0} / {:.0} /s", rates.seal, rates.open),
            "",
        );
        t += &row(
            "crypto bound (2 signs, 4 verifies, 1 seal, 1 open)",
            format!("{crypto_bound:.0} /s"),
            "",
        );
        t += &row("  without sealing (TLP:CLEAR)", format!("{unsealed_bound:.0} /s"), "");
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
                percentile_ms(latencies, 0.5),
                percentile_ms(latencies, 0.99)
            ),
            "p99 <= 10 ms",
        );
        t += &row("  p99.9", format!("{:.1} ms", percentile_ms(latencies, 0.999)), "");
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
        if let Some(f) = &full {
            let title = format!("the same run on a log that already held {} entries", args.full_log);
            t += &side_by_side(
                &title,
                ("empty log", &empty),
                (&format!("{} entries", args.full_log), f),
            );
        }
        if let Some(p) = &postgres {
            t += &side_by_side("the same run on each engine", ("SQLite", &empty), ("PostgreSQL", p));
        }
        t
    });
    Ok(ExitCode::SUCCESS)
}

/// One run beside another: an empty log and a full one, or SQLite and PostgreSQL.
fn side_by_side(title: &str, (a_name, empty): (&str, &Exchanges), (b_name, full): (&str, &Exchanges)) -> String {
    let row = |what: &str, a: String, b: String, target: &str| format!("{what:<40} {a:>16} {b:>20}   {target}\n");
    let ms = |d: &Duration| format!("{:.0} ms", d.as_secs_f64() * 1e3);
    let p = |sorted: &[Duration]| {
        format!(
            "{:.2} / {:.2} ms",
            percentile_ms(sorted, 0.5),
            percentile_ms(sorted, 0.99)
        )
    };
    let mut t = format!("\n{title}\n");
    t += &row("figure", a_name.into(), b_name.into(), "target");
    t += &row(
        "node A started (process to first answer)",
        ms(&empty.startup),
        ms(&full.startup),
        "seconds",
    );
    t += &row(
        "exchanges end to end, sustained",
        format!("{:.0} /s", empty.throughput),
        format!(
            "{:.0} /s ({:.0} %)",
            full.throughput,
            100.0 * full.throughput / empty.throughput
        ),
        "",
    );
    t += &row("latency p50 / p99", p(&empty.latencies), p(&full.latencies), "");
    t += &row(
        "GetInclusionProof p50 / p99 (over TLS)",
        p(&empty.proofs),
        p(&full.proofs),
        "",
    );
    t += &row(
        "peak RSS of A",
        format!("{:.0} MiB", empty.rss[0]),
        format!("{:.0} MiB", full.rss[0]),
        "",
    );
    t
}
