//! `hotline audit reconcile`: several parties' public exports read together,
//! every fact that links them checked, and each contradiction named with the
//! signed statements that prove it.

mod common;

use std::path::Path;

use common::{Cluster, FAST_NORMS, hotline_json, notice};

/// Stops every node (so each export is its party's whole log), exports
/// each log's public tier, and reconciles them.
async fn exports(c: &mut Cluster) -> Vec<tempfile::TempDir> {
    for i in 0..c.configs.len() {
        c.stop(i).await;
    }
    c.configs
        .iter()
        .map(|config| {
            let out = tempfile::tempdir().unwrap();
            let (ok, v) = hotline_json(&[
                "audit",
                "export",
                "--data",
                config.data.to_str().unwrap(),
                "--out",
                out.path().to_str().unwrap(),
            ]);
            assert!(ok, "{v}");
            out
        })
        .collect()
}

fn reconcile(c: &Cluster, dirs: &[&Path]) -> (bool, serde_json::Value) {
    let agreement = c.configs[0].agreement.to_str().unwrap().to_owned();
    let mut args = vec!["audit", "reconcile", "--agreement", &agreement];
    args.extend(dirs.iter().map(|d| d.to_str().unwrap()));
    hotline_json(&args)
}

/// PER sends a notice to CHL and ARG, and both receipt it.
async fn exchanged() -> (Cluster, String) {
    let c = Cluster::start(&["PER", "CHL", "ARG"], FAST_NORMS).await;
    let id = c.send(0, notice(&["CHL", "ARG"], "Wiper malware")).await;
    c.until_receipts(0, &id, 2).await;
    (c, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_logs_of_a_clean_exchange_reconcile_with_no_finding() {
    let (mut c, _) = exchanged().await;
    let dirs = exports(&mut c).await;
    let (ok, v) = reconcile(&c, &dirs.iter().map(|d| d.path()).collect::<Vec<_>>());
    assert!(ok, "{v:#}");
    assert_eq!(v["findings"].as_array().unwrap().len(), 0, "{v:#}");
    assert!(v["messages"].as_u64().unwrap() >= 2, "{v}");
    assert_eq!(v["messages"], v["delivered"], "{v}");
    assert!(
        v["receipts"].as_u64().unwrap() >= 2 && v["checkpoints"].as_u64().unwrap() > 0,
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_received_notice_dropped_from_a_rewritten_log_is_found_with_the_receipt_that_proves_it() {
    let (mut c, id) = exchanged().await;
    // CHL writes to PER afterwards: PER holds a checkpoint of CHL's log past the notice.
    let later = c.send(1, notice(&["PER"], "Nothing seen here")).await;
    c.until_receipts(1, &later, 1).await;
    let dirs = exports(&mut c).await;
    // CHL hands over its log without the notice it received, re-signed.
    let dropped = c
        .log_entries(1)
        .iter()
        .position(|e| hotline::log::entry::meta(e).is_some_and(|m| m.id == id && m.kind == "notice"))
        .expect("CHL logged the notice") as u64;
    let rewritten = tempfile::tempdir().unwrap();
    hotline::log::export::rewrite_without(dirs[1].path(), rewritten.path(), dropped, &c.key(1)).unwrap();
    let (ok, v) = reconcile(&c, &[dirs[0].path(), rewritten.path(), dirs[2].path()]);
    assert!(!ok, "{v:#}");
    let findings = v["findings"].as_array().unwrap();
    let denied = findings
        .iter()
        .find(|f| f["kind"] == "denied")
        .unwrap_or_else(|| panic!("{v:#}"));
    assert_eq!(
        (denied["party"].as_str(), denied["message_id"].as_str()),
        (Some("CHL"), Some(id.as_str()))
    );
    let evidence = denied["evidence"].to_string();
    assert!(
        evidence.contains("CHL's signed receipt") && evidence.contains("hotline.example/CHL"),
        "{evidence}"
    );
    // The checkpoint CHL signed when it wrote to PER, which PER holds, forks from the rewrite.
    assert!(
        findings.iter().any(|f| f["kind"] == "fork" && f["party"] == "CHL"),
        "{v:#}"
    );
    assert!(
        findings.iter().all(|f| f["party"] == "CHL"),
        "only CHL is at fault: {v:#}"
    );
    // The joint report names it too.
    let page = tempfile::tempdir().unwrap();
    let file = page.path().join("joint.html");
    let agreement = c.configs[0].agreement.to_str().unwrap().to_owned();
    let out = common::hotline(&[
        "audit",
        "reconcile",
        "--agreement",
        &agreement,
        "--report",
        file.to_str().unwrap(),
        dirs[0].path().to_str().unwrap(),
        rewritten.path().to_str().unwrap(),
        dirs[2].path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let html = std::fs::read_to_string(&file).unwrap();
    assert!(html.contains(r#"data-kind="denied" data-party="CHL""#) && html.contains("CONTRADICTED"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_to_a_party_that_is_down_is_undelivered_not_denied() {
    let mut c = Cluster::start(&["PER", "CHL", "ARG"], FAST_NORMS).await;
    c.stop(2).await;
    let id = c.send(0, notice(&["CHL", "ARG"], "Wiper malware")).await;
    c.until_receipts(0, &id, 1).await;
    let dirs = exports(&mut c).await;
    let (ok, v) = reconcile(&c, &dirs.iter().map(|d| d.path()).collect::<Vec<_>>());
    assert!(ok, "{v:#}");
    assert_eq!(v["undelivered"], 1, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_the_agreement_does_not_name_is_refused_naming_it() {
    let (mut c, _) = exchanged().await;
    let dirs = exports(&mut c).await;
    let mut stranger = Cluster::start(&["EST"], FAST_NORMS).await;
    let theirs = exports(&mut stranger).await;
    let agreement = c.configs[0].agreement.to_str().unwrap().to_owned();
    let (ours, theirs) = (dirs[0].path().to_str().unwrap(), theirs[0].path().to_str().unwrap());
    let out = common::hotline(&["audit", "reconcile", "--agreement", &agreement, ours, theirs]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(theirs) && err.contains("hotline.example/EST"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_deadline_one_side_hides_is_named_and_the_compliance_figures_differ() {
    let mut c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    let mut n = notice(&["CHL"], "Critical: need help");
    n.severity = hotline::proto::Severity::Critical as i32; // respond within 2 s
    let id = c.send(0, n).await;
    c.until_held(1, &id).await;
    c.clock.advance(std::time::Duration::from_secs(2)); // the agreed 2 s pass
    let missed_at = |c: &Cluster, i: usize| {
        c.log_entries(i).iter().position(|e| {
            matches!(&e.body, Some(hotline::proto::log_entry::Body::NormEvent(n))
                if n.message_id == id && n.deadline() == hotline::proto::Deadline::Response)
        })
    };
    c.eventually(10, "both sides log CHL's missed response", |c| {
        missed_at(c, 0).is_some() && missed_at(c, 1).is_some()
    })
    .await;
    // Later traffic: CHL's log runs well past the due time.
    c.clock.advance(std::time::Duration::from_secs(10));
    let mut later = notice(&["CHL"], "An advisory");
    later.tlp = hotline::proto::Tlp::Clear as i32;
    let later = c.send(0, later).await;
    c.until_held(1, &later).await;
    let hidden = missed_at(&c, 1).unwrap() as u64;
    let dirs = exports(&mut c).await;
    let (ok, v) = reconcile(&c, &[dirs[0].path(), dirs[1].path()]);
    assert!(ok, "both logged it: {v:#}");
    let response = |v: &serde_json::Value| {
        v["compliance"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["party"] == "CHL" && c["deadline"] == "response")
            .cloned()
            .unwrap_or_else(|| panic!("{v:#}"))
    };
    assert_eq!(
        (response(&v)["own"].as_u64(), response(&v)["counterparts"].as_u64()),
        (Some(1), Some(1))
    );

    // CHL hands over its log without its own record of the miss.
    let rewritten = tempfile::tempdir().unwrap();
    hotline::log::export::rewrite_without(dirs[1].path(), rewritten.path(), hidden, &c.key(1)).unwrap();
    let (ok, v) = reconcile(&c, &[dirs[0].path(), rewritten.path()]);
    assert!(!ok, "{v:#}");
    let clock = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "clock_disagrees")
        .unwrap_or_else(|| panic!("{v:#}"));
    assert_eq!(
        (clock["party"].as_str(), clock["message_id"].as_str()),
        (Some("CHL"), Some(id.as_str()))
    );
    assert!(
        clock["says"].as_str().unwrap().starts_with("PER logged CHL's response"),
        "{clock}"
    );
    assert_eq!(
        (response(&v)["own"].as_u64(), response(&v)["counterparts"].as_u64()),
        (Some(0), Some(1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_reconciles_running_nodes_read_over_their_audit_service() {
    let (_, observer, table) = common::observer("OSCE");
    let dir = tempfile::tempdir().unwrap();
    let made = hotline::setup::local_cluster_with(dir.path(), &["PER", "CHL"], FAST_NORMS, &table)
        .await
        .unwrap();
    let c = Cluster::start_made(dir, made, |_| {}).await;
    let id = c.send(0, notice(&["CHL"], "Wiper malware")).await;
    c.until_receipts(0, &id, 1).await;
    let files = tempfile::tempdir().unwrap();
    let (cert, key) = (files.path().join("osce.pem"), files.path().join("osce.key"));
    std::fs::write(&cert, &observer.cert).unwrap();
    std::fs::write(&key, &observer.key).unwrap();
    let agreement = hotline::agreement::SignedAgreement::load(&c.configs[0].agreement).unwrap();
    let endpoints: Vec<String> = agreement.agreement.parties.iter().map(|p| p.endpoint.clone()).collect();
    let mut args: Vec<String> = ["audit", "reconcile", "--agreement"].map(String::from).to_vec();
    args.push(c.configs[0].agreement.to_str().unwrap().into());
    args.extend([
        "--cert".into(),
        cert.to_str().unwrap().into(),
        "--cert-key".into(),
        key.to_str().unwrap().into(),
    ]);
    args.extend(endpoints);
    let (ok, v) =
        tokio::task::spawn_blocking(move || hotline_json(&args.iter().map(String::as_str).collect::<Vec<_>>()))
            .await
            .unwrap();
    assert!(ok, "{v:#}");
    assert_eq!(v["logs"].as_object().unwrap().len(), 2, "{v}");
    assert!(
        v["delivered"].as_u64().unwrap() >= 1 && v["findings"].as_array().unwrap().is_empty(),
        "{v:#}"
    );
}
