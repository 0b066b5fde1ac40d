//! The compliance report an auditor opens, prints and archives: one
//! self-contained HTML file (no script, font or style fetched from
//! anywhere) with the log's verification, the witnessed checkpoints and
//! forks, per party and norm how many steps were owed, met and missed with
//! median and 95th-percentile times against the agreed limit, a timeline of
//! each notice thread, charts of answer times, and the agreement in force.
//! Everything is read from the log (`ledger.rs`), rendered by a template
//! engine, the charts by a plotting crate (`charts.rs`).

mod charts;
mod figures;
mod ledger;

pub use figures::{Figure, figures};
pub use ledger::{Ledger, Thread};

use figures::{ms, words};

use minijinja::{Environment, context};
use serde::Serialize;

use crate::agreement::SignedAgreement;
use crate::clock;
use crate::log::verify::Report as Verified;
use crate::proto::{NormEventKind, NoticeKind, ResponseStatus};

/// The page's template, with its style inline.
const TEMPLATE: &str = include_str!("report.html");

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
