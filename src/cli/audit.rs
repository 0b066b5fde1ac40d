//! `hotline audit`: read, prove, verify and export a node's audit log
//! offline, from its data directory or a tlog-tiles export.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hotline::agreement::SignedAgreement;
use hotline::keys::VerifierKey;
use hotline::log::{LogReader, checkpoint, entry, export, verify};
use hotline::proto::LogEntry;
use prost::Message;
use serde_json::json;

use super::view::{Out, progress_bar};

/// Which key the log's checkpoints must be signed by.
#[derive(clap::Args)]
pub struct Trust {
    /// Trust this verifier key for the log's checkpoints: its text, or a file holding it (identity.pub).
    #[arg(long)]
    vkey: Option<String>,
    /// Trust the key the agreement lists for the log's origin.
    #[arg(long)]
    agreement: Option<PathBuf>,
}

/// How to reach a running node's Audit service over mutual TLS.
#[derive(clap::Args)]
pub struct NodeArgs {
    /// The node's address, https://host:port.
    #[arg(long)]
    pub(super) node: Option<String>,
    /// The node's TLS CA certificate (PEM).
    #[arg(long, requires = "node")]
    ca: Option<PathBuf>,
    /// Our auditor or operator certificate (PEM).
    #[arg(long, requires = "node")]
    cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long = "cert-key", requires = "node")]
    cert_key: Option<PathBuf>,
}

impl NodeArgs {
    /// An Audit client for `--node`.
    pub(super) fn client(
        &self,
        node: &str,
    ) -> anyhow::Result<hotline::proto::audit_client::AuditClient<tonic::transport::Channel>> {
        let read = |what: &str, p: &Option<PathBuf>| -> anyhow::Result<String> {
            let p = p.as_ref().with_context(|| format!("--node needs --{what}"))?;
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
        };
        let client = hotline::tls::CertKey {
            cert: read("cert", &self.cert)?,
            key: read("cert-key", &self.cert_key)?,
        };
        let channel = hotline::transport::channel(node, &read("ca", &self.ca)?, &client)?;
        Ok(hotline::proto::audit_client::AuditClient::new(channel)
            .max_decoding_message_size(hotline::transport::LOCAL_REPLY_BYTES))
    }
}

