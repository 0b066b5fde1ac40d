//! `hotline audit disclose` and `hotline audit verify-disclosure`: one
//! message, with its proofs and nothing else, for a neutral arbiter.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use hotline::agreement::SignedAgreement;
use hotline::disclosure::{self, Disclosure};
use serde_json::json;

use super::files::write_atomic;
use super::view::Out;

/// Writes the disclosure of message `id` from the log in `data` to `out_file`.
pub fn disclose(data: &Path, id: &str, out_file: &PathBuf, out: Out) -> anyhow::Result<ExitCode> {
    // The node's encryption key, beside its data, opens a message sealed to it.
    let opener = hotline::opener::Opener::load("", &data.join("encryption.key"))?;
    let d =
        disclosure::disclose(data, id, &opener).with_context(|| format!("disclosing {id} from {}", data.display()))?;
    write_atomic(out_file, serde_json::to_string_pretty(&d)?.as_bytes())?;
    out.print(
        &json!({"file": out_file, "message_id": id, "receipts": d.receipts.len()}),
        || {
            format!(
                "wrote the disclosure of {id} ({} receipt(s)) to {}: it holds this message and no other\n",
                d.receipts.len(),
                out_file.display()
            )
        },
    );
    Ok(ExitCode::SUCCESS)
}

/// Checks a disclosure file against `agreement`'s public keys.
pub fn verify(file: &Path, agreement: &Path, out: Out) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let d: Disclosure = serde_json::from_str(&text).with_context(|| format!("{}: not a disclosure", file.display()))?;
    let signed = SignedAgreement::load(agreement)?;
    match disclosure::verify(&d, &signed.agreement) {
        Ok(v) => {
            out.print(&json!({"valid": true, "disclosed": v}), || {
                let receipted: Vec<String> = v
                    .receipted_by
                    .iter()
                    .map(|(p, i, s)| format!("{p} (its entry {i}, checkpoint of size {s})"))
                    .collect();
                format!(
                    "VALID: {} {} from {} to {}, logged by {} (entry {}, checkpoint of size {}){}\n{}\n",
                    v.kind,
                    v.message_id,
                    v.from,
                    v.to.join(", "),
                    v.logged_by.0,
                    v.logged_by.1,
                    v.logged_by.2,
                    match receipted.is_empty() {
                        true => String::new(),
                        false => format!("; receipted by {}", receipted.join(", ")),
                    },
                    v.text
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(k, val)| format!("  {k}: {}", super::view::term(&val.to_string())))
                        .collect::<Vec<_>>()
                        .join("\n"),
                )
            });
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            out.print(&json!({"valid": false, "error": e.to_string()}), || {
                format!("NOT VALID: {}: {e}\n", file.display())
            });
            Ok(ExitCode::FAILURE)
        }
    }
}
