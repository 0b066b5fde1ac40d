//! The signed agreement: validation names the field at fault, and a node
//! accepts it only when the quorum signed the exact text.

mod common;

use common::{agreement_text, parties, party_toml, signed_agreement};
use hotline::agreement::{AgreementError, SignedAgreement};
use hotline::clock;

#[test]
fn an_agreement_signed_by_every_party_verifies() {
    let p = parties(&["PER", "CHL", "ARG"]);
    let a = signed_agreement(&p, "", &[&p[0], &p[1], &p[2]]);
    assert_eq!(a.verify(clock::now()).unwrap(), vec!["PER", "CHL", "ARG"]);
    let reparsed = SignedAgreement::parse(&a.to_bytes()).unwrap();
    assert_eq!(reparsed.verify(clock::now()).unwrap().len(), 3);
}

#[test]
fn an_agreement_missing_one_signature_is_refused_and_names_the_party() {
    let p = parties(&["PER", "CHL", "ARG"]);
    let a = signed_agreement(&p, "", &[&p[0], &p[2]]);
    let err = SignedAgreement::parse(&a.to_bytes())
        .unwrap()
        .verify(clock::now())
        .unwrap_err();
    match err {
        AgreementError::NotSigned {
            signed,
            required,
            missing,
        } => {
            assert_eq!((signed, required), (2, 3));
            assert_eq!(missing, vec!["CHL"]);
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn a_stated_quorum_is_enough() {
    let p = parties(&["PER", "CHL", "ARG"]);
    let a = signed_agreement(&p, "quorum = 2", &[&p[0], &p[2]]);
    assert_eq!(a.verify(clock::now()).unwrap(), vec!["PER", "ARG"]);
}

#[test]
fn text_changed_after_signing_is_refused_as_a_bad_signature() {
    let p = parties(&["PER", "CHL"]);
    let a = signed_agreement(&p, "", &[&p[0], &p[1]]);
    let tampered = String::from_utf8(a.to_bytes()).unwrap().replace("\"5m\"", "\"6m\"");
    let err = SignedAgreement::parse(tampered.as_bytes())
        .unwrap()
        .verify(clock::now())
        .unwrap_err();
    assert!(
        matches!(err, AgreementError::BadSignature { ref party, .. } if party == "PER"),
        "{err}"
    );
}

#[test]
fn a_signature_by_a_key_not_in_the_agreement_is_not_counted() {
    let p = parties(&["PER", "CHL"]);
    let outsider = parties(&["XXX"]);
    let mut a = signed_agreement(&p, "", &[&p[0]]);
    assert!(matches!(a.sign(&outsider[0].key), Err(AgreementError::NotAParty(_))));
    // A foreign signature line added by hand is tolerated but does not count.
    let mut note = hotline::note::SignedNote::parse(&a.to_bytes()).unwrap();
    note.sign(&outsider[0].key).unwrap();
    let err = SignedAgreement::parse(&note.to_bytes())
        .unwrap()
        .verify(clock::now())
        .unwrap_err();
    assert!(matches!(err, AgreementError::NotSigned { signed: 1, .. }), "{err}");
}

#[test]
fn a_signature_by_an_expired_key_is_not_counted() {
    let p = parties(&["PER", "CHL"]);
    let text = format!(
        "version = 1\n{}\n{}{}",
        common::NORMS,
        party_toml(&p[0], 7000, "valid_until = 2020-01-01T00:00:00Z"),
        party_toml(&p[1], 7001, "")
    );
    let mut a = SignedAgreement::parse(text.as_bytes()).unwrap();
    a.sign(&p[0].key).unwrap();
    a.sign(&p[1].key).unwrap();
    let err = a.verify(clock::now()).unwrap_err();
    assert!(
        matches!(err, AgreementError::NotSigned { ref missing, .. } if missing == &["PER"]),
        "{err}"
    );
}

fn field_error(text: &str) -> String {
    match SignedAgreement::parse(text.as_bytes()) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("accepted:\n{text}"),
    }
}

#[test]
fn validation_names_the_field_at_fault() {
    let p = parties(&["PER", "CHL"]);
    let good = agreement_text(&p, "");
    let cases = [
        (good.replace("id = \"CHL\"", "id = \"C H L\""), "party[1].id"),
        (good.replace("id = \"CHL\"", "id = \"PER\""), "listed twice"),
        (
            good.replace("https://127.0.0.1:7001", "http://127.0.0.1:7001"),
            "party CHL (endpoint)",
        ),
        (
            good.replace("receipt_within = \"5m\"", "receipt_within = \"5 minutes\""),
            "norms.receipt_within",
        ),
        (
            good.replace("critical = \"1h\"", "critical = \"0s\""),
            "norms.respond_within.critical",
        ),
        (
            good.replace("max_notice_bytes = 1048576", "max_notice_bytes = 1"),
            "norms.max_notice_bytes",
        ),
        (good.replace("version = 1", "version = 0"), "version"),
        (good.replace("title = \"Test hotline\"", "quorum = 3"), "quorum"),
        (
            good.replacen("vkey = \"hotline", "vkey = \"hot line", 1),
            "party PER key[0].vkey",
        ),
        (good.replace("endpoint = \"https://127.0.0.1:7000\"\n", ""), "endpoint"),
        (
            good.replace("https://127.0.0.1:7001", "https://127.0.0.1:7000"),
            "party CHL (endpoint): https://127.0.0.1:7000 is also PER's endpoint",
        ),
        (good.replace("clock_skew", "clock_skw"), "clock_skw"),
    ];
    for (text, expected) in cases {
        let err = field_error(&text);
        assert!(err.contains(expected), "expected {expected:?} in: {err}");
    }
}

#[test]
fn a_malformed_signature_block_is_refused() {
    let p = parties(&["PER"]);
    let a = signed_agreement(&p, "", &[&p[0]]);
    let broken = String::from_utf8(a.to_bytes()).unwrap().replace("— ", "- ");
    // Without a valid signature block the file reads as TOML, which it no longer is.
    assert!(SignedAgreement::parse(broken.as_bytes()).is_err());
}

/// Version `prev + 1` for `parties`, naming `prev` (or `names`, when given) and signed by `signers`.
fn next_version(
    prev: &SignedAgreement,
    parties: &[common::TestParty],
    names: Option<[u8; 32]>,
    signers: &[&common::TestParty],
) -> SignedAgreement {
    let head = format!(
        "version = {}\nprevious = \"{}\"\n",
        prev.agreement.version + 1,
        hex::encode(names.unwrap_or(prev.text_sha256()))
    );
    let text = agreement_text(parties, "").replacen("version = 1\n", &head, 1);
    let mut a = SignedAgreement::parse(text.as_bytes()).unwrap();
    for s in signers {
        a.sign(&s.key).unwrap();
    }
    a
}

#[test]
fn a_version_naming_its_predecessor_signed_by_its_quorum_and_every_added_party_chains() {
    let p = parties(&["PER", "CHL", "ARG"]);
    let v1 = signed_agreement(&p[..2], "", &[&p[0], &p[1]]);
    let v2 = next_version(&v1, &p, None, &[&p[0], &p[1], &p[2]]);
    v2.verify_successor(&v1, clock::now()).unwrap();
    hotline::agreement::verify_chain(&[v1, v2], clock::now()).unwrap();
}

#[test]
fn a_version_that_does_not_name_its_predecessors_hash_is_refused() {
    let p = parties(&["PER", "CHL"]);
    let v1 = signed_agreement(&p, "", &[&p[0], &p[1]]);
    let v2 = next_version(&v1, &p, Some([7; 32]), &[&p[0], &p[1]]);
    let err = v2.verify_successor(&v1, clock::now()).unwrap_err();
    assert!(
        matches!(
            err,
            AgreementError::DoesNotChain {
                version: 2,
                previous: 1
            }
        ),
        "{err}"
    );
}

#[test]
fn an_amendment_signed_below_the_previous_versions_quorum_is_refused() {
    let p = parties(&["PER", "CHL", "ARG"]);
    let v1 = signed_agreement(&p, "", &[&p[0], &p[1], &p[2]]);
    // PER and CHL drop ARG and sign alone: version 1 needs all three.
    let v2 = next_version(&v1, &p[..2], None, &[&p[0], &p[1]]);
    let err = v2.verify_successor(&v1, clock::now()).unwrap_err();
    assert!(
        matches!(&err, AgreementError::NotSigned { signed: 2, required: 3, missing } if missing == &["ARG"]),
        "{err}"
    );
}

#[test]
fn a_new_party_that_did_not_sign_is_not_added() {
    let p = parties(&["PER", "CHL", "ARG"]);
    let v1 = signed_agreement(&p[..2], "", &[&p[0], &p[1]]);
    let v2 = next_version(&v1, &p, None, &[&p[0], &p[1]]);
    let err = v2.verify_successor(&v1, clock::now()).unwrap_err();
    assert!(
        matches!(&err, AgreementError::AddedWithoutConsent(added) if added == &["ARG"]),
        "{err}"
    );
}

#[test]
fn agreement_verify_chain_accepts_a_chain_and_names_the_version_that_breaks_it() {
    let p = parties(&["PER", "CHL"]);
    let v1 = signed_agreement(&p, "", &[&p[0], &p[1]]);
    let v2 = next_version(&v1, &p, None, &[&p[0], &p[1]]);
    let v3 = next_version(&v2, &p, None, &[&p[0]]);
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<String> = [&v1, &v2, &v3]
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let f = dir.path().join(format!("v{}.toml", i + 1));
            std::fs::write(&f, v.to_bytes()).unwrap();
            f.to_str().unwrap().to_owned()
        })
        .collect();
    let (ok, v) = common::hotline_json(&["agreement", "verify", "--chain", &files[0], &files[1]]);
    assert!(ok, "{v}");
    assert_eq!(v["versions"], serde_json::json!([1, 2]));
    let (ok, v) = common::hotline_json(&["agreement", "verify", "--chain", &files[0], &files[1], &files[2]]);
    assert!(!ok, "version 3 lacks CHL's signature: {v}");
    let error = v["error"].as_str().unwrap();
    assert!(
        error.starts_with("version 3: ") && error.contains("missing: CHL"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_adopts_a_chained_next_version_on_restart_and_refuses_one_that_does_not_chain() {
    let mut c = common::Cluster::start(&["PER", "CHL"], common::FAST_NORMS).await;
    c.stop(0).await;
    let path = c.configs[0].agreement.clone();
    let v1 = SignedAgreement::load(&path).unwrap();
    let keys: Vec<_> = c
        .configs
        .iter()
        .map(|cfg| hotline::keys::IdentityKey::load(&cfg.identity_key).unwrap())
        .collect();
    let version_2 = |names: [u8; 32]| {
        let head = format!("version = 2\nprevious = \"{}\"\n", hex::encode(names));
        let mut v2 = SignedAgreement::parse(v1.text().replacen("version = 1\n", &head, 1).as_bytes()).unwrap();
        for k in &keys {
            v2.sign(k).unwrap();
        }
        v2.to_bytes()
    };
    let start = |c: &common::Cluster| {
        let (config, clock) = (c.configs[0].clone(), c.clock.clone());
        async move {
            let listener = tokio::net::TcpListener::bind(config.listen_addr()).await.unwrap();
            hotline::server::start(&config, Some(listener), clock).await
        }
    };
    std::fs::write(&path, version_2([9; 32])).unwrap();
    let refused = start(&c).await.err().expect("started on a version that does not chain");
    assert!(
        refused.to_string().contains("does not chain from version 1"),
        "{refused}"
    );
    std::fs::write(&path, version_2(v1.text_sha256())).unwrap();
    c.nodes[0] = Some(start(&c).await.unwrap());
    assert!(
        c.log_lines(0).iter().any(|l| l == "adopted agreement version 2"),
        "{:?}",
        c.log_lines(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_texts_under_one_version_number_give_a_fork_norm_event_on_both_nodes() {
    let mut c = common::Cluster::start(&["PER", "CHL"], common::FAST_NORMS).await;
    c.stop(0).await;
    c.stop(1).await;
    let v1 = SignedAgreement::load(&c.configs[0].agreement).unwrap();
    let keys: Vec<_> = c
        .configs
        .iter()
        .map(|cfg| hotline::keys::IdentityKey::load(&cfg.identity_key).unwrap())
        .collect();
    // Two versions 2, both chained from version 1 and signed by both parties, that differ in their title.
    let dir = tempfile::tempdir().unwrap();
    for (i, title) in ["Hotline A", "Hotline B"].into_iter().enumerate() {
        let head = format!("version = 2\nprevious = \"{}\"\n", hex::encode(v1.text_sha256()));
        let text = v1.text().replacen("version = 1\n", &head, 1).replacen(
            &format!("title = \"{}\"", v1.agreement.title),
            &format!("title = \"{title}\""),
            1,
        );
        let mut v2 = SignedAgreement::parse(text.as_bytes()).unwrap();
        for k in &keys {
            v2.sign(k).unwrap();
        }
        let path = dir.path().join(format!("agreement-{i}.toml"));
        std::fs::write(&path, v2.to_bytes()).unwrap();
        c.configs[i].agreement = path;
        c.restart(i).await;
    }
    c.send(0, common::notice(&["CHL"], "Which agreement?")).await;
    c.eventually(10, "a fork logged on both sides", |c| {
        (0..2).all(|i| c.log_lines(i).iter().any(|l| l.starts_with("AGREEMENT_FORK")))
    })
    .await;
    let status = c.status(0).await;
    assert_eq!(status.peers[0].agreement_version, 2);
    assert!(
        status
            .recent_norm_events
            .iter()
            .any(|e| e.kind() == hotline::proto::NormEventKind::AgreementFork)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_fetches_an_adopted_version_and_gets_not_found_for_one_never_adopted() {
    let c = common::Cluster::start(&["PER", "CHL"], common::FAST_NORMS).await;
    let mut chl = c.peer_client(1, 0);
    let got = chl
        .get_agreement(hotline::proto::GetAgreementRequest { version: 1 })
        .await
        .unwrap()
        .into_inner();
    let fetched = SignedAgreement::parse(&got.signed_note).unwrap();
    let held = SignedAgreement::load(&c.configs[0].agreement).unwrap();
    assert_eq!(fetched.text_sha256(), held.text_sha256());
    fetched.verify(clock::now()).unwrap();
    let missing = chl
        .get_agreement(hotline::proto::GetAgreementRequest { version: 2 })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    assert!(
        missing.message().contains("version 2; the latest it holds is 1"),
        "{missing:?}"
    );
}

#[test]
fn a_party_may_list_several_endpoints_each_an_https_url() {
    let p = parties(&["PER", "CHL"]);
    let text = common::agreement_text(&p, "").replacen(
        "endpoint = \"https://127.0.0.1:7000\"",
        "endpoint = [\"https://127.0.0.1:7000\", \"https://127.0.0.1:7100\"]",
        1,
    );
    let a = SignedAgreement::parse(text.as_bytes()).unwrap().agreement;
    let per = a.party("PER").unwrap();
    assert_eq!(per.endpoints, ["https://127.0.0.1:7000", "https://127.0.0.1:7100"]);
    assert_eq!(per.endpoint, "https://127.0.0.1:7000", "the first is the one shown");
    let bad = text.replace("\"https://127.0.0.1:7100\"", "\"http://127.0.0.1:7100\"");
    let Err(err) = SignedAgreement::parse(bad.as_bytes()) else {
        panic!("an http:// endpoint was accepted")
    };
    let err = err.to_string();
    assert!(
        err.contains("party PER (endpoint)") && err.contains("http://127.0.0.1:7100"),
        "{err}"
    );
}

/// The AGREEMENT_FORK entries in node `i`'s log.
fn forks_logged(c: &common::Cluster, i: usize) -> usize {
    c.log_lines(i)
        .iter()
        .filter(|l| l.starts_with("AGREEMENT_FORK"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_text_under_the_version_in_force_delivered_as_an_approval_is_flagged_as_a_fork() {
    use hotline::envelope::{self, AMENDMENT_TYPE};
    use hotline::proto::{Amendment, AmendmentAction, DeliverRequest};
    use prost::Message as _;
    let mut c = common::Cluster::start(&["PER", "CHL"], common::FAST_NORMS).await;
    let v1 = SignedAgreement::load(&c.configs[0].agreement).unwrap();
    // Two versions 2, both chained from version 1 and signed by every party.
    let version_2 = |title: &str| {
        let head = format!("version = 2\nprevious = \"{}\"\n", hex::encode(v1.text_sha256()));
        let text = v1.text().replacen("version = 1\n", &head, 1).replacen(
            &format!("title = \"{}\"", v1.agreement.title),
            &format!("title = \"{title}\""),
            1,
        );
        let mut v2 = SignedAgreement::parse(text.as_bytes()).unwrap();
        for i in 0..2 {
            v2.sign(&c.key(i)).unwrap();
        }
        v2
    };
    let (adopted, other) = (version_2("In force"), version_2("Another text"));
    let file = c.dir.path().join("agreement-2.toml");
    std::fs::write(&file, adopted.to_bytes()).unwrap();
    for i in 0..2 {
        c.stop(i).await;
        c.configs[i].agreement = file.clone();
    }
    for i in 0..2 {
        c.restart(i).await;
    }
    c.eventually(10, "both run version 2", |c| c.version(0) == 2 && c.version(1) == 2)
        .await;
    let approval = Amendment {
        id: hotline::message::new_id(),
        from: "CHL".into(),
        to: vec!["PER".into()],
        created_at: Some(hotline::clock::to_proto(c.clock.now())),
        action: AmendmentAction::Approve as i32,
        version: 2,
        text_sha256: other.text_sha256().to_vec(),
        signed_note: other.to_bytes(),
        author: "duty".into(),
        ..Default::default()
    };
    let env = envelope::sign(AMENDMENT_TYPE, approval.encode_to_vec(), &c.key(1)).unwrap();
    c.peer_client(1, 0)
        .deliver(DeliverRequest {
            envelope: Some(env),
            ..Default::default()
        })
        .await
        .unwrap();
    c.eventually(10, "PER logs the fork", |c| forks_logged(c, 0) == 1).await;
    assert!(
        c.log_lines(0)
            .iter()
            .any(|l| l.starts_with("AGREEMENT_FORK") && l.contains(&hex::encode(other.text_sha256()))),
        "the fork names the other text"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_delivery_logs_no_fork_and_a_misshapen_reference_is_refused_before_anything_is_logged() {
    use hotline::proto::{AgreementRef, DeliverRequest};
    let c = common::Cluster::start(&["PER", "CHL"], common::FAST_NORMS).await;
    let mut chl = c.peer_client(1, 0);
    let huge = chl
        .deliver(DeliverRequest {
            agreement: Some(AgreementRef {
                version: 1,
                text_sha256: vec![7; 16_384],
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(huge.code(), tonic::Code::InvalidArgument, "{huge:?}");
    assert!(huge.message().contains("32"), "{}", huge.message());
    // Twenty refused deliveries (no envelope), each naming another text under version 1.
    for i in 0..20u8 {
        let refused = chl
            .deliver(DeliverRequest {
                agreement: Some(AgreementRef {
                    version: 1,
                    text_sha256: vec![i; 32],
                }),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    }
    assert_eq!(forks_logged(&c, 0), 0, "a refused delivery's claim is not logged");
}

#[test]
fn an_observer_has_an_id_of_its_own_and_a_ca_certificate() {
    let p = common::parties(&["PER", "CHL"]);
    let ca = hotline::tls::new_ca("OSCE").unwrap().cert;
    let text = format!(
        "{}\n[[observer]]\nid = \"OSCE\"\nname = \"OSCE Secretariat\"\ntls_ca = \"\"\"\n{ca}\"\"\"\n",
        common::agreement_text(&p, "")
    );
    let parsed = hotline::agreement::Agreement::parse(&text).unwrap();
    assert_eq!(parsed.observers[0].id, "OSCE");
    let err = |t: String| hotline::agreement::Agreement::parse(&t).unwrap_err().to_string();
    let clash = err(text.replace("id = \"OSCE\"", "id = \"PER\""));
    assert!(
        clash.contains("observer PER (id)") && clash.contains("also a party's id"),
        "{clash}"
    );
    let no_ca = err(text.replace(&ca, "not a certificate\n"));
    assert!(
        no_ca.contains("observer OSCE (tls_ca): must be a PEM certificate"),
        "{no_ca}"
    );
}

#[test]
fn a_partys_encryption_keys_carry_windows_and_the_one_in_force_is_the_last_valid() {
    let p = parties(&["PER", "CHL"]);
    let (old, new) = (hotline::seal::SealKey::generate(), hotline::seal::SealKey::generate());
    let keys = format!(
        "[[party.encryption_key]]\nkey = \"{}\"\nvalid_until = 2027-01-01T00:00:00Z\n\
         [[party.encryption_key]]\nkey = \"{}\"\nvalid_from = 2026-12-01T00:00:00Z\n[[party.key]]",
        old.public().encode(),
        new.public().encode()
    );
    let text = agreement_text(&p, "").replacen("[[party.key]]", &keys, 1);
    let parsed = hotline::agreement::Agreement::parse(&text).unwrap();
    let per = &parsed.parties[0];
    let at = |t: &str| clock::parse_rfc3339(t).unwrap();
    assert_eq!(per.encryption_key_at(at("2026-06-01T00:00:00Z")), Some(old.public()));
    assert_eq!(per.encryption_key_at(at("2026-12-15T00:00:00Z")), Some(new.public()));
    assert!(parsed.parties[1].encryption_keys.is_empty());
    let bad = text.replacen(&old.public().encode(), "not-a-key", 1);
    let err = hotline::agreement::Agreement::parse(&bad).unwrap_err().to_string();
    assert!(err.contains("party PER encryption_key[0].key"), "{err}");
}
