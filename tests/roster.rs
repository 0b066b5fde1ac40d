//! A party's roster of points of contact: signed by its identity key only,
//! logged, delivered to every peer; the operator certificates it names are
//! the only ones that may act, under their contact's name, and peers see
//! those names and roles on what is signed.

mod common;

use common::{Cluster, FAST_NORMS, notice};
use hotline::envelope::{self, ROSTER_TYPE};
use hotline::keys::IdentityKey;
use hotline::proto::{
    DeliverRequest, GetNoticeRequest, GetRosterRequest, PublishRosterRequest, ResponseStatus, RosterUpdate,
};
use hotline::roster::SignedRoster;
use prost::Message as _;
use tonic::Code;

/// The SHA-256 (hex) of node `i`'s operator certificate.
fn operator_cert(c: &Cluster, i: usize) -> String {
    let fps = c.configs[i].local_fingerprints().unwrap();
    let (fp, _) = fps.iter().find(|(_, local)| local.name == "operator").unwrap();
    hex::encode(fp)
}

/// A roster of `party` at `version`: María (technical) acts with `cert`, Diego is the policy contact.
fn roster(party: &str, version: u64, cert: &str) -> String {
    format!(
        "party = \"{party}\"\nversion = {version}\n\n\
         [[contact]]\nname = \"María Rojas\"\nroles = [\"technical\"]\nlanguages = [\"es\", \"en\"]\ncerts = [\"{cert}\"]\n\n\
         [[contact]]\nname = \"Diego Soto\"\nroles = [\"policy\"]\nlanguages = [\"es\"]\n"
    )
}

async fn publish(c: &Cluster, i: usize, signed: &SignedRoster) -> Result<u64, tonic::Status> {
    c.operator(i)
        .publish_roster(PublishRosterRequest {
            signed_roster: signed.to_bytes(),
        })
        .await
        .map(|r| r.into_inner().version)
}

