//! Amending the agreement over the hotline while every node runs: proposals,
//! approvals, the chain rule, parties joining and leaving, and nodes that
//! hold different versions converging.

mod common;

use hotline::agreement::SignedAgreement;
use hotline::proto::{
    ApproveAmendmentRequest, ListAmendmentsRequest, ListAmendmentsResponse, NormEventKind, ProposeAmendmentRequest,
    RejectAmendmentRequest,
};
use hotline::setup::Changes;
use hotline::state;

/// Node `i`'s view of the amendments.
async fn amendments(c: &common::Cluster, i: usize) -> ListAmendmentsResponse {
    c.operator(i)
        .list_amendments(ListAmendmentsRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// The agreement in force at node `i`, as adopted.
fn in_force(c: &common::Cluster, i: usize) -> SignedAgreement {
    SignedAgreement::parse(&c.node(i).in_force().signed.to_bytes()).unwrap()
}

async fn propose(c: &common::Cluster, i: usize, note: Vec<u8>) -> Result<u64, tonic::Status> {
    c.operator(i)
        .propose_amendment(ProposeAmendmentRequest {
            signed_note: note,
            reason: "test".into(),
        })
        .await
        .map(|r| r.into_inner().version_in_force)
}

async fn approve(c: &common::Cluster, i: usize, version: u64) {
    c.operator(i)
        .approve_amendment(ApproveAmendmentRequest {
            version,
            ..Default::default()
        })
        .await
        .unwrap();
}

/// Waits until node `i` knows of a pending proposal of `version`.
async fn wait_pending(c: &common::Cluster, i: usize, version: u64) {
    common::awaited(&format!("node {i} sees version {version} proposed"), || async {
        amendments(c, i)
            .await
            .pending
            .iter()
            .any(|p| p.version == version)
            .then_some(())
    })
    .await
}

/// Waits until node `i` sees `n` parties' signatures on the first pending proposal.
async fn wait_approvals(c: &common::Cluster, i: usize, n: usize) {
    common::awaited(&format!("node {i} sees {n} approvals"), || async {
        let seen = amendments(c, i).await;
        (seen.pending.first().map_or(0, |p| p.approved_by.len()) >= n).then_some(())
    })
    .await
}

/// Sends a notice from node `from` to `to` and remembers it.
async fn send(c: &common::Cluster, sent: &mut Vec<(String, Vec<String>)>, from: usize, to: &[&str]) {
    let id = c
        .send(from, common::notice(to, &format!("notice {}", sent.len())))
        .await;
    sent.push((id, to.iter().map(|s| s.to_string()).collect()));
}

/// Whether node `i` holds message `id` exactly once (the id is the key).
fn holds(c: &common::Cluster, i: usize, id: &str) -> bool {
    c.node(i).read(|db| state::message(db, id)).unwrap().is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_party_joins_one_rotates_its_key_and_another_leaves_while_notices_flow_and_no_node_restarts() {
    let ids = ["PER", "CHL", "ARG", "BRA"];
    let mut c = common::Cluster::start(&ids, common::FAST_NORMS).await;
    let mut sent = Vec::new();
    send(&c, &mut sent, 0, &["CHL", "ARG", "BRA"]).await;
    // Throughout, ARG sends PER and CHL a notice every 20 ms.
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let mut arg = c.operator(2);
    let flow = tokio::spawn(async move {
        let mut ids = Vec::new();
        loop {
            tokio::select! {
                _ = &mut stopped => return ids,
                _ = tokio::time::sleep(std::time::Duration::from_millis(20)) => {}
            }
            let n = common::notice(&["PER", "CHL"], "ARG's steady flow");
            let sent = arg
                .send_notice(hotline::proto::SendNoticeRequest { notice: Some(n) })
                .await;
            ids.push(sent.unwrap().into_inner().id);
        }
    });

    // A fifth party joins: it hands its party.toml to PER and signs version 2 offline.
    let (est, listener) = c.new_party("EST").await;
    let v1 = in_force(&c, 0);
    let v2_text = hotline::setup::amended_text(
        &v1,
        &Changes {
            add: vec![est.party_entry.clone()],
            quorum: Some(4),
            ..Default::default()
        },
    );
    let mut v2 = SignedAgreement::parse(v2_text.as_bytes()).unwrap();
    let est_key = hotline::keys::IdentityKey::load(&c.dir.path().join("EST/identity.key")).unwrap();
    v2.sign(&est_key).unwrap();
    assert_eq!(propose(&c, 0, v2.to_bytes()).await.unwrap(), 1);
    send(&c, &mut sent, 1, &["PER", "BRA"]).await;
    for i in 1..3 {
        wait_pending(&c, i, 2).await;
        approve(&c, i, 2).await;
    }
    // Version 1's quorum is all four: three signatures and the newcomer's are not enough.
    let pending = amendments(&c, 0).await;
    assert_eq!(pending.version, 1);
    assert!(pending.pending[0].needs.contains("BRA"), "{:?}", pending.pending[0]);
    send(&c, &mut sent, 2, &["PER", "CHL"]).await;
    wait_pending(&c, 3, 2).await;
    approve(&c, 3, 2).await;
    c.eventually(10, "every node adopted version 2", |c| {
        (0..4).all(|i| c.version(i) == 2)
    })
    .await;
    // The newcomer starts from the adopted version and is a peer like any other.
    let adopted = amendments(&c, 0).await.signed_note;
    let est_i = c.join(&est, listener, &adopted).await;
    send(&c, &mut sent, 0, &["CHL", "EST"]).await;
    send(&c, &mut sent, est_i, &["PER", "ARG", "BRA"]).await;

    // CHL rotates its key: the new one is valid from now, the old one for an hour more.
    let old_chl = c.key(1);
    let new_chl = hotline::keys::IdentityKey::generate(old_chl.name()).unwrap();
    new_chl.save(&c.configs[1].next_identity_key).unwrap();
    let now = c.clock.now();
    let v3_text = hotline::setup::amended_text(
        &in_force(&c, 0),
        &Changes {
            rotate: vec![(
                "CHL".into(),
                new_chl.verifier().to_string(),
                now,
                now + time::Duration::hours(1),
            )],
            ..Default::default()
        },
    );
    propose(&c, 1, v3_text.into_bytes()).await.unwrap();
    send(&c, &mut sent, 3, &["CHL", "EST"]).await;
    for i in [0, 2, 3] {
        wait_pending(&c, i, 3).await;
        approve(&c, i, 3).await;
    }
    c.eventually(10, "every node adopted version 3", |c| {
        [0, 1, 2, 3, est_i].iter().all(|&i| c.version(i) == 3)
    })
    .await;
    // CHL now signs envelopes with the new key, and checkpoints with both.
    send(&c, &mut sent, 1, &["PER", "ARG", "EST"]).await;
    let last = sent.last().unwrap().0.clone();
    let env = c
        .node(1)
        .read(|db| state::message(db, &last))
        .unwrap()
        .unwrap()
        .envelope;
    assert_eq!(env.signatures[0].keyid, new_chl.verifier().key_id());
    let head = c.node(1).log().head().note.to_vec();
    for k in [&old_chl, &new_chl] {
        hotline::log::checkpoint::verify(&head, k.verifier()).unwrap();
    }

    // BRA leaves: its node is gone, a notice to it waits in the outbox and it owes a response.
    c.stop(3).await;
    send(&c, &mut sent, 0, &["BRA", "CHL"]).await;
    let to_bra = sent.last().unwrap().0.clone();
    let v4_text = hotline::setup::amended_text(
        &in_force(&c, 0),
        &Changes {
            remove: vec!["BRA".into()],
            quorum: Some(3),
            ..Default::default()
        },
    );
    propose(&c, 0, v4_text.into_bytes()).await.unwrap();
    for i in [1, 2, est_i] {
        wait_pending(&c, i, 4).await;
        approve(&c, i, 4).await;
    }
    c.eventually(10, "every remaining node adopted version 4", |c| {
        [0, 1, 2, est_i].iter().all(|&i| c.version(i) == 4)
    })
    .await;
    send(&c, &mut sent, 1, &["PER", "EST"]).await;
    // An operator who names BRA now is told that it left, and by which version.
    let refused = c
        .operator(1)
        .send_notice(hotline::proto::SendNoticeRequest {
            notice: Some(common::notice(&["BRA"], "Too late")),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused
            .message()
            .contains("BRA was removed from the agreement by version 4; the peers now are ARG, EST, PER"),
        "{}",
        refused.message()
    );
    stop.send(()).unwrap();
    let flowed = flow.await.unwrap();
    assert!(flowed.len() > 5, "only {} notices flowed", flowed.len());
    sent.extend(
        flowed
            .into_iter()
            .map(|id| (id, vec!["PER".to_owned(), "CHL".to_owned()])),
    );

    // Nothing lost or duplicated: every notice is held once by each recipient still in the agreement.
    let index = |party: &str| c.configs.iter().position(|cfg| cfg.party == party).unwrap();
    c.eventually(10, "every notice delivered", |c| {
        sent.iter().all(|(id, to)| {
            to.iter()
                .filter(|p| *p != "BRA" || *id != to_bra)
                .map(|p| index(p))
                .filter(|&i| c.nodes[i].is_some())
                .all(|i| holds(c, i, id))
        })
    })
    .await;
    // The delivery to BRA was cancelled and its clocks closed, each with a norm event.
    let per = c.log_lines(0);
    assert!(
        per.iter()
            .any(|l| l.starts_with("DELIVERY_CANCELLED") && l.contains(&to_bra)),
        "{per:?}"
    );
    assert!(
        per.iter()
            .any(|l| l.starts_with("DEADLINE_CLOSED") && l.contains(&to_bra)),
        "{per:?}"
    );
    assert!(c.node(0).read(|db| state::queued_for(db, "BRA")).unwrap().is_empty());
    let status = c.status(0).await;
    assert!(
        status.deadlines.iter().all(|d| d.party != "BRA"),
        "{:?}",
        status.deadlines
    );
    // BRA's certificates are no longer accepted: its CA is not trusted any more, so the TLS
    // handshake fails (the client sees the alert, or the connection closed) before any call.
    let refused = c
        .peer_client(3, 0)
        .get_agreement(hotline::proto::GetAgreementRequest { version: 1 })
        .await
        .unwrap_err();
    assert!(format!("{refused:?}").contains("transport"), "{refused:?}");

    // The chain verifies offline, and so does every log.
    let chain: Vec<SignedAgreement> = (1..=4)
        .map(|v| {
            let adopted = c.node(0).read(|db| state::adopted_version(db, v)).unwrap().unwrap();
            SignedAgreement::parse(&adopted.signed_note).unwrap()
        })
        .collect();
    hotline::agreement::verify_chain(&chain, hotline::clock::now()).unwrap();
    for i in [0, 1, 2, est_i] {
        let key = c.key(i);
        hotline::log::verify::verify_data_dir(&c.configs[i].data, key.verifier(), |_, _| {}).unwrap();
    }
    // A verifier that knows either of CHL's keys follows its log across the rotation.
    hotline::log::verify::verify_data_dir(&c.configs[1].data, new_chl.verifier(), |_, _| {}).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_that_does_not_name_its_predecessors_hash_or_skips_a_number_is_refused() {
    let c = common::Cluster::start(&["PER", "CHL"], common::FAST_NORMS).await;
    let v1 = in_force(&c, 0);
    let next = hotline::setup::amended_text(&v1, &Changes::default());
    let wrong = next.replacen(&hex::encode(v1.text_sha256()), &"0".repeat(64), 1);
    let refused = propose(&c, 0, wrong.into_bytes()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(refused.message().contains("does not name version 1"), "{refused:?}");
    let skipped = next.replacen("version = 2", "version = 3", 1);
    let refused = propose(&c, 0, skipped.into_bytes()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(refused.message().contains("is 3; the next version"), "{refused:?}");
    assert!(amendments(&c, 1).await.pending.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_proposal_stays_pending_with_the_reason() {
    let c = common::Cluster::start(&["PER", "CHL"], common::FAST_NORMS).await;
    let v1 = in_force(&c, 0);
    propose(
        &c,
        0,
        hotline::setup::amended_text(&v1, &Changes::default()).into_bytes(),
    )
    .await
    .unwrap();
    wait_pending(&c, 1, 2).await;
    c.operator(1)
        .reject_amendment(RejectAmendmentRequest {
            version: 2,
            text_sha256: vec![],
            reason: "not before the summit".into(),
        })
        .await
        .unwrap();
    let seen = common::awaited("PER sees CHL's rejection", || async {
        let seen = amendments(&c, 0).await;
        seen.pending
            .first()
            .is_some_and(|p| !p.rejections.is_empty())
            .then_some(seen)
    })
    .await;
    let p = &seen.pending[0];
    assert_eq!(p.rejections[0].party, "CHL");
    assert_eq!(p.rejections[0].reason, "not before the summit");
    assert_eq!(p.approved_by, vec!["PER".to_owned()]);
    assert!(p.needs.contains("missing: CHL"), "{}", p.needs);
    assert_eq!(seen.version, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_behind_fetches_the_later_version_from_the_peer_after_one_delivery() {
    let mut c = common::Cluster::start(&["PER", "CHL"], common::FAST_NORMS).await;
    // PER adopts version 2 (signed by both, offline) at a restart; CHL still holds version 1.
    c.stop(0).await;
    let v1 = SignedAgreement::load(&c.configs[0].agreement).unwrap();
    let mut v2 = SignedAgreement::parse(hotline::setup::amended_text(&v1, &Changes::default()).as_bytes()).unwrap();
    v2.sign(&c.key(0)).unwrap();
    v2.sign(&c.key(1)).unwrap();
    std::fs::write(&c.configs[0].agreement, v2.to_bytes()).unwrap();
    c.restart(0).await;
    assert_eq!((c.version(0), c.version(1)), (2, 1));
    c.send(0, common::notice(&["CHL"], "Which version?")).await;
    c.eventually(10, "CHL adopted version 2", |c| c.version(1) == 2).await;
    assert!(c.log_lines(1).iter().any(|l| l == "adopted agreement version 2"));
    assert!(
        !c.log_lines(1)
            .iter()
            .any(|l| l.starts_with(&format!("{:?}", NormEventKind::AgreementFork))),
        "converging is not a fork"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_by_a_revoked_key_after_its_revocation_is_refused_and_audit_verify_flags_what_it_signed() {
    use hotline::envelope::{self, NOTICE_TYPE};
    use prost::Message as _;
    let c = common::Cluster::start(&["PER", "CHL"], common::FAST_NORMS).await;
    // CHL's key is compromised: messages it signed from a minute ago are suspect.
    let revoked_from = c.clock.now() - time::Duration::minutes(1);
    let suspect = c.send(1, common::notice(&["PER"], "Signed by the stolen key?")).await;
    c.eventually(10, "PER holds CHL's notice", |c| holds(c, 0, &suspect))
        .await;
    let old = c.key(1);
    let new = hotline::keys::IdentityKey::generate(old.name()).unwrap();
    new.save(&c.configs[1].next_identity_key).unwrap();
    let v2 = hotline::setup::amended_text(
        &in_force(&c, 0),
        &Changes {
            rotate: vec![(
                "CHL".into(),
                new.verifier().to_string(),
                revoked_from,
                revoked_from + time::Duration::hours(1),
            )],
            revoke: vec![(old.verifier().key_id(), revoked_from)],
            ..Default::default()
        },
    );
    propose(&c, 0, v2.into_bytes()).await.unwrap();
    wait_pending(&c, 1, 2).await;
    approve(&c, 1, 2).await;
    c.eventually(10, "both adopted version 2", |c| c.version(0) == 2 && c.version(1) == 2)
        .await;

    // A notice signed by the revoked key is refused; one by the new key is taken.
    let mut n = common::notice(&["PER"], "After the revocation");
    n.id = hotline::message::new_id();
    n.from = "CHL".into();
    n.created_at = Some(hotline::clock::to_proto(c.clock.now()));
    n.author = "intruder".into();
    let forged = envelope::sign(NOTICE_TYPE, n.encode_to_vec(), &old).unwrap();
    let refused = c
        .peer_client(1, 0)
        .deliver(hotline::proto::DeliverRequest {
            envelope: Some(forged),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    let after = c.send(1, common::notice(&["PER"], "From the new key")).await;
    c.eventually(10, "PER holds CHL's notice by the new key", |c| holds(c, 0, &after))
        .await;

    // The log verifies, and flags the envelope the revoked key signed after the instant it is revoked from.
    let report = hotline::log::verify::verify_data_dir(&c.configs[0].data, c.key(0).verifier(), |_, _| {}).unwrap();
    let index = c
        .node(0)
        .read(|db| state::message(db, &suspect))
        .unwrap()
        .unwrap()
        .log_index;
    assert_eq!(report.revoked_signers.len(), 1, "{:?}", report.revoked_signers);
    let flagged = &report.revoked_signers[0];
    assert_eq!(
        (flagged.party.as_str(), flagged.key.as_str()),
        ("CHL", old.verifier().key_id().as_str())
    );
    // (With it: CHL's receipt and approval of the amendment, signed by the only key CHL then had.)
    assert!(flagged.after_revocation.contains(&index), "{flagged:?}");
    let adopted = c.node(0).read(|db| state::adopted_version(db, 2)).unwrap().unwrap();
    let adopted_at = c.log_entries(0).iter().position(|e| {
        matches!(&e.body, Some(hotline::proto::log_entry::Body::AgreementAdopted(a)) if a.signed_note == adopted.signed_note)
    });
    assert!(
        flagged.after_revocation.iter().all(|&i| Some(i as usize) < adopted_at),
        "{flagged:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amendment_signed_below_the_quorum_of_the_version_in_force_is_not_adopted() {
    let c = common::Cluster::start(&["PER", "CHL", "ARG"], common::FAST_NORMS).await;
    let v2 = hotline::setup::amended_text(&in_force(&c, 0), &Changes::default());
    propose(&c, 0, v2.into_bytes()).await.unwrap();
    wait_pending(&c, 1, 2).await;
    approve(&c, 1, 2).await;
    // PER and CHL signed; version 1's quorum is all three.
    wait_approvals(&c, 0, 2).await;
    let seen = amendments(&c, 0).await;
    assert_eq!(seen.version, 1);
    assert!(
        seen.pending[0].needs.contains("missing: ARG"),
        "{}",
        seen.pending[0].needs
    );
    assert!((0..3).all(|i| c.version(i) == 1));
    wait_pending(&c, 2, 2).await;
    approve(&c, 2, 2).await;
    c.eventually(10, "all three adopted version 2", |c| (0..3).all(|i| c.version(i) == 2))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_party_that_did_not_sign_is_not_added_until_its_signature_is_handed_over_then_gets_every_roster() {
    let mut c = common::Cluster::start(&["PER", "CHL"], common::FAST_NORMS).await;
    let (est, listener) = c.new_party("EST").await;
    let v2 = hotline::setup::amended_text(
        &in_force(&c, 0),
        &Changes {
            add: vec![est.party_entry.clone()],
            ..Default::default()
        },
    );
    propose(&c, 0, v2.clone().into_bytes()).await.unwrap();
    wait_pending(&c, 1, 2).await;
    approve(&c, 1, 2).await;
    wait_approvals(&c, 0, 2).await;
    let seen = amendments(&c, 0).await;
    assert_eq!(seen.version, 1, "adopted without the consent of the party it adds");
    assert!(seen.pending[0].needs.contains("EST"), "{}", seen.pending[0].needs);
    // EST signs offline; PER hands its signature over with its own approval.
    let mut signed = SignedAgreement::parse(v2.as_bytes()).unwrap();
    signed
        .sign(&hotline::keys::IdentityKey::load(&c.dir.path().join("EST/identity.key")).unwrap())
        .unwrap();
    let step = c
        .operator(0)
        .approve_amendment(ApproveAmendmentRequest {
            version: 2,
            signatures: signed.to_bytes(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(step.version_in_force, 2);
    c.eventually(10, "CHL adopted version 2", |c| c.version(1) == 2).await;
    let est_i = c.join(&est, listener, &amendments(&c, 0).await.signed_note).await;
    let id = c.send(est_i, common::notice(&["PER", "CHL"], "Hello from EST")).await;
    c.eventually(10, "PER and CHL hold EST's notice", |c| {
        holds(c, 0, &id) && holds(c, 1, &id)
    })
    .await;
    // The members send the newcomer their rosters on adoption; it publishes its own at start.
    c.eventually(10, "EST and the members hold each other's rosters", |c| {
        let est = &c.node(est_i).rosters();
        est.version("PER") == 1 && est.version("CHL") == 1 && (0..2).all(|i| c.node(i).rosters().version("EST") == 1)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_cannot_store_rejections_of_unknown_proposals_or_proposals_far_ahead() {
    use hotline::envelope::{self, AMENDMENT_TYPE};
    use hotline::proto::{Amendment, AmendmentAction, DeliverRequest};
    use prost::Message as _;
    let c = common::Cluster::start(&["PER", "CHL"], common::FAST_NORMS).await;
    let chl = c.key(1);
    let deliver = |a: Amendment| {
        let env = envelope::sign(AMENDMENT_TYPE, a.encode_to_vec(), &chl).unwrap();
        let mut client = c.peer_client(1, 0);
        async move {
            client
                .deliver(DeliverRequest {
                    envelope: Some(env),
                    ..Default::default()
                })
                .await
        }
    };
    let base = Amendment {
        id: hotline::message::new_id(),
        from: "CHL".into(),
        to: vec!["PER".into()],
        created_at: Some(hotline::clock::to_proto(c.clock.now())),
        action: AmendmentAction::Reject as i32,
        version: 2,
        text_sha256: vec![7; 32],
        reason: "no".into(),
        author: "duty".into(),
        ..Default::default()
    };
    let refused = deliver(base.clone()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::NotFound, "{refused:?}");
    let far = Amendment {
        id: hotline::message::new_id(),
        version: 1_000,
        ..base
    };
    let refused = deliver(far).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("more than 64 versions"), "{refused:?}");
    assert!(c.node(0).pending().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_partys_pending_proposals_never_refuse_another_partys() {
    let c = common::Cluster::start(&["PER", "CHL", "ARG"], common::FAST_NORMS).await;
    let next = hotline::setup::amended_text(&in_force(&c, 1), &Changes::default());
    let cap = hotline::state::MAX_PENDING_PER_PARTY;
    // CHL proposes one text more than PER keeps from one party.
    for i in 0..=cap {
        propose(&c, 1, format!("{next}# CHL's variant {i}\n").into_bytes())
            .await
            .unwrap();
    }
    let from_chl = || {
        c.node(0)
            .read(|db| hotline::state::proposals_after(db, 1))
            .unwrap()
            .iter()
            .filter(|p| p.proposed_by == "CHL")
            .count()
    };
    c.eventually(30, "PER keeps CHL's first proposals", |_| from_chl() == cap)
        .await;
    // ARG's proposal still gets in, and CHL's extra one stays out.
    propose(&c, 2, format!("{next}# ARG's text\n").into_bytes())
        .await
        .unwrap();
    c.eventually(30, "PER keeps ARG's proposal", |c| {
        c.node(0)
            .read(|db| hotline::state::proposals_after(db, 1))
            .unwrap()
            .iter()
            .any(|p| p.proposed_by == "ARG")
    })
    .await;
    assert_eq!(from_chl(), cap);
}
