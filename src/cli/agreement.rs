//! `hotline agreement new|sign|verify|show`: the signed agreement, offline;
//! and, through the node, amending it over the hotline (`amend.rs`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use hotline::agreement::{SignedAgreement, TlsIdentity};
use hotline::clock;
use serde_json::json;

use super::files::{read_input, write_atomic};
use super::view::Out;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Assemble an agreement from the parties' party.toml files (written by hotline init).
    New {
        /// The parties' [[party]] entries.
        #[arg(required = true)]
        parties: Vec<PathBuf>,
        /// Where to write the agreement.
        #[arg(long, default_value = "agreement.toml")]
        out: PathBuf,
        /// A file holding the [norms] table (default: the brief's norms).
        #[arg(long)]
        norms: Option<PathBuf>,
        /// The version this one follows (its file): the new one is the next
        /// version and names it by the SHA-256 of its text. Without it, version 1.
        #[arg(long)]
        follows: Option<PathBuf>,
        /// A human title for the agreement.
        #[arg(long, default_value = "hotline agreement")]
        title: String,
    },
    /// Add the local party's signature line to the agreement file, in place.
    Sign {
        /// The agreement (TOML, or a signed note of it).
        file: PathBuf,
        /// The party's private identity key file.
        #[arg(long, required_unless_present = "config")]
        key: Option<PathBuf>,
        /// Or sign with the key this node configuration names (a file, or a PKCS#11 token).
        #[arg(long, conflicts_with = "key")]
        config: Option<PathBuf>,
    },
    /// Check every signature; exit 1 unless the quorum of parties signed.
    /// With --chain, check a chain of versions from version 1: each names the
    /// SHA-256 of the one before and is signed by its quorum and by every
    /// party it adds.
    Verify {
        /// The signed agreement; with --chain, every version in order from 1.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Check the files as one chain of versions.
        #[arg(long)]
        chain: bool,
    },
    /// Show the parties and norms of an agreement.
    Show {
        /// The agreement.
        file: PathBuf,
    },
    /// Propose the next version over the hotline: a file, or the version in
    /// force with parties added or removed, keys rotated or revoked, or a
    /// new quorum. The node signs it and sends it to every party of both versions.
    Propose(Box<super::amend::ProposeArgs>),
    /// Show the proposals pending: who signed each, what it still needs,
    /// who rejected it, and what it changes.
    Pending {
        /// Also write each pending proposal's signed note into this folder.
        #[arg(long)]
        save: Option<PathBuf>,
        #[command(flatten)]
        conn: super::ops::Conn,
    },
    /// Approve a pending proposal: the node signs it and sends the
    /// signatures to every party; every node adopts it once it meets the chain rule.
    Approve {
        #[command(flatten)]
        which: super::amend::Which,
        /// The same text signed by a party it adds (hotline agreement sign):
        /// its signatures are added too.
        #[arg(long)]
        with: Option<PathBuf>,
        #[command(flatten)]
        conn: super::ops::Conn,
    },
    /// Reject a pending proposal, saying why, to every party.
    Reject {
        #[command(flatten)]
        which: super::amend::Which,
        /// Why.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        conn: super::ops::Conn,
    },
    /// For a party that just joined: fetch the version in force from a
    /// member's node, presenting this party's node certificate.
    Fetch {
        /// The member's endpoint, https://host:port.
        #[arg(long)]
        from: String,
        /// The member's CA certificate (its tls_ca, PEM).
        #[arg(long)]
        ca: PathBuf,
        /// The version (default: the one in force).
        #[arg(long, default_value_t = 0)]
        version: u64,
        /// Where to write it.
        #[arg(long, default_value = "agreement.toml")]
        out: PathBuf,
        /// This party's node configuration.
        #[arg(long, env = "HOTLINE_CONFIG", default_value = "hotline.toml")]
        config: PathBuf,
    },
}

