//! Nodes exchanging signed notices, receipts and responses over real mutual
//! TLS on 127.0.0.1, with real SQLite files.

mod common;

use common::{Cluster, FAST_NORMS, RETRY_MAX, notice};
use hotline::proto::{RespondRequest, ResponseStatus, SendNoticeRequest};
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
    let listed = c
        .operator(0)
        .list_notices(hotline::proto::ListNoticesRequest { limit: 0 })
        .await
        .unwrap()
        .into_inner()
        .notices;
    let mut by = listed[0].receipted_by.clone();
    by.sort();
    assert_eq!(
        (listed.len(), by, listed[0].responses),
        (1, vec!["ARG".to_owned(), "CHL".to_owned()], 0)
    );
    let id = sent.id.as_str();
    for (party, env) in c.node(0).read(|db| state::receipts(db, id)).unwrap() {
        let r = <hotline::proto::Receipt as prost::Message>::decode(&env.payload[..]).unwrap();
        assert_eq!(
            (r.message_id.as_str(), r.from.as_str()),
            (id, party.as_str()),
            "the receipt as {party} signed it"
        );
    }
    assert!(
        c.log_lines(0)
            .iter()
            .any(|l| l.starts_with("sent notice") && l.contains(id))
    );
    assert_eq!(
        c.log_lines(0)
            .iter()
            .filter(|l| l.starts_with("received from") && l.contains("receipt ") && l.contains(id))
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
    let status = c.status(0).await;
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
    c.until_held(1, &sent.id).await;
    let resp = c
        .operator(1)
        .respond(RespondRequest {
            notice_id: sent.id.clone(),
            status: ResponseStatus::Investigating as i32,
            text: "On it.".into(),
            reason: hotline::proto::ReasonCode::Other as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    c.until_held(0, &resp.id).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_larger_than_an_entry_bundle_is_receipted_shown_whole_and_both_logs_export() {
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    let mut n = notice(&["CHL"], "Sample of the wiper");
    n.attachments.push(hotline::proto::Attachment {
        media_type: "application/octet-stream".into(),
        data: vec![0x5a; 300 * 1024],
        name: "wiper.bin".into(),
    });
    let sent = c
        .operator(0)
        .send_notice(SendNoticeRequest { notice: Some(n) })
        .await
        .unwrap()
        .into_inner();
    // PER accepts CHL's receipt: CHL's entry names PER's envelope by its hash.
    c.eventually(10, "CHL's receipt", |c| receipted_by(c, 0, &sent.id) == ["CHL"])
        .await;
    let thread = c
        .operator(1)
        .get_notice(hotline::proto::GetNoticeRequest { id: sent.id.clone() })
        .await
        .unwrap()
        .into_inner();
    let shown = hotline::message::decode_notice(&thread.notice.unwrap().payload).unwrap();
    assert_eq!(
        shown.attachments[0].data.len(),
        300 * 1024,
        "CHL shows the notice whole"
    );
    for i in [0, 1] {
        let data = &c.configs[i].data;
        let key = c.node(i).key().unwrap();
        let key = key.verifier();
        hotline::log::verify::verify_data_dir(data, key, |_, _| {}).unwrap();
        // Exported for a reader cleared for everything, every envelope kept beside the log is there.
        let out = tempfile::tempdir().unwrap();
        let done = hotline::log::export::export(data, out.path(), hotline::proto::Tlp::Red, |_, _| {}).unwrap();
        let report = hotline::log::export::verify_export(out.path(), key, |_, _| {}).unwrap();
        let kept: u64 = c
            .node(i)
            .read(|db| db.query_row("SELECT COUNT(*) FROM envelopes", [], |r| r.get::<i64>(0)))
            .unwrap() as u64;
        assert_eq!(
            std::fs::read_dir(out.path().join("envelope")).unwrap().count() as u64,
            kept,
            "node {i}"
        );
        assert!(done.withheld.is_empty() && report.withheld.is_empty(), "node {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recipient_down_for_a_while_receives_everything_once_back_without_duplicates() {
    let mut c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    c.stop(1).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let n = notice(&["CHL"], &format!("notice {i} while CHL is down"));
        ids.push(c.send(0, n).await);
    }
    c.eventually(10, "a failed attempt recorded for each", |c| {
        let outbox = c.node(0).read(state::outbox).unwrap();
        outbox.len() == 5 && outbox.iter().all(|p| p.attempts >= 1 && p.last_error.is_some())
    })
    .await;
    c.restart(1).await;
    c.eventually_advancing(15, RETRY_MAX, "all five receipted", |c| {
        ids.iter().all(|id| receipted_by(c, 0, id) == ["CHL"])
    })
    .await;
    // Counted by id: the clock advanced to force the retries may also have run out CHL's
    // acknowledgement clocks, and PER's escalations are notices of their own.
    let lines = c.log_lines(1);
    for id in &ids {
        let received = lines
            .iter()
            .filter(|l| l.starts_with(&format!("received from PER: notice {id} ")))
            .count();
        assert_eq!(received, 1, "notice {id} logged once at CHL: {lines:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_back_up_that_speaks_to_us_gets_its_backlog_without_waiting_for_the_retry() {
    let mut c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    c.stop(1).await;
    let id = c.send(0, notice(&["CHL"], "queued while CHL is down")).await;
    c.eventually(10, "a failed attempt recorded", |c| {
        c.node(0).read(state::outbox).unwrap().iter().all(|p| p.attempts >= 1)
    })
    .await;
    c.restart(1).await;
    // The clock stands still, so no retry falls due: only CHL's own delivery to PER wakes it.
    c.send(1, notice(&["PER"], "CHL is back")).await;
    c.eventually(10, "PER's backlog receipted by CHL", |c| {
        receipted_by(c, 0, &id) == ["CHL"]
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_sender_resumes_its_outbox() {
    let mut c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    c.stop(1).await;
    let id = c.send(0, notice(&["CHL"], "queued before a restart")).await;
    c.stop(0).await;
    c.restart(1).await;
    c.restart(0).await;
    c.eventually_advancing(15, RETRY_MAX, "receipt after the sender restarted", |c| {
        receipted_by(c, 0, &id) == ["CHL"]
    })
    .await;
    // Anything else PER queued for CHL meanwhile is delivered too (under load it may still be on its way).
    c.eventually_advancing(15, RETRY_MAX, "PER's outbox drains", |c| {
        c.node(0).read(state::outbox).unwrap().is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_response_deadline_produces_exactly_one_norm_event_on_both_sides() {
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    let mut n = notice(&["CHL"], "Critical: need help");
    n.severity = hotline::proto::Severity::Critical as i32; // respond within 2s
    let id = c.send(0, n).await;
    let missed = |id: &str, c: &Cluster, i: usize| {
        c.log_lines(i)
            .iter()
            .filter(|l| l.starts_with("DEADLINE_MISSED") && l.contains(id) && l.contains("response"))
            .count()
    };
    c.until_held(1, &id).await;
    c.clock.advance(std::time::Duration::from_secs(2)); // the agreed 2 s pass
    c.eventually(10, "PER logs CHL's missed response", |c| missed(&id, c, 0) == 1)
        .await;
    c.eventually(10, "CHL logs its own missed response", |c| missed(&id, c, 1) == 1)
        .await;
    // A later notice's deadline passing shows both norms workers looked again since.
    let mut later = notice(&["CHL"], "Critical: a second one");
    later.severity = hotline::proto::Severity::Critical as i32;
    let later = c.send(0, later).await;
    c.eventually_advancing(
        10,
        std::time::Duration::from_secs(1),
        "the later deadline missed on both sides",
        |c| missed(&later, c, 0) == 1 && missed(&later, c, 1) == 1,
    )
    .await;
    assert_eq!(missed(&id, &c, 0), 1, "logged once");
    assert_eq!(missed(&id, &c, 1), 1, "logged once");
    let status = c.status(0).await;
    assert!(
        status
            .recent_norm_events
            .iter()
            .any(|e| e.message_id == id && e.party == "CHL")
    );
    assert!(
        !status
            .deadlines
            .iter()
            .any(|d| d.message_id == id && d.deadline == hotline::proto::Deadline::Response as i32)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_communication_check_is_answered_automatically_and_logged() {
    let c = Cluster::start(&["PER", "CHL", "ARG"], FAST_NORMS).await;
    let ids = c
        .operator(0)
        .comm_check(hotline::proto::CommCheckRequest {
            party: String::new(),
            human: false,
        })
        .await
        .unwrap()
        .into_inner()
        .notice_ids;
    assert_eq!(ids.len(), 2);
    c.eventually(10, "both peers answered", |c| {
        c.log_lines(0).iter().filter(|l| l.starts_with("COMM_CHECK_OK")).count() == 2
    })
    .await;
    let status = c.status(0).await;
    assert!(
        status.peers.iter().all(|p| p.last_comm_check_ok.is_some()),
        "{status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receipt_for_an_automatic_check_vouches_for_its_answer_logged_with_it() {
    use prost::Message;
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    let id = c
        .operator(0)
        .comm_check(hotline::proto::CommCheckRequest {
            party: "CHL".into(),
            human: false,
        })
        .await
        .unwrap()
        .into_inner()
        .notice_ids
        .remove(0);
    c.eventually(10, "CHL's receipt for the check", |c| {
        c.node(0).read(|db| state::receipts(db, &id)).unwrap().len() == 1
    })
    .await;
    let (_, envelope) = c.node(0).read(|db| state::receipts(db, &id)).unwrap().remove(0);
    let receipt = hotline::proto::Receipt::decode(&envelope.payload[..]).unwrap();
    let size = hotline::log::checkpoint::parse_size(&receipt.checkpoint.unwrap().note).unwrap();
    // The checkpoint CHL signed its receipt over already holds the answer,
    // the entry after the check: one transaction logged both.
    assert!(
        size >= receipt.log_index + 2,
        "checkpoint of size {size} for the check at {}",
        receipt.log_index
    );
    let answer = &c.log_lines(1)[receipt.log_index as usize + 1];
    assert!(
        answer.starts_with("sent response ") && answer.contains("-> PER"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_witness_each_others_checkpoints() {
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    for i in 0..3 {
        let n = notice(&["CHL"], &format!("n{i}"));
        c.operator(0)
            .send_notice(SendNoticeRequest { notice: Some(n) })
            .await
            .unwrap();
    }
    c.eventually(10, "CHL witnessed PER", |c| {
        c.node(1).read(|db| state::last_witnessed(db, "PER")).unwrap().is_some()
    })
    .await;
    c.eventually(10, "PER witnessed CHL", |c| {
        c.node(0).read(|db| state::last_witnessed(db, "CHL")).unwrap().is_some()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amber_notice_may_not_be_forwarded_to_a_third_party_but_a_green_one_may() {
    let c = Cluster::start(&["PER", "CHL", "ARG"], FAST_NORMS).await;
    for (tlp, allowed) in [(hotline::proto::Tlp::Amber, false), (hotline::proto::Tlp::Green, true)] {
        let mut n = notice(&["CHL"], "for CHL only");
        n.tlp = tlp as i32;
        let id = c.send(0, n).await;
        c.until_held(1, &id).await;
        let mut forward = notice(&["ARG"], "passing it on");
        forward.kind = hotline::proto::NoticeKind::Update as i32;
        forward.in_reply_to = id.clone();
        let result = c
            .operator(1)
            .send_notice(SendNoticeRequest { notice: Some(forward) })
            .await;
        match (allowed, result) {
            (true, Ok(_)) => {}
            (false, Err(e)) => {
                assert_eq!(e.code(), tonic::Code::FailedPrecondition);
                assert!(
                    e.message().contains("TLP:AMBER") && e.message().contains("ARG"),
                    "{}",
                    e.message()
                );
            }
            (allowed, other) => panic!("TLP {tlp:?}: allowed={allowed}, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_sent_over_one_stream_are_answered_in_order_each_as_send_notice_would() {
    use hotline::proto::send_notice_outcome::Result as Outcome;
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    let mut notices: Vec<_> = (0..40)
        .map(|i| hotline::proto::Notice {
            id: uuid::Uuid::now_v7().to_string(),
            ..notice(&["CHL"], &format!("bulk {i}"))
        })
        .collect();
    notices[7].title = String::new();
    notices[19].to = vec!["XXX".into()];
    let answered = c.send_stream(0, notices.clone()).await;
    assert_eq!(answered.len(), notices.len(), "one outcome per notice");
    for (i, (n, outcome)) in notices.iter().zip(&answered).enumerate() {
        match (i, outcome) {
            (7 | 19, Outcome::Refused(r)) => {
                let single = c
                    .operator(0)
                    .send_notice(SendNoticeRequest {
                        notice: Some(n.clone()),
                    })
                    .await
                    .unwrap_err();
                assert_eq!(
                    (r.code, r.message.as_str()),
                    (single.code() as i32, single.message()),
                    "notice {i}"
                );
            }
            (_, Outcome::Sent(s)) if i != 7 && i != 19 => assert_eq!(s.id, n.id, "outcome {i} answers notice {i}"),
            _ => panic!("notice {i}: {outcome:?}"),
        }
    }
    c.eventually(20, "CHL receipts every notice sent", |c| {
        notices
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 7 && *i != 19)
            .all(|(_, n)| receipted_by(c, 0, &n.id) == ["CHL"])
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_notices_counts_against_the_operators_request_limits() {
    use hotline::proto::send_notice_outcome::Result as Outcome;
    let c = Cluster::start_with(&["PER", "CHL"], FAST_NORMS, |config| {
        config.limits = common::TIGHT_LIMITS;
    })
    .await;
    let notices = (0..10).map(|i| notice(&["CHL"], &format!("bulk {i}"))).collect();
    let (mut sent, mut exhausted) = (0, 0);
    for outcome in c.send_stream(0, notices).await {
        match outcome {
            Outcome::Sent(_) => sent += 1,
            Outcome::Refused(r) => {
                assert_eq!(r.code, tonic::Code::ResourceExhausted as i32, "{}", r.message);
                exhausted += 1;
            }
        }
    }
    assert_eq!(sent + exhausted, 10);
    assert!(sent <= 4 && exhausted >= 6, "{sent} sent, {exhausted} refused");
}
