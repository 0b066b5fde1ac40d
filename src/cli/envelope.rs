//! `hotline envelope sign|verify`: DSSE envelopes in their JSON form, for
//! exchanging evidence with other tools.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use hotline::agreement::SignedAgreement;
use hotline::envelope::{self, NOTICE_TYPE, RECEIPT_TYPE, RESPONSE_TYPE};
use hotline::keys::{IdentityKey, Keyring, TrustedKey};
use hotline::{clock, message};
use serde_json::json;

use super::files::read_input;
use super::view::Out;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Sign a payload file (or - for stdin) and print the DSSE JSON envelope.
    Sign {
        /// The payload bytes.
        payload: PathBuf,
        /// The private identity key.
        #[arg(long)]
        key: PathBuf,
        /// notice, receipt, response, or any other media type.
        #[arg(long = "type", default_value = "notice")]
        payload_type: String,
    },
    /// Verify a DSSE JSON envelope (file or -) against an agreement's keys or given verifier keys.
    Verify {
        /// The DSSE JSON envelope.
        envelope: PathBuf,
        /// Trust the keys of this agreement.
        #[arg(long, required_unless_present = "vkey")]
        agreement: Option<PathBuf>,
        /// Trust this verifier key (repeatable): its text, or a file holding it (identity.pub).
        #[arg(long)]
        vkey: Vec<String>,
        /// notice, receipt, response, or any other media type.
        #[arg(long = "type", default_value = "notice")]
        payload_type: String,
    },
}

fn media_type(short: &str) -> &str {
    match short {
        "notice" => NOTICE_TYPE,
        "receipt" => RECEIPT_TYPE,
        "response" => RESPONSE_TYPE,
        other => other,
    }
}

pub fn run(cmd: Command, out: Out) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Sign {
            payload,
            key,
            payload_type,
        } => {
            let key = IdentityKey::load(&key)?;
            let env = envelope::sign(media_type(&payload_type), read_input(&payload)?, &key)?;
            super::view::outln!("{}", envelope::to_json(&env));
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify {
            envelope: path,
            agreement,
            vkey,
            payload_type,
        } => {
            let text = String::from_utf8(read_input(&path)?)
                .with_context(|| format!("{} is not UTF-8 JSON", path.display()))?;
            let env = envelope::from_json(&text).with_context(|| format!("reading {}", path.display()))?;
            let mut keys: Vec<TrustedKey> = match &agreement {
                Some(file) => SignedAgreement::load(file)?
                    .agreement
                    .keyring()
                    .keys()
                    .cloned()
                    .collect(),
                None => Vec::new(),
            };
            for v in &vkey {
                let key = super::files::verifier_key(v)?;
                keys.push(TrustedKey {
                    party: key.name().to_owned(),
                    key,
                    valid_from: None,
                    valid_until: None,
                    revoked: None,
                });
            }
            let keyring = Keyring::new(keys);
            let signer = envelope::verify(&env, media_type(&payload_type), &keyring, clock::now())
                .with_context(|| format!("{}", path.display()))?;
            let decoded = match env.payload_type.as_str() {
                NOTICE_TYPE => message::decode_notice(&env.payload)
                    .map(|n| json!({"id": n.id, "from": n.from, "to": n.to, "title": n.title}))
                    .ok(),
                RESPONSE_TYPE => message::decode_response(&env.payload)
                    .map(|r| json!({"id": r.id, "notice_id": r.notice_id, "from": r.from}))
                    .ok(),
                _ => None,
            };
            out.print(
                &json!({"valid": true, "party": signer.party, "keyid": signer.key.key_id(), "payload_type": env.payload_type,
                        "payload_bytes": env.payload.len(), "message": decoded}),
                || format!("VALID: signed by {} (key {}), {} payload of {} bytes\n", signer.party, signer.key.key_id(), env.payload_type, env.payload.len()),
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
