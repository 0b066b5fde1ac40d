//! The operator commands: `inbox`, `respond`, `acknowledge`, `status` and
//! `comm-check`, each a call to the local node's Operator service; the
//! connection every command makes to it, and its errors in words.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use hotline::proto::operator_client::OperatorClient;
use hotline::proto::{
    CommCheckRequest, ListNoticesRequest, ReasonCode, RespondRequest, ResponseStatus, StatusRequest, WatchEventsRequest,
};
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
