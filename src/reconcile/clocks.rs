//! The clocks as each side logged them. An acknowledgement, a response, a
//! communication check's answer and a promised answer are each timed by
//! both parties: the one that owes the step and the one it is owed to (the
//! notice's sender). Both log `DEADLINE_MISSED` when it passes; a miss one
//! side logged and the other did not, though its log runs past the due time,
//! is a finding, and each party's misses are counted as its own log and as
//! its counterparts' logs show them.

use std::collections::{BTreeMap, HashMap};

use super::facts::{Facts, Missed};
use super::finding::{Compliance, Finding, Kind, Reconciliation};
use crate::proto::Deadline;

/// How far past a due time a log must run before its silence says the step
/// was met: a node's norms worker logs a miss moments after it is due.
const GRACE: time::Duration = time::Duration::seconds(5);

/// The steps both sides time (a receipt only its sender does).
fn both_time(d: Deadline) -> bool {
    matches!(
        d,
        Deadline::Acknowledge | Deadline::Response | Deadline::CommCheckAnswer | Deadline::Promise
    )
}

/// Who logged one step as missed, with the entry each logged it in.
type Loggers<'a> = Vec<(&'a str, &'a Missed)>;

fn name(d: Deadline) -> String {
    d.as_str_name().trim_start_matches("DEADLINE_").to_lowercase()
}

/// Compares the misses each side logged; fills `out.compliance`.
pub(super) fn clocks(logs: &BTreeMap<String, Facts>, out: &mut Reconciliation) {
    let senders: HashMap<&str, &str> = logs
        .iter()
        .flat_map(|(p, f)| f.sent.iter().map(move |m| (m.id.as_str(), p.as_str())))
        .collect();
    let mut missed: BTreeMap<(&str, &str, i32), Loggers> = BTreeMap::new();
    for (p, f) in logs {
        for m in f.missed.iter().filter(|m| both_time(m.deadline)) {
            missed
                .entry((m.party.as_str(), m.message_id.as_str(), m.deadline as i32))
                .or_default()
                .push((p, m));
        }
    }
    let mut compliance: BTreeMap<(String, String), Compliance> = BTreeMap::new();
    for ((owing, id, _), loggers) in &missed {
        let Some(owed_to) = senders.get(id).copied().filter(|s| s != owing) else {
            continue;
        };
        let (by, m) = loggers[0];
        let figures = compliance
            .entry((owing.to_string(), name(m.deadline)))
            .or_insert_with(|| Compliance {
                party: owing.to_string(),
                deadline: name(m.deadline),
                ..Compliance::default()
            });
        let logged = |side: &str| loggers.iter().any(|(l, _)| *l == side);
        figures.own += logged(owing) as u64;
        figures.counterparts += logged(owed_to) as u64;
        let Some(silent) = [*owing, owed_to]
            .into_iter()
            .find(|s| logs.contains_key(*s) && !logged(s))
        else {
            continue;
        };
        let runs_to = logs[silent].last;
        let (Some(last), Some(due)) = (runs_to, m.due) else {
            continue;
        };
        if last <= due + GRACE {
            out.beyond += 1;
            continue;
        }
        out.findings.push(Finding {
            kind: Kind::ClockDisagrees,
            party: owing.to_string(),
            message_id: id.to_string(),
            says: format!(
                "{by} logged {owing}'s {} for {id} as missed (due {}), but {silent}'s log, which runs to {}, does not",
                name(m.deadline),
                crate::clock::rfc3339(due),
                crate::clock::rfc3339(last)
            ),
            evidence: vec![
                (
                    format!("{by}'s entry {} logging the miss", m.index),
                    hex::encode(&m.entry),
                ),
                (format!("{by}'s checkpoint of its export"), logs[by].note.clone()),
                (
                    format!("{silent}'s checkpoint of its export"),
                    logs[silent].note.clone(),
                ),
            ],
        });
    }
    out.compliance = compliance.into_values().collect();
}
