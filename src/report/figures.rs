//! How each party kept the norms, as the compliance report counts it from
//! the log: per party and norm, the steps owed, met within the agreed limit
//! and logged as missed, with median and 95th-percentile times.

use serde::Serialize;

use super::ledger::Ledger;
use crate::agreement::Agreement;
use crate::clock;
use crate::proto::{Deadline, NormEventKind, NoticeKind, ResponseStatus};

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

/// A duration in ms as the brief writes norms (`5m`).
pub(super) fn words(ms: i64) -> String {
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

/// A duration in ms.
pub(super) fn ms(d: std::time::Duration) -> i64 {
    d.as_millis() as i64
}

/// A notice's severity as the report names it (`high`).
pub(super) fn severity(n: &crate::proto::Notice) -> String {
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
