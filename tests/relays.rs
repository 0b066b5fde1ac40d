//! Relays: when a sender's direct path to a recipient has failed for the
//! agreed `relay_after`, a party the agreement names in `relays` carries the
//! envelope and brings the receipt back. Real nodes; the recipient's link
//! cuts off the sender's source address only, so the relay still reaches it.

mod common;

use std::net::IpAddr;

use common::{Cluster, FAST_NORMS, RETRY_MAX, notice};
use hotline::proto::{DeliverBatchRequest, Envelope, RelayRequest, Severity, deliver_outcome, log_entry};

/// The address PER's node dials from, which CHL's link cuts off.
const PER_SOURCE: &str = "127.1.0.1";

/// PER, CHL and ARG, ARG a relay after a minute; CHL unreachable from PER only.
async fn per_cut_off_from_chl() -> Cluster {
    let norms = format!("{FAST_NORMS}relay_after = \"1m\"\nrelays = [\"ARG\"]\n");
    let c = Cluster::start_behind_proxies_with(&["PER", "CHL", "ARG"], &norms, &["CHL"], |config| {
        if config.party == "PER" {
            config.source_address = Some(PER_SOURCE.parse().unwrap());
        }
    })
    .await;
    let per: IpAddr = PER_SOURCE.parse().unwrap();
    c.link("CHL").cut_off([per].into());
    c
}

/// PER's envelope of message `id`, as it signed it.
fn envelope_of(c: &Cluster, id: &str) -> Envelope {
    c.node(0)
        .read(|db| hotline::state::message(db, id))
        .unwrap()
        .expect("PER holds the message")
        .envelope
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recipient_cut_off_from_its_sender_is_reached_once_through_a_relay() {
    let c = per_cut_off_from_chl().await;
    // LOW: nothing else falls due meanwhile and goes to CHL.
    let mut low = notice(&["CHL"], "Through a third party");
    low.severity = Severity::Low as i32;
    let id = c.send(0, low).await;
    c.eventually(10, "PER finds CHL unreachable", |c| {
        c.node(0).links().get("CHL").is_some_and(|l| !l.reachable)
    })
    .await;
    // A minute of the nodes' time later, the delivery goes through ARG.
    c.eventually_advancing(30, RETRY_MAX, "CHL's receipt back at PER", |c| {
        c.node(0).read(|db| hotline::state::receipts(db, &id)).unwrap().len() == 1
    })
    .await;
    // CHL logged it once, from PER via ARG.
    let received: Vec<_> = c
        .log_entries(1)
        .into_iter()
        .filter_map(|e| match e.body {
            Some(log_entry::Body::Received(r)) if r.meta.as_ref().is_some_and(|m| m.id == id) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!((received[0].from.as_str(), received[0].via.as_str()), ("PER", "ARG"));
    // ARG logged that it carried the commitment PER logged, and holds no message.
    let commitment = received[0].envelope_sha256.clone();
    let carried: Vec<_> = c
        .log_entries(2)
        .into_iter()
        .filter_map(|e| match e.body {
            Some(log_entry::Body::Relayed(r)) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(carried.len(), 1, "{carried:?}");
    assert_eq!(
        (
            carried[0].from.as_str(),
            carried[0].to.as_str(),
            &carried[0].envelope_sha256
        ),
        ("PER", "CHL", &commitment)
    );
    assert!(c.node(2).read(|db| hotline::state::message(db, &id)).unwrap().is_none());
    // PER logged the receipt with the relay that brought it.
    let receipt_via: Vec<String> = c
        .log_entries(0)
        .into_iter()
        .filter_map(|e| match e.body {
            Some(log_entry::Body::Received(r))
                if r.meta.as_ref().is_some_and(|m| m.kind == "receipt" && m.id == id) =>
            {
                Some(r.via)
            }
            _ => None,
        })
        .collect();
    assert_eq!(receipt_via, ["ARG"]);
    // PER's report shows the receipt's path.
    let ledger = hotline::report::Ledger::from_data_dir(&c.configs[0].data, None).unwrap();
    assert_eq!(ledger.threads[&id].relayed, [("CHL".to_owned(), "ARG".to_owned())]);
    // Every log, the relay's Relayed entry included, verifies.
    for i in 0..3 {
        hotline::log::verify::verify_data_dir(&c.configs[i].data, c.key(i).verifier(), |_, _| {})
            .unwrap_or_else(|e| panic!("{}'s log: {e}", c.configs[i].party));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_envelope_a_relay_altered_is_refused_and_not_logged() {
    let c = per_cut_off_from_chl().await;
    let id = c.send(0, notice(&["CHL"], "Do not touch")).await;
    let mut altered = envelope_of(&c, &id);
    let last = altered.payload.len() - 1;
    altered.payload[last] ^= 1;
    // ARG, a relay, hands CHL the altered envelope as PER's.
    let answer = c
        .peer_client(2, 1)
        .deliver_batch(DeliverBatchRequest {
            envelopes: vec![altered],
            sender: "PER".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let outcome = answer.outcomes[0].result.clone();
    assert!(
        matches!(&outcome, Some(deliver_outcome::Result::Error(e)) if e.code == tonic::Code::Unauthenticated as i32),
        "{outcome:?}"
    );
    assert!(c.node(1).read(|db| hotline::state::message(db, &id)).unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_party_the_agreement_does_not_name_a_relay_carries_nothing() {
    let c = per_cut_off_from_chl().await;
    let id = c.send(0, notice(&["CHL"], "Not through you")).await;
    let env = envelope_of(&c, &id);
    // CHL is no relay: ARG refuses what it hands over as PER's...
    let refused = c
        .peer_client(1, 2)
        .deliver_batch(DeliverBatchRequest {
            envelopes: vec![env.clone()],
            sender: "PER".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    // ...and refuses to carry for PER.
    let refused = c
        .peer_client(0, 1)
        .relay(RelayRequest {
            to: "ARG".into(),
            envelopes: vec![env.clone()],
            agreement: None,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    // A relay carries only its caller's own envelopes: CHL cannot send PER's through ARG.
    let refused = c
        .peer_client(1, 2)
        .relay(RelayRequest {
            to: "PER".into(),
            envelopes: vec![env],
            agreement: None,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
}
