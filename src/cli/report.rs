//! `hotline report`: the compliance report of a node's log, as one
//! self-contained HTML file, from its data directory offline or from a
//! running node through its Audit service.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use hotline::log::verify;
use hotline::report::{Ledger, Verification};
use serde_json::json;

use super::audit::{NodeArgs, Trust, data_key, node_key};
use super::files::write_atomic;
use super::view::Out;
use super::view::progress_bar;

/// `hotline report`.
#[derive(clap::Args)]
pub struct Args {
    /// A node's data directory (read offline), or the one its configuration names (the default).
    #[command(flatten)]
    data: super::files::DataDir,
    /// Or a running node, read through its Audit service.
    #[command(flatten)]
    node: NodeArgs,
    #[command(flatten)]
    trust: Trust,
    /// Where to write the report.
    #[arg(long, default_value = "hotline-report.html")]
    out: PathBuf,
}

/// Writes the report.
pub fn run(args: Args, out: Out) -> anyhow::Result<ExitCode> {
    let bar = progress_bar(out, "verifying", "entries");
    let tick = |done: u64, total: u64| {
        bar.set_length(total);
        bar.set_position(done);
    };
    let (origin, verified, ledger) = match &args.node.node {
        None => {
            let dir = &args.data.path()?;
            let (origin, key) = data_key(dir, &args.trust)?;
            let verified = verify::verify_data_dir(dir, &key, tick);
            // The node's own encryption key, beside its data, opens what was sealed to it.
            let opener = hotline::opener::Opener::load("", &dir.join("encryption.key")).ok();
            (origin, verified, Ledger::from_data_dir(dir, opener)?)
        }
        Some(addr) => super::runtime::block_on(async {
            let mut client = args.node.client(addr)?;
            let (origin, key) = node_key(&mut client, addr, &args.trust).await?;
            let verified = hotline::audit::verify_node(addr, client.clone(), &key, tick).await;
            let mut ledger = Ledger::default();
            let mut entries = client
                .get_entries(hotline::proto::GetEntriesRequest { start: 0, end: 0 })
                .await
                .with_context(|| format!("{addr}: GetEntries"))?
                .into_inner();
            while let Some(e) = entries.message().await.with_context(|| format!("{addr}: GetEntries"))? {
                ledger.entry(
                    &e.data,
                    (!e.envelope.is_empty()).then_some(&e.envelope[..]),
                    e.opened.as_ref(),
                );
            }
            anyhow::Ok((origin, verified, ledger))
        })?,
    };
    bar.finish_and_clear();
    let verification = Verification::of(&verified);
    let us = ledger
        .agreement
        .as_deref()
        .and_then(|a| hotline::agreement::SignedAgreement::parse(a).ok())
        .and_then(|s| s.agreement.party_by_origin(&origin).map(|p| p.id.clone()))
        .unwrap_or(origin);
    let html = hotline::report::render(&ledger, &us, &verification).map_err(|e| anyhow::anyhow!("report: {e}"))?;
    write_atomic(&args.out, html.as_bytes())?;
    out.print(
        &json!({"file": args.out, "party": us, "valid": verification.valid, "entries": ledger.entries, "withheld": ledger.withheld}),
        || {
            let withheld = match ledger.withheld.is_empty() {
                true => String::new(),
                false => format!(
                    "; not readable by this reader (beyond its clearance, or sealed), read from their entries only: {}",
                    super::audit::by_label(&ledger.withheld)
                ),
            };
            format!(
                "wrote the compliance report of {us}'s log ({} entries, {}{withheld}) to {}\n",
                ledger.entries,
                if verification.valid { "VALID" } else { "INVALID" },
                args.out.display()
            )
        },
    );
    Ok(ExitCode::SUCCESS)
}
