//! `notice send` and `notice show`: a notice built from flags, sent to the
//! local node (optionally waiting for its recipients' signed receipts), and
//! a thread shown with its receipts, responses and clocks.

use std::process::ExitCode;

use anyhow::Context;
use hotline::proto::{
    Attachment, Category, Exercise, GetNoticeRequest, Indicator, Notice, NoticeKind, SendNoticeRequest, Severity,
    StatusRequest, Tlp, Translation, WatchEventsRequest,
};
use prost::Message;
use serde_json::json;

use super::choice::Choice;
use super::ops::{Conn, rpc};
use super::view::{self, Out, outln};

#[derive(clap::Subcommand)]
pub enum NoticeCommand {
    /// Sign and send a notice; the node logs it and delivers it to every recipient.
    Send(Box<SendArgs>),
    /// Show a notice with its receipts, responses and norm events.
    Show {
        /// The notice id.
        id: String,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(clap::Args)]
pub struct SendArgs {
    /// Recipient party ids, comma-separated (spaces around each are ignored).
    #[arg(long, value_delimiter = ',', required = true, value_parser = trimmed)]
    to: Vec<String>,
    /// What the notice is.
    #[arg(long, value_enum, ignore_case = true, default_value = "notification")]
    kind: Choice<NoticeKind>,
    /// How severe the incident is.
    #[arg(long, value_enum, ignore_case = true)]
    severity: Choice<Severity>,
    /// The ENISA reference taxonomy's class.
    #[arg(long, value_enum, ignore_case = true, default_value = "other")]
    category: Choice<Category>,
    /// TLP 2.0: who the recipients may share it with.
    #[arg(long, value_enum, ignore_case = true, default_value = "amber")]
    tlp: Choice<Tlp>,
    /// A one-line title.
    #[arg(long)]
    title: String,
    /// What happened, what is affected, what is asked.
    #[arg(long, default_value = "")]
    summary: String,
    /// Affected sector (repeatable).
    #[arg(long = "sector")]
    sectors: Vec<String>,
    /// Indicator as TYPE=VALUE (repeatable), TYPE a STIX Cyber-observable type, optionally with a
    /// property: ipv4-addr=192.0.2.7, file:hashes.sha256=…, domain-name=example.org.
    #[arg(long = "indicator")]
    indicators: Vec<String>,
    /// Attachment as MEDIA_TYPE=FILE (repeatable).
    #[arg(long = "attach")]
    attachments: Vec<String>,
    /// The notice this one continues.
    #[arg(long)]
    in_reply_to: Option<String>,
    /// The language of title and summary, a BCP 47 tag such as es or pt-BR.
    #[arg(long)]
    language: Option<String>,
    /// Title and summary in another language as LANG=TITLE or LANG=TITLE|SUMMARY (repeatable).
    #[arg(long = "translation")]
    translations: Vec<String>,
    /// The translation whose text is authoritative instead of the notice's own.
    #[arg(long)]
    authoritative: Option<String>,
    /// Mark it as an exercise.
    #[arg(long, value_enum, ignore_case = true)]
    exercise: Option<Choice<Exercise>>,
    /// Print only the notice's id, for scripts: id=$(hotline notice send -q …).
    #[arg(long, short)]
    quiet: bool,
    /// Wait up to this long (10s, 2m) for every recipient's signed receipt before returning, and
    /// say who has not receipted by then; the notice stays in the outbox for them either way.
    #[arg(long, value_parser = wait_span)]
    wait: Option<std::time::Duration>,
    #[command(flatten)]
    conn: Conn,
}

/// `--wait`'s value: a duration such as 10s or 2m.
fn wait_span(s: &str) -> Result<std::time::Duration, String> {
    hotline::clock::parse_duration(s).ok_or_else(|| format!("{s:?} is not a duration such as 10s or 2m"))
}

/// Reads `events` until each of `to` has receipted message `id`, or `wait`
/// passes; returns the parties whose receipt came.
async fn receipted(
    events: &mut tonic::Streaming<hotline::proto::Event>,
    id: &str,
    to: &[String],
    wait: std::time::Duration,
) -> Vec<String> {
    let mut got = Vec::new();
    let _ = tokio::time::timeout(wait, async {
        while got.len() < to.len() {
            match events.message().await {
                Ok(Some(hotline::proto::Event {
                    body: Some(hotline::proto::event::Body::ReceiptReceived(r)),
                    ..
                })) if r.message_id == id
                    && to.iter().any(|t| t.eq_ignore_ascii_case(&r.from))
                    && !got.contains(&r.from) =>
                {
                    got.push(r.from)
                }
                Ok(Some(_)) => {}
                _ => break,
            }
        }
    })
    .await;
    got
}

fn notice_from(args: &SendArgs) -> anyhow::Result<Notice> {
    let pair = |flag: &str, s: &str| {
        s.split_once('=')
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .with_context(|| format!("--{flag} {s:?}: expected KEY=VALUE"))
    };
    Ok(Notice {
        to: args.to.clone(),
        kind: args.kind.number(),
        severity: args.severity.number(),
        category: args.category.number(),
        tlp: args.tlp.number(),
        title: args.title.clone(),
        summary: args.summary.clone(),
        affected_sectors: args.sectors.clone(),
        indicators: args
            .indicators
            .iter()
            .map(|s| {
                let (kind, value) = pair("indicator", s)?;
                // Refused now, not dropped from the STIX export CERT tools read later.
                anyhow::ensure!(
                    hotline::stix::expressible(&kind),
                    "--indicator {kind}=…: STIX 2.1 cannot express type {kind:?}; use a STIX Cyber-observable type, optionally with a property (file:hashes.sha256): {}",
                    hotline::stix::OBSERVABLE_TYPES.join(", ")
                );
                Ok(Indicator { r#type: kind, value })
            })
            .collect::<anyhow::Result<_>>()?,
        attachments: args
            .attachments
            .iter()
            .map(|s| {
                let (media_type, file) = pair("attach", s)?;
                let data = std::fs::read(&file).with_context(|| format!("reading attachment {file}"))?;
                let name = std::path::Path::new(&file)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                Ok(Attachment { media_type, data, name })
            })
            .collect::<anyhow::Result<_>>()?,
        in_reply_to: args.in_reply_to.clone().unwrap_or_default(),
        language: args.language.clone().unwrap_or_default(),
        translations: args
            .translations
            .iter()
            .map(|s| {
                let (language, text) = pair("translation", s)?;
                let (title, summary) = text.split_once('|').unwrap_or((&text, ""));
                Ok(Translation {
                    authoritative: args.authoritative.as_deref() == Some(language.as_str()),
                    language,
                    title: title.to_owned(),
                    summary: summary.to_owned(),
                })
            })
            .collect::<anyhow::Result<_>>()?,
        exercise: args.exercise.map_or(0, Choice::number),
        ..Default::default()
    })
}

/// A list item as typed, without the spaces around it (`--to "CHL, ARG"`).
fn trimmed(item: &str) -> Result<String, String> {
    Ok(item.trim().to_owned())
}

/// Runs a `notice` subcommand.
pub fn notice(cmd: NoticeCommand, out: Out) -> anyhow::Result<ExitCode> {
    super::runtime::block_on(async {
        match cmd {
            NoticeCommand::Send(args) => {
                let notice = notice_from(&args)?;
                let mut client = args.conn.client().await?;
                // Followed before sending, so no receipt can come before we listen.
                let mut events = match args.wait {
                    Some(_) => Some(
                        client
                            .watch_events(WatchEventsRequest {})
                            .await
                            .map_err(|s| rpc("WatchEvents", s))?
                            .into_inner(),
                    ),
                    None => None,
                };
                let sent = client
                    .send_notice(SendNoticeRequest { notice: Some(notice) })
                    .await
                    .map_err(|s| rpc("SendNotice", s))?
                    .into_inner();
                let waited = match (events.as_mut(), args.wait) {
                    (Some(events), Some(wait)) => Some(receipted(events, &sent.id, &args.to, wait).await),
                    _ => None,
                };
                // Recipients our node cannot reach now: said at once, not found later in its log.
                let down: Vec<hotline::proto::PeerLink> = match client.status(StatusRequest {}).await {
                    Ok(status) => status
                        .into_inner()
                        .peers
                        .into_iter()
                        .filter(|p| args.to.contains(&p.party))
                        .filter_map(|p| p.link.filter(|l| !l.reachable))
                        .collect(),
                    Err(_) => Vec::new(),
                };
                if args.quiet && !out.json {
                    outln!("{}", sent.id);
                    return anyhow::Ok(ExitCode::SUCCESS);
                }
                let pending: Vec<&String> = match &waited {
                    Some(got) => args
                        .to
                        .iter()
                        .filter(|t| !got.iter().any(|g| g.eq_ignore_ascii_case(t)))
                        .collect(),
                    None => Vec::new(),
                };
                let mut value = json!({"id": sent.id, "log_index": sent.log_index,
                                   "unreachable": down.iter().map(view::link_json).collect::<Vec<_>>()});
                if let Some(got) = &waited {
                    value["receipted"] = json!(got);
                    value["not_receipted"] = json!(pending);
                }
                out.print(&value, || {
                    let mut t = format!(
                        "sent notice {} (log index {}); delivering to {}\n",
                        sent.id,
                        sent.log_index,
                        args.to.join(", ")
                    );
                    if let (Some(got), Some(wait)) = (&waited, args.wait) {
                        if !got.is_empty() {
                            t += &format!("  signed receipt from {}\n", got.join(", "));
                        }
                        if !pending.is_empty() {
                            let pending: Vec<&str> = pending.iter().map(|p| p.as_str()).collect();
                            t += &format!(
                                "  no receipt from {} within {}s\n",
                                pending.join(", "),
                                wait.as_secs_f64()
                            );
                        }
                    }
                    for l in &down {
                        t += &format!(
                            "  {}; the notice waits in the outbox and goes when the link is back\n",
                            view::link_words(l)
                        );
                    }
                    t
                });
            }
            NoticeCommand::Show { id, conn } => {
                let t = conn
                    .client()
                    .await?
                    .get_notice(GetNoticeRequest { id: id.clone() })
                    .await
                    .map_err(|s| rpc("GetNotice", s))?
                    .into_inner();
                let notice = t
                    .notice
                    .as_ref()
                    .and_then(|e| Notice::decode(&e.payload[..]).ok())
                    .context("the node returned no notice")?;
                let (value, human) = view::thread(&t, &notice);
                out.print(&value, || human);
            }
        }
        anyhow::Ok(ExitCode::SUCCESS)
    })
}
