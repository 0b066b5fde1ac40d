//! `hotline agreement propose|pending|approve|reject|fetch`: amending the
//! agreement over the hotline, through the local node's Operator service
//! (and, for a party that just joined, a member's Federation service).

use std::path::PathBuf;
use std::process::ExitCode;

use hotline::agreement::SignedAgreement;
use hotline::clock;
use hotline::config::Config;
use hotline::proto::{
    ApproveAmendmentRequest, GetAgreementRequest, ListAmendmentsRequest, ListAmendmentsResponse,
    ProposeAmendmentRequest, RejectAmendmentRequest,
};
use hotline::setup::Changes;
use serde_json::json;

use super::files::{read_input, write_atomic};
use super::ops::{Conn, rpc};
use super::view::{Out, term};

/// What `agreement propose` proposes: a file, or changes to the version in force.
#[derive(clap::Args)]
pub struct ProposeArgs {
    /// The proposed version (TOML, or a signed note carrying signatures
    /// already made, such as a joining party's). Without it, the version
    /// in force with the changes below.
    file: Option<PathBuf>,
    /// Add the party in this party.toml (written by hotline init).
    #[arg(long)]
    add: Vec<PathBuf>,
    /// Remove this party.
    #[arg(long)]
    remove: Vec<String>,
    /// Set the quorum.
    #[arg(long)]
    quorum: Option<usize>,
    /// Rotate a party's key: PARTY=VKEY, the new verifier key (from hotline
    /// keygen); it is valid from now, and the party's current keys until
    /// --overlap from now.
    #[arg(long, value_name = "PARTY=VKEY")]
    rotate: Vec<String>,
    /// How long the old and new keys of a rotation are both valid.
    #[arg(long, default_value = "24h")]
    overlap: String,
    /// Revoke a compromised key (name+hexkeyhash) from --revoked-from on.
    #[arg(long, value_name = "KEY_ID")]
    revoke: Vec<String>,
    /// When the revoked keys stop being trusted (RFC 3339; default now).
    #[arg(long)]
    revoked_from: Option<String>,
    /// Why; sent with the proposal.
    #[arg(long, default_value = "")]
    reason: String,
    /// Write the proposed text to this file instead of proposing it (for a
    /// joining party to sign with hotline agreement sign first).
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    conn: Conn,
}

/// Which pending proposal.
#[derive(clap::Args)]
pub struct Which {
    /// Its version.
    version: u64,
    /// The start of its text's SHA-256 (hex), when several texts are proposed under one version.
    #[arg(long, default_value = "")]
    sha256: String,
}

/// Runs an amendment command on a fresh runtime.
fn block_on<F: std::future::Future<Output = anyhow::Result<ExitCode>>>(f: F) -> anyhow::Result<ExitCode> {
    super::runtime::block_on(f)
}

async fn list(conn: &Conn) -> anyhow::Result<ListAmendmentsResponse> {
    Ok(conn
        .client()
        .await?
        .list_amendments(ListAmendmentsRequest {})
        .await
        .map_err(|s| rpc("ListAmendments", s))?
        .into_inner())
}

fn parse(what: &str, bytes: &[u8]) -> anyhow::Result<SignedAgreement> {
    SignedAgreement::parse(bytes).map_err(|e| anyhow::anyhow!("{what}: {e}"))
}

