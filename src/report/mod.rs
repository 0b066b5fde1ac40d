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
    /// The agreed limit in words ("as promised" where each step has its own).
    limit: String,
    owed: u64,
    times: Vec<i64>,
    met: u64,
    missed: u64,
    link_down: u64,
}

impl Tally {
    fn new(limit: String) -> Self {
        Self {
            limit,
            owed: 0,
            times: Vec::new(),
            met: 0,
            missed: 0,
            link_down: 0,
        }
    }

    /// A step owed within `limit` ms was taken after `took` ms.
    fn took(&mut self, took: i64, limit: i64) {
        self.times.push(took);
        self.met += u64::from(took <= limit);
    }

    fn figure(mut self, party: &str, norm: String) -> Figure {
        self.times.sort();
        let fmt = |t: Option<i64>| t.map_or("-".to_owned(), words);
        Figure {
            party: party.to_owned(),
            norm,
            limit: self.limit,
            owed: self.owed,
            met: self.met,
            missed: self.missed,
            link_down: self.link_down,
            median: fmt(percentile(&self.times, 0.5)),
            p95: fmt(percentile(&self.times, 0.95)),
        }
    }
}

fn ms(d: std::time::Duration) -> i64 {
    d.as_millis() as i64
}

fn severity(n: &crate::proto::Notice) -> String {
    n.severity()
        .as_str_name()
        .trim_start_matches("SEVERITY_")
        .to_lowercase()
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
                .or_insert_with(|| Tally::new(words(ms(norms.receipt_within))));
            t.owed += 1;
            if let Some((_, at)) = ledger.receipts.get(id).and_then(|r| r.iter().find(|(p, _)| p == party)) {
                t.took(at - sent, ms(norms.receipt_within));
            }
            let (all, link_down) = missed(party, Deadline::Receipt, id);
            t.missed += all;
            t.link_down += link_down;
        }
    }
    // Acknowledgements, responses, promised answers and communication-check
    // answers, owed by each recipient of a notice.
    for thread in ledger.threads.values().filter(|t| t.notice.exercise == 0) {
        let n = &thread.notice;
        let (norm, limit, deadline, substantive) = match n.kind() {
            NoticeKind::Notification | NoticeKind::RequestForAssistance => (
                format!("response ({})", severity(n)),
                norms.respond_within(n.severity()),
                Deadline::Response,
                true,
            ),
            NoticeKind::CommCheck if n.human => (
                "human communication check".to_owned(),
                norms.comm_check_answer_within,
                Deadline::CommCheckAnswer,
                false,
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
            let by = |status: &dyn Fn(ResponseStatus) -> bool| {
                thread
                    .responses
                    .iter()
                    .find(move |(r, _)| r.from == party && status(r.status()))
            };
            let t = tallies
                .entry((party.to_owned(), norm.clone()))
                .or_insert_with(|| Tally::new(words(ms(limit))));
            t.owed += 1;
            // A response stops the clock; an acknowledgement alone does not.
            if let Some((_, at)) = by(&|s| !substantive || s != ResponseStatus::Acknowledged) {
                t.took(at - thread.logged_ms, ms(limit));
            }
            t.missed += missed(party, deadline, &n.id).0;
            if !substantive {
                continue;
            }
            // Any answer stops the acknowledgement clock, where the agreement sets one.
            if let Some(within) = norms.acknowledge_within(n.severity()) {
                let t = tallies
                    .entry((party.to_owned(), format!("acknowledgement ({})", severity(n))))
                    .or_insert_with(|| Tally::new(words(ms(within))));
                t.owed += 1;
                if let Some((_, at)) = by(&|_| true) {
                    t.took(at - thread.logged_ms, ms(within));
                }
                t.missed += missed(party, Deadline::Acknowledge, &n.id).0;
            }
            // Each INVESTIGATING with a promised time owes a later answer that concludes.
            for (i, (promise, made)) in thread.responses.iter().enumerate() {
                let due = promise
                    .promised_by
                    .as_ref()
                    .and_then(clock::from_proto)
                    .map(clock::to_ms);
                let Some(due) = due.filter(|_| promise.from == party) else {
                    continue;
                };
                let t = tallies
                    .entry((party.to_owned(), "promised answer".into()))
                    .or_insert_with(|| Tally::new("as promised".into()));
                t.owed += 1;
                // Later in the log, so later in time.
                let concluded = thread.responses[i + 1..].iter().find(|(r, _)| {
                    r.from == party
                        && !matches!(r.status(), ResponseStatus::Acknowledged | ResponseStatus::Investigating)
                });
                if let Some((_, at)) = concluded {
                    t.took(at - made, due - made);
                }
            }
            let promises_missed = missed(party, Deadline::Promise, &n.id).0;
            if promises_missed > 0 {
                tallies
                    .entry((party.to_owned(), "promised answer".into()))
                    .or_insert_with(|| Tally::new("as promised".into()))
                    .missed += promises_missed;
            }
        }
    }
    tallies
        .into_iter()
        .map(|((party, norm), t)| t.figure(&party, norm))
        .collect()
}

