//! The operator commands: `notice send|show`, `inbox`, `respond`, `status`
//! and `comm-check`, each a call to the local node's Operator service.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use hotline::proto::operator_client::OperatorClient;
use hotline::proto::{
    Attachment, Category, CommCheckRequest, Exercise, GetNoticeRequest, Indicator, ListNoticesRequest, Notice,
    NoticeKind, ReasonCode, RespondRequest, ResponseStatus, SendNoticeRequest, Severity, StatusRequest, Tlp,
    Translation, WatchEventsRequest,
};
use prost::Message;
use serde_json::json;
use tonic::transport::Channel;

use super::choice::Choice;
use super::view::{self, Out, outln};

/// Which node to talk to.
#[derive(clap::Args)]
pub struct Conn {
    /// The node configuration (its [client] table says how to reach it).
    #[arg(long, env = "HOTLINE_CONFIG", default_value = "hotline.toml", global = true)]
    config: PathBuf,
}

impl Conn {
    /// The configuration file.
    pub(super) fn path(&self) -> &std::path::Path {
        &self.config
    }

    pub(super) async fn client(&self) -> anyhow::Result<OperatorClient<Channel>> {
        let c = super::files::load_config(&self.config)?;
        let channel = hotline::transport::channel(&c.client_node, &c.ca_pem()?, &c.client_cert()?)?;
        Ok(OperatorClient::new(channel).max_decoding_message_size(hotline::transport::LOCAL_REPLY_BYTES))
    }
}

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

