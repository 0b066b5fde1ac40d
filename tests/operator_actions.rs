//! What operators do is theirs: a notice's author is the roster contact
//! whose operator certificate made the call, each state-changing call is logged as an operator
//! action naming it, a notice sent again under its own id is idempotent, and
//! what `Status` returns stays bounded however much is running.

mod common;

use common::{Cluster, FAST_NORMS, notice};
use hotline::proto::log_entry::Body;
use hotline::proto::{SendNoticeRequest, SendNoticeResponse, StatusRequest};
use tonic::Code;

async fn send(c: &Cluster, n: hotline::proto::Notice) -> Result<SendNoticeResponse, tonic::Status> {
    c.operator(0)
        .send_notice(SendNoticeRequest { notice: Some(n) })
        .await
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_is_authored_by_the_roster_contact_its_certificate_names_and_the_action_is_logged() {
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    let mut n = notice(&["CHL"], "who sent this");
    n.author = "The Minister Himself".into();
    let sent = send(&c, n).await.unwrap();
    let entries = c.log_entries(0);
    let Some(Body::Sent(logged)) = &entries[sent.log_index as usize].body else {
        panic!("entry {} is not the sent notice", sent.log_index)
    };
    assert!(
        logged.envelope.is_none(),
        "the entry commits to the envelope, kept beside it"
    );
    let kept = c
        .node(0)
        .read(|db| hotline::state::message(db, &sent.id))
        .unwrap()
        .expect("the sent notice is held");
    // Sealed to CHL and to us (AMBER): our node opens it.
    assert_eq!(kept.envelope.payload_type, hotline::envelope::SEALED_TYPE);
    let opened = c.node(0).opened(&kept.envelope).unwrap();
    let logged = hotline::message::decode_notice(&opened.payload).unwrap();
    assert_eq!(
        logged.author, "PER duty officer",
        "the roster contact of the certificate, not the client's claim"
    );
    let action = entries.iter().find_map(|e| match &e.body {
        Some(Body::OperatorAction(a)) if a.detail.contains(&sent.id) => Some(a.clone()),
        _ => None,
    });
    let action = action.expect("an operator-action entry for the notice");
    assert_eq!(action.operator, "PER duty officer");
    assert_eq!(action.action, "send notice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_sent_again_under_its_own_id_gets_the_first_outcome() {
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    let mut n = notice(&["CHL"], "sent twice by a nervous operator");
    n.id = hotline::message::new_id();
    let first = send(&c, n.clone()).await.unwrap();
    let again = send(&c, n).await.unwrap();
    assert_eq!((again.id, again.log_index), (first.id.clone(), first.log_index));
    let logged = c
        .log_lines(0)
        .iter()
        .filter(|l| l.starts_with("sent") && l.contains(&first.id))
        .count();
    assert_eq!(logged, 1, "logged once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_notice_under_a_used_id_is_already_exists_in_plain_words() {
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    let mut n = notice(&["CHL"], "the first one");
    n.id = hotline::message::new_id();
    send(&c, n.clone()).await.unwrap();
    n.title = "a different one".into();
    let err = send(&c, n).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    assert!(
        err.message().contains("already used for a different message"),
        "{}",
        err.message()
    );
    for internal in ["UNIQUE", "constraint", "messages.id"] {
        assert!(
            !err.message().contains(internal),
            "{internal} leaked: {}",
            err.message()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_operator_calls_count_against_the_operators_rate_limit() {
    let c = Cluster::start_with(&["PER", "CHL"], FAST_NORMS, |config| {
        config.limits = common::TIGHT_LIMITS
    })
    .await;
    let mut op = c.operator(0);
    let mut refused = None;
    for _ in 0..6 {
        if let Err(e) = op.status(hotline::proto::StatusRequest {}).await {
            refused = Some(e);
            break;
        }
    }
    let refused = refused.expect("six Status calls at once passed a burst of three");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_the_hundred_deadlines_due_soonest_and_counts_them_all() {
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    let notices = (0..101).map(|i| notice(&["CHL"], &format!("Notice {i}"))).collect();
    let sent = c.send_stream(0, notices).await;
    assert_eq!(sent.len(), 101);
    let status = c.status(0).await;
    assert_eq!(status.deadlines.len(), 100);
    assert!(status.deadlines_running >= 101, "{}", status.deadlines_running);
    let due: Vec<_> = status.deadlines.iter().map(|d| d.due_at.unwrap().seconds).collect();
    assert!(due.windows(2).all(|w| w[0] <= w[1]), "soonest first: {due:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_answer_does_not_start_within_the_call_timeout_is_cancelled() {
    let c = Cluster::start_with(&["PER", "CHL"], FAST_NORMS, |config| {
        config.call_timeout = std::time::Duration::from_secs(1);
    })
    .await;
    // Another process holds the database's write lock, so the node's log cannot commit.
    let blocker = hotline::store::open_writer(&c.configs[0].data).unwrap();
    blocker
        .execute_batch(match blocker.is_postgres() {
            true => "BEGIN; LOCK TABLE checkpoints IN EXCLUSIVE MODE",
            false => "BEGIN IMMEDIATE",
        })
        .unwrap();
    let stuck = send(&c, notice(&["CHL"], "Stuck behind a lock")).await.unwrap_err();
    assert_eq!(stuck.code(), Code::Cancelled, "{stuck:?}");
    blocker.execute_batch("ROLLBACK").unwrap();
    // The node answers again once the lock is gone.
    c.operator(0).status(StatusRequest {}).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_id_may_be_given_by_the_start_of_it_when_only_one_id_starts_so() {
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    // Ids chosen to share their first eight characters.
    let ids = [
        "0badcafe-0000-7000-8000-000000000001",
        "0badcafe-1111-7000-8000-000000000002",
    ];
    for id in ids {
        let mut n = notice(&["CHL"], "Prefixed");
        n.id = id.into();
        send(&c, n).await.unwrap();
    }
    let get = |id: &str| {
        let mut op = c.operator(0);
        let id = id.to_owned();
        async move {
            op.get_notice(hotline::proto::GetNoticeRequest { id })
                .await
                .map(|t| t.into_inner())
        }
    };
    let thread = get("0badcafe-1").await.unwrap();
    let shown = hotline::message::decode_notice(&thread.notice.unwrap().payload).unwrap();
    assert_eq!(shown.id, ids[1]);
    let refused = get("0badcafe").await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(
        refused.message(),
        format!(
            "0badcafe is the start of several messages' ids ({}, {}); give more of it",
            ids[0], ids[1]
        )
    );
    assert_eq!(get("0bad-none").await.unwrap_err().code(), Code::NotFound);
    // An answer given by the start of the id is signed for the whole id.
    c.until_held(1, ids[0]).await;
    let answered = c
        .operator(1)
        .respond(hotline::proto::RespondRequest {
            notice_id: "0badcafe-0".into(),
            status: hotline::proto::ResponseStatus::Acknowledged as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let logged = c
        .node(1)
        .read(|db| hotline::state::message(db, &answered.id))
        .unwrap()
        .unwrap();
    assert_eq!(logged.thread, ids[0]);
}
