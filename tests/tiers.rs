//! Who can read what: a log's entries commit to the messages they record,
//! so the log can be exported and verified by anyone while each envelope
//! reaches only readers cleared for its TLP.

mod common;

use std::path::{Path, PathBuf};

use common::{Cluster, FAST_NORMS, hotline_json, notice};
use hotline::proto::Tlp;

const SECRET: &str = "Wiper malware at a regional grid operator (AMBER)";
/// What every roster `hotline init` writes holds (a roster is TLP:AMBER:
/// people's names, roles, languages and certificates).
const ROSTER: &str = "[[contact]]";
const PUBLIC: &str = "Advisory for everyone: patch the historians (CLEAR)";

/// PER sends CHL an AMBER and a CLEAR notice; returns once CHL's receipts
/// for both are logged at PER.
async fn two_notices() -> Cluster {
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    let amber = c.send(0, notice(&["CHL"], SECRET)).await;
    let mut clear = notice(&["CHL"], PUBLIC);
    clear.tlp = Tlp::Clear as i32;
    let clear = c.send(0, clear).await;
    for id in [amber, clear] {
        c.until_receipts(0, &id, 1).await;
    }
    c
}

/// Every file under `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            match p.is_dir() {
                true => todo.push(p),
                false => found.push(p),
            }
        }
    }
    found
}

/// Every file under `dir` whose bytes contain `text`.
fn files_holding(dir: &Path, text: &str) -> Vec<PathBuf> {
    files(dir)
        .into_iter()
        .filter(|p| {
            std::fs::read(p)
                .unwrap()
                .windows(text.len())
                .any(|w| w == text.as_bytes())
        })
        .collect()
}

