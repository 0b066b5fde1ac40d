//! `hotline audit reconcile`: one account from many parties' public
//! exports, each contradiction printed with the signed statements that
//! prove it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use hotline::agreement::SignedAgreement;
use hotline::reconcile::{Reconciliation, reconcile};

use super::view::{Out, term};

/// Reconciles `exports` under `agreement`; exit 1 if anything contradicts.
/// `observer`: the certificate and key that read endpoints given instead of
/// exports; `report`: where to write the joint report too.
pub fn run(
    inputs: &[PathBuf],
    agreement: &Path,
    observer: Option<(PathBuf, PathBuf)>,
    report: Option<&Path>,
    out: Out,
) -> anyhow::Result<ExitCode> {
    let signed = SignedAgreement::load(agreement)?;
    // Endpoints are read into temporary exports first.
    let fetched = Fetched(std::env::temp_dir().join(format!("hotline-reconcile-{}", std::process::id())));
    let mut exports = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        let Some(endpoint) = input.to_str().filter(|s| s.starts_with("https://")) else {
            exports.push(input.clone());
            continue;
        };
        let (cert, key) = observer
            .as_ref()
            .context("give --cert and --cert-key to read an endpoint")?;
        let text = |p: &Path| -> anyhow::Result<String> {
            String::from_utf8(super::files::read_input(p)?).with_context(|| format!("{}: not PEM text", p.display()))
        };
        let cert = hotline::tls::CertKey {
            cert: text(cert)?,
            key: text(key)?,
        };
        let at = fetched.0.join(i.to_string());
        super::runtime::block_on(async {
            hotline::reconcile::fetch::fetch(endpoint, &signed, &cert, &at)
                .await
                .map_err(|e| anyhow::anyhow!("{endpoint}: {e}"))
        })?;
        exports.push(at);
    }
    let bar = super::view::progress_bar(out, "reading exports", "exports");
    bar.set_length(exports.len() as u64);
    let r = reconcile(&exports, signed, |_| bar.inc(1))?;
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

/// The logs read from endpoints, removed when the command ends.
struct Fetched(PathBuf);

impl Drop for Fetched {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
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
