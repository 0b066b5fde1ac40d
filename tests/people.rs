//! The human layer over the machine layer (issue 13): exercises kept out of
//! the compliance figures, reasons given with answers.

mod common;

use std::time::Duration;

use common::{Cluster, FAST_NORMS, notice};
use hotline::proto::{Exercise, GetNoticeRequest, NormEventKind, ReasonCode, RespondRequest, ResponseStatus};
use hotline::state;
use prost::Message as _;

fn receipted(c: &Cluster, id: &str) -> bool {
    c.node(0).read(|db| state::receipts(db, id)).unwrap().len() == 1
}

fn missed(c: &Cluster, id: &str) -> bool {
    c.node(0)
        .read(|db| state::norm_events(db, Some(id), 10))
        .unwrap()
        .iter()
        .any(|e| e.kind() == NormEventKind::DeadlineMissed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exercise_traffic_is_kept_out_of_the_compliance_figures_status_prints() {
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    let real = c.send(0, notice(&["CHL"], "A real incident")).await;
    let mut n = notice(&["CHL"], "A live drill");
    n.exercise = Exercise::LiveDrill as i32;
    let drill = c.send(0, n).await;
    c.eventually(10, "both receipted", |c| receipted(c, &real) && receipted(c, &drill))
        .await;
    // CHL answers neither: both response clocks run out, and both are logged.
    c.eventually_advancing(20, Duration::from_secs(1), "both response deadlines missed", |c| {
        missed(c, &real) && missed(c, &drill)
    })
    .await;
    let status = c
        .operator(0)
        .status(hotline::proto::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let chl = &status.peers[0];
    // The real notice's receipt was met and its response missed; the drill counts for nothing.
    assert_eq!((chl.deadlines_met, chl.deadlines_missed), (1, 1), "{chl:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_to_an_exercise_is_the_same_exercise_and_carries_its_reason_code() {
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    let mut n = notice(&["CHL"], "A tabletop scenario");
    n.exercise = Exercise::Tabletop as i32;
    let id = c.send(0, n).await;
    c.eventually(10, "CHL holds the notice", |c| {
        c.node(1).read(|db| state::message(db, &id)).unwrap().is_some()
    })
    .await;
    c.operator(1)
        .respond(RespondRequest {
            notice_id: id.clone(),
            status: ResponseStatus::Declined as i32,
            text: "Not ours to act on.".into(),
            reason: ReasonCode::OutsideJurisdiction as i32,
        })
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let response = loop {
        let thread = c
            .operator(0)
            .get_notice(GetNoticeRequest { id: id.clone() })
            .await
            .unwrap()
            .into_inner();
        if let Some(env) = thread.responses.first() {
            break hotline::proto::Response::decode(&env.payload[..]).unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "PER never got CHL's response");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(response.exercise(), Exercise::Tabletop);
    assert_eq!(response.reason(), ReasonCode::OutsideJurisdiction);
}
