//! Drawing the console in any terminal from 80×24 up: a header, the peers
//! with their links and last checks, the notices with the clock each one
//! runs next, every running clock counting down, the latest events, and a
//! line of keys. Text from peers goes through `view::term` first.

use hotline::clock;
use hotline::message::tlp_label;
use hotline::proto::{Deadline, NoticeSummary, PeerStatus, RunningDeadline};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style, Stylize};
use ratatui::text::{Line, Text};
use ratatui::widgets::{Block, Paragraph, Wrap};
use time::OffsetDateTime;

use super::model::{ANSWERS, Model, notice_id};
use crate::cli::view::{short, term};

/// Draws the whole screen from the model, at `now`.
pub fn screen(f: &mut Frame, m: &Model, now: OffsetDateTime) {
    let peers = m.peers().len().max(1) as u16 + 2;
    let [head, peers_area, main, clocks, events, said, keys] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(peers.min(8)),
        Constraint::Min(5),
        Constraint::Length(6),
        Constraint::Length(4),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(f.area());
    let s = &m.status;
    let header = format!(
        " hotline console · {} · log {} · agreement v{} · {}",
        term(&s.party),
        s.log_size,
        s.agreement_version,
        clock::rfc3339(now.replace_nanosecond(0).unwrap_or(now))
    );
    f.render_widget(Paragraph::new(header).bold(), head);
    f.render_widget(
        Paragraph::new(m.peers().iter().map(|p| peer_line(p, now)).collect::<Vec<_>>())
            .block(Block::bordered().title(" peers: link, last check ok, outbox ")),
        peers_area,
    );
    match &m.thread {
        Some((_, t)) => thread(f, main, t),
        None => notices(f, main, m, now),
    }
    let running: Vec<Line> = s.deadlines.iter().map(|d| Line::from(clock_line(m, d, now))).collect();
    f.render_widget(
        Paragraph::new(running).block(Block::bordered().title(format!(" running clocks: {} ", s.deadlines_running))),
        clocks,
    );
    let shown = events.height.saturating_sub(2) as usize;
    let latest: Vec<Line> = m
        .events
        .iter()
        .skip(m.events.len().saturating_sub(shown))
        .map(|e| Line::from(e.as_str()))
        .collect();
    f.render_widget(
        Paragraph::new(latest).block(Block::bordered().title(" events ")),
        events,
    );
    f.render_widget(Paragraph::new(format!(" {}", m.message)), said);
    f.render_widget(Paragraph::new(keys_line(m)).reversed(), keys);
}

fn keys_line(m: &Model) -> String {
    if let Some(p) = &m.prompt {
        return format!(
            " respond {}: {}_   (Tab: status, Enter: send, Esc: cancel)",
            short(ANSWERS[p.answer].as_str_name(), "RESPONSE_STATUS_"),
            p.text
        );
    }
    match m.thread {
        Some(_) => " Esc back".into(),
        None => " ↑↓ select  a ack  r respond  Enter thread  c check  h human check  q quit".into(),
    }
}

fn peer_line(p: &PeerStatus, now: OffsetDateTime) -> Line<'static> {
    let link = match &p.link {
        None => "not called yet".to_owned(),
        Some(l) if l.reachable => format!("up {}", ago(l.since.as_ref(), now)),
        Some(l) => {
            let next = l
                .next_try
                .as_ref()
                .map(|t| format!(", next try {}", countdown(t, now)))
                .unwrap_or_default();
            format!(
                "DOWN {} ({} failed{next}): {}",
                ago(l.since.as_ref(), now),
                l.failed_attempts,
                term(&l.last_failure)
            )
        }
    };
    let check = match &p.last_comm_check_ok {
        Some(t) => ago(Some(t), now),
        None => "never".into(),
    };
    let line = format!(
        "{:<6} {:<24} check {:<10} outbox {}",
        term(&p.party),
        link,
        check,
        p.outbox
    );
    match &p.link {
        Some(l) if !l.reachable => Line::from(line).red().bold(),
        _ => Line::from(line),
    }
}