/// `hotline agreement propose`.
pub fn propose(args: ProposeArgs, out: Out) -> anyhow::Result<ExitCode> {
    block_on(async {
        let note = match &args.file {
            Some(file) => read_input(file)?,
            None => {
                let current = parse("the agreement in force", &list(&args.conn).await?.signed_note)?;
                let now = clock::now();
                let overlap = clock::parse_duration(&args.overlap)
                    .ok_or_else(|| anyhow::anyhow!("--overlap {:?} is not a duration such as 24h", args.overlap))?;
                let revoked_from = match &args.revoked_from {
                    Some(t) => clock::parse_rfc3339(t)
                        .ok_or_else(|| anyhow::anyhow!("--revoked-from {t:?} is not an RFC 3339 time"))?,
                    None => now,
                };
                let changes = Changes {
                    add: args
                        .add
                        .iter()
                        .map(|p| Ok(String::from_utf8(read_input(p)?)?))
                        .collect::<anyhow::Result<_>>()?,
                    remove: args.remove.clone(),
                    quorum: args.quorum,
                    rotate: args
                        .rotate
                        .iter()
                        .map(|r| {
                            let (party, vkey) = r
                                .split_once('=')
                                .ok_or_else(|| anyhow::anyhow!("--rotate {r:?} is not PARTY=VKEY"))?;
                            Ok((party.to_owned(), vkey.to_owned(), now, now + overlap))
                        })
                        .collect::<anyhow::Result<_>>()?,
                    revoke: args.revoke.iter().map(|k| (k.clone(), revoked_from)).collect(),
                };
                hotline::setup::amended_text(&current, &changes).into_bytes()
            }
        };
        let proposed = parse("the proposed version", &note)?;
        if let Some(file) = &args.out {
            write_atomic(file, &note)?;
            out.print(&json!({"file": file, "version": proposed.agreement.version}), || {
                format!(
                    "wrote version {} to {}; a party it adds signs it (hotline agreement sign), then: hotline agreement propose {}\n",
                    proposed.agreement.version,
                    file.display(),
                    file.display()
                )
            });
            return Ok(ExitCode::SUCCESS);
        }
        let step = args
            .conn
            .client()
            .await?
            .propose_amendment(ProposeAmendmentRequest {
                signed_note: note,
                reason: args.reason.clone(),
            })
            .await
            .map_err(|s| rpc("ProposeAmendment", s))?
            .into_inner();
        let sha = hex::encode(proposed.text_sha256());
        out.print(
            &json!({"id": step.id, "log_index": step.log_index, "version": proposed.agreement.version,
                    "text_sha256": sha, "version_in_force": step.version_in_force}),
            || {
                format!(
                    "proposed version {} (text SHA-256 {sha}) as amendment {}; every party reviews it with hotline agreement pending\n",
                    proposed.agreement.version, step.id
                )
            },
        );
        Ok(ExitCode::SUCCESS)
    })
}

/// `hotline agreement pending`: each proposal, who signed, what it needs, what it changes.
pub fn pending(conn: Conn, save: Option<PathBuf>, out: Out) -> anyhow::Result<ExitCode> {
    block_on(async {
        let seen = list(&conn).await?;
        let current = parse("the agreement in force", &seen.signed_note)?;
        let mut values = Vec::new();
        let mut text = format!(
            "agreement version {} in force (text SHA-256 {})\n",
            seen.version,
            hex::encode(&seen.text_sha256)
        );
        if seen.pending.is_empty() {
            text += "no proposals pending\n";
        }
        for p in &seen.pending {
            let sha = hex::encode(&p.text_sha256);
            let changes = match parse("a pending proposal", &p.signed_note) {
                Ok(proposed) => hotline::agreement::diff(&current.agreement, &proposed.agreement),
                Err(e) => vec![e.to_string()],
            };
            if let Some(dir) = &save {
                let file = dir.join(format!("agreement-v{}-{}.toml", p.version, &sha[..8]));
                write_atomic(&file, &p.signed_note)?;
            }
            let proposed_at = p.proposed_at.as_ref().and_then(clock::from_proto).map(clock::rfc3339);
            let rejections: Vec<_> = p
                .rejections
                .iter()
                .map(|r| json!({"party": r.party, "reason": r.reason}))
                .collect();
            values.push(
                json!({"version": p.version, "text_sha256": sha, "proposed_by": p.proposed_by,
                "proposed_at": proposed_at, "approved_by": p.approved_by, "needs": p.needs,
                "rejections": rejections, "changes": changes}),
            );
            // Everything here came from peers: escaped before it reaches the terminal.
            text += &format!(
                "\nversion {} (text SHA-256 {sha}), proposed by {} at {}\n  approved by: {}\n  needs:       {}\n",
                p.version,
                term(&p.proposed_by),
                proposed_at.unwrap_or_default(),
                term(&p.approved_by.join(", ")),
                term(&p.needs)
            );
            for r in &p.rejections {
                text += &format!("  rejected by {}: {}\n", term(&r.party), term(&r.reason));
            }
            text += "  changes:\n";
            for c in &changes {
                text += &format!("    {}\n", term(c));
            }
        }
        out.print(
            &json!({"version": seen.version, "text_sha256": hex::encode(&seen.text_sha256), "pending": values}),
            || text,
        );
        Ok(ExitCode::SUCCESS)
    })
}

