//! Step 8 of the demo, a dispute: every party's public export reconciled
//! into one account with no contradiction; then CHL hands over its log
//! without the notice it received (re-hashed and re-signed, as a state that
//! denies a notice would), and the reconciliation names the rewrite with the
//! receipt CHL signed.

use std::path::Path;

use anyhow::Context;
use hotline::agreement::SignedAgreement;
use hotline::config::Config;
use hotline::keys::IdentityKey;
use hotline::log::export::{export, rewrite_without};
use hotline::reconcile::{Reconciliation, reconcile};
use serde_json::{Value, json};

use super::step::say;
use crate::cli::view::{Out, term};

/// Exports each party's public tier into `dir`, reconciles them, then
/// again with CHL's rewritten without its entry of notice `id`.
pub fn dispute(configs: &[Config], id: &str, dir: &Path, out: Out) -> anyhow::Result<Value> {
    say(
        out,
        "\n8. A dispute: the four public exports reconciled, then CHL's log rewritten without the notice",
    );
    let trusted = || SignedAgreement::load(&configs[0].agreement);
    let mut exports = Vec::new();
    for c in configs {
        let at = dir.join(&c.party);
        let _ = std::fs::remove_dir_all(&at);
        export(&c.data, &at, hotline::proto::Tlp::Clear, |_, _| {})
            .with_context(|| format!("exporting {}'s log", c.party))?;
        exports.push(at);
    }
    let clean = reconcile(&exports, trusted()?, |_| {})?;
    say(out, &format!("   {}", counts(&clean)));

    let chl = configs.iter().position(|c| c.party == "CHL").context("CHL runs")?;
    let conn = hotline::store::open_reader(&configs[chl].data)?;
    let index = hotline::state::message(&conn, id)?
        .with_context(|| format!("CHL's entry of notice {id}"))?
        .log_index;
    let rewritten = dir.join("CHL-rewritten");
    let _ = std::fs::remove_dir_all(&rewritten);
    let key = IdentityKey::load(&configs[chl].identity_key)?;
    rewrite_without(&exports[chl], &rewritten, index, &key)?;
    say(
        out,
        &format!("   CHL drops entry {index} (the notice it received from PER), re-hashes and re-signs the rest"),
    );
    exports[chl] = rewritten;
    let found = reconcile(&exports, trusted()?, |_| {})?;
    say(out, &format!("   {} finding(s):", found.findings.len()));
    for f in found.findings.iter().take(3) {
        say(out, &format!("   - {:?} ({}): {}", f.kind, f.party, term(&f.says)));
    }
    if found.findings.len() > 3 {
        say(
            out,
            &format!(
                "   - and {} more (--json has each with its evidence)",
                found.findings.len() - 3
            ),
        );
    }
    // The agreement beside the exports, so the reconciliation can be run again after the demo.
    let agreement = dir.join("agreement.toml");
    std::fs::copy(&configs[0].agreement, &agreement)
        .with_context(|| format!("copying the agreement to {}", agreement.display()))?;
    let report = dir.with_file_name("joint-report.html");
    let html = hotline::reconcile::report::render(&found, &hotline::clock::rfc3339(hotline::clock::now()))
        .map_err(|e| anyhow::anyhow!("joint report: {e}"))?;
    crate::cli::files::write_atomic(&report, html.as_bytes())?;
    let d = dir.display();
    say(
        out,
        &format!(
            "   joint report (open it in a browser): {}\n   again: hotline audit reconcile --agreement {d}/agreement.toml {d}/PER {d}/CHL-rewritten {d}/ARG {d}/EST",
            report.display()
        ),
    );
    Ok(json!({"exports": dir, "clean": clean, "rewritten": found, "report": report}))
}

fn counts(r: &Reconciliation) -> String {
    format!(
        "{} logs, {} messages ({} delivered), {} receipts, {} checkpoints held of each other: {} finding(s)",
        r.logs.len(),
        r.messages,
        r.delivered,
        r.receipts,
        r.checkpoints,
        r.findings.len()
    )
}