async fn roster_version_held(c: &Cluster, at: usize, party: &str) -> u64 {
    c.operator(at)
        .get_roster(GetRosterRequest { party: party.into() })
        .await
        .map(|r| {
            SignedRoster::parse(&r.into_inner().signed_roster)
                .unwrap()
                .roster
                .version
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_node_publishes_its_first_roster_at_start_and_every_peer_holds_it() {
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    common::awaited("each holds the other's roster", || async {
        (roster_version_held(&c, 0, "CHL").await == 1 && roster_version_held(&c, 1, "PER").await == 1).then_some(())
    })
    .await;
    assert!(
        c.log_lines(0)
            .iter()
            .any(|l| l.starts_with("sent") && l.contains("roster"))
    );
    assert_eq!(c.status(1).await.peers[0].roster_version, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_roster_version_is_delivered_and_peers_show_the_named_contact_who_acknowledged() {
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    let signed = SignedRoster::sign(&roster("CHL", 2, &operator_cert(&c, 1)), &c.key(1)).unwrap();
    assert_eq!(publish(&c, 1, &signed).await.unwrap(), 2);
    common::awaited("PER holds CHL's roster version 2", || async {
        (roster_version_held(&c, 0, "CHL").await == 2).then_some(())
    })
    .await;
    let id = c.send(0, notice(&["CHL"], "Read me")).await;
    c.until_held(1, &id).await;
    c.respond(1, &id, ResponseStatus::Acknowledged, "read").await;
    let thread = common::awaited("PER holds the acknowledgement", || async {
        let t = c
            .operator(0)
            .get_notice(GetNoticeRequest { id: id.clone() })
            .await
            .unwrap()
            .into_inner();
        (!t.responses.is_empty()).then_some(t)
    })
    .await;
    let maria = thread
        .people
        .iter()
        .find(|p| p.party == "CHL")
        .expect("the acknowledger is named");
    assert_eq!(
        (maria.name.as_str(), maria.roles.clone(), maria.roster_version),
        ("María Rojas", vec!["technical".to_owned()], 2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_roster_signed_by_a_key_that_is_not_the_partys_is_refused() {
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    let cert = operator_cert(&c, 1);
    let stranger = IdentityKey::generate("hotline.example/CHL").unwrap();
    let forged = SignedRoster::sign(&roster("CHL", 2, &cert), &stranger).unwrap();
    let refused = publish(&c, 1, &forged).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("only its identity key"),
        "{}",
        refused.message()
    );
    // Another party's key does not do either, nor a roster for another party.
    let by_per = SignedRoster::sign(&roster("CHL", 2, &cert), &c.key(0)).unwrap();
    assert_eq!(
        publish(&c, 1, &by_per).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let for_per = SignedRoster::sign(&roster("PER", 2, &cert), &c.key(1)).unwrap();
    assert_eq!(
        publish(&c, 1, &for_per).await.unwrap_err().code(),
        Code::InvalidArgument
    );

    // Delivered by CHL's node in an envelope CHL signed, a roster its key did not sign is refused too.
    let update = RosterUpdate {
        id: hotline::message::new_id(),
        from: "CHL".into(),
        to: vec!["PER".into()],
        created_at: Some(hotline::clock::to_proto(c.clock.now())),
        signed_roster: forged.to_bytes(),
        version: 2,
        author: "María Rojas".into(),
    };
    let refused = c
        .peer_client(1, 0)
        .deliver(DeliverRequest {
            envelope: Some(envelope::sign(ROSTER_TYPE, update.encode_to_vec(), &c.key(1)).unwrap()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(roster_version_held(&c, 0, "CHL").await < 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_certificate_in_no_roster_entry_cannot_act_until_a_roster_names_it() {
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    let elsewhere = "ab".repeat(32);
    let without = SignedRoster::sign(&roster("PER", 2, &elsewhere), &c.key(0)).unwrap();
    publish(&c, 0, &without).await.unwrap();
    let refused = c
        .operator(0)
        .send_notice(hotline::proto::SendNoticeRequest {
            notice: Some(notice(&["CHL"], "Who are you?")),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("no contact of PER's roster version 2"),
        "{}",
        refused.message()
    );
    // Reading is not acting.
    assert_eq!(c.status(0).await.roster_version, 2);
    // The roster's signature is the authority: the certificate may publish the roster that names it.
    let with = SignedRoster::sign(&roster("PER", 3, &operator_cert(&c, 0)), &c.key(0)).unwrap();
    publish(&c, 0, &with).await.unwrap();
    let id = c.send(0, notice(&["CHL"], "Named now")).await;
    let actions: Vec<_> = c
        .log_entries(0)
        .into_iter()
        .filter_map(|e| match e.body {
            Some(hotline::proto::log_entry::Body::OperatorAction(a)) if a.detail.contains(&id) => Some(a.operator),
            _ => None,
        })
        .collect();
    assert_eq!(actions, ["María Rojas"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_removed_by_a_roster_is_refused_on_the_stream_it_opened_before() {
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut outcomes = c
        .operator(0)
        .send_notices(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let send = |title: &str| hotline::proto::SendNoticeRequest {
        notice: Some(notice(&["CHL"], title)),
    };
    tx.send(send("Before")).await.unwrap();
    let first = outcomes.message().await.unwrap().unwrap().result.unwrap();
    assert!(
        matches!(first, hotline::proto::send_notice_outcome::Result::Sent(_)),
        "{first:?}"
    );
    // Version 2 names another certificate: this operator no longer acts for PER.
    let without = SignedRoster::sign(&roster("PER", 2, &"ab".repeat(32)), &c.key(0)).unwrap();
    publish(&c, 0, &without).await.unwrap();
    tx.send(send("After removal")).await.unwrap();
    let second = outcomes.message().await.unwrap().unwrap().result.unwrap();
    let hotline::proto::send_notice_outcome::Result::Refused(refusal) = second else {
        panic!("a removed operator's notice was sent: {second:?}");
    };
    assert_eq!(refusal.code, Code::PermissionDenied as i32, "{refusal:?}");
    assert!(refusal.message.contains("roster version 2"), "{}", refusal.message);
    let notices_sent = c
        .log_lines(0)
        .iter()
        .filter(|l| l.starts_with("sent") && l.contains("notice"))
        .count();
    assert_eq!(notices_sent, 1, "the refused notice is not logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_roster_version_not_above_the_one_in_force_is_refused_and_the_roster_survives_a_restart() {
    let mut c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    let v2 = SignedRoster::sign(&roster("PER", 2, &operator_cert(&c, 0)), &c.key(0)).unwrap();
    publish(&c, 0, &v2).await.unwrap();
    let again = publish(&c, 0, &v2).await.unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition, "{again:?}");
    c.stop(0).await;
    c.restart(0).await;
    assert_eq!(
        c.status(0).await.roster_version,
        2,
        "the configured version 1 is not published again"
    );
    c.send(0, notice(&["CHL"], "Still María")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_roster_delivered_again_after_its_receipt_was_lost_gets_its_original_receipt() {
    // At scale a call can time out after the receiver logged it; the resend
    // must be receipted, not refused as "not above the version in force"
    // (193 parties' outboxes never drained before this).
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    let sent = c
        .node(1)
        .read(|db| {
            let id: String = db.query_row(
                "SELECT id FROM messages WHERE kind = 'roster' AND direction = 'sent'",
                [],
                |r| r.get(0),
            )?;
            hotline::state::message(db, &id)
        })
        .unwrap()
        .expect("CHL's first roster, sent");
    let kept = c.node(1).read(|db| hotline::state::receipts(db, &sent.id)).unwrap();
    let again = c
        .peer_client(1, 0)
        .deliver(DeliverRequest {
            envelope: Some(sent.envelope),
            ..Default::default()
        })
        .await
        .expect("a resent roster is receipted")
        .into_inner();
    let receipt = |e: hotline::proto::Envelope| hotline::proto::Receipt::decode(&e.payload[..]).unwrap();
    let (first, again) = (receipt(kept[0].1.clone()), receipt(again.receipt.unwrap()));
    assert_eq!(kept.len(), 1);
    assert_eq!(again.message_id, sent.id);
    assert_eq!(
        (again.log_index, again.received_at, again.log_entry),
        (first.log_index, first.received_at, first.log_entry),
        "the receipt of the entry logged the first time"
    );
}

#[test]
fn a_roster_names_each_field_it_refuses() {
    let key = IdentityKey::generate("hotline.example/PER").unwrap();
    let cert = "cd".repeat(32);
    let cases = [
        (roster("PER", 0, &cert), "version"),
        (roster("PER", 1, "CD"), "contact[0].certs"),
        (
            roster("PER", 1, &cert).replace("\"es\", \"en\"", "\"not a tag!\""),
            "contact[0].languages",
        ),
        (
            roster("PER", 1, &cert).replace("roles = [\"policy\"]", "roles = [\"technical\"]"),
            "policy role",
        ),
        (
            roster("PER", 1, &cert).replace("Diego Soto", "María Rojas"),
            "listed twice",
        ),
        (
            roster("PER", 1, &cert).replace("roles = [\"technical\"]", "roles = [\"chef\"]"),
            "unknown variant",
        ),
    ];
    for (text, named) in cases {
        let e = SignedRoster::sign(&text, &key).unwrap_err().to_string();
        assert!(e.contains(named), "{named}: {e}");
    }
}
