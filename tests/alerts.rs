//! Alerts page a duty officer: the configured command gets one JSON line on
//! its standard input per alerted event, within a per-kind rate limit, and
//! a command that fails or hangs never holds up the node.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Cluster, FAST_NORMS, notice};
use hotline::alerts::{AlertConfig, AlertKind, RateLimit};
use hotline::proto::{ApproveAmendmentRequest, NormEventKind, ProposeAmendmentRequest};

/// A cluster of PER and CHL where PER runs `command` for every alert.
async fn alerting(command: Vec<String>, timeout: &str) -> Cluster {
    let alerts = every_kind(command, timeout);
    Cluster::start_with(&["PER", "CHL"], FAST_NORMS, move |config| {
        if config.party == "PER" {
            config.alerts = Some(alerts.clone());
        }
    })
    .await
}

/// `[alerts]` settings running `command` for every kind, within `timeout`.
fn every_kind(command: Vec<String>, timeout: &str) -> (AlertConfig, Duration) {
    let alerts = AlertConfig {
        command,
        kinds: AlertKind::ALL.to_vec(),
        per_minute: 100,
        timeout: timeout.to_owned(),
    };
    (alerts, hotline::clock::parse_duration(timeout).unwrap())
}

/// PER proposes version 2 of the agreement and CHL approves it.
async fn adopt_version_2(c: &Cluster) {
    let current = hotline::agreement::SignedAgreement::parse(&c.node(0).in_force().signed.to_bytes()).unwrap();
    let v2 = hotline::setup::amended_text(&current, &hotline::setup::Changes::default());
    c.operator(0)
        .propose_amendment(ProposeAmendmentRequest {
            signed_note: v2.into_bytes(),
            reason: "a new title".into(),
        })
        .await
        .unwrap();
    common::awaited("CHL approves version 2", || async {
        c.operator(1)
            .approve_amendment(ApproveAmendmentRequest {
                version: 2,
                ..Default::default()
            })
            .await
            .ok()
    })
    .await;
}

/// A command appending what it reads to `file`.
fn append_to(file: &Path) -> Vec<String> {
    vec!["sh".into(), "-c".into(), format!("cat >> '{}'", file.display())]
}

/// The JSON lines in `file` once it holds `n`.
async fn lines(file: &PathBuf, n: usize) -> Vec<serde_json::Value> {
    common::awaited(&format!("{n} alert lines"), || async {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        (lines.len() >= n).then_some(lines)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alert_command_reads_one_json_line_per_missed_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("alerts.jsonl");
    let c = alerting(append_to(&file), "10s").await;
    let id = c.send(0, notice(&["CHL"], "Nobody answers")).await;
    let missed = |c: &Cluster| {
        c.node(0)
            .read(|db| hotline::state::norm_events(db, Some(&id), 100))
            .unwrap()
            .iter()
            .filter(|e| e.kind() == NormEventKind::DeadlineMissed)
            .count()
    };
    c.eventually_advancing(20, Duration::from_secs(1), "acknowledgement and response missed", |c| {
        missed(c) == 2
    })
    .await;
    let got = lines(&file, 2).await;
    // Every line is a missed deadline of this notice, one per clock, each sent (none held back).
    let mut deadlines: Vec<&str> = got
        .iter()
        .map(|l| {
            assert_eq!(
                (l["node"].as_str(), l["kind"].as_str()),
                (Some("PER"), Some("deadline_missed")),
                "{l}"
            );
            assert_eq!(l["event"]["message_id"], id.as_str(), "{l}");
            assert_eq!(l["held_back"], 0, "{l}");
            l["event"]["deadline"].as_str().unwrap()
        })
        .collect();
    deadlines.sort();
    assert_eq!(deadlines, ["DEADLINE_ACKNOWLEDGE", "DEADLINE_RESPONSE"]);
    assert_eq!(got.len(), missed(&c), "one line per DEADLINE_MISSED logged, no more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adopted_agreement_version_is_alerted() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("alerts.jsonl");
    let c = alerting(append_to(&file), "10s").await;
    adopt_version_2(&c).await;
    let got = lines(&file, 1).await;
    assert_eq!(got[0]["kind"], "agreement_changed", "{}", got[0]);
    assert_eq!(got[0]["event"]["agreement_version"], 2, "{}", got[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_a_reload_puts_in_force_page_from_the_next_event() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("alerts.jsonl");
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    let mut reloaded = c.configs[0].clone();
    reloaded.alerts = Some(every_kind(append_to(&file), "10s"));
    let reload = c.node(0).reload(&c.configs[0], &reloaded).await;
    assert!(
        reload.applied.iter().any(|a| a.starts_with("alerts: ")),
        "{:?}",
        reload.applied
    );
    adopt_version_2(&c).await;
    let got = lines(&file, 1).await;
    assert_eq!(got[0]["kind"], "agreement_changed", "{}", got[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_or_hanging_alert_command_never_holds_up_the_node() {
    for command in [
        vec!["false".to_owned()],
        vec!["sleep".into(), "1000".into()],
        vec!["/no/such/program".into()],
    ] {
        let c = alerting(command, "200ms").await;
        let first = c.send(0, notice(&["CHL"], "Nobody answers")).await;
        c.eventually_advancing(20, Duration::from_secs(1), "the response deadline missed", |c| {
            c.node(0)
                .read(|db| hotline::state::norm_events(db, Some(&first), 100))
                .unwrap()
                .iter()
                .any(|e| e.kind() == NormEventKind::DeadlineMissed)
        })
        .await;
        let next = c.send(0, notice(&["CHL"], "Still working")).await;
        c.eventually(10, "the next notice receipted", |c| {
            c.node(0).read(|db| hotline::state::receipts(db, &next)).unwrap().len() == 1
        })
        .await;
    }
}

#[test]
fn past_the_limit_alerts_are_held_back_per_kind_and_counted_in_the_next_minutes_first() {
    let mut limit = RateLimit::new(2);
    assert_eq!(limit.admit(AlertKind::DeadlineMissed, 0), Some(0));
    assert_eq!(limit.admit(AlertKind::DeadlineMissed, 1_000), Some(0));
    assert_eq!(limit.admit(AlertKind::DeadlineMissed, 2_000), None);
    assert_eq!(limit.admit(AlertKind::DeadlineMissed, 3_000), None);
    assert_eq!(
        limit.admit(AlertKind::CheckpointFork, 4_000),
        Some(0),
        "each kind has its own limit"
    );
    assert_eq!(
        limit.admit(AlertKind::DeadlineMissed, 60_000),
        Some(2),
        "a new minute; two were held back"
    );
    assert_eq!(limit.admit(AlertKind::DeadlineMissed, 61_000), Some(0));
}
