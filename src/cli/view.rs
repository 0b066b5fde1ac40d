//! How the CLI shows what a node answers: each operator answer as JSON for
//! `--json` and as a readable table, built here and printed by the commands.

use hotline::clock;
use hotline::envelope::{self, RECEIPT_TYPE};
use hotline::message::tlp_label;
use hotline::proto::{
    Envelope, Event, Exercise, NormEvent, Notice, NoticeSummary, NoticeThread, ReasonCode, Receipt, Response,
    ResponseStatus, event,
};
use prost::Message;
use serde_json::{Value, json};

/// Text from a peer (or anyone but this program), made safe for a terminal:
/// control characters (newlines and escape sequences included) and Unicode
/// bidirectional controls are shown as `\u{..}` escapes, so a title can
/// neither move the cursor, recolour or retitle the terminal, nor forge a
/// line or reorder what follows it. `--json` output keeps the exact text.
pub fn term(text: &str) -> std::borrow::Cow<'_, str> {
    fn unsafe_char(c: char) -> bool {
        c.is_control()
            || matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    }
    if !text.chars().any(unsafe_char) {
        return text.into();
    }
    text.chars()
        .map(|c| {
            if unsafe_char(c) {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

/// Prints a line to stdout, ignoring a closed pipe (`hotline ... | head`).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}
pub(crate) use outln;

/// How a command prints what it found.
#[derive(Clone, Copy)]
pub struct Out {
    /// JSON instead of tables.
    pub json: bool,
}

impl Out {
    /// Prints `value` as JSON, or `human` as text.
    pub fn print(self, value: &Value, human: impl FnOnce() -> String) {
        use std::io::Write as _;
        let text = if self.json {
            serde_json::to_string_pretty(value).unwrap_or_default() + "\n"
        } else {
            human()
        };
        let _ = std::io::stdout().lock().write_all(text.as_bytes());
    }
}

pub(super) fn ts(t: &Option<prost_types::Timestamp>) -> String {
    t.as_ref()
        .and_then(clock::from_proto)
        .map(clock::rfc3339)
        .unwrap_or_else(|| "-".into())
}

/// Norm events, one line each: when, what kind, the detail (escaped for the terminal).
pub(super) fn norm_lines(events: &[hotline::proto::NormEvent]) -> String {
    events
        .iter()
        .map(|e| {
            format!(
                "  {} {} {}\n",
                ts(&e.observed_at),
                short(e.kind().as_str_name(), "NORM_EVENT_KIND_"),
                term(&e.detail)
            )
        })
        .collect()
}

pub(super) fn short(name: &str, prefix: &str) -> String {
    name.trim_start_matches(prefix).to_lowercase()
}

/// A notice as JSON for `--json` output.
/// The text of a notice that is authoritative: (language, title, summary),
/// its own unless a translation is marked so.
fn authoritative(n: &Notice) -> (&str, &str, &str) {
    n.translations
        .iter()
        .find(|t| t.authoritative)
        .map(|t| (t.language.as_str(), t.title.as_str(), t.summary.as_str()))
        .unwrap_or((n.language.as_str(), n.title.as_str(), n.summary.as_str()))
}

/// "EXERCISE (TABLETOP) " for exercise traffic, nothing for real traffic.
fn exercise_mark(exercise: i32) -> String {
    match Exercise::try_from(exercise).unwrap_or_default() {
        Exercise::None => String::new(),
        e => format!("EXERCISE ({}) ", short(e.as_str_name(), "EXERCISE_")),
    }
}

pub fn notice_json(n: &Notice) -> Value {
    json!({"id": n.id, "from": n.from, "to": n.to, "created_at": ts(&n.created_at),
           "exercise": short(n.exercise().as_str_name(), "EXERCISE_"), "language": n.language,
           "authoritative_language": authoritative(n).0,
           "translations": n.translations.iter().map(|t| json!({"language": t.language, "title": t.title,
               "summary": t.summary, "authoritative": t.authoritative})).collect::<Vec<_>>(),
           "kind": short(n.kind().as_str_name(), "NOTICE_KIND_"), "severity": short(n.severity().as_str_name(), "SEVERITY_"),
           "category": short(n.category().as_str_name(), "CATEGORY_"), "tlp": tlp_label(n.tlp()),
           "title": n.title, "summary": n.summary, "affected_sectors": n.affected_sectors,
           "indicators": n.indicators.iter().map(|i| json!({"type": i.r#type, "value": i.value})).collect::<Vec<_>>(),
           "attachments": n.attachments.iter().map(|a| json!({"media_type": a.media_type, "name": a.name, "bytes": a.data.len()})).collect::<Vec<_>>(),
           "in_reply_to": n.in_reply_to, "author": n.author})
}

pub(super) fn norm_json(e: &NormEvent) -> Value {
    json!({"kind": short(e.kind().as_str_name(), "NORM_EVENT_KIND_"), "party": e.party, "message_id": e.message_id,
           "deadline": short(e.deadline().as_str_name(), "DEADLINE_"), "due_at": ts(&e.due_at),
           "observed_at": ts(&e.observed_at), "detail": e.detail})
}

fn response_json(r: &Response) -> Value {
    json!({"id": r.id, "notice_id": r.notice_id, "from": r.from, "to": r.to, "created_at": ts(&r.created_at),
           "status": short(r.status().as_str_name(), "RESPONSE_STATUS_"), "text": r.text, "author": r.author,
           "reason": short(r.reason().as_str_name(), "REASON_CODE_"), "exercise": short(r.exercise().as_str_name(), "EXERCISE_")})
}

fn receipt_json(r: &Receipt) -> Value {
    json!({"message_id": r.message_id, "from": r.from, "received_at": ts(&r.received_at), "log_index": r.log_index,
           "payload_sha256": hex::encode(&r.payload_sha256)})
}

pub fn event_json(e: &Event) -> Value {
    let (kind, body) = match &e.body {
        Some(event::Body::NoticeReceived(n)) => ("notice", notice_json(n)),
        Some(event::Body::ResponseReceived(r)) => ("response", response_json(r)),
        Some(event::Body::ReceiptReceived(r)) => ("receipt", receipt_json(r)),
        Some(event::Body::NormEvent(n)) => ("norm_event", norm_json(n)),
        Some(event::Body::AgreementAdopted(a)) => (
            "agreement_adopted",
            json!({"version": a.version, "text_sha256": hex::encode(&a.text_sha256)}),
        ),
        Some(event::Body::Link(l)) => ("link", link_json(l)),
        None => ("empty", Value::Null),
    };
    json!({"at": ts(&e.at), "type": kind, "event": body})
}

pub fn event_line(e: &Event) -> String {
    let at = ts(&e.at);
    match &e.body {
        Some(event::Body::NoticeReceived(n)) => format!(
            "{at}  NOTICE    {} from {} [{} {} TLP:{}] {}",
            term(&n.id),
            term(&n.from),
            short(n.kind().as_str_name(), "NOTICE_KIND_"),
            short(n.severity().as_str_name(), "SEVERITY_"),
            tlp_label(n.tlp()),
            term(&n.title)
        ),
        Some(event::Body::ResponseReceived(r)) => format!(
            "{at}  RESPONSE  {} from {} to notice {}: {} {}",
            term(&r.id),
            term(&r.from),
            term(&r.notice_id),
            short(r.status().as_str_name(), "RESPONSE_STATUS_"),
            term(&r.text)
        ),
        Some(event::Body::ReceiptReceived(r)) => {
            format!(
                "{at}  RECEIPT   {} signed by {} (their log index {})",
                term(&r.message_id),
                term(&r.from),
                r.log_index
            )
        }
        Some(event::Body::NormEvent(n)) => format!(
            "{at}  NORM      {} party {} {}",
            short(n.kind().as_str_name(), "NORM_EVENT_KIND_"),
            term(&n.party),
            term(&n.detail)
        ),
        Some(event::Body::AgreementAdopted(a)) => format!(
            "{at}  AGREEMENT version {} adopted (text SHA-256 {})",
            a.version,
            hex::encode(&a.text_sha256)
        ),
        Some(event::Body::Link(l)) => format!(
            "{at}  LINK      {}{}",
            link_words(l),
            if l.down_too_long {
                " (longer than the agreed link_down_alert)"
            } else {
                ""
            }
        ),
        None => format!("{at}  (empty event)"),
    }
}

/// A peer's link, as JSON.
pub fn link_json(l: &hotline::proto::PeerLink) -> Value {
    json!({"party": l.party, "reachable": l.reachable, "since": ts(&l.since),
           "failed_attempts": l.failed_attempts, "last_failure": l.last_failure,
           "next_try": l.next_try.as_ref().map(|_| ts(&l.next_try)), "down_too_long": l.down_too_long})
}

/// A peer's link in words: `CHL reachable since …`, or `ARG unreachable
/// since … (3 failed attempts, next try …): the last failure`.
pub fn link_words(l: &hotline::proto::PeerLink) -> String {
    if l.reachable {
        return format!("{} reachable since {}", term(&l.party), ts(&l.since));
    }
    let next = match &l.next_try {
        Some(_) => format!(", next try {}", ts(&l.next_try)),
        None => String::new(),
    };
    format!(
        "{} unreachable since {} ({} failed attempt(s){next}): {}",
        term(&l.party),
        ts(&l.since),
        l.failed_attempts,
        term(&l.last_failure)
    )
}

fn decode_receipt(e: &Envelope) -> Option<Receipt> {
    (e.payload_type == RECEIPT_TYPE)
        .then(|| Receipt::decode(&e.payload[..]).ok())
        .flatten()
}

/// A notice thread (`notice show`): the notice, its receipts, responses and norm events.
pub fn thread(t: &NoticeThread, notice: &Notice) -> (Value, String) {
    let receipts: Vec<Receipt> = t.receipts.iter().filter_map(decode_receipt).collect();
    let responses: Vec<Response> = t
        .responses
        .iter()
        .filter_map(|e| Response::decode(&e.payload[..]).ok())
        .collect();
    let dsse = t.notice.as_ref().map(envelope::to_json).unwrap_or_default();
    let levels = levels(notice, &receipts, &responses);
    // A name on the thread with its roles, as its party's roster has it.
    let named = |party: &str, name: &str| {
        let roles = t
            .people
            .iter()
            .find(|p| p.party == party && p.name == name && p.roster_version > 0)
            .map(|p| p.roles.join(", "));
        match roles {
            Some(roles) => format!("{} ({roles}, {})", term(name), term(party)),
            None => term(name).into_owned(),
        }
    };
    let people: Vec<Value> = t
        .people
        .iter()
        .map(|p| json!({"party": p.party, "name": p.name, "roles": p.roles, "roster_version": p.roster_version}))
        .collect();
    let value = json!({"notice": notice_json(notice), "levels": levels, "people": people, "receipts": receipts.iter().map(receipt_json).collect::<Vec<_>>(),
                "responses": responses.iter().map(response_json).collect::<Vec<_>>(),
                "norm_events": t.norm_events.iter().map(norm_json).collect::<Vec<_>>(),
                "links": t.links.iter().map(link_json).collect::<Vec<_>>(),
                "envelope": serde_json::from_str::<Value>(&dsse).unwrap_or(Value::Null)});
    let human = {
        let (language, title, summary) = authoritative(notice);
        let others: Vec<&str> = std::iter::once(notice.language.as_str())
            .chain(notice.translations.iter().map(|t| t.language.as_str()))
            .filter(|l| !l.is_empty() && *l != language)
            .collect();
        let mut s = exercise_mark(notice.exercise).replace(") ", ")\n");
        if !language.is_empty() {
            s += &format!(
                "language {} (authoritative){}\n",
                term(language),
                match others.is_empty() {
                    true => String::new(),
                    false => format!("; also in {}", term(&others.join(", "))),
                }
            );
        }
        s += &format!(
            "notice   {}\nfrom     {} -> {}\ncreated  {}\nkind     {}  severity {}  category {}  TLP:{}\ntitle    {}\nsummary  {}\nauthor   {}\n",
            term(&notice.id),
            term(&notice.from),
            term(&notice.to.join(", ")),
            ts(&notice.created_at),
            short(notice.kind().as_str_name(), "NOTICE_KIND_"),
            short(notice.severity().as_str_name(), "SEVERITY_"),
            short(notice.category().as_str_name(), "CATEGORY_"),
            tlp_label(notice.tlp()),
            term(title),
            term(summary),
            named(&notice.from, &notice.author)
        );
        for i in &notice.indicators {
            s += &format!("indicator {} = {}\n", term(&i.r#type), term(&i.value));
        }
        s += "\nlevels   (DELIVERED: the node's receipt; ACKNOWLEDGED: a person read it; ANSWERED: a substantive response)\n";
        for l in &levels {
            let at = |k: &str| l[k].as_str().unwrap_or("-").to_owned();
            let party = l["party"].as_str().unwrap_or("");
            let by = |k: &str| match l[k].as_str() {
                Some(who) if !who.is_empty() => format!(" by {}", named(party, who)),
                _ => String::new(),
            };
            s += &format!(
                "  {:<8} delivered {}  acknowledged {}{}  answered {}{}{}\n",
                term(l["party"].as_str().unwrap_or("")),
                at("delivered_at"),
                at("acknowledged_at"),
                by("acknowledged_by"),
                at("answered_at"),
                by("answered_by"),
                l["answer"].as_str().map(|a| format!(" ({a})")).unwrap_or_default()
            );
            let undelivered = l["delivered_at"].is_null();
            if let Some(link) = t.links.iter().find(|k| k.party == party).filter(|_| undelivered) {
                s += &format!("           not delivered yet: {}\n", link_words(link));
            }
        }
        s += "\nreceipts\n";
        for r in &receipts {
            s += &format!(
                "  {} for {} at {} (their log index {})\n",
                term(&r.from),
                term(&r.message_id),
                ts(&r.received_at),
                r.log_index
            );
        }
        s += "responses\n";
        for r in &responses {
            let reason = match r.reason() {
                ReasonCode::Unspecified => String::new(),
                code => format!(" ({})", short(code.as_str_name(), "REASON_CODE_")),
            };
            s += &format!(
                "  {} {} {}{reason} by {}: {}\n",
                ts(&r.created_at),
                term(&r.from),
                short(r.status().as_str_name(), "RESPONSE_STATUS_"),
                named(&r.from, &r.author),
                term(&r.text)
            );
        }
        s += "norm events\n";
        s += &norm_lines(&t.norm_events);
        s
    };
    (value, human)
}

/// The three levels each recipient reached: DELIVERED (its node's receipt),
/// ACKNOWLEDGED (its first response of any status: someone read it) and
/// ANSWERED (its first response with a status other than ACKNOWLEDGED).
fn levels(notice: &Notice, receipts: &[Receipt], responses: &[Response]) -> Vec<Value> {
    notice
        .to
        .iter()
        .map(|party| {
            let delivered = receipts.iter().find(|r| &r.from == party).map(|r| ts(&r.received_at));
            let from_party: Vec<&Response> = responses.iter().filter(|r| &r.from == party).collect();
            let acknowledged = from_party.first();
            let answered = from_party.iter().find(|r| r.status() != ResponseStatus::Acknowledged);
            json!({"party": party, "delivered_at": delivered,
                   "acknowledged_at": acknowledged.map(|r| ts(&r.created_at)), "acknowledged_by": acknowledged.map(|r| &r.author),
                   "answered_at": answered.map(|r| ts(&r.created_at)), "answered_by": answered.map(|r| &r.author),
                   "answer": answered.map(|r| short(r.status().as_str_name(), "RESPONSE_STATUS_"))})
        })
        .collect()
}

/// The inbox: notices sent and received, with who receipted and how many responses.
pub fn inbox(list: &[NoticeSummary]) -> (Value, String) {
    let rows: Vec<Value> = list
        .iter()
        .map(|s| {
            let mut v = s.notice.as_ref().map(notice_json).unwrap_or(Value::Null);
            // The list shows the authoritative title, marked if it is an exercise.
            v["shown_title"] = json!(
                s.notice
                    .as_ref()
                    .map(|n| format!("{}{}", exercise_mark(n.exercise), authoritative(n).1))
                    .unwrap_or_default()
            );
            v["direction"] = json!(s.direction);
            v["receipted_by"] = json!(s.receipted_by);
            v["responses"] = json!(s.responses);
            v
        })
        .collect();
    let human = {
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
                term(r["id"].as_str().unwrap_or("")),
                term(r["direction"].as_str().unwrap_or("")),
                term(r["from"].as_str().unwrap_or("")),
                term(&to.join(",")),
                term(r["severity"].as_str().unwrap_or("")),
                term(r["tlp"].as_str().unwrap_or("")),
                term(&rec.join(",")),
                r["responses"],
                term(r["shown_title"].as_str().unwrap_or(""))
            );
        }
        s
    };
    (json!(rows), human)
}

/// A progress bar for long work on `unit`s (hidden under `--json`, whose
/// output is the result alone).
pub fn progress_bar(out: Out, what: &str, unit: &str) -> indicatif::ProgressBar {
    let bar = if out.json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(0)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{what} {{bar:40}} {{pos}}/{{len}} {unit} ({{per_sec}}, eta {{eta}})"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}
