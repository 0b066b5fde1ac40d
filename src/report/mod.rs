//! The compliance report an auditor opens, prints and archives: one
//! self-contained HTML file (no script, font or style fetched from
//! anywhere) with the log's verification, the witnessed checkpoints and
//! forks, per party and norm how many steps were owed, met and missed with
//! median and 95th-percentile times against the agreed limit, a timeline of
//! each notice thread, charts of answer times, and the agreement in force.
//! Everything is read from the log (`ledger.rs`), rendered by a template
//! engine, the charts by a plotting crate (`charts.rs`).

mod charts;
mod ledger;

pub use ledger::{Ledger, Thread};

use minijinja::{Environment, context};
use serde::Serialize;

use crate::agreement::{Agreement, SignedAgreement};
use crate::clock;
use crate::log::verify::Report as Verified;
use crate::proto::{Deadline, NormEventKind, NoticeKind, ResponseStatus};

/// The page's template, with its style inline.
const TEMPLATE: &str = include_str!("report.html");

/// One norm as one party kept it.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Figure {
    /// The party that owed the step.
    pub party: String,
    /// The norm: `receipt`, `response (high)`, `communication check`, …
    pub norm: String,
    /// The agreed limit, in words.
    pub limit: String,
    /// How many steps were owed.
    pub owed: u64,
    /// How many came within the limit.
    pub met: u64,
    /// How many the log records as missed (`DEADLINE_MISSED`).
    pub missed: u64,
    /// Of those, how many were missed while our calls could not reach the
    /// party (a receipt whose missed event carries our attempts and says
    /// the link was down): a link down, not a party silent.
    pub link_down: u64,
    /// The median and 95th-percentile times to the step, in words.
    pub median: String,
    /// See `median`.
    pub p95: String,
}

/// What the report shows of the log's own verification.
#[derive(Serialize, Debug)]
pub struct Verification {
    /// Whether every entry, hash and checkpoint verified.
    pub valid: bool,
    /// What was checked, or what failed.
    pub detail: String,
}

impl Verification {
    /// From the result of `audit verify` on the same log.
    pub fn of(result: &Result<Verified, crate::log::verify::VerifyError>) -> Self {
        match result {
            Ok(r) => Self {
                valid: true,
                detail: format!(
                    "{} entries, {} signed checkpoints and {} signatures in entries verify; root {}",
                    r.entries, r.checkpoints, r.signatures, r.root
                ),
            },
            Err(e) => Self {
                valid: false,
                detail: e.to_string(),
            },
        }
    }
}

fn words(ms: i64) -> String {
    clock::format_duration(std::time::Duration::from_millis(ms.max(0) as u64))
}

/// The value at fraction `q` of sorted `times`, nearest rank.
fn percentile(times: &[i64], q: f64) -> Option<i64> {
    let rank = ((q * times.len() as f64).ceil() as usize).clamp(1, times.len().max(1));
    times.get(rank - 1).copied()
}

/// Builds the figures of one (party, norm) from the times to each step taken and the misses.
struct Tally {
    limit_ms: i64,
    owed: u64,
    times: Vec<i64>,
    missed: u64,
    link_down: u64,
}

impl Tally {
    fn new(limit: std::time::Duration) -> Self {
        Self {
            limit_ms: limit.as_millis() as i64,
            owed: 0,
            times: Vec::new(),
            missed: 0,
            link_down: 0,
        }
    }

    fn figure(mut self, party: &str, norm: String) -> Figure {
        self.times.sort();
        let fmt = |t: Option<i64>| t.map_or("-".to_owned(), words);
        Figure {
            party: party.to_owned(),
            norm,
            limit: words(self.limit_ms),
            owed: self.owed,
            met: self.times.iter().filter(|t| **t <= self.limit_ms).count() as u64,
            missed: self.missed,
            link_down: self.link_down,
            median: fmt(percentile(&self.times, 0.5)),
            p95: fmt(percentile(&self.times, 0.95)),
        }
    }
}