#[derive(clap::Subcommand)]
pub enum Command {
    /// Show the latest signed checkpoint.
    Checkpoint {
        #[command(flatten)]
        data: super::files::DataDir,
    },
    /// List entries [start, end).
    Entries {
        #[command(flatten)]
        data: super::files::DataDir,
        /// First index.
        #[arg(long, default_value_t = 0)]
        start: u64,
        /// End index, exclusive (default: the tree size).
        #[arg(long)]
        end: Option<u64>,
    },
    /// Print the inclusion proof of entry INDEX in the tree of SIZE (default: current).
    Prove {
        #[command(flatten)]
        data: super::files::DataDir,
        /// The entry.
        #[arg(long)]
        index: u64,
        /// The tree size (default: the latest checkpoint's).
        #[arg(long)]
        size: Option<u64>,
    },
    /// Recompute the whole tree and check every checkpoint; names the first bad entry.
    Verify {
        /// A node's data directory, or the one its configuration names (the default).
        #[command(flatten)]
        data: super::files::DataDir,
        /// A tlog-tiles export directory.
        #[arg(long, conflicts_with_all = ["node", "data"])]
        export: Option<PathBuf>,
        #[command(flatten)]
        node: NodeArgs,
        #[command(flatten)]
        trust: Trust,
    },
    /// Write what a neutral arbiter needs to read and check one message, and
    /// nothing else: its envelope, its entry and inclusion proof in this log
    /// against a signed checkpoint, and its recipients' signed receipts.
    Disclose {
        /// The message's id.
        id: String,
        #[command(flatten)]
        data: super::files::DataDir,
        /// The disclosure file to write (JSON).
        #[arg(long)]
        out: PathBuf,
    },
    /// Reconcile the public exports of several parties' logs: verify each,
    /// then check every fact that links them (each message sent is logged
    /// received under the same commitment, each receipt is proven in its
    /// signer's log, each checkpoint one party holds of another is
    /// consistent with that party's export, the agreement versions form one
    /// chain). Reads commitments only. Exits 1 if any contradiction is found.
    Reconcile {
        /// The exports (`hotline audit export` directories), one per party;
        /// or a party's endpoint (`https://host:port`, as the agreement lists
        /// it), read over its Audit service as an observer (`--cert`).
        #[arg(required = true)]
        exports: Vec<PathBuf>,
        /// The observer certificate (PEM) that reads endpoints given instead of exports.
        #[arg(long, requires = "cert_key")]
        cert: Option<PathBuf>,
        /// Its private key (PEM).
        #[arg(long, requires = "cert")]
        cert_key: Option<PathBuf>,
        /// The agreement version the auditor trusts (later versions the
        /// exports adopted are followed by the chain rule).
        #[arg(long)]
        agreement: PathBuf,
        /// Also write the joint report: one self-contained HTML page.
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Check a disclosure with the agreement's public keys only; exits 1 if it does not hold.
    VerifyDisclosure {
        /// The disclosure file.
        file: PathBuf,
        /// The agreement whose keys signed the message, its entries and receipts.
        #[arg(long)]
        agreement: PathBuf,
    },
    /// Write the log as static C2SP tlog-tiles files: every entry (each
    /// commits to its message's envelope), and the envelopes of TLP:CLEAR
    /// messages only, unless --envelopes-up-to names a reader's clearance.
    Export {
        #[command(flatten)]
        data: super::files::DataDir,
        /// The output directory.
        #[arg(long)]
        out: PathBuf,
        /// Also write the envelopes of messages labelled up to this TLP, for
        /// a reader cleared for them (the default, clear, is the public tier).
        #[arg(long, value_name = "TLP", default_value = "clear")]
        envelopes_up_to: super::choice::Choice<hotline::proto::Tlp>,
    },
}

/// Picks the key for a log of `origin`: --vkey, the agreement's party, or the
/// node's own `identity.pub` beside its database.
fn trusted_key(trust: &Trust, origin: &str, data: Option<&Path>) -> anyhow::Result<VerifierKey> {
    if let Some(vkey) = &trust.vkey {
        return super::files::verifier_key(vkey);
    }
    if let Some(file) = &trust.agreement {
        let signed = SignedAgreement::load(file)?;
        let party = signed
            .agreement
            .party_by_origin(origin)
            .with_context(|| format!("{}: no party has the log origin {origin:?}", file.display()))?;
        return party
            .keys
            .iter()
            .last()
            .map(|k| k.key.clone())
            .context("party has no key");
    }
    if let Some(dir) = data {
        let path = dir.join("identity.pub");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {} (give --vkey or --agreement to choose the key)",
                path.display()
            )
        })?;
        return text.trim().parse().with_context(|| path.display().to_string());
    }
    bail!(
        "which key must have signed the log of {origin:?}? give --agreement FILE (the signed agreement names it) or --vkey KEY (its text, or the party's identity.pub)"
    )
}

/// The origin of the log in data folder `dir`, and the key its checkpoints must be signed by.
pub(super) fn data_key(dir: &Path, trust: &Trust) -> anyhow::Result<(String, VerifierKey)> {
    let (_, note) = LogReader::open(dir)?.latest_checkpoint()?;
    let origin = note
        .as_deref()
        .and_then(checkpoint::origin_of)
        .unwrap_or_default()
        .to_owned();
    let key = trusted_key(trust, &origin, Some(dir))?;
    Ok((origin, key))
}

/// The origin of the log a running node serves at `addr`, and the key its checkpoints must be signed by.
pub(super) async fn node_key(
    client: &mut hotline::proto::audit_client::AuditClient<tonic::transport::Channel>,
    addr: &str,
    trust: &Trust,
) -> anyhow::Result<(String, VerifierKey)> {
    let note = client
        .get_checkpoint(hotline::proto::GetCheckpointRequest {})
        .await
        .with_context(|| format!("{addr}: GetCheckpoint"))?
        .into_inner()
        .checkpoint
        .map(|c| c.note)
        .unwrap_or_default();
    let origin = checkpoint::origin_of(&note).unwrap_or_default().to_owned();
    let key = trusted_key(trust, &origin, None)?;
    Ok((origin, key))
}

