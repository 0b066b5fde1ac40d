//! `hotline audit reconcile`: one account from many parties' public
//! exports, each contradiction printed with the signed statements that
//! prove it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use hotline::agreement::SignedAgreement;
use hotline::reconcile::{Reconciliation, reconcile};

use super::view::{Out, term};

/// Reconciles `exports` under `agreement`; exit 1 if anything contradicts.
/// `report`: where to write the joint report too.
pub fn run(exports: &[PathBuf], agreement: &Path, report: Option<&Path>, out: Out) -> anyhow::Result<ExitCode> {
    let signed = SignedAgreement::load(agreement)?;
    let bar = super::view::progress_bar(out, "reading exports", "exports");
    bar.set_length(exports.len() as u64);
    let r = reconcile(exports, signed, |_| bar.inc(1))?;
    bar.finish_and_clear();
    if let Some(file) = report {
        let html = hotline::reconcile::report::render(&r, &hotline::clock::rfc3339(hotline::clock::now()))
            .map_err(|e| anyhow::anyhow!("joint report: {e}"))?;
        super::files::write_atomic(file, html.as_bytes())?;
    }
    out.print(&serde_json::to_value(&r)?, || {
        let mut t = text(&r);
        if let Some(file) = report {
            t += &format!("joint report: {}\n", file.display());
        }
        t
    });
    Ok(match r.findings.is_empty() {
        true => ExitCode::SUCCESS,
        false => ExitCode::FAILURE,
    })
}

/// The reconciliation for a person: one line when clean, else each finding by kind.
fn text(r: &Reconciliation) -> String {
    let counts = format!(
        "{} logs, {} messages ({} delivered, {} undelivered and not receipted), {} receipts and {} checkpoints held by other parties checked",
        r.logs.len(),
        r.messages,
        r.delivered,
        r.undelivered,
        r.receipts,
        r.checkpoints
    );
    if r.findings.is_empty() {
        return format!("RECONCILED: {counts}; no contradiction\n");
    }
    let mut t = format!("CONTRADICTED: {} finding(s); {counts}\n", r.findings.len());
    for f in &r.findings {
        t += &format!("\n{:?} ({}): {}\n", f.kind, f.party, term(&f.says));
        for (what, proof) in &f.evidence {
            let proof = term(proof.trim_end());
            let chars = proof.chars().count();
            let shown = match chars > 160 {
                true => format!(
                    "{}… ({chars} characters; --json has it whole)",
                    proof.chars().take(160).collect::<String>()
                ),
                false => proof.into_owned(),
            };
            t += &format!("  {what}: {shown}\n");
        }
    }
    t
}