/// The figures per party and norm, real traffic only (exercises are left out).
pub fn figures(ledger: &Ledger, agreement: &Agreement, us: &str) -> Vec<Figure> {
    let norms = &agreement.norms;
    // How many misses of a step the log records, and of those how many our attempts say the link was down.
    let missed = |party: &str, deadline: Deadline, message: &str| {
        ledger
            .norm_events
            .iter()
            .filter(|(e, _)| {
                e.kind() == NormEventKind::DeadlineMissed
                    && e.party == party
                    && e.deadline() == deadline
                    && e.message_id == message
            })
            .fold((0, 0), |(all, down), (e, _)| {
                let link_down = e.attempts.as_ref().is_some_and(|a| a.unreachable);
                (all + 1, down + u64::from(link_down))
            })
    };
    // Looked up once per message sent: a set, not a scan of every thread's responses.
    let exercise_responses: std::collections::HashSet<&str> = ledger
        .threads
        .values()
        .flat_map(|t| t.responses.iter())
        .filter(|(r, _)| r.exercise != 0)
        .map(|(r, _)| r.id.as_str())
        .collect();
    let exercise =
        |id: &str| ledger.threads.get(id).is_some_and(|t| t.notice.exercise != 0) || exercise_responses.contains(id);
    let mut tallies: std::collections::BTreeMap<(String, String), Tally> = Default::default();
    // Receipts of everything we sent.
    for (id, to, sent) in ledger.sent.iter().filter(|(id, _, _)| !exercise(id)) {
        for party in to.iter().filter(|p| agreement.party(p).is_some()) {
            let t = tallies
                .entry((party.clone(), "receipt".into()))
                .or_insert_with(|| Tally::new(norms.receipt_within));
            t.owed += 1;
            if let Some((_, at)) = ledger.receipts.get(id).and_then(|r| r.iter().find(|(p, _)| p == party)) {
                t.times.push(at - sent);
            }
            let (all, link_down) = missed(party, Deadline::Receipt, id);
            t.missed += all;
            t.link_down += link_down;
        }
    }
    // Responses and communication-check answers, owed by each recipient of a notice.
    for thread in ledger.threads.values().filter(|t| t.notice.exercise == 0) {
        let n = &thread.notice;
        let (norm, limit, deadline, substantive) = match n.kind() {
            NoticeKind::Notification | NoticeKind::RequestForAssistance => (
                format!(
                    "response ({})",
                    n.severity()
                        .as_str_name()
                        .trim_start_matches("SEVERITY_")
                        .to_lowercase()
                ),
                norms.respond_within(n.severity()),
                Deadline::Response,
                true,
            ),
            NoticeKind::CommCheck => (
                "communication check".to_owned(),
                norms.comm_check_answer_within,
                Deadline::CommCheckAnswer,
                false,
            ),
            _ => continue,
        };
        let owing: Vec<&str> = match thread.ours {
            true => n.to.iter().map(String::as_str).collect(),
            false => vec![us],
        };
        for party in owing {
            let t = tallies
                .entry((party.to_owned(), norm.clone()))
                .or_insert_with(|| Tally::new(limit));
            t.owed += 1;
            let answer = thread
                .responses
                .iter()
                .find(|(r, _)| r.from == party && (!substantive || r.status() != ResponseStatus::Acknowledged));
            if let Some((_, at)) = answer {
                t.times.push(at - thread.logged_ms);
            }
            t.missed += missed(party, deadline, &n.id).0;
        }
    }
    tallies
        .into_iter()
        .map(|((party, norm), t)| t.figure(&party, norm))
        .collect()
}

/// One line of a thread's timeline.
#[derive(Serialize)]
struct Step {
    at: String,
    what: String,
}

/// A notice thread as the report shows it.
#[derive(Serialize)]
struct ThreadView {
    id: String,
    title: String,
    from: String,
    to: String,
    tlp: String,
    exercise: bool,
    steps: Vec<Step>,
}

fn timeline(t: &Thread) -> ThreadView {
    let at = |ms: i64| {
        clock::ms_to_proto(ms)
            .as_ref()
            .and_then(clock::from_proto)
            .map(clock::rfc3339)
            .unwrap_or_default()
    };
    let n = &t.notice;
    let mut steps = vec![(
        t.logged_ms,
        format!(
            "{} by {}",
            if t.ours { "sent" } else { "received" },
            match t.readable {
                true => format!("{} ({})", n.author, n.from),
                false => n.from.clone(),
            }
        ),
    )];
    steps.extend(
        t.receipts
            .iter()
            .map(|(p, ms)| match t.relayed.iter().find(|(party, _)| party == p) {
                Some((_, relay)) => (*ms, format!("receipt signed by {p}'s node, carried by {relay}")),
                None => (*ms, format!("receipt signed by {p}'s node")),
            }),
    );
    steps.extend(t.responses.iter().map(|(r, ms)| {
        let status = r.status().as_str_name().trim_start_matches("RESPONSE_STATUS_");
        let what = match t.readable {
            true => format!("{} {status} by {}: {}", r.from, r.author, r.text),
            false => format!("{} {status}", r.from),
        };
        (*ms, what)
    }));
    steps.extend(t.events.iter().map(|(e, ms)| {
        (
            *ms,
            format!(
                "{}: {}",
                e.kind().as_str_name().trim_start_matches("NORM_EVENT_KIND_"),
                e.detail
            ),
        )
    }));
    steps.sort_by_key(|(ms, _)| *ms);
    let tlp = crate::message::tlp_label(n.tlp());
    ThreadView {
        id: n.id.clone(),
        title: match t.readable {
            true => n.title.clone(),
            false => format!(
                "(TLP:{tlp}: not readable by this reader, beyond its clearance or sealed; its log entry says who, when and how severe)"
            ),
        },
        from: n.from.clone(),
        to: n.to.join(", "),
        tlp: tlp.to_owned(),
        exercise: n.exercise != 0,
        steps: steps.into_iter().map(|(ms, what)| Step { at: at(ms), what }).collect(),
    }
}