/// A failed call to our own node in the operator's words: what was being
/// done (not the gRPC method), the node's answer, and for a node that
/// cannot be reached, where to look.
pub(super) fn rpc(method: &str, s: tonic::Status) -> anyhow::Error {
    let doing = match method {
        "SendNotice" => "sending the notice",
        "Respond" => "answering the notice",
        "GetNotice" => "reading the notice",
        "ListNotices" => "reading the inbox",
        "WatchEvents" => "following the node's events",
        "Status" => "asking the node for its status",
        "CommCheck" => "sending the communication check",
        "ProposeAmendment" => "proposing the amendment",
        "ApproveAmendment" => "approving the amendment",
        "RejectAmendment" => "rejecting the amendment",
        "ListAmendments" => "reading the pending amendments",
        "GetAgreement" => "reading the agreement",
        "PublishRoster" => "publishing the roster",
        "GetRoster" => "reading the roster",
        other => other,
    };
    match s.code() {
        tonic::Code::Unavailable => anyhow::anyhow!(
            "{doing}: the node cannot be reached ({}); is `hotline serve` running at the address [client] node names in the configuration?",
            s.message()
        ),
        code => anyhow::anyhow!("{doing}: {} ({code:?})", s.message()),
    }
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

#[derive(clap::Args)]
pub struct InboxArgs {
    /// Keep streaming new notices, responses, receipts and norm events.
    #[arg(long)]
    follow: bool,
    /// How many notices to list.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    #[command(flatten)]
    conn: Conn,
}

/// `hotline inbox [--follow]`.
pub fn inbox(args: InboxArgs, out: Out) -> anyhow::Result<ExitCode> {
    super::runtime::block_on(async {
        let mut client = args.conn.client().await?;
        let mut events = if args.follow {
            // Subscribe first, so nothing arriving between the list and the stream is missed.
            Some(
                client
                    .watch_events(WatchEventsRequest {})
                    .await
                    .map_err(|s| rpc("WatchEvents", s))?
                    .into_inner(),
            )
        } else {
            None
        };
        let list = client
            .list_notices(ListNoticesRequest { limit: args.limit })
            .await
            .map_err(|s| rpc("ListNotices", s))?
            .into_inner()
            .notices;
        let (value, human) = view::inbox(&list);
        out.print(&value, || human);
        if let Some(stream) = events.as_mut() {
            if !out.json {
                outln!("-- following; Ctrl-C to stop --");
            }
            loop {
                tokio::select! {
                    msg = stream.message() => match msg.map_err(|s| rpc("WatchEvents", s))? {
                        Some(e) => {
                            if out.json { outln!("{}", view::event_json(&e)) } else { outln!("{}", view::event_line(&e)) }
                        }
                        None => break,
                    },
                    _ = tokio::signal::ctrl_c() => break,
                }
            }
        }
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

#[derive(clap::Args)]
pub struct RespondArgs {
    /// The notice to answer.
    id: String,
    /// Where the answer stands.
    #[arg(long, value_enum, ignore_case = true)]
    status: Choice<ResponseStatus>,
    /// The answer, in words.
    #[arg(long, default_value = "")]
    text: String,
    /// Why, from a fixed list.
    #[arg(long, value_enum, ignore_case = true)]
    reason: Option<Choice<ReasonCode>>,
    /// With --status investigating: when a further answer is promised, as an RFC 3339 time or a
    /// duration from now (4h); it becomes a clock of its own.
    #[arg(long)]
    promised_by: Option<String>,
    #[command(flatten)]
    conn: Conn,
}

#[derive(clap::Args)]
pub struct AcknowledgeArgs {
    /// The notice read.
    id: String,
    /// A word to go with it.
    #[arg(long, default_value = "Read; we are on it.")]
    text: String,
    #[command(flatten)]
    conn: Conn,
}

/// `hotline acknowledge ID`: a response with status ACKNOWLEDGED, which stops
/// the acknowledgement clock only.
pub fn acknowledge(args: AcknowledgeArgs, out: Out) -> anyhow::Result<ExitCode> {
    respond(
        RespondArgs {
            id: args.id,
            status: Choice(ResponseStatus::Acknowledged),
            text: args.text,
            reason: None,
            promised_by: None,
            conn: args.conn,
        },
        out,
    )
}

/// `hotline respond ID`.
pub fn respond(args: RespondArgs, out: Out) -> anyhow::Result<ExitCode> {
    let status = args.status.0;
    let reason = args.reason.map_or(0, Choice::number);
    let promised_by = args
        .promised_by
        .as_deref()
        .map(|p| {
            hotline::clock::parse_rfc3339(p)
                .or_else(|| hotline::clock::parse_duration(p).map(|d| hotline::clock::now() + d))
                .map(hotline::clock::to_proto)
                .with_context(|| format!("--promised-by {p:?} is neither an RFC 3339 time nor a duration such as 4h"))
        })
        .transpose()?;
    super::runtime::block_on(async {
        let r = args
            .conn
            .client()
            .await?
            .respond(RespondRequest {
                notice_id: args.id.clone(),
                status: status as i32,
                text: args.text.clone(),
                reason,
                promised_by,
            })
            .await
            .map_err(|s| rpc("Respond", s))?
            .into_inner();
        out.print(
            &json!({"id": r.id, "notice_id": args.id, "log_index": r.log_index}),
            || {
                format!(
                    "sent response {} to notice {} (log index {})\n",
                    r.id, args.id, r.log_index
                )
            },
        );
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// `hotline status`.
pub fn status(conn: Conn, out: Out) -> anyhow::Result<ExitCode> {
    super::runtime::block_on(async {
        let s = conn
            .client()
            .await?
            .status(StatusRequest {})
            .await
            .map_err(|s| rpc("Status", s))?
            .into_inner();
        let (value, human) = super::view_status::status(&s);
        out.print(&value, || human);
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// `hotline comm-check [PARTY]`.
pub fn comm_check(party: Option<String>, human: bool, conn: Conn, out: Out) -> anyhow::Result<ExitCode> {
    super::runtime::block_on(async {
        let r = conn
            .client()
            .await?
            .comm_check(CommCheckRequest {
                party: party.unwrap_or_default(),
                human,
            })
            .await
            .map_err(|s| rpc("CommCheck", s))?
            .into_inner();
        out.print(&json!({"notice_ids": r.notice_ids}), || {
            format!(
                "sent {} communication check(s): {}\n",
                r.notice_ids.len(),
                r.notice_ids.join(", ")
            )
        });
        anyhow::Ok(ExitCode::SUCCESS)
    })
}