pub fn run(cmd: Command, out: Out) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Propose(args) => super::amend::propose(*args, out),
        Command::Pending { save, conn } => super::amend::pending(conn, save, out),
        Command::Approve { which, with, conn } => super::amend::approve(which, with, conn, out),
        Command::Reject { which, reason, conn } => super::amend::reject(which, reason, conn, out),
        Command::Fetch {
            from,
            ca,
            version,
            out: file,
            config,
        } => super::amend::fetch(config, from, ca, version, file, out),
        Command::New {
            parties,
            out: file,
            norms,
            follows,
            title,
        } => {
            let follows = follows
                .map(|f| SignedAgreement::parse(&read_input(&f)?).map_err(|e| anyhow::anyhow!("{}: {e}", f.display())))
                .transpose()?;
            let norms = match norms {
                Some(p) => String::from_utf8(read_input(&p)?)?,
                None => hotline::setup::DEFAULT_NORMS.to_owned(),
            };
            let entries = parties
                .iter()
                .map(|p| Ok(String::from_utf8(read_input(p)?)?))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let text = hotline::setup::agreement_text(follows.as_ref(), &title, &norms, &entries);
            let signed =
                SignedAgreement::parse(text.as_bytes()).map_err(|e| anyhow::anyhow!("assembled agreement: {e}"))?;
            if file.exists() {
                anyhow::bail!("{} exists; refusing to overwrite an agreement", file.display());
            }
            write_atomic(&file, text.as_bytes())?;
            let ids: Vec<&str> = signed.agreement.parties.iter().map(|p| p.id.as_str()).collect();
            let version = signed.agreement.version;
            out.print(&json!({"file": file, "version": version, "parties": ids}), || {
                format!(
                    "wrote {} (version {version}) with parties {}; now each party runs hotline agreement sign\n",
                    file.display(),
                    ids.join(", ")
                )
            });
            Ok(ExitCode::SUCCESS)
        }
        Command::Sign { file, key, config } => {
            let key =
                super::files::signing_key(key.as_deref(), config.as_deref().unwrap_or(Path::new("hotline.toml")))?;
            let mut signed =
                SignedAgreement::parse(&read_input(&file)?).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            signed.sign(&key)?;
            write_atomic(&file, &signed.to_bytes())?;
            let signers = signed.signers(clock::now())?;
            out.print(
                &json!({"file": file, "signed_by": signers, "key_id": key.verifier().key_id()}),
                || {
                    format!(
                        "signed {} as {}; signed so far by: {}\n",
                        file.display(),
                        key.verifier().key_id(),
                        signers.join(", ")
                    )
                },
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { files, chain: true } => {
            let chain = files
                .iter()
                .map(|f| SignedAgreement::parse(&read_input(f)?).map_err(|e| anyhow::anyhow!("{}: {e}", f.display())))
                .collect::<anyhow::Result<Vec<_>>>()?;
            if let Err(e) = hotline::agreement::verify_chain(&chain, clock::now()) {
                out.print(&json!({"valid": false, "error": e.to_string()}), || {
                    format!("NOT VALID: {e}\n")
                });
                return Ok(ExitCode::FAILURE);
            }
            let versions: Vec<u64> = chain.iter().map(|s| s.agreement.version).collect();
            let last = chain.last().map(|s| hex::encode(s.text_sha256())).unwrap_or_default();
            out.print(
                &json!({"valid": true, "versions": versions, "latest_sha256": last}),
                || {
                    format!(
                        "VALID: a chain of {} versions, 1 to {}; the latest's text has SHA-256 {last}\n",
                        versions.len(),
                        versions.last().unwrap_or(&0)
                    )
                },
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { files, chain: false } => {
            let [file] = &files[..] else {
                anyhow::bail!("give one agreement file, or --chain and every version in order");
            };
            let file = file.clone();
            let signed =
                SignedAgreement::parse(&read_input(&file)?).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let a = &signed.agreement;
            let signers = signed
                .signers(clock::now())
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let missing: Vec<&str> = a
                .parties
                .iter()
                .filter(|p| !signers.contains(&p.id))
                .map(|p| p.id.as_str())
                .collect();
            let ok = signers.len() >= a.quorum;
            out.print(
                &json!({"file": file, "version": a.version, "valid": ok, "quorum": a.quorum,
                        "signed_by": signers, "missing": missing}),
                || {
                    let verdict = if ok { "VALID" } else { "NOT VALID" };
                    format!(
                        "{verdict}: agreement version {} signed by {} of {} parties (quorum {})\n  signed:  {}\n  missing: {}\n",
                        a.version,
                        signers.len(),
                        a.parties.len(),
                        a.quorum,
                        signers.join(", "),
                        if missing.is_empty() { "none".to_owned() } else { missing.join(", ") }
                    )
                },
            );
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Show { file } => {
            let signed =
                SignedAgreement::parse(&read_input(&file)?).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let a = &signed.agreement;
            let n = &a.norms;
            let d = |x| clock::format_duration(x);
            let parties: Vec<_> = a
                .parties
                .iter()
                .map(|p| {
                    json!({"id": p.id, "name": p.name, "endpoint": p.endpoint, "endpoints": p.endpoints,
                           "tls": match &p.tls { TlsIdentity::Ca(_) => "ca".to_owned(), TlsIdentity::CertSha256(fp) => format!("sha256:{}", hex::encode(fp)) },
                           "keys": p.keys.iter().map(|k| json!({"vkey": k.key.to_string(),
                               "valid_from": k.valid_from.map(clock::rfc3339), "valid_until": k.valid_until.map(clock::rfc3339)})).collect::<Vec<_>>()})
                })
                .collect();
            let ack = n.acknowledge_within.map(|by| by.map(d));
            let norms = json!({"receipt_within": d(n.receipt_within),
                "acknowledge_within": ack.as_ref().map(|[c, h, m, l]| json!({"critical": c, "high": h, "medium": m, "low": l})),
                "respond_within": {"critical": d(n.respond_within_critical), "high": d(n.respond_within_high),
                                   "medium": d(n.respond_within_medium), "low": d(n.respond_within_low)},
                "comm_check_every": d(n.comm_check_every), "comm_check_answer_within": d(n.comm_check_answer_within),
                "max_notice_bytes": n.max_notice_bytes, "clock_skew": d(n.clock_skew)});
            out.print(&json!({"version": a.version, "title": a.title, "quorum": a.quorum, "parties": parties, "norms": norms}), || {
                let mut s = format!("agreement version {}  {}\nquorum {} of {}\n\n", a.version, a.title, a.quorum, a.parties.len());
                s += &format!("{:<10} {:<28} {:<28} {}\n", "PARTY", "NAME", "ENDPOINT", "KEY");
                for p in &a.parties {
                    let endpoints = p.endpoints.join(" ");
                    for (i, k) in p.keys.iter().enumerate() {
                        let (id, name, ep) = if i == 0 { (p.id.as_str(), p.name.as_str(), endpoints.as_str()) } else { ("", "", "") };
                        let until = k.valid_until.map(|u| format!(" (until {})", clock::rfc3339(u))).unwrap_or_default();
                        s += &format!("{id:<10} {name:<28} {ep:<28} {}{until}\n", k.key.key_id());
                    }
                }
                s += &format!(
                    "\nnorms: receipt within {};{} respond within {} critical, {} high, {} medium, {} low;\n       comm check every {}, answered within {}; max notice {} bytes; clock skew {}\n",
                    d(n.receipt_within),
                    ack.as_ref()
                        .map(|[c, h, m, l]| format!(" acknowledge within {c} critical, {h} high, {m} medium, {l} low;"))
                        .unwrap_or_default(),
                    d(n.respond_within_critical),
                    d(n.respond_within_high),
                    d(n.respond_within_medium),
                    d(n.respond_within_low),
                    d(n.comm_check_every),
                    d(n.comm_check_answer_within),
                    n.max_notice_bytes,
                    d(n.clock_skew)
                );
                s
            });
            Ok(ExitCode::SUCCESS)
        }
    }
}
