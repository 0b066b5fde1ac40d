//! What the console shows and what a key asks for: the node's state as its
//! last `Status` and `ListNotices` answers gave it, the events seen since,
//! the notice selected and the thread open. No I/O here: the loop in
//! `mod.rs` feeds it answers and keys and carries out the actions it returns.

use std::collections::VecDeque;

use hotline::proto::{Event, NoticeSummary, NoticeThread, PeerStatus, ResponseStatus, RunningDeadline, StatusResponse};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// How many event lines the console keeps.
const EVENTS_KEPT: usize = 50;

/// The statuses `r` offers, in the order Tab steps through them.
pub const ANSWERS: [ResponseStatus; 5] = [
    ResponseStatus::Investigating,
    ResponseStatus::AssistanceOffered,
    ResponseStatus::Mitigated,
    ResponseStatus::Declined,
    ResponseStatus::Closed,
];

/// What the operator asked for with a key; the loop makes the call.
#[derive(Debug, PartialEq)]
pub enum Action {
    Acknowledge(String),
    Respond {
        notice_id: String,
        status: ResponseStatus,
        text: String,
    },
    CommCheck {
        human: bool,
    },
    OpenThread(String),
    Quit,
}

/// A response being typed: its notice, the status chosen, the text so far.
pub struct Prompt {
    pub notice_id: String,
    pub answer: usize,
    pub text: String,
}

/// The console's state.
#[derive(Default)]
pub struct Model {
    pub status: StatusResponse,
    pub notices: Vec<NoticeSummary>,
    /// The selected notice, by id, so a refresh keeps the operator's place.
    pub selected: Option<String>,
    /// Event lines, newest last.
    pub events: VecDeque<String>,
    /// The thread open (Enter): its notice's id, and the thread as last read.
    pub thread: Option<(String, NoticeThread)>,
    pub prompt: Option<Prompt>,
    /// The outcome of the last action, or what went wrong, in words.
    pub message: String,
}

impl Model {
    /// Takes the node's answers to `Status` and `ListNotices`.
    pub fn refreshed(&mut self, status: StatusResponse, notices: Vec<NoticeSummary>) {
        self.status = status;
        self.notices = notices;
        let still_there = self
            .selected
            .as_ref()
            .is_some_and(|id| self.notices.iter().any(|n| notice_id(n) == id));
        if !still_there {
            self.selected = self.notices.first().map(|n| notice_id(n).to_owned());
        }
    }

    /// Notes an event from the node's stream.
    pub fn event(&mut self, e: &Event) {
        self.events.push_back(brief(e));
        while self.events.len() > EVENTS_KEPT {
            self.events.pop_front();
        }
    }

    /// The peers, as `Status` gave them.
    pub fn peers(&self) -> &[PeerStatus] {
        &self.status.peers
    }

    /// The running clocks of one message.
    pub fn clocks_of<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a RunningDeadline> + 'a {
        self.status.deadlines.iter().filter(move |d| d.message_id == id)
    }

    /// The index of the selected notice in the list.
    pub fn selected_index(&self) -> Option<usize> {
        let id = self.selected.as_deref()?;
        self.notices.iter().position(|n| notice_id(n) == id)
    }

    fn selected_summary(&self) -> Option<&NoticeSummary> {
        self.selected_index().map(|i| &self.notices[i])
    }

    fn step(&mut self, by: isize) {
        if self.notices.is_empty() {
            return;
        }
        let at = self.selected_index().unwrap_or(0) as isize + by;
        let at = at.clamp(0, self.notices.len() as isize - 1) as usize;
        self.selected = Some(notice_id(&self.notices[at]).to_owned());
    }

    /// A key pressed: moves the selection, edits the prompt, or asks for an action.
    pub fn key(&mut self, k: KeyEvent) -> Option<Action> {
        if k.modifiers.contains(KeyModifiers::CONTROL) && k.code == KeyCode::Char('c') {
            return Some(Action::Quit);
        }
        if let Some(p) = &mut self.prompt {
            match k.code {
                KeyCode::Esc => self.prompt = None,
                KeyCode::Tab => p.answer = (p.answer + 1) % ANSWERS.len(),
                KeyCode::Backspace => {
                    p.text.pop();
                }
                KeyCode::Enter => {
                    let p = self.prompt.take()?;
                    return Some(Action::Respond {
                        notice_id: p.notice_id,
                        status: ANSWERS[p.answer],
                        text: p.text,
                    });
                }
                KeyCode::Char(c) => p.text.push(c),
                _ => {}
            }
            return None;
        }
        if self.thread.is_some() && matches!(k.code, KeyCode::Esc | KeyCode::Enter) {
            self.thread = None;
            return None;
        }
        match k.code {
            KeyCode::Char('q') => Some(Action::Quit),
            KeyCode::Up | KeyCode::Char('k') => {
                self.step(-1);
                None
            }
            KeyCode::Down | KeyCode::Char('j') => {
                self.step(1);
                None
            }
            KeyCode::Char('c') => Some(Action::CommCheck { human: false }),
            KeyCode::Char('h') => Some(Action::CommCheck { human: true }),
            KeyCode::Enter => self.selected.clone().map(Action::OpenThread),
            KeyCode::Char(c @ ('a' | 'r')) => {
                let n = self.selected_summary()?;
                if n.direction != "received" {
                    self.message = "this notice is ours: only its recipients acknowledge or answer it".into();
                    return None;
                }
                let id = notice_id(n).to_owned();
                if c == 'a' {
                    return Some(Action::Acknowledge(id));
                }
                self.prompt = Some(Prompt {
                    notice_id: id,
                    answer: 0,
                    text: String::new(),
                });
                None
            }
            _ => None,
        }
    }
}

