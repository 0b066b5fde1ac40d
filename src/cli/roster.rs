//! `hotline roster set|publish|show`: a party's signed roster of points of
//! contact. Whoever holds the party's identity key signs it (`set`, which
//! can also just write the signed file for an offline key); the node logs it
//! and delivers it to every peer (`publish`); `show` prints any party's.

use std::path::PathBuf;
use std::process::ExitCode;

use hotline::proto::{GetRosterRequest, PublishRosterRequest};
use hotline::roster::SignedRoster;
use serde_json::json;

use super::files::{read_input, write_atomic};
use super::ops::{Conn, rpc};
use super::view::{Out, term};

/// `hotline roster …`.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Sign a roster (TOML) with the party's identity key and publish it to
    /// the node, which logs it and delivers it to every peer; with --out,
    /// only write the signed roster (to publish from another machine).
    Set {
        /// The roster: party, version (above the one in force), and one
        /// [[contact]] per person with name, roles, languages and certs.
        file: PathBuf,
        /// The party's identity key file (only its holder may change the roster); without it, the
        /// key the node configuration (--config) names, in a file or on a PKCS#11 token.
        #[arg(long)]
        key: Option<PathBuf>,
        /// Write the signed roster here instead of publishing it.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Publish a roster already signed (by hotline roster set --out).
    Publish {
        /// The signed roster.
        file: PathBuf,
        #[command(flatten)]
        conn: Conn,
    },
    /// Show a party's roster in force here: ours by default.
    Show {
        /// The party (default: this node's).
        party: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
}

/// Runs a roster command.
pub fn run(cmd: Command, out: Out) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Set {
            file,
            key,
            out: to,
            conn,
        } => {
            let text = String::from_utf8(read_input(&file)?)
                .map_err(|_| anyhow::anyhow!("{}: not UTF-8 text", file.display()))?;
            let key = super::files::signing_key(key.as_deref(), conn.path())?;
            let signed = SignedRoster::sign(&text, &key).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            match to {
                Some(to) => {
                    write_atomic(&to, &signed.to_bytes())?;
                    out.print(&json!({"file": to, "version": signed.roster.version}), || {
                        format!(
                            "signed roster version {} of {} to {}; publish it with hotline roster publish {}\n",
                            signed.roster.version,
                            signed.roster.party,
                            to.display(),
                            to.display()
                        )
                    });
                    Ok(ExitCode::SUCCESS)
                }
                None => super::runtime::block_on(publish(signed.to_bytes(), &conn, out)),
            }
        }
        Command::Publish { file, conn } => super::runtime::block_on(publish(read_input(&file)?, &conn, out)),
        Command::Show { party, conn } => super::runtime::block_on(show(party.unwrap_or_default(), &conn, out)),
    }
}

async fn publish(signed_roster: Vec<u8>, conn: &Conn, out: Out) -> anyhow::Result<ExitCode> {
    let r = conn
        .client()
        .await?
        .publish_roster(PublishRosterRequest { signed_roster })
        .await
        .map_err(|s| rpc("PublishRoster", s))?
        .into_inner();
    out.print(
        &json!({"id": r.id, "log_index": r.log_index, "version": r.version}),
        || {
            format!(
                "published roster version {} as {} (log index {}); it is delivered to every peer\n",
                r.version, r.id, r.log_index
            )
        },
    );
    Ok(ExitCode::SUCCESS)
}

async fn show(party: String, conn: &Conn, out: Out) -> anyhow::Result<ExitCode> {
    let r = conn
        .client()
        .await?
        .get_roster(GetRosterRequest { party })
        .await
        .map_err(|s| rpc("GetRoster", s))?
        .into_inner();
    let roster = SignedRoster::parse(&r.signed_roster)?.roster;
    let contacts: Vec<_> = roster
        .contacts
        .iter()
        .map(|c| json!({"name": c.name, "roles": c.roles_text(), "languages": c.languages, "certs": c.certs}))
        .collect();
    out.print(
        &json!({"party": roster.party, "version": roster.version, "log_index": r.log_index,
                "contacts": contacts, "signed_roster": String::from_utf8_lossy(&r.signed_roster)}),
        || {
            let mut text = format!(
                "roster of {} version {} (log index {})\n",
                term(&roster.party),
                roster.version,
                r.log_index
            );
            for c in &roster.contacts {
                text += &format!(
                    "  {:<28} {:<20} {:<12} {} certificate(s)\n",
                    term(&c.name),
                    c.roles_text(),
                    term(&c.languages.join(",")),
                    c.certs.len()
                );
            }
            text
        },
    );
    Ok(ExitCode::SUCCESS)
}
