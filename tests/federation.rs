//! Nodes exchanging signed notices, receipts and responses over real mutual
//! TLS on 127.0.0.1, with real SQLite files.

mod common;

use common::{Cluster, FAST_NORMS, notice};
use hotline::proto::{RespondRequest, ResponseStatus, SendNoticeRequest, StatusRequest};
use hotline::state;

fn receipted_by(c: &Cluster, i: usize, id: &str) -> Vec<String> {
    let mut v: Vec<String> = c
        .node(i)
        .read(|db| state::receipts(db, id))
        .unwrap()
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_to_two_parties_is_receipted_by_both_and_lands_in_all_three_logs() {
    let c = Cluster::start(&["PER", "CHL", "ARG"], FAST_NORMS).await;
    let sent = c
        .operator(0)
        .send_notice(SendNoticeRequest {
            notice: Some(notice(&["CHL", "ARG"], "Wiper at the grid")),
        })
        .await
        .unwrap()
        .into_inner();
    c.eventually(10, "receipts from CHL and ARG", |c| {
        receipted_by(c, 0, &sent.id) == ["ARG", "CHL"]
    })
    .await;
    let id = sent.id.as_str();
    assert!(
        c.log_lines(0)
            .iter()
            .any(|l| l.starts_with("sent notice") && l.contains(id))
    );
    assert_eq!(
        c.log_lines(0)
            .iter()
            .filter(|l| l.starts_with("received from") && l.contains("receipt by"))
            .count(),
        2
    );
    for i in [1, 2] {
        assert!(
            c.log_lines(i)
                .iter()
                .any(|l| l.starts_with("received from PER: notice") && l.contains(id)),
            "node {i}"
        );
    }
    let status = c.operator(0).status(StatusRequest {}).await.unwrap().into_inner();
    assert!(status.peers.iter().all(|p| p.outbox == 0), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_round_trips_with_its_own_receipt() {
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    let sent = c
        .operator(0)
        .send_notice(SendNoticeRequest {
            notice: Some(notice(&["CHL"], "Phishing wave")),
        })
        .await
        .unwrap()
        .into_inner();
    c.eventually(10, "CHL has the notice", |c| {
        c.node(1).read(|db| state::message(db, &sent.id)).unwrap().is_some()
    })
    .await;
    let resp = c
        .operator(1)
        .respond(RespondRequest {
            notice_id: sent.id.clone(),
            status: ResponseStatus::Investigating as i32,
            text: "On it.".into(),
        })
        .await
        .unwrap()
        .into_inner();
    c.eventually(10, "PER has CHL's response", |c| {
        c.node(0).read(|db| state::message(db, &resp.id)).unwrap().is_some()
    })
    .await;
    c.eventually(10, "CHL has PER's receipt of the response", |c| {
        receipted_by(c, 1, &resp.id) == ["PER"]
    })
    .await;
    let thread = c
        .operator(0)
        .get_notice(hotline::proto::GetNoticeRequest { id: sent.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(thread.responses.len(), 1);
    assert_eq!(thread.receipts.len(), 1, "CHL's receipt of the notice");
}
