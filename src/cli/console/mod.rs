//! `hotline console`: the duty desk in a terminal, for the officer on watch
//! (over SSH too, from 80×24 up). It reads the node's status and notices
//! once at start and again after each event of the node's stream, never on
//! a timer; between events only the clocks' countdowns move, computed here.
//! Keys acknowledge, respond, send communication checks and open a thread,
//! each through the Operator service as the other commands do.

mod draw;
mod model;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use hotline::proto::operator_client::OperatorClient;
use hotline::proto::{
    CommCheckRequest, GetNoticeRequest, ListNoticesRequest, RespondRequest, ResponseStatus, StatusRequest,
    WatchEventsRequest,
};
use model::{Action, Model};
use ratatui::crossterm::event::{self as term_event, KeyEvent, KeyEventKind};
use tonic::transport::Channel;

use super::ops::{Conn, rpc};
use super::view::{Out, short};

/// How many notices the console lists, newest first.
const NOTICES: u32 = 200;

/// `hotline console`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    conn: Conn,
}

/// Runs the console until `q` or Ctrl-C.
pub fn run(args: Args, out: Out) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        !out.json,
        "hotline console is interactive; for the node's events as JSON use `hotline inbox --follow --json`"
    );
    anyhow::ensure!(
        std::io::stdout().is_terminal() && std::io::stdin().is_terminal(),
        "hotline console needs a terminal; for a stream of events use `hotline inbox --follow`"
    );
    super::runtime::block_on(async {
        let mut client = args.conn.client().await?;
        // Subscribe before the first read, so nothing arriving between them is missed.
        let mut stream = Some(watch(&mut client).await?);
        let mut model = Model::default();
        refresh(&mut client, &mut model).await?;
        let mut keys = key_reader();
        let mut terminal = ratatui::try_init()?;
        let _restore = Restore;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut stale = false;
        loop {
            if stale {
                if let Err(e) = refresh(&mut client, &mut model).await {
                    model.message = e.to_string();
                }
                stale = false;
            }
            terminal.draw(|f| draw::screen(f, &model, hotline::clock::now()))?;
            tokio::select! {
                key = keys.recv() => match key.and_then(|k| model.key(k)) {
                    Some(Action::Quit) => break,
                    Some(action) => {
                        model.message = act(&mut client, &mut model, action).await.unwrap_or_else(|e| e.to_string());
                        stale = true;
                    }
                    None if key.is_none() => break,
                    None => {}
                },
                event = next_event(&mut stream) => match event {
                    Ok(e) => {
                        model.event(&e);
                        stale = true;
                    }
                    Err(e) => {
                        model.message = format!("{e}; following again in a second");
                        stream = None;
                    }
                },
                _ = tick.tick() => {
                    if stream.is_none() && let Ok(s) = watch(&mut client).await {
                        stream = Some(s);
                        model.message = "following the node's events again".into();
                        stale = true;
                    }
                }
            }
        }
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// Puts the terminal back as it was, on every way out of the loop.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

type Events = tonic::Streaming<hotline::proto::Event>;

async fn watch(client: &mut OperatorClient<Channel>) -> anyhow::Result<Events> {
    Ok(client
        .watch_events(WatchEventsRequest {})
        .await
        .map_err(|s| rpc("WatchEvents", s))?
        .into_inner())
}

/// The next event, or why the stream ended; pends for ever while there is no stream.
async fn next_event(stream: &mut Option<Events>) -> anyhow::Result<hotline::proto::Event> {
    let Some(s) = stream else {
        return std::future::pending().await;
    };
    match s.message().await {
        Ok(Some(e)) => Ok(e),
        Ok(None) => anyhow::bail!("the node ended the event stream"),
        Err(e) => Err(rpc("WatchEvents", e)),
    }
}

/// Keys from the terminal, read on a thread of their own (crossterm's read blocks).
fn key_reader() -> tokio::sync::mpsc::Receiver<KeyEvent> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    std::thread::spawn(move || {
        while let Ok(e) = term_event::read() {
            if let term_event::Event::Key(k) = e
                && k.kind == KeyEventKind::Press
                && tx.blocking_send(k).is_err()
            {
                break;
            }
        }
    });
    rx
}

/// Reads the node's status, its notices and the open thread again.
async fn refresh(client: &mut OperatorClient<Channel>, model: &mut Model) -> anyhow::Result<()> {
    let status = client
        .status(StatusRequest {})
        .await
        .map_err(|s| rpc("Status", s))?
        .into_inner();
    let notices = client
        .list_notices(ListNoticesRequest { limit: NOTICES })
        .await
        .map_err(|s| rpc("ListNotices", s))?
        .into_inner()
        .notices;
    model.refreshed(status, notices);
    if let Some((id, _)) = &model.thread {
        let t = read_thread(client, id).await?;
        model.thread = Some((id.clone(), t));
    }
    Ok(())
}

async fn read_thread(client: &mut OperatorClient<Channel>, id: &str) -> anyhow::Result<hotline::proto::NoticeThread> {
    Ok(client
        .get_notice(GetNoticeRequest { id: id.to_owned() })
        .await
        .map_err(|s| rpc("GetNotice", s))?
        .into_inner())
}

/// Carries out an action; returns what to tell the operator.
async fn act(client: &mut OperatorClient<Channel>, model: &mut Model, action: Action) -> anyhow::Result<String> {
    let respond = |notice_id: String, status: ResponseStatus, text: String| RespondRequest {
        notice_id,
        status: status as i32,
        text,
        ..Default::default()
    };
    Ok(match action {
        Action::Acknowledge(id) => {
            let r = client
                .respond(respond(
                    id.clone(),
                    ResponseStatus::Acknowledged,
                    "Read; we are on it.".into(),
                ))
                .await
                .map_err(|s| rpc("Respond", s))?
                .into_inner();
            format!("acknowledged notice {id} (log index {})", r.log_index)
        }
        Action::Respond {
            notice_id,
            status,
            text,
        } => {
            let r = client
                .respond(respond(notice_id.clone(), status, text))
                .await
                .map_err(|s| rpc("Respond", s))?
                .into_inner();
            format!(
                "answered {} to notice {notice_id} (log index {})",
                short(status.as_str_name(), "RESPONSE_STATUS_"),
                r.log_index
            )
        }
        Action::CommCheck { human } => {
            let r = client
                .comm_check(CommCheckRequest {
                    party: String::new(),
                    human,
                })
                .await
                .map_err(|s| rpc("CommCheck", s))?
                .into_inner();
            format!("sent {} communication check(s)", r.notice_ids.len())
        }
        Action::OpenThread(id) => {
            let t = read_thread(client, &id).await?;
            model.thread = Some((id, t));
            String::new()
        }
        Action::Quit => String::new(),
    })
}