/// A response's reason code as the CLI takes it (`outside-jurisdiction`), if it gives one.
fn reason(r: &crate::proto::Response) -> Option<String> {
    match r.reason() {
        crate::proto::ReasonCode::Unspecified => None,
        code => Some(
            code.as_str_name()
                .trim_start_matches("REASON_CODE_")
                .to_lowercase()
                .replace('_', "-"),
        ),
    }
}

/// How often each party gave each reason with each status, real traffic only.
fn reasons(ledger: &Ledger) -> Vec<(String, String, String, u64)> {
    let mut counts: std::collections::BTreeMap<(String, String, String), u64> = Default::default();
    for t in ledger.threads.values().filter(|t| t.notice.exercise == 0) {
        for (r, _) in &t.responses {
            if let Some(why) = reason(r) {
                let status = r
                    .status()
                    .as_str_name()
                    .trim_start_matches("RESPONSE_STATUS_")
                    .to_lowercase();
                *counts.entry((r.from.clone(), status, why)).or_default() += 1;
            }
        }
    }
    counts.into_iter().map(|((p, s, r), n)| (p, s, r, n)).collect()
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
        let reason = match reason(r) {
            Some(why) => format!(" (reason: {why})"),
            None => String::new(),
        };
        let what = match t.readable {
            true => format!("{} {status}{reason} by {}: {}", r.from, r.author, r.text),
            false => format!("{} {status}{reason}", r.from),
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

/// The answer-time charts: time to a response (investigating or later) by
/// the date each notice was sent, with the agreed limit of each severity
/// drawn; communication checks answered by machines, and those answered by
/// people, apart, with the agreed limit.
fn charts(ledger: &Ledger, norms: &crate::agreement::Norms) -> Result<[String; 3], String> {
    type Points = std::collections::BTreeMap<String, Vec<(i64, f64)>>;
    let (mut responses, mut machines, mut people) = (Points::new(), Points::new(), Points::new());
    let mut severities = std::collections::BTreeSet::new();
    for t in ledger.threads.values().filter(|t| t.notice.exercise == 0) {
        let n = &t.notice;
        let (points, substantive) = match n.kind() {
            NoticeKind::CommCheck if n.human => (&mut people, false),
            NoticeKind::CommCheck => (&mut machines, false),
            _ => {
                severities.insert(n.severity());
                (&mut responses, true)
            }
        };
        let mut seen = std::collections::BTreeSet::new();
        for (r, at) in &t.responses {
            let stops = !substantive || r.status() != ResponseStatus::Acknowledged;
            // The first answer of each party that stops the clock.
            if stops && seen.insert(r.from.clone()) {
                let took = (at - t.logged_ms).max(0) as f64 / 1000.0;
                points.entry(r.from.clone()).or_default().push((t.logged_ms, took));
            }
        }
    }
    let series = |m: Points| -> Vec<charts::Series> {
        m.into_iter()
            .map(|(party, points)| charts::Series { party, points })
            .collect()
    };
    let limit = |label: String, d: std::time::Duration| charts::Limit {
        label: format!("{label}: {}", words(ms(d))),
        seconds: d.as_secs_f64(),
    };
    let response_limits: Vec<charts::Limit> = severities
        .iter()
        .map(|s| {
            let name = s.as_str_name().trim_start_matches("SEVERITY_").to_lowercase();
            limit(format!("limit ({name})"), norms.respond_within(*s))
        })
        .collect();
    let check_limit = [limit("limit".into(), norms.comm_check_answer_within)];
    Ok([
        charts::scatter("Time to response", &series(responses), &response_limits)?,
        charts::scatter(
            "Communication checks answered by the node",
            &series(machines),
            &check_limit,
        )?,
        charts::scatter(
            "Communication checks answered by a person",
            &series(people),
            &check_limit,
        )?,
    ])
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
    let [response_chart, check_chart, human_check_chart] = charts(ledger, &agreement.norms)?;
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
                human_check_chart,
                reasons => reasons(ledger),
                withheld => &ledger.withheld,
            })
        })
        .map_err(|e| e.to_string())
}