/// The answer-time charts: responses (minutes) and communication checks (seconds).
fn charts(ledger: &Ledger) -> Result<(String, String), String> {
    let start = ledger.threads.values().map(|t| t.logged_ms).min().unwrap_or(0);
    let mut responses: std::collections::BTreeMap<String, Vec<(f64, f64)>> = Default::default();
    let mut checks: std::collections::BTreeMap<String, Vec<(f64, f64)>> = Default::default();
    for t in ledger.threads.values().filter(|t| t.notice.exercise == 0) {
        let x = (t.logged_ms - start) as f64 / 3_600_000.0;
        let check = t.notice.kind() == NoticeKind::CommCheck;
        let mut seen = std::collections::BTreeSet::new();
        for (r, at) in &t.responses {
            if !seen.insert(r.from.clone()) {
                continue; // the first answer of each party
            }
            let took = (at - t.logged_ms).max(0) as f64;
            match check {
                true => checks.entry(r.from.clone()).or_default().push((x, took / 1000.0)),
                false => responses.entry(r.from.clone()).or_default().push((x, took / 60_000.0)),
            }
        }
    }
    let series = |m: std::collections::BTreeMap<String, Vec<(f64, f64)>>| -> Vec<charts::Series> {
        m.into_iter()
            .map(|(party, points)| charts::Series { party, points })
            .collect()
    };
    Ok((
        charts::scatter("Time to first response", "minutes", &series(responses))?,
        charts::scatter("Communication-check answer times", "seconds", &series(checks))?,
    ))
}

/// Renders the report of `us`'s log as one HTML document.
pub fn render(ledger: &Ledger, us: &str, verification: &Verification) -> Result<String, String> {
    let signed = ledger
        .agreement
        .as_deref()
        .map(SignedAgreement::parse)
        .transpose()
        .map_err(|e| format!("the adopted agreement in the log: {e}"))?
        .ok_or("the log holds no adopted agreement")?;
    let agreement = &signed.agreement;
    let figures = figures(ledger, agreement, us);
    let (response_chart, check_chart) = charts(ledger)?;
    let threads: Vec<ThreadView> = ledger
        .order
        .iter()
        .filter_map(|id| ledger.threads.get(id))
        .map(timeline)
        .collect();
    let forks: Vec<String> = ledger
        .norm_events
        .iter()
        .filter(|(e, _)| matches!(e.kind(), NormEventKind::CheckpointFork | NormEventKind::AgreementFork))
        .map(|(e, _)| format!("{}: {}", e.party, e.detail))
        .collect();
    let witnessed: Vec<(String, u64, u64)> = ledger
        .witnessed
        .iter()
        .map(|(p, (n, size))| (p.clone(), *n, *size))
        .collect();
    let parties: Vec<(String, String, String)> = agreement
        .parties
        .iter()
        .map(|p| (p.id.clone(), p.name.clone(), p.endpoint.clone()))
        .collect();
    let mut env = Environment::new();
    env.add_template("report.html", TEMPLATE).map_err(|e| e.to_string())?;
    env.get_template("report.html")
        .and_then(|t| {
            t.render(context! {
                party => us,
                generated => clock::rfc3339(clock::now()),
                entries => ledger.entries,
                verification,
                figures,
                threads,
                witnessed,
                forks,
                agreement_version => agreement.version,
                agreement_title => &agreement.title,
                agreement_sha256 => hex::encode(signed.text_sha256()),
                agreement_text => signed.text(),
                parties,
                response_chart,
                check_chart,
                withheld => &ledger.withheld,
            })
        })
        .map_err(|e| e.to_string())
}