/// `hotline agreement approve`.
pub fn approve(which: Which, with: Option<PathBuf>, conn: Conn, out: Out) -> anyhow::Result<ExitCode> {
    block_on(async {
        let signatures = with.as_ref().map(|f| read_input(f)).transpose()?.unwrap_or_default();
        let step = conn
            .client()
            .await?
            .approve_amendment(ApproveAmendmentRequest {
                version: which.version,
                text_sha256: sha_prefix(&which.sha256)?,
                signatures,
            })
            .await
            .map_err(|s| rpc("ApproveAmendment", s))?
            .into_inner();
        let adopted = step.version_in_force >= which.version;
        out.print(
            &json!({"id": step.id, "log_index": step.log_index, "version_in_force": step.version_in_force, "adopted": adopted}),
            || match adopted {
                true => format!("approved version {}; it is adopted and in force\n", which.version),
                false => format!(
                    "approved version {} (amendment {}); it is adopted once the rest of its signatures arrive\n",
                    which.version, step.id
                ),
            },
        );
        Ok(ExitCode::SUCCESS)
    })
}

/// `hotline agreement reject`.
pub fn reject(which: Which, reason: String, conn: Conn, out: Out) -> anyhow::Result<ExitCode> {
    block_on(async {
        let step = conn
            .client()
            .await?
            .reject_amendment(RejectAmendmentRequest {
                version: which.version,
                text_sha256: sha_prefix(&which.sha256)?,
                reason,
            })
            .await
            .map_err(|s| rpc("RejectAmendment", s))?
            .into_inner();
        out.print(&json!({"id": step.id, "log_index": step.log_index}), || {
            format!("rejected version {} (amendment {})\n", which.version, step.id)
        });
        Ok(ExitCode::SUCCESS)
    })
}

/// `hotline agreement fetch`: a party that just joined fetches the version
/// in force from a member's node, presenting its own node certificate.
pub fn fetch(
    config: PathBuf,
    from: String,
    ca: PathBuf,
    version: u64,
    file: PathBuf,
    out: Out,
) -> anyhow::Result<ExitCode> {
    block_on(async {
        let c = Config::load_before_agreement(&config)?;
        let ca = String::from_utf8(read_input(&ca)?)?;
        let channel = hotline::transport::channel(&from, &ca, &c.node_cert()?)?;
        let note = hotline::proto::federation_client::FederationClient::new(channel)
            .max_decoding_message_size(hotline::transport::LOCAL_REPLY_BYTES)
            .get_agreement(GetAgreementRequest { version })
            .await
            .map_err(|s| rpc("GetAgreement", s))?
            .into_inner()
            .signed_note;
        let signed = parse(&format!("the agreement from {from}"), &note)?;
        if signed.agreement.party(&c.party).is_none() {
            anyhow::bail!(
                "version {} from {from} does not list party {}",
                signed.agreement.version,
                c.party
            );
        }
        write_atomic(&file, &note)?;
        out.print(
            &json!({"file": file, "version": signed.agreement.version, "text_sha256": hex::encode(signed.text_sha256())}),
            || {
                format!(
                    "wrote agreement version {} to {}; hotline serve starts from it\n",
                    signed.agreement.version,
                    file.display()
                )
            },
        );
        Ok(ExitCode::SUCCESS)
    })
}

fn sha_prefix(hex_prefix: &str) -> anyhow::Result<Vec<u8>> {
    let even = &hex_prefix[..hex_prefix.len() - hex_prefix.len() % 2];
    hex::decode(even).map_err(|_| anyhow::anyhow!("--sha256 {hex_prefix:?} is not hex"))
}