pub fn run(cmd: Command, out: Out) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Disclose { id, data, out: file } => return super::disclose::disclose(&data.path()?, &id, &file, out),
        Command::VerifyDisclosure { file, agreement } => return super::disclose::verify(&file, &agreement, out),
        Command::Reconcile {
            exports,
            agreement,
            report,
            cert,
            cert_key,
        } => {
            let observer = cert.zip(cert_key);
            return super::reconcile::run(&exports, &agreement, observer, report.as_deref(), out);
        }
        Command::Checkpoint { data } => {
            let data = data.path()?;
            let (size, note) = LogReader::open(&data)?.latest_checkpoint()?;
            let note = note.with_context(|| format!("{}: the log is empty", data.display()))?;
            let text = String::from_utf8_lossy(&note).into_owned();
            out.print(
                &json!({"origin": checkpoint::origin_of(&note), "size": size, "checkpoint": text}),
                || text.clone(),
            );
        }
        Command::Entries { data, start, end } => {
            let data = data.path()?;
            let reader = LogReader::open(&data)?;
            let end = match end {
                Some(e) => e,
                None => reader.latest_checkpoint()?.0,
            };
            let mut rows = Vec::new();
            let mut next = start;
            while next < end {
                let batch = reader.entries(next, end, 1000)?;
                let Some(last) = batch.last().map(|(i, _)| *i) else {
                    break;
                };
                for (index, stored) in batch {
                    let decoded = LogEntry::decode(&stored.data[..]).ok();
                    let at = decoded
                        .as_ref()
                        .and_then(|e| e.logged_at.as_ref())
                        .and_then(hotline::clock::from_proto)
                        .map(hotline::clock::rfc3339);
                    let (kind, text) = match &decoded {
                        Some(e) => (entry::kind(e), entry::describe(e)),
                        None => ("undecodable", String::new()),
                    };
                    let mut row = json!({"index": index, "logged_at": at, "kind": kind, "summary": text,
                                         "data": if out.json { B64.encode(&stored.data) } else { String::new() }});
                    if let (Some(envelope), true) = (&stored.envelope, out.json) {
                        row["envelope"] = json!(B64.encode(envelope));
                    }
                    rows.push(row);
                }
                next = last + 1;
            }
            out.print(&json!(rows), || {
                let mut s = format!("{:>7}  {:<25} {:<20} {}\n", "INDEX", "LOGGED AT", "KIND", "SUMMARY");
                for r in &rows {
                    s += &format!(
                        "{:>7}  {:<25} {:<20} {}\n",
                        r["index"],
                        r["logged_at"].as_str().unwrap_or("-"),
                        r["kind"].as_str().unwrap_or(""),
                        super::view::term(r["summary"].as_str().unwrap_or(""))
                    );
                }
                s
            });
        }
        Command::Prove { data, index, size } => {
            let data = data.path()?;
            let reader = LogReader::open(&data)?;
            let (size, leaf, proof) = reader.inclusion_proof(index, size.unwrap_or(0))?;
            let root = reader.root_at(size)?;
            let hashes: Vec<String> = proof.iter().map(|h| hex::encode(h.0)).collect();
            out.print(
                &json!({"index": index, "tree_size": size, "leaf_hash": hex::encode(leaf.0), "root_hash": hex::encode(root.0), "proof": hashes}),
                || {
                    let mut s = format!(
                        "entry {index} in tree of size {size}\nleaf hash {}\nroot hash {}\nproof ({} hashes):\n",
                        hex::encode(leaf.0),
                        hex::encode(root.0),
                        hashes.len()
                    );
                    for h in &hashes {
                        s += &format!("  {h}\n");
                    }
                    s
                },
            );
        }
        Command::Verify {
            data,
            export: export_dir,
            node,
            trust,
        } => {
            let started = Instant::now();
            let bar = progress_bar(out, "verifying", "entries");
            let tick = |done: u64, total: u64| {
                bar.set_length(total);
                bar.set_position(done);
            };
            let (source, result) = match (&export_dir, &node.node) {
                (_, Some(addr)) => {
                    let result = super::runtime::block_on(async {
                        let mut client = node.client(addr)?;
                        let (_, key) = node_key(&mut client, addr, &trust).await?;
                        anyhow::Ok(hotline::audit::verify_node(addr, client, &key, tick).await)
                    })?;
                    (PathBuf::from(addr), result)
                }
                (Some(dir), _) => {
                    let note = std::fs::read(dir.join("checkpoint"))
                        .with_context(|| format!("reading {}/checkpoint", dir.display()))?;
                    let origin = checkpoint::origin_of(&note).unwrap_or_default().to_owned();
                    let key = trusted_key(&trust, &origin, None)?;
                    (dir.clone(), export::verify_export(dir, &key, tick))
                }
                (None, None) => {
                    let dir = data.path()?;
                    let (_, key) = data_key(&dir, &trust)?;
                    let result = verify::verify_data_dir(&dir, &key, tick);
                    (dir, result)
                }
            };
            bar.finish_and_clear();
            let secs = started.elapsed().as_secs_f64();
            match result {
                Ok(report) => {
                    let rate = report.entries as f64 / secs.max(1e-9);
                    out.print(
                        &json!({"valid": true, "source": source, "entries": report.entries, "checkpoints": report.checkpoints, "signatures": report.signatures,
                                "root": report.root, "seconds": secs, "entries_per_second": rate, "revoked_signers": report.revoked_signers,
                                "withheld": report.withheld}),
                        || {
                            let mut text = format!(
                                "VALID: {} entries, {} signed checkpoints and {} signatures in entries of {} verify; root {}\n{:.3} s, {:.0} entries/s\n",
                                report.entries,
                                report.checkpoints,
                                report.signatures,
                                source.display(),
                                report.root,
                                secs,
                                rate
                            );
                            if !report.withheld.is_empty() {
                                text += &format!(
                                    "envelopes withheld from this reader (each entry verified, its message unread): {}\n",
                                    by_label(&report.withheld)
                                );
                            }
                            for r in &report.revoked_signers {
                                text += &format!(
                                    "FLAGGED: key {} of {} is revoked from {}; it signed {} logged envelope(s), {} at or after that instant{}\n",
                                    r.key,
                                    r.party,
                                    r.revoked,
                                    r.signed,
                                    r.after_revocation.len(),
                                    match r.after_revocation.is_empty() {
                                        true => String::new(),
                                        false => format!(" (entries {:?})", r.after_revocation),
                                    }
                                );
                            }
                            text
                        },
                    );
                }
                Err(e) => {
                    out.print(&json!({"valid": false, "source": source, "error": e.to_string(), "first_bad_entry": first_bad(&e)}), || {
                        format!("NOT VALID: {}: {e}\n", source.display())
                    });
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        Command::Export {
            data,
            out: dir,
            envelopes_up_to,
        } => {
            let data = data.path()?;
            let bar = progress_bar(out, "exporting", "entries");
            let done = export::export(&data, &dir, envelopes_up_to.0, |d, t| {
                bar.set_length(t);
                bar.set_position(d);
            })?;
            bar.finish_and_clear();
            let up_to = hotline::message::tlp_label(envelopes_up_to.0);
            out.print(&json!({"out": dir, "size": done.size, "hash_tiles": done.hash_tiles, "entry_bundles": done.entry_bundles,
                              "envelopes_up_to": up_to, "envelopes": done.envelopes, "withheld": done.withheld}), || {
                format!(
                    "exported {} entries to {}: {} hash tiles, {} entry bundles, checkpoint\nenvelopes up to TLP:{up_to}: {} written; {} withheld\n",
                    done.size,
                    dir.display(),
                    done.hash_tiles,
                    done.entry_bundles,
                    by_label(&done.envelopes),
                    by_label(&done.withheld),
                )
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Counts by TLP label, as people read them: "3 CLEAR, 2 AMBER", or "none".
pub fn by_label(counts: &std::collections::BTreeMap<String, u64>) -> String {
    match counts.is_empty() {
        true => "none".into(),
        false => counts
            .iter()
            .map(|(l, n)| format!("{n} {l}"))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn first_bad(e: &verify::VerifyError) -> Option<u64> {
    match e {
        verify::VerifyError::Entry { index, .. } => Some(*index),
        verify::VerifyError::Truncated { entries, .. } => Some(*entries),
        _ => None,
    }
}
