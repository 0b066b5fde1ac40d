//! The operator commands: `notice send|show`, `inbox`, `respond`, `status`
//! and `comm-check`, each a call to the local node's Operator service.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use hotline::clock;
use hotline::config::Config;
use hotline::envelope::{self, RECEIPT_TYPE};
use hotline::message::tlp_label;
use hotline::proto::operator_client::OperatorClient;
use hotline::proto::{
    Attachment, Category, CommCheckRequest, Envelope, Event, GetNoticeRequest, Indicator, ListNoticesRequest,
    NormEvent, Notice, NoticeKind, Receipt, RespondRequest, Response, ResponseStatus, SendNoticeRequest, Severity,
    StatusRequest, Tlp, WatchEventsRequest, event,
};
use prost::Message;
use serde_json::{Value, json};
use tonic::transport::Channel;

use super::Out;

/// Which node to talk to.
#[derive(clap::Args)]
pub struct Conn {
    /// The node configuration (its [client] table says how to reach it).
    #[arg(long, env = "HOTLINE_CONFIG", default_value = "hotline.toml", global = true)]
    config: PathBuf,
}

impl Conn {
    async fn client(&self) -> anyhow::Result<OperatorClient<Channel>> {
        let c = Config::load(&self.config)?;
        let channel = hotline::transport::channel(&c.client_node, &c.ca_pem()?, &c.client_cert()?)?;
        Ok(OperatorClient::new(channel).max_decoding_message_size(64 << 20))
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
    /// Recipient party ids, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    to: Vec<String>,
    /// notification, request-for-assistance, update, closure.
    #[arg(long, default_value = "notification")]
    kind: String,
    /// low, medium, high, critical.
    #[arg(long)]
    severity: String,
    /// ENISA class: malicious-code, availability, intrusions, information-content-security, fraud, vulnerable, other, ...
    #[arg(long, default_value = "other")]
    category: String,
    /// TLP 2.0: clear, green, amber, amber+strict, red.
    #[arg(long, default_value = "amber")]
    tlp: String,
    /// A one-line title.
    #[arg(long)]
    title: String,
    /// What happened, what is affected, what is asked.
    #[arg(long, default_value = "")]
    summary: String,
    /// Affected sector (repeatable).
    #[arg(long = "sector")]
    sectors: Vec<String>,
    /// Indicator as TYPE=VALUE (repeatable), e.g. ipv4-addr=192.0.2.7.
    #[arg(long = "indicator")]
    indicators: Vec<String>,
    /// Attachment as MEDIA_TYPE=FILE (repeatable).
    #[arg(long = "attach")]
    attachments: Vec<String>,
    /// The notice this one continues.
    #[arg(long)]
    in_reply_to: Option<String>,
    #[command(flatten)]
    conn: Conn,
}

fn parse_enum<T>(field: &str, prefix: &str, value: &str, from: impl Fn(&str) -> Option<T>) -> anyhow::Result<T> {
    let name = format!("{prefix}{}", value.to_uppercase().replace(['-', '+'], "_"));
    from(&name).with_context(|| format!("--{field} {value:?} is not a known value"))
}

fn notice_from(args: &SendArgs) -> anyhow::Result<Notice> {
    let pair = |flag: &str, s: &str| {
        s.split_once('=')
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .with_context(|| format!("--{flag} {s:?}: expected KEY=VALUE"))
    };
    Ok(Notice {
        to: args.to.clone(),
        kind: parse_enum("kind", "NOTICE_KIND_", &args.kind, NoticeKind::from_str_name)? as i32,
        severity: parse_enum("severity", "SEVERITY_", &args.severity, Severity::from_str_name)? as i32,
        category: parse_enum("category", "CATEGORY_", &args.category, Category::from_str_name)? as i32,
        tlp: parse_enum("tlp", "TLP_", &args.tlp, Tlp::from_str_name)? as i32,
        title: args.title.clone(),
        summary: args.summary.clone(),
        affected_sectors: args.sectors.clone(),
        indicators: args
            .indicators
            .iter()
            .map(|s| pair("indicator", s).map(|(t, v)| Indicator { r#type: t, value: v }))
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
        ..Default::default()
    })
}

fn rpc(what: &str, s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{what}: {} ({:?})", s.message(), s.code())
}

fn ts(t: &Option<prost_types::Timestamp>) -> String {
    t.as_ref()
        .and_then(clock::from_proto)
        .map(clock::rfc3339)
        .unwrap_or_else(|| "-".into())
}

fn short(name: &str, prefix: &str) -> String {
    name.trim_start_matches(prefix).to_lowercase()
}

/// A notice as JSON for `--json` output.
pub fn notice_json(n: &Notice) -> Value {
    json!({"id": n.id, "from": n.from, "to": n.to, "created_at": ts(&n.created_at),
           "kind": short(n.kind().as_str_name(), "NOTICE_KIND_"), "severity": short(n.severity().as_str_name(), "SEVERITY_"),
           "category": short(n.category().as_str_name(), "CATEGORY_"), "tlp": tlp_label(n.tlp()),
           "title": n.title, "summary": n.summary, "affected_sectors": n.affected_sectors,
           "indicators": n.indicators.iter().map(|i| json!({"type": i.r#type, "value": i.value})).collect::<Vec<_>>(),
           "attachments": n.attachments.iter().map(|a| json!({"media_type": a.media_type, "name": a.name, "bytes": a.data.len()})).collect::<Vec<_>>(),
           "in_reply_to": n.in_reply_to, "author": n.author})
}

fn norm_json(e: &NormEvent) -> Value {
    json!({"kind": short(e.kind().as_str_name(), "NORM_EVENT_KIND_"), "party": e.party, "message_id": e.message_id,
           "deadline": short(e.deadline().as_str_name(), "DEADLINE_"), "due_at": ts(&e.due_at),
           "observed_at": ts(&e.observed_at), "detail": e.detail})
}

fn response_json(r: &Response) -> Value {
    json!({"id": r.id, "notice_id": r.notice_id, "from": r.from, "to": r.to, "created_at": ts(&r.created_at),
           "status": short(r.status().as_str_name(), "RESPONSE_STATUS_"), "text": r.text, "author": r.author})
}

fn receipt_json(r: &Receipt) -> Value {
    json!({"message_id": r.message_id, "from": r.from, "received_at": ts(&r.received_at), "log_index": r.log_index,
           "payload_sha256": hex::encode(&r.payload_sha256)})
}

fn event_json(e: &Event) -> Value {
    let (kind, body) = match &e.body {
        Some(event::Body::NoticeReceived(n)) => ("notice", notice_json(n)),
        Some(event::Body::ResponseReceived(r)) => ("response", response_json(r)),
        Some(event::Body::ReceiptReceived(r)) => ("receipt", receipt_json(r)),
        Some(event::Body::NormEvent(n)) => ("norm_event", norm_json(n)),
        None => ("empty", Value::Null),
    };
    json!({"at": ts(&e.at), "type": kind, "event": body})
}

fn event_line(e: &Event) -> String {
    let at = ts(&e.at);
    match &e.body {
        Some(event::Body::NoticeReceived(n)) => format!(
            "{at}  NOTICE    {} from {} [{} {} TLP:{}] {}",
            n.id,
            n.from,
            short(n.kind().as_str_name(), "NOTICE_KIND_"),
            short(n.severity().as_str_name(), "SEVERITY_"),
            tlp_label(n.tlp()),
            n.title
        ),
        Some(event::Body::ResponseReceived(r)) => format!(
            "{at}  RESPONSE  {} from {} to notice {}: {} {}",
            r.id,
            r.from,
            r.notice_id,
            short(r.status().as_str_name(), "RESPONSE_STATUS_"),
            r.text
        ),
        Some(event::Body::ReceiptReceived(r)) => {
            format!(
                "{at}  RECEIPT   {} signed by {} (their log index {})",
                r.message_id, r.from, r.log_index
            )
        }
        Some(event::Body::NormEvent(n)) => format!(
            "{at}  NORM      {} party {} {}",
            short(n.kind().as_str_name(), "NORM_EVENT_KIND_"),
            n.party,
            n.detail
        ),
        None => format!("{at}  (empty event)"),
    }
}

fn decode_receipt(e: &Envelope) -> Option<Receipt> {
    (e.payload_type == RECEIPT_TYPE)
        .then(|| Receipt::decode(&e.payload[..]).ok())
        .flatten()
}

/// Runs a `notice` subcommand.
pub fn notice(cmd: NoticeCommand, out: Out) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        match cmd {
            NoticeCommand::Send(args) => {
                let notice = notice_from(&args)?;
                let sent = args
                    .conn
                    .client()
                    .await?
                    .send_notice(SendNoticeRequest { notice: Some(notice) })
                    .await
                    .map_err(|s| rpc("SendNotice", s))?
                    .into_inner();
                out.print(&json!({"id": sent.id, "log_index": sent.log_index}), || {
                    format!("sent notice {} (log index {}); delivering to {}\n", sent.id, sent.log_index, args.to.join(", "))
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
                let receipts: Vec<Receipt> = t.receipts.iter().filter_map(decode_receipt).collect();
                let responses: Vec<Response> = t.responses.iter().filter_map(|e| Response::decode(&e.payload[..]).ok()).collect();
                let dsse = t.notice.as_ref().map(envelope::to_json).unwrap_or_default();
                out.print(
                    &json!({"notice": notice_json(&notice), "receipts": receipts.iter().map(receipt_json).collect::<Vec<_>>(),
                            "responses": responses.iter().map(response_json).collect::<Vec<_>>(),
                            "norm_events": t.norm_events.iter().map(norm_json).collect::<Vec<_>>(),
                            "envelope": serde_json::from_str::<Value>(&dsse).unwrap_or(Value::Null)}),
                    || {
                        let mut s = format!(
                            "notice   {}\nfrom     {} -> {}\ncreated  {}\nkind     {}  severity {}  category {}  TLP:{}\ntitle    {}\nsummary  {}\nauthor   {}\n",
                            notice.id,
                            notice.from,
                            notice.to.join(", "),
                            ts(&notice.created_at),
                            short(notice.kind().as_str_name(), "NOTICE_KIND_"),
                            short(notice.severity().as_str_name(), "SEVERITY_"),
                            short(notice.category().as_str_name(), "CATEGORY_"),
                            tlp_label(notice.tlp()),
                            notice.title,
                            notice.summary,
                            notice.author
                        );
                        for i in &notice.indicators {
                            s += &format!("indicator {} = {}\n", i.r#type, i.value);
                        }
                        s += "\nreceipts\n";
                        for r in &receipts {
                            s += &format!("  {} for {} at {} (their log index {})\n", r.from, r.message_id, ts(&r.received_at), r.log_index);
                        }
                        s += "responses\n";
                        for r in &responses {
                            s += &format!("  {} {} {}: {}\n", ts(&r.created_at), r.from, short(r.status().as_str_name(), "RESPONSE_STATUS_"), r.text);
                        }
                        s += "norm events\n";
                        for e in &t.norm_events {
                            s += &format!("  {} {} {}\n", ts(&e.observed_at), short(e.kind().as_str_name(), "NORM_EVENT_KIND_"), e.detail);
                        }
                        s
                    },
                );
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
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
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
        let rows: Vec<Value> = list
            .iter()
            .map(|s| {
                let mut v = s.notice.as_ref().map(notice_json).unwrap_or(Value::Null);
                v["direction"] = json!(s.direction);
                v["receipted_by"] = json!(s.receipted_by);
                v["responses"] = json!(s.responses);
                v
            })
            .collect();
        out.print(&json!(rows), || {
            let mut s = format!(
                "{:<36}  {:<8} {:<5} {:<12} {:<8} {:<12} {:<10} {:>3}  {}\n",
                "ID", "DIR", "FROM", "TO", "SEVERITY", "TLP", "RECEIPTS", "RSP", "TITLE"
            );
            for r in &rows {
                let to: Vec<&str> = r["to"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let rec: Vec<&str> = r["receipted_by"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                s += &format!(
                    "{:<36}  {:<8} {:<5} {:<12} {:<8} {:<12} {:<10} {:>3}  {}\n",
                    r["id"].as_str().unwrap_or(""),
                    r["direction"].as_str().unwrap_or(""),
                    r["from"].as_str().unwrap_or(""),
                    to.join(","),
                    r["severity"].as_str().unwrap_or(""),
                    r["tlp"].as_str().unwrap_or(""),
                    rec.join(","),
                    r["responses"],
                    r["title"].as_str().unwrap_or("")
                );
            }
            s
        });
        if let Some(stream) = events.as_mut() {
            if !out.json {
                super::outln!("-- following; Ctrl-C to stop --");
            }
            loop {
                tokio::select! {
                    msg = stream.message() => match msg.map_err(|s| rpc("WatchEvents", s))? {
                        Some(e) => {
                            if out.json { super::outln!("{}", event_json(&e)) } else { super::outln!("{}", event_line(&e)) }
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
    /// acknowledged, investigating, assistance-offered, mitigated, declined, closed.
    #[arg(long)]
    status: String,
    /// The answer, in words.
    #[arg(long, default_value = "")]
    text: String,
    #[command(flatten)]
    conn: Conn,
}

/// `hotline respond ID`.
pub fn respond(args: RespondArgs, out: Out) -> anyhow::Result<ExitCode> {
    let status = parse_enum(
        "status",
        "RESPONSE_STATUS_",
        &args.status,
        ResponseStatus::from_str_name,
    )?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let r = args
            .conn
            .client()
            .await?
            .respond(RespondRequest {
                notice_id: args.id.clone(),
                status: status as i32,
                text: args.text.clone(),
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
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let s = conn
            .client()
            .await?
            .status(StatusRequest {})
            .await
            .map_err(|s| rpc("Status", s))?
            .into_inner();
        let peers: Vec<Value> = s
            .peers
            .iter()
            .map(|p| {
                json!({"party": p.party, "endpoint": p.endpoint, "outbox": p.outbox,
                            "last_comm_check_ok": ts(&p.last_comm_check_ok), "witnessed_size": p.witnessed_size})
            })
            .collect();
        let deadlines: Vec<Value> = s
            .deadlines
            .iter()
            .map(|d| {
                json!({"party": d.party, "message_id": d.message_id,
                            "deadline": short(d.deadline().as_str_name(), "DEADLINE_"), "due_at": ts(&d.due_at)})
            })
            .collect();
        out.print(
            &json!({"party": s.party, "log_size": s.log_size, "peers": peers, "deadlines": deadlines,
                    "recent_norm_events": s.recent_norm_events.iter().map(norm_json).collect::<Vec<_>>()}),
            || {
                let mut t = format!("party {}   log size {}\n\npeers\n", s.party, s.log_size);
                t += &format!(
                    "  {:<8} {:<28} {:>7} {:<30} {:>9}\n",
                    "PARTY", "ENDPOINT", "OUTBOX", "LAST COMM CHECK OK", "WITNESSED"
                );
                for p in &s.peers {
                    t += &format!(
                        "  {:<8} {:<28} {:>7} {:<30} {:>9}\n",
                        p.party,
                        p.endpoint,
                        p.outbox,
                        ts(&p.last_comm_check_ok),
                        p.witnessed_size
                    );
                }
                t += "\nrunning deadlines\n";
                for d in &s.deadlines {
                    t += &format!(
                        "  {:<8} owes {:<18} for {} by {}\n",
                        d.party,
                        short(d.deadline().as_str_name(), "DEADLINE_"),
                        d.message_id,
                        ts(&d.due_at)
                    );
                }
                t += "\nrecent norm events\n";
                for e in &s.recent_norm_events {
                    t += &format!(
                        "  {} {} {}\n",
                        ts(&e.observed_at),
                        short(e.kind().as_str_name(), "NORM_EVENT_KIND_"),
                        e.detail
                    );
                }
                t
            },
        );
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// `hotline comm-check [PARTY]`.
pub fn comm_check(party: Option<String>, conn: Conn, out: Out) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let r = conn
            .client()
            .await?
            .comm_check(CommCheckRequest {
                party: party.unwrap_or_default(),
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