/// Runs `hotline audit export` of node `i`'s log into a new directory, with `extra` flags.
fn export(c: &Cluster, i: usize, extra: &[&str]) -> (tempfile::TempDir, serde_json::Value) {
    let out = tempfile::tempdir().unwrap();
    let data = c.configs[i].data.to_str().unwrap().to_owned();
    let mut args = vec![
        "audit",
        "export",
        "--data",
        &data,
        "--out",
        out.path().to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let (ok, v) = hotline_json(&args);
    assert!(ok, "{v}");
    (out, v)
}

fn verify_export(dir: &Path, vkey: &str) -> (bool, serde_json::Value) {
    hotline_json(&["audit", "verify", "--export", dir.to_str().unwrap(), "--vkey", vkey])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_export_holds_no_byte_of_an_amber_notice_and_verifies_counting_it_withheld() {
    let c = two_notices().await;
    let vkey = c.key(0).verifier().to_string();
    let (out, v) = export(&c, 0, &[]);
    assert_eq!(v["envelopes_up_to"], "CLEAR", "{v}");
    assert!(
        files_holding(out.path(), SECRET).is_empty(),
        "the AMBER title is in the public tier"
    );
    let public = files_holding(out.path(), PUBLIC);
    assert!(
        public.len() == 1 && public[0].starts_with(out.path().join("envelope")),
        "the CLEAR notice's envelope is in the public tier: {public:?}"
    );
    let (ok, report) = verify_export(out.path(), &vkey);
    assert!(ok, "{report}");
    // The notice and both rosters (people's names) are AMBER: each is counted, none passed over.
    assert_eq!(report["withheld"], v["withheld"], "{report}");
    assert_eq!(report["withheld"]["AMBER"], 3, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gos_sumdb_tlog_accepts_the_public_export_entry_by_entry() {
    let c = two_notices().await;
    let vkey = c.key(0).verifier().to_string();
    let (out, v) = export(&c, 0, &[]);
    let Some((ok, said)) = common::go_tlogcheck(out.path(), &vkey) else {
        return;
    };
    assert!(ok, "{said}");
    let checked: serde_json::Value = serde_json::from_str(said.trim()).unwrap();
    assert_eq!(checked["entries"], v["size"], "{said}");

    // A changed byte in an entry bundle is refused by Go too.
    let bundle = files(&out.path().join("tile/entries")).pop().expect("an entry bundle");
    let mut bytes = std::fs::read(&bundle).unwrap();
    bytes[40] ^= 0x01;
    std::fs::write(&bundle, bytes).unwrap();
    let (ok, said) = common::go_tlogcheck(out.path(), &vkey).unwrap();
    assert!(!ok && said.contains("invalid transparency proof"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_up_to_amber_carries_the_notice_sealed_and_bound_to_its_entry() {
    let c = two_notices().await;
    let vkey = c.key(0).verifier().to_string();
    let (out, v) = export(&c, 0, &["--envelopes-up-to", "amber"]);
    assert_eq!(v["withheld"], serde_json::json!({}), "{v}");
    let (ok, report) = verify_export(out.path(), &vkey);
    assert!(ok, "{report}");
    assert_eq!(report["withheld"], serde_json::json!({}), "{report}");
    // Even this tier holds the AMBER notice sealed: ciphertext only a recipient opens.
    assert!(files_holding(out.path(), SECRET).is_empty());
    let amber = c
        .node(0)
        .read(|db| hotline::state::notices_after(db, None, 10))
        .unwrap()
        .into_iter()
        .find(|m| m.envelope.payload_type == hotline::envelope::SEALED_TYPE)
        .expect("the AMBER notice, sealed");
    let sha = <sha2::Sha256 as sha2::Digest>::digest(prost::Message::encode_to_vec(&amber.envelope));
    let held = out.path().join("envelope").join(hex::encode(sha));

    // The envelope is bound to the commitment its entry holds: a changed byte is named.
    let mut bytes = std::fs::read(&held).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&held, bytes).unwrap();
    let (ok, report) = verify_export(out.path(), &vkey);
    assert!(!ok, "{report}");
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains("the envelope kept beside the log does not match the SHA-256 the entry names"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_amber_title_and_the_rosters_are_in_no_byte_of_either_store_or_backup_and_the_operator_still_reads_them() {
    let c = two_notices().await;
    let backups = tempfile::tempdir().unwrap();
    // Backups first: reading a live node's database files from its own process and closing them
    // drops the process's POSIX locks on them, and a backup process opening the store after
    // that may take itself for its only user and truncate the WAL index the node has mapped.
    for i in [0, 1] {
        let file = backups.path().join(format!("{i}.hotline-backup"));
        let config = c.configs[i].path.to_str().unwrap().to_owned();
        let (ok, v) = tokio::task::spawn_blocking(move || {
            hotline_json(&["backup", "--config", &config, "--out", file.to_str().unwrap()])
        })
        .await
        .unwrap();
        assert!(ok, "{v}");
    }
    for i in [0, 1] {
        let dir = c.configs[i].data.clone();
        assert!(
            files_holding(&dir, SECRET).is_empty(),
            "node {i}'s files hold the AMBER title"
        );
        // The node's own roster files (its configuration, beside the data here) aside.
        let stored = files_holding(&dir, ROSTER)
            .into_iter()
            .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with("roster."))
            .collect::<Vec<_>>();
        assert!(
            stored.is_empty(),
            "node {i}'s stores hold a roster in clear: {stored:?}"
        );
    }
    assert!(
        files_holding(backups.path(), SECRET).is_empty(),
        "a backup holds the AMBER title"
    );
    assert!(
        files_holding(backups.path(), ROSTER).is_empty(),
        "a backup holds a roster in clear"
    );
    // Each node still knows both rosters: PER's operator reads CHL's.
    let roster = c
        .operator(0)
        .get_roster(hotline::proto::GetRosterRequest { party: "CHL".into() })
        .await
        .unwrap()
        .into_inner();
    assert!(String::from_utf8_lossy(&roster.signed_roster).contains("CHL duty officer"));
    let listed = c
        .operator(0)
        .list_notices(hotline::proto::ListNoticesRequest { limit: 0 })
        .await
        .unwrap()
        .into_inner()
        .notices;
    assert!(
        listed
            .iter()
            .any(|s| s.notice.as_ref().is_some_and(|n| n.title == SECRET))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pg_dump_of_a_node_on_postgresql_holds_no_byte_of_the_amber_title_or_a_roster() {
    if common::test_postgres().is_none() {
        eprintln!("not run on SQLite: a pg_dump is of a node on PostgreSQL (the PostgreSQL pass runs it)");
        return;
    }
    let c = two_notices().await;
    // pg_dump writes bytea columns in hex: look for the title in either form.
    let hex: String = SECRET.bytes().map(|b| format!("{b:02x}")).collect();
    for i in [0, 1] {
        let url = hotline::store::postgres_url(&c.configs[i].data)
            .unwrap()
            .expect("a node on PostgreSQL");
        let out = std::process::Command::new("pg_dump")
            .args(["--dbname", &url])
            .output()
            .expect("pg_dump, from the PostgreSQL client");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let dump = String::from_utf8_lossy(&out.stdout).to_lowercase();
        assert!(
            dump.contains("envelopes"),
            "node {i}: the dump holds the stores' tables"
        );
        assert!(
            !dump.contains(&SECRET.to_lowercase()),
            "node {i}: the dump holds the AMBER title"
        );
        assert!(
            !dump.contains(&hex),
            "node {i}: the dump holds the AMBER title as bytea"
        );
        let roster: String = ROSTER.bytes().map(|b| format!("{b:02x}")).collect();
        assert!(
            !dump.contains(&ROSTER.to_lowercase()) && !dump.contains(&roster),
            "node {i}: the dump holds a roster in clear"
        );
        // The same dump does hold the CLEAR notice's title, so the search would find one.
        let public: String = PUBLIC.bytes().map(|b| format!("{b:02x}")).collect();
        assert!(
            dump.contains(&PUBLIC.to_lowercase()) || dump.contains(&public),
            "node {i}: the CLEAR title"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_entry_of_a_notice_says_who_when_and_how_secret_but_not_what() {
    let c = two_notices().await;
    for i in [0, 1] {
        let entries = c.log_entries(i);
        let meta = entries
            .iter()
            .filter_map(hotline::log::entry::meta)
            .find(|m| m.kind == "notice" && m.tlp() == Tlp::Amber)
            .expect("the AMBER notice's entry");
        assert_eq!((meta.from.as_str(), meta.to.clone()), ("PER", vec!["CHL".to_owned()]));
        assert_eq!(meta.severity(), hotline::proto::Severity::High);
        // Every entry, as stored and hashed, on either engine.
        let title_in_an_entry = entries.iter().any(|e| {
            prost::Message::encode_to_vec(e)
                .windows(SECRET.len())
                .any(|w| w == SECRET.as_bytes())
        });
        assert!(!title_in_an_entry, "node {i}: the title is in an entry");
    }
}

/// The TLS files of node `i`'s auditor certificate and CA, and its address, as `hotline audit --node` takes them.
fn auditor_args(c: &Cluster, i: usize) -> Vec<String> {
    let dir = c.configs[i].path.parent().unwrap();
    let at = |f: &str| dir.join(f).to_str().unwrap().to_owned();
    let addr = c.nodes[i].as_ref().unwrap().addr;
    vec![
        "--node".into(),
        format!("https://{addr}"),
        "--ca".into(),
        at("tls/ca.pem"),
        "--cert".into(),
        at("tls/auditor.pem"),
        "--cert-key".into(),
        at("tls/auditor.key"),
    ]
}

/// PER and CHL, each node's auditor certificate cleared for `tlp`.
async fn with_auditor_cleared_for(tlp: Tlp) -> Cluster {
    Cluster::start_with(&["PER", "CHL"], FAST_NORMS, |config| {
        for (local, _) in &mut config.locals {
            if local.role == hotline::tls::Role::Auditor {
                local.clearance = tlp;
            }
        }
    })
    .await
}

/// A channel to PER's node with its auditor certificate.
fn auditor_channel(c: &Cluster) -> tonic::transport::Channel {
    let dir = c.configs[0].path.parent().unwrap();
    let auditor = hotline::tls::CertKey {
        cert: std::fs::read_to_string(dir.join("tls/auditor.pem")).unwrap(),
        key: std::fs::read_to_string(dir.join("tls/auditor.key")).unwrap(),
    };
    let endpoint = format!("https://{}", c.nodes[0].as_ref().unwrap().addr);
    hotline::transport::channel(&endpoint, &c.configs[0].ca_pem().unwrap(), &auditor).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_cleared_for_amber_reads_the_sealed_notice_over_the_audit_service_checked_against_its_commitment() {
    let c = with_auditor_cleared_for(Tlp::Amber).await;
    let amber = c.send(0, notice(&["CHL"], SECRET)).await;
    c.until_held(1, &amber).await;
    let channel = auditor_channel(&c);
    let mut audit = hotline::proto::audit_client::AuditClient::new(channel);
    let mut entries = audit
        .get_entries(hotline::proto::GetEntriesRequest { start: 0, end: 0 })
        .await
        .unwrap()
        .into_inner();
    let mut read = None;
    while let Some(e) = entries.message().await.unwrap() {
        let Some(opened) = e.opened else { continue };
        let env: hotline::proto::Envelope = prost::Message::decode(&e.envelope[..]).unwrap();
        assert_eq!(
            env.payload_type,
            hotline::envelope::SEALED_TYPE,
            "the envelope stays sealed"
        );
        let notice =
            hotline::opener::reveal(&env, &opened.salt, &opened.body).expect("the body is the one committed to");
        let mut altered = opened.body.clone();
        altered[4] ^= 1;
        assert!(
            hotline::opener::reveal(&env, &opened.salt, &altered).is_err(),
            "another body is refused"
        );
        read = Some(notice);
    }
    let notice: hotline::proto::Notice =
        prost::Message::decode(&read.expect("the sealed notice, opened").payload[..]).unwrap();
    assert_eq!(notice.title, SECRET);

    // The report it builds reads the notice; nothing is withheld.
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("report.html");
    let mut args = vec!["report".to_owned(), "--out".into(), file.to_str().unwrap().into()];
    args.extend(auditor_args(&c, 0));
    args.extend(["--vkey".to_owned(), c.key(0).verifier().to_string()]);
    let (ok, v) =
        tokio::task::spawn_blocking(move || hotline_json(&args.iter().map(String::as_str).collect::<Vec<_>>()))
            .await
            .unwrap();
    assert!(ok && v["valid"] == true, "{v}");
    assert!(v["withheld"].as_object().is_none_or(|w| w.is_empty()), "{v}");
    assert!(std::fs::read_to_string(&file).unwrap().contains(SECRET));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_cleared_for_green_gets_the_amber_notice_as_a_commitment_and_a_valid_report_naming_it() {
    let c = with_auditor_cleared_for(Tlp::Green).await;
    let amber = c.send(0, notice(&["CHL"], SECRET)).await;
    c.until_held(1, &amber).await;
    c.until_receipts(0, &amber, 1).await;
    let vkey = c.key(0).verifier().to_string();
    let node = auditor_args(&c, 0);
    let args = |first: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = first.iter().map(|s| s.to_string()).collect();
        a.extend(node.iter().cloned());
        a.extend(["--vkey".to_owned(), vkey.clone()]);
        a
    };
    let run = |a: Vec<String>| async move {
        tokio::task::spawn_blocking(move || hotline_json(&a.iter().map(String::as_str).collect::<Vec<_>>()))
            .await
            .unwrap()
    };

    // Over the Audit service every entry verifies; the AMBER envelopes (the notice, two rosters) are counted withheld.
    let (ok, v) = run(args(&["audit", "verify"])).await;
    assert!(ok, "{v}");
    assert_eq!(v["withheld"]["AMBER"], 3, "{v}");

    // The report it builds is VALID, counts the notice's steps, and names what it could not read.
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("report.html");
    let mut report = args(&["report"]);
    report.extend(["--out".to_owned(), file.to_str().unwrap().to_owned()]);
    let (ok, v) = run(report).await;
    assert!(ok && v["valid"] == true, "{v}");
    assert_eq!(v["withheld"]["AMBER"], 3, "{v}");
    let html = std::fs::read_to_string(&file).unwrap();
    assert!(!html.contains(SECRET), "the report shows the AMBER title");
    assert!(
        html.contains(&amber) && html.contains("not readable by this reader, beyond its clearance or sealed"),
        "the notice is listed by its entry"
    );
    assert!(
        html.contains(r#"data-withheld="AMBER">3 TLP:AMBER"#),
        "what was withheld is named"
    );

    // The Operator service's reads hold to the same clearance.
    let channel = auditor_channel(&c);
    let mut client = hotline::proto::operator_client::OperatorClient::new(channel);
    let refused = client
        .get_notice(hotline::proto::GetNoticeRequest { id: amber.clone() })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("TLP:AMBER") && refused.message().contains("TLP:GREEN"),
        "{refused:?}"
    );
    let listed = client
        .list_notices(hotline::proto::ListNoticesRequest { limit: 0 })
        .await
        .unwrap()
        .into_inner()
        .notices;
    let shown = listed[0].notice.as_ref().unwrap();
    assert_eq!(
        (shown.id.as_str(), shown.title.as_str(), shown.summary.as_str()),
        (amber.as_str(), "", "")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_named_in_the_agreement_reads_the_public_tier_and_one_not_named_is_refused_at_the_handshake() {
    let (_, named, table) = common::observer("OSCE");
    let (_, stranger, _) = common::observer("NOPE");
    let dir = tempfile::tempdir().unwrap();
    let made = hotline::setup::local_cluster_with(dir.path(), &["PER", "CHL"], FAST_NORMS, &table)
        .await
        .unwrap();
    let c = Cluster::start_made(dir, made, |_| {}).await;
    let amber = c.send(0, notice(&["CHL"], SECRET)).await;
    let mut clear = notice(&["CHL"], PUBLIC);
    clear.tlp = Tlp::Clear as i32;
    let clear = c.send(0, clear).await;
    for id in [&amber, &clear] {
        c.until_receipts(0, id, 1).await;
    }
    let endpoint = format!("https://{}", c.nodes[0].as_ref().unwrap().addr);
    let ca = c.configs[0].ca_pem().unwrap();
    let audit = |cert: &hotline::tls::CertKey| {
        let channel = hotline::transport::channel(&endpoint, &ca, cert).unwrap();
        hotline::proto::audit_client::AuditClient::new(channel)
    };

    // The named observer verifies PER's whole log, reading the CLEAR notice and nothing above it.
    let key = c.key(0).verifier().clone();
    let report = hotline::audit::verify_node(&endpoint, audit(&named), &key, |_, _| {})
        .await
        .unwrap();
    assert_eq!(report.withheld.get("AMBER"), Some(&3), "{:?}", report.withheld);
    let mut entries = audit(&named)
        .get_entries(hotline::proto::GetEntriesRequest { start: 0, end: 0 })
        .await
        .unwrap()
        .into_inner();
    let mut read = Vec::new();
    while let Some(e) = entries.message().await.unwrap() {
        read.extend_from_slice(&e.data);
        read.extend_from_slice(&e.envelope);
    }
    let has = |text: &str| read.windows(text.len()).any(|w| w == text.as_bytes());
    assert!(has(PUBLIC) && !has(SECRET), "the observer reads the public tier only");

    // Nothing else of the node is open to it.
    let channel = hotline::transport::channel(&endpoint, &ca, &named).unwrap();
    let refused = hotline::proto::operator_client::OperatorClient::new(channel)
        .list_notices(hotline::proto::ListNoticesRequest { limit: 0 })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("observer OSCE"), "{refused:?}");

    // An observer the agreement does not name cannot complete the TLS handshake.
    let refused = audit(&stranger)
        .get_checkpoint(hotline::proto::GetCheckpointRequest {})
        .await
        .unwrap_err();
    // The server refuses it at the handshake (UnknownCA), which the client sees as the TLS
    // alert or as the connection closing under it, depending on which it reads first;
    // never as an answer from a handler.
    let said = format!("{refused:?}");
    assert!(
        said.contains("tonic::transport::Error") && !matches!(refused.code(), tonic::Code::PermissionDenied),
        "{said}"
    );
}
