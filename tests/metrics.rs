//! Operations teams scrape `/metrics` in the Prometheus project's text
//! format: what the node counts moves as it works, and the figures read
//! from the database match what it holds.

mod common;

use common::{Cluster, FAST_NORMS, notice};
use openmetrics_parser::OpenMetricsValue;

/// Node `i`'s metrics, scraped and parsed as OpenMetrics.
async fn scrape(
    c: &Cluster,
    i: usize,
) -> openmetrics_parser::MetricsExposition<openmetrics_parser::OpenMetricsType, OpenMetricsValue> {
    let addr = c.nodes[i].as_ref().unwrap().metrics_addr.expect("metrics are served");
    let text = hotline::metrics::scrape(addr, hotline::metrics::OPENMETRICS)
        .await
        .unwrap();
    openmetrics_parser::openmetrics::parse_openmetrics(&text).unwrap_or_else(|e| panic!("{e:?}\n{text}"))
}

/// The value of the sample of `family` whose labels include `labels` (0 if none).
fn value(
    m: &openmetrics_parser::MetricsExposition<openmetrics_parser::OpenMetricsType, OpenMetricsValue>,
    family: &str,
    labels: &[(&str, &str)],
) -> f64 {
    let Some(f) = m.families.get(family) else { return 0.0 };
    f.iter_samples()
        .find(|s| {
            let set = s.get_labelset().unwrap();
            labels.iter().all(|(k, v)| set.get_label_value(k) == Some(*v))
        })
        .map(|s| match &s.value {
            OpenMetricsValue::Counter(c) => c.value.as_f64(),
            OpenMetricsValue::Gauge(g) => g.as_f64(),
            OpenMetricsValue::Histogram(h) => h.count.unwrap_or(0) as f64,
            other => panic!("{family}: {other:?}"),
        })
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_shows_deliveries_refusals_and_the_logs_figures_moving() {
    let c = Cluster::start_with(&["PER", "CHL"], FAST_NORMS, |config| {
        config.metrics = Some("127.0.0.1:0".parse().unwrap())
    })
    .await;
    let before = scrape(&c, 0).await;
    let id = c.send(0, notice(&["CHL"], "Counted")).await;
    c.eventually(10, "CHL's receipt", |c| {
        c.node(0).read(|db| hotline::state::receipts(db, &id)).unwrap().len() == 1
    })
    .await;
    let refused = c
        .operator(0)
        .get_notice(hotline::proto::GetNoticeRequest {
            id: "no-such-notice".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::NotFound);
    // Witnessed checkpoints may still be logged meanwhile: the size the
    // scrape shows lies between the log's sizes before and after it.
    let size_before = c.node(0).log().head().size as f64;
    let after = scrape(&c, 0).await;
    let size_after = c.node(0).log().head().size as f64;

    let receipted = [("peer", "CHL"), ("outcome", "receipted")];
    assert_eq!(
        value(&after, "hotline_deliveries", &receipted) - value(&before, "hotline_deliveries", &receipted),
        1.0
    );
    assert_eq!(value(&after, "hotline_refusals", &[("code", "NotFound")]), 1.0);
    let size = value(&after, "hotline_log_size", &[]);
    assert!(
        (size_before..=size_after).contains(&size),
        "{size} not in {size_before}..={size_after}"
    );
    assert!(value(&after, "hotline_log_size", &[]) > value(&before, "hotline_log_size", &[]));
    assert!(value(&after, "hotline_log_commit_seconds", &[]) > value(&before, "hotline_log_commit_seconds", &[]));
    assert_eq!(value(&after, "hotline_outbox_depth", &[("peer", "CHL")]), 0.0);
    // The notice's acknowledgement and response clocks run at PER, for CHL.
    assert_eq!(value(&after, "hotline_deadlines_running", &[("norm", "response")]), 1.0);
    // CHL checked the signatures of what PER delivered.
    assert!(value(&scrape(&c, 1).await, "hotline_signature_verify_seconds", &[]) >= 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_deadlines_and_communication_check_answers_are_counted() {
    let c = Cluster::start_with(&["PER", "CHL"], FAST_NORMS, |config| {
        config.metrics = Some("127.0.0.1:0".parse().unwrap())
    })
    .await;
    c.operator(0)
        .comm_check(hotline::proto::CommCheckRequest::default())
        .await
        .unwrap();
    common::awaited("the check answered", || async {
        let m = scrape(&c, 0).await;
        (value(
            &m,
            "hotline_comm_check_answer_seconds",
            &[("peer", "CHL"), ("human", "false")],
        ) == 1.0)
            .then_some(())
    })
    .await;
    c.send(0, notice(&["CHL"], "Never answered")).await;
    c.eventually_advancing(
        20,
        std::time::Duration::from_secs(1),
        "the response clock missed",
        |c| {
            c.node(0)
                .read(hotline::state::compliance)
                .unwrap()
                .iter()
                .any(|k| k.1 == hotline::proto::Deadline::Response && k.3 == 1)
        },
    )
    .await;
    let m = scrape(&c, 0).await;
    assert_eq!(value(&m, "hotline_deadlines_missed", &[("norm", "response")]), 1.0);
    assert!(
        value(
            &m,
            "hotline_norm_events",
            &[("kind", "deadline_missed"), ("norm", "response")]
        ) >= 1.0,
        "the DEADLINE_MISSED event counted"
    );
}

/// The families docs/auditors.md documents: (name as a classic parser
/// names the family, type).
fn documented_families() -> Vec<(String, String)> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/auditors.md")).unwrap();
    doc.lines()
        .filter_map(|l| {
            let mut cells = l.strip_prefix("| `hotline_")?.split('|');
            let name = cells.next()?.trim().trim_end_matches('`');
            let kind = cells.next()?.trim();
            Some((format!("hotline_{}", name.trim_end_matches("_total")), kind.to_owned()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_classic_scrape_parsed_by_prometheus_own_python_parser_has_every_documented_family_from_the_start() {
    let Some(python) = common::python_with(
        "prometheus_client",
        "parse the classic format with Prometheus' own parser",
    ) else {
        return;
    };
    let c = Cluster::start_with(&["PER", "CHL"], FAST_NORMS, |config| {
        config.metrics = Some("127.0.0.1:0".parse().unwrap())
    })
    .await;
    let addr = c.nodes[0].as_ref().unwrap().metrics_addr.unwrap();
    // As Prometheus asks when told to scrape the classic format.
    let text = hotline::metrics::scrape(addr, "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
        .await
        .unwrap();
    let parse = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
print(json.dumps({f.name: [f.type, len(f.samples)] for f in text_string_to_metric_families(sys.stdin.read())}))
"#;
    let mut child = std::process::Command::new(python)
        .args(["-c", parse])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}\n{text}", String::from_utf8_lossy(&out.stderr));
    let parsed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let documented = documented_families();
    assert!(documented.len() >= 12, "{documented:?}");
    for (name, kind) in &documented {
        let family = &parsed[name];
        assert_eq!(family[0], kind.as_str(), "{name}: {parsed}");
        assert!(
            family[1].as_u64() > Some(0),
            "{name} has samples at the start: {parsed}\n{text}"
        );
    }
    assert_eq!(
        parsed.as_object().unwrap().len(),
        documented.len(),
        "every family served is documented: {parsed}"
    );
    // Each peer, norm and code is there at zero: a rule sees 0, not nothing.
    for series in [
        r#"hotline_deliveries_total{peer="CHL",outcome="failed"} 0"#,
        r#"hotline_norm_events_total{kind="deadline_missed",norm="acknowledge"} 0"#,
        r#"hotline_refusals_total{code="PermissionDenied"} 0"#,
        r#"hotline_comm_check_answer_seconds_count{peer="CHL",human="true"} 0"#,
    ] {
        assert!(text.contains(series), "{series}\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_format_follows_the_scrapers_accept_header() {
    let c = Cluster::start_with(&["PER", "CHL"], FAST_NORMS, |config| {
        config.metrics = Some("127.0.0.1:0".parse().unwrap())
    })
    .await;
    let addr = c.nodes[0].as_ref().unwrap().metrics_addr.unwrap();
    let openmetrics = hotline::metrics::scrape(
        addr,
        "application/openmetrics-text;version=1.0.0;q=0.75,text/plain;version=0.0.4;q=0.5",
    )
    .await
    .unwrap();
    assert!(openmetrics.ends_with("# EOF\n"));
    assert!(openmetrics.contains("# TYPE hotline_deliveries counter\n"));
    for accept in ["", "text/plain; version=0.0.4"] {
        let classic = hotline::metrics::scrape(addr, accept).await.unwrap();
        assert!(!classic.contains("# EOF"), "{accept:?}");
        assert!(
            classic.contains("# TYPE hotline_deliveries_total counter\n"),
            "{accept:?}"
        );
    }
}

/// How many of `party`'s checkpoints node `i`'s log records as witnessed.
fn witnessed(c: &Cluster, i: usize, party: &str) -> usize {
    use hotline::proto::log_entry::Body;
    c.log_entries(i)
        .into_iter()
        .filter(|e| matches!(&e.body, Some(Body::WitnessedCheckpoint(w)) if w.party == party))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_sent_with_their_proofs_are_witnessed_without_a_call_to_the_peer() {
    let c = Cluster::start_with(&["PER", "CHL"], FAST_NORMS, |config| {
        config.metrics = Some("127.0.0.1:0".parse().unwrap())
    })
    .await;
    // The rosters both send at start are each one's first checkpoints to the
    // other: nothing shown before, nothing to prove from.
    c.eventually(10, "each witnessed a first checkpoint of the other's", |c| {
        witnessed(c, 1, "PER") >= 1 && witnessed(c, 0, "CHL") >= 1
    })
    .await;
    let asked = |m: &_, peer| value(m, "hotline_consistency_proofs_asked", &[("peer", peer)]);
    let before = [asked(&scrape(&c, 0).await, "CHL"), asked(&scrape(&c, 1).await, "PER")];
    // One notice at a time: each delivery carries a new checkpoint of PER's
    // and each receipt a new one of CHL's, each with its proof from the one
    // before, and each witnessed before the next is sent (a tenth of a
    // second apart at least, so each would otherwise have been asked for).
    for i in 1..=10 {
        let (per, chl) = (witnessed(&c, 1, "PER"), witnessed(&c, 0, "CHL"));
        let id = c.send(0, notice(&["CHL"], &format!("n{i}"))).await;
        c.until_receipts(0, &id, 1).await;
        c.eventually(10, "each witnessed the other's newest checkpoint", |c| {
            witnessed(c, 1, "PER") > per && witnessed(c, 0, "CHL") > chl
        })
        .await;
    }
    // At most one call each: the rosters' checkpoints can cross on the way,
    // and one that arrives after a later one is proven its prefix by a call.
    let after = [asked(&scrape(&c, 0).await, "CHL"), asked(&scrape(&c, 1).await, "PER")];
    let calls = [after[0] - before[0], after[1] - before[1]];
    assert!(
        calls.iter().all(|&n| n <= 1.0),
        "calls made to witness checkpoints that came with their proofs: {calls:?}"
    );
}