/// An event in one short line: the time of day, what, from whom, the gist.
fn brief(e: &Event) -> String {
    use crate::cli::view::{link_words, short, term};
    use hotline::proto::event::Body;
    let at =
        e.at.as_ref()
            .and_then(hotline::clock::from_proto)
            .map(|t| format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second()))
            .unwrap_or_default();
    let what = match &e.body {
        Some(Body::NoticeReceived(n)) => format!(
            "NOTICE from {} {} {}: {}",
            term(&n.from),
            short(n.severity().as_str_name(), "SEVERITY_"),
            hotline::message::tlp_label(n.tlp()),
            term(&n.title)
        ),
        Some(Body::ResponseReceived(r)) => format!(
            "RESPONSE from {}: {} {}",
            term(&r.from),
            short(r.status().as_str_name(), "RESPONSE_STATUS_"),
            term(&r.text)
        ),
        Some(Body::ReceiptReceived(r)) => format!("RECEIPT from {} for {}", term(&r.from), term(&r.message_id)),
        Some(Body::NormEvent(n)) => format!(
            "{} {} {}",
            short(n.kind().as_str_name(), "NORM_EVENT_KIND_").to_uppercase(),
            term(&n.party),
            term(&n.detail)
        ),
        Some(Body::AgreementAdopted(a)) => format!("AGREEMENT version {} adopted", a.version),
        Some(Body::Link(l)) => format!("LINK {}", link_words(l)),
        None => "(empty event)".into(),
    };
    format!("{at} {what}")
}

/// A summary's notice id.
pub fn notice_id(n: &NoticeSummary) -> &str {
    n.notice.as_ref().map_or("", |n| n.id.as_str())
}

#[cfg(test)]
mod tests {
    use crate::cli::console::model::*;
    use hotline::proto::Notice;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn summary(id: &str, direction: &str) -> NoticeSummary {
        NoticeSummary {
            notice: Some(Notice {
                id: id.into(),
                ..Default::default()
            }),
            direction: direction.into(),
            ..Default::default()
        }
    }

    fn model() -> Model {
        let mut m = Model::default();
        m.refreshed(
            StatusResponse::default(),
            vec![summary("n1", "received"), summary("n2", "sent")],
        );
        m
    }

    #[test]
    fn a_acknowledges_the_selected_received_notice() {
        let mut m = model();
        assert_eq!(m.key(key(KeyCode::Char('a'))), Some(Action::Acknowledge("n1".into())));
    }

    #[test]
    fn a_notice_we_sent_is_not_ours_to_acknowledge() {
        let mut m = model();
        m.key(key(KeyCode::Down));
        assert_eq!(m.key(key(KeyCode::Char('a'))), None);
        assert!(m.message.contains("ours"), "{}", m.message);
    }

    #[test]
    fn r_opens_a_prompt_whose_tab_steps_the_status_and_enter_sends_the_text() {
        let mut m = model();
        assert_eq!(m.key(key(KeyCode::Char('r'))), None);
        m.key(key(KeyCode::Tab));
        for c in "on it".chars() {
            assert_eq!(m.key(key(KeyCode::Char(c))), None, "typing never acts");
        }
        assert_eq!(
            m.key(key(KeyCode::Enter)),
            Some(Action::Respond {
                notice_id: "n1".into(),
                status: ResponseStatus::AssistanceOffered,
                text: "on it".into()
            })
        );
        assert!(m.prompt.is_none());
    }

    #[test]
    fn a_refresh_keeps_the_selection_on_the_same_notice() {
        let mut m = model();
        m.key(key(KeyCode::Down));
        m.refreshed(
            StatusResponse::default(),
            vec![
                summary("n0", "received"),
                summary("n1", "received"),
                summary("n2", "sent"),
            ],
        );
        assert_eq!(m.selected.as_deref(), Some("n2"));
    }
}
