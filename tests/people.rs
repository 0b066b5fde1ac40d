//! The human layer over the machine layer (issue 13): exercises kept out of
//! the compliance figures, reasons given with answers.

mod common;

use std::time::Duration;

use common::{Cluster, FAST_NORMS, notice};
use hotline::proto::{Deadline, Exercise, GetNoticeRequest, NormEventKind, ReasonCode, RespondRequest, ResponseStatus};
use hotline::state;
use prost::Message as _;

fn receipted(c: &Cluster, id: &str) -> bool {
    c.node(0).read(|db| state::receipts(db, id)).unwrap().len() == 1
}

/// The clocks node `i` logged as missed for message `id`, in the order logged.
fn misses(c: &Cluster, i: usize, id: &str) -> Vec<Deadline> {
    let mut kinds: Vec<Deadline> = c
        .node(i)
        .read(|db| state::norm_events(db, Some(id), 10))
        .unwrap()
        .iter()
        .filter(|e| e.kind() == NormEventKind::DeadlineMissed)
        .map(|e| e.deadline())
        .collect();
    kinds.sort_by_key(|d| *d as i32);
    kinds
}

/// CHL answers notice `id` with `status`, promising a further answer by `promised_by`.
async fn answer(c: &Cluster, id: &str, status: ResponseStatus, promised_by: Option<prost_types::Timestamp>) {
    c.eventually(10, "CHL holds the notice", |c| {
        c.node(1).read(|db| state::message(db, id)).unwrap().is_some()
    })
    .await;
    c.operator(1)
        .respond(RespondRequest {
            notice_id: id.into(),
            status: status as i32,
            text: "…".into(),
            promised_by,
            ..Default::default()
        })
        .await
        .unwrap();
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
    // CHL answers neither: both response clocks run out, and both are logged; each missed step is
    // escalated by a notice of its own (the drill's as the same exercise). Wait until the real
    // notice's two escalations are receipted too.
    c.eventually_advancing(
        20,
        Duration::from_secs(1),
        "both acknowledgement and response deadlines missed",
        |c| misses(c, 0, &real).len() == 2 && misses(c, 0, &drill).len() == 2,
    )
    .await;
    let status = common::awaited("the escalations receipted", || async {
        let status = c.status(0).await;
        let peer = &status.peers[0];
        let receipts = peer
            .clocks
            .iter()
            .find(|k| k.deadline() == Deadline::Receipt)
            .map(|k| k.met);
        (receipts == Some(4) && peer.outbox == 0).then_some(status)
    })
    .await;
    let chl = &status.peers[0];
    // PER's first roster, the real notice and its two escalations were receipted, its
    // acknowledgement and response missed; the drill and its escalations count for nothing.
    assert_eq!((chl.deadlines_met, chl.deadlines_missed), (4, 2), "{chl:?}");
    let by_kind = |d: Deadline| chl.clocks.iter().find(|c| c.deadline() == d).map(|c| (c.met, c.missed));
    assert_eq!(by_kind(Deadline::Receipt), Some((4, 0)));
    assert_eq!(by_kind(Deadline::Acknowledge), Some((0, 1)));
    assert_eq!(by_kind(Deadline::Response), Some((0, 1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_to_an_exercise_is_the_same_exercise_and_carries_its_reason_code() {
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    let mut n = notice(&["CHL"], "A tabletop scenario");
    n.exercise = Exercise::Tabletop as i32;
    let id = c.send(0, n).await;
    c.until_held(1, &id).await;
    c.operator(1)
        .respond(RespondRequest {
            notice_id: id.clone(),
            status: ResponseStatus::Declined as i32,
            text: "Not ours to act on.".into(),
            reason: ReasonCode::OutsideJurisdiction as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    let response = common::awaited("PER gets CHL's response", || async {
        let thread = c
            .operator(0)
            .get_notice(GetNoticeRequest { id: id.clone() })
            .await
            .unwrap()
            .into_inner();
        let env = thread.responses.first()?;
        Some(hotline::proto::Response::decode(&env.payload[..]).unwrap())
    })
    .await;
    assert_eq!(response.exercise(), Exercise::Tabletop);
    assert_eq!(response.reason(), ReasonCode::OutsideJurisdiction);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgement_and_response_deadlines_miss_independently_each_logged_once_on_both_sides() {
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    // Read but never answered; answered at once (which also acknowledges); neither.
    let read = c.send(0, notice(&["CHL"], "read only")).await;
    let answered = c.send(0, notice(&["CHL"], "answered")).await;
    let silent = c.send(0, notice(&["CHL"], "silence")).await;
    answer(&c, &read, ResponseStatus::Acknowledged, None).await;
    answer(&c, &answered, ResponseStatus::Mitigated, None).await;
    c.eventually(10, "PER holds both responses", |c| {
        c.node(0).read(|db| state::thread(db, &read)).unwrap().len() == 2
            && c.node(0).read(|db| state::thread(db, &answered)).unwrap().len() == 2
    })
    .await;
    // Every clock on both sides ends, met or missed: after that nothing more can be logged missed.
    c.eventually_advancing(20, Duration::from_secs(1), "every clock ended on both sides", |c| {
        (0..2).all(|i| c.node(i).read(state::running_deadline_count).unwrap() == 0)
    })
    .await;
    for i in 0..2 {
        assert_eq!(misses(&c, i, &read), [Deadline::Response], "node {i}");
        assert_eq!(misses(&c, i, &answered), [], "node {i}");
        assert_eq!(
            misses(&c, i, &silent),
            [Deadline::Response, Deadline::Acknowledge],
            "node {i}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_investigating_answer_may_promise_a_further_answer_which_is_a_clock_of_its_own() {
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    let kept = c.send(0, notice(&["CHL"], "promise kept")).await;
    let broken = c.send(0, notice(&["CHL"], "promise broken")).await;
    let by = hotline::clock::to_proto(c.clock.now() + time::Duration::seconds(30));
    answer(&c, &kept, ResponseStatus::Investigating, Some(by)).await;
    answer(&c, &broken, ResponseStatus::Investigating, Some(by)).await;
    answer(&c, &kept, ResponseStatus::Mitigated, None).await;
    c.eventually(10, "PER holds all three answers", |c| {
        c.node(0).read(|db| state::thread(db, &kept)).unwrap().len() == 3
            && c.node(0).read(|db| state::thread(db, &broken)).unwrap().len() == 2
    })
    .await;
    c.eventually_advancing(
        20,
        Duration::from_secs(5),
        "the broken promise is missed on both sides",
        |c| (0..2).all(|i| misses(c, i, &broken) == [Deadline::Promise]),
    )
    .await;
    for i in 0..2 {
        assert_eq!(misses(&c, i, &kept), [], "node {i}");
    }
    // A promise comes only with INVESTIGATING.
    let refused = c
        .operator(1)
        .respond(RespondRequest {
            notice_id: kept.clone(),
            status: ResponseStatus::Declined as i32,
            promised_by: Some(by),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(refused.message().contains("promised_by"), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_human_communication_check_waits_for_a_person_and_its_answer_time_is_recorded_and_shown() {
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    let check = |human| {
        let mut op = c.operator(0);
        async move {
            op.comm_check(hotline::proto::CommCheckRequest {
                party: "CHL".into(),
                human,
            })
            .await
            .unwrap()
            .into_inner()
            .notice_ids
            .remove(0)
        }
    };
    let answered = check(true).await;
    let unanswered = check(true).await;
    // The node does not answer a human check by itself: an automatic check sent after them is
    // answered, they are not.
    let automatic = check(false).await;
    c.eventually(10, "CHL's node answers the automatic check", |c| {
        c.node(0).read(|db| state::thread(db, &automatic)).unwrap().len() == 2
    })
    .await;
    assert_eq!(c.node(0).read(|db| state::thread(db, &answered)).unwrap().len(), 1);
    c.clock.advance(Duration::from_millis(1500));
    answer(&c, &answered, ResponseStatus::Acknowledged, None).await;
    c.eventually(10, "PER logs the answer", |c| {
        c.node(0).read(|db| state::human_checks(db, "CHL", 5)).unwrap().len() == 1
    })
    .await;
    let status = c.status(0).await;
    assert_eq!(status.peers[0].human_check_ms, [1500], "{:?}", status.peers[0]);
    // The other is never answered: its clock runs out on both sides.
    c.eventually_advancing(
        20,
        Duration::from_secs(1),
        "the unanswered check is missed on both sides",
        |c| (0..2).all(|i| misses(c, i, &unanswered) == [Deadline::CommCheckAnswer]),
    )
    .await;
    assert!(misses(&c, 0, &answered).is_empty() && misses(&c, 1, &answered).is_empty());
}

/// Norms whose acknowledgement and response clocks run out in seconds, and
/// that escalate again 10 s after the first escalation, and a minute after that.
fn escalating_norms() -> String {
    FAST_NORMS.replace(
        "clock_skew = \"5m\"",
        "clock_skew = \"5m\"\nescalate_after = [\"10s\", \"60s\"]",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_response_escalates_to_the_policy_contact_level_by_level_logged_on_both_sides() {
    let c = Cluster::start(&["PER", "CHL"], &escalating_norms()).await;
    let id = c.send(0, notice(&["CHL"], "Wiper at the grid")).await;
    let escalations = |c: &Cluster, i: usize| -> Vec<hotline::proto::NormEvent> {
        c.node(i)
            .read(|db| state::norm_events(db, Some(&id), 50))
            .unwrap()
            .into_iter()
            .filter(|e| e.kind() == NormEventKind::Escalated)
            .collect()
    };
    // CHL neither acknowledges nor answers: each missed step escalates once (level 1), on both sides.
    c.eventually_advancing(
        20,
        Duration::from_secs(1),
        "both missed steps escalated on both sides",
        |c| escalations(c, 0).len() == 2 && escalations(c, 1).len() == 2,
    )
    .await;
    let received: Vec<hotline::proto::Notice> = c
        .node(1)
        .read(|db| state::thread(db, &id))
        .unwrap()
        .into_iter()
        .filter_map(|m| m.notice(c.node(1).opener()))
        .filter(|n| n.escalation_level > 0)
        .collect();
    assert_eq!(received.len(), 2, "{received:?}");
    assert!(
        received
            .iter()
            .all(|n| n.attention == "policy" && n.in_reply_to == id && n.escalation_level == 1)
    );
    // Still undone 10 s later: level 2, once per step. An answer then ends it: level 3 never comes.
    c.eventually_advancing(20, Duration::from_secs(2), "level 2", |c| escalations(c, 0).len() == 4)
        .await;
    answer(&c, &id, ResponseStatus::Investigating, None).await;
    c.eventually(10, "PER holds the answer", |c| {
        c.node(0)
            .read(|db| state::thread(db, &id))
            .unwrap()
            .iter()
            .any(|m| m.sender == "CHL")
    })
    .await;
    c.eventually_advancing(20, Duration::from_secs(2), "no escalation left to run", |c| {
        c.node(0).read(state::escalations_pending).unwrap() == 0
    })
    .await;
    assert_eq!(escalations(&c, 0).len(), 4, "{:?}", escalations(&c, 0));
}