fn notices(f: &mut Frame, area: Rect, m: &Model, now: OffsetDateTime) {
    let shown = area.height.saturating_sub(2) as usize;
    let selected = m.selected_index().unwrap_or(0);
    let first = selected.saturating_sub(shown.saturating_sub(1));
    let lines: Vec<Line> = m
        .notices
        .iter()
        .enumerate()
        .skip(first)
        .take(shown)
        .map(|(i, n)| {
            // A mark as well as the colour, for terminals (and captures) without it.
            if i == selected {
                Line::from(format!("›{}", notice_line(m, n, now))).style(Style::new().add_modifier(Modifier::REVERSED))
            } else {
                Line::from(format!(" {}", notice_line(m, n, now)))
            }
        })
        .collect();
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(format!(" notices ({}) ", m.notices.len()))),
        area,
    );
}

/// One notice: which way, the other side, severity, TLP, the clock due
/// soonest, the title.
fn notice_line(m: &Model, s: &NoticeSummary, now: OffsetDateTime) -> String {
    let Some(n) = &s.notice else { return String::new() };
    let (arrow, other) = if s.direction == "received" {
        ("from", term(&n.from).into_owned())
    } else {
        (
            "to",
            n.to.iter().map(|p| term(p).into_owned()).collect::<Vec<_>>().join(","),
        )
    };
    let next = m
        .clocks_of(notice_id(s))
        .min_by_key(|d| d.due_at.as_ref().map(|t| (t.seconds, t.nanos)))
        .map(|d| {
            format!(
                "{} {}",
                clock_name(d),
                d.due_at.as_ref().map(|t| countdown(t, now)).unwrap_or_default()
            )
        })
        .unwrap_or_else(|| match s.direction.as_str() {
            "received" => format!("{} response(s)", s.responses),
            _ => format!("{}/{} receipted", s.receipted_by.len(), n.to.len()),
        });
    format!(
        "{arrow:<4} {other:<7} {:<6} {:<6} {next:<20} {}",
        short(n.severity().as_str_name(), "SEVERITY_"),
        tlp_label(n.tlp()),
        term(&n.title)
    )
}

/// A running clock: who owes what for which message (by its title when
/// listed), and the time left.
fn clock_line(m: &Model, d: &RunningDeadline, now: OffsetDateTime) -> String {
    let of = m
        .notices
        .iter()
        .find(|n| notice_id(n) == d.message_id)
        .and_then(|n| n.notice.as_ref())
        .map_or(d.message_id.as_str(), |n| n.title.as_str());
    format!(
        "{:<14} {:<6} owes {:<8} for {}",
        d.due_at.as_ref().map(|t| countdown(t, now)).unwrap_or_default(),
        term(&d.party),
        clock_name(d),
        term(of)
    )
}

/// A clock's name, short enough for a column.
fn clock_name(d: &RunningDeadline) -> &'static str {
    match d.deadline() {
        Deadline::Receipt => "receipt",
        Deadline::Acknowledge => "ack",
        Deadline::Response => "response",
        Deadline::Promise => "promise",
        Deadline::CommCheckAnswer => "check",
        _ => "clock",
    }
}

fn thread(f: &mut Frame, area: Rect, t: &hotline::proto::NoticeThread) {
    use prost::Message;
    let text = t
        .notice
        .as_ref()
        .and_then(|e| hotline::proto::Notice::decode(&e.payload[..]).ok())
        .map(|n| crate::cli::view::thread(t, &n).1)
        .unwrap_or_else(|| "the node returned no notice".into());
    f.render_widget(
        Paragraph::new(Text::from(text))
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(" thread (Esc: back) ")),
        area,
    );
}

/// "in 4m 59s", or "OVERDUE 3s".
fn countdown(due: &prost_types::Timestamp, now: OffsetDateTime) -> String {
    let Some(due) = clock::from_proto(due) else {
        return "-".into();
    };
    let left = due - now;
    let secs = left.whole_seconds();
    if secs < 0 {
        format!("OVERDUE {}", span(secs.unsigned_abs()))
    } else {
        format!("in {}", span(secs.unsigned_abs()))
    }
}

/// "3m 10s ago".
fn ago(at: Option<&prost_types::Timestamp>, now: OffsetDateTime) -> String {
    at.and_then(clock::from_proto)
        .map(|at| format!("{} ago", span((now - at).whole_seconds().max(0).unsigned_abs())))
        .unwrap_or_else(|| "-".into())
}

/// Seconds as a clock reads them: "45s", "4m05s", "2h10m".
fn span(secs: u64) -> String {
    match secs {
        s if s >= 3600 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}
