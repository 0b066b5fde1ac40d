//! Delivery over bad links: real nodes with the recipient reached through
//! the impairing proxy (`hotline::impair`), so connections stall, are cut
//! and crawl. Every notice arrives once, none is stuck, and the sender sees
//! the link's state, raises an event when it turns, and logs its attempts
//! with a receipt deadline missed while the link was down.

mod common;

use std::time::Duration;

use common::{Cluster, FAST_NORMS, RETRY_MAX, notice};
use hotline::impair::Passage;
use hotline::proto::{Deadline, NormEventKind, StatusRequest, event};

/// Titles for `n` notices to `to`.
fn notices(to: &str, n: usize) -> Vec<hotline::proto::Notice> {
    (0..n).map(|k| notice(&[to], &format!("Beacon {k}"))).collect()
}

/// Sends `n` notices from node 0 to `to` in one stream; their ids.
async fn send_many(c: &Cluster, to: &str, n: usize) -> Vec<String> {
    c.send_stream(0, notices(to, n))
        .await
        .into_iter()
        .map(|o| match o {
            hotline::proto::send_notice_outcome::Result::Sent(s) => s.id,
            other => panic!("a notice was refused: {other:?}"),
        })
        .collect()
}

/// PER's view of its link to peer `party`, from `status`.
async fn link_of(c: &Cluster, party: &str) -> Option<hotline::proto::PeerLink> {
    let status = c.operator(0).status(StatusRequest {}).await.unwrap().into_inner();
    status.peers.into_iter().find(|p| p.party == party).and_then(|p| p.link)
}

/// Waits until every notice of `ids` is receipted by CHL, moving the clock so retries run.
async fn until_all_receipted(c: &Cluster, ids: &[String], secs: u64) {
    c.eventually_advancing(secs, RETRY_MAX, "every notice receipted by CHL", |c| {
        ids.iter()
            .all(|id| c.node(0).read(|db| hotline::state::receipts(db, id)).unwrap().len() == 1)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_sent_during_a_cut_arrive_once_each_when_the_link_returns() {
    let c = Cluster::start_behind_proxies(&["PER", "CHL"], FAST_NORMS, &["CHL"]).await;
    let mut events = c.node(0).subscribe();
    c.link("CHL").set_passage(Passage::Cut);
    let ids = send_many(&c, "CHL", 20).await;
    // The sender finds the link down and says so.
    let down = common::awaited("PER sees CHL unreachable", || async {
        link_of(&c, "CHL")
            .await
            .filter(|l| !l.reachable && l.failed_attempts >= 2)
    })
    .await;
    assert!(!down.last_failure.is_empty() && down.next_try.is_some(), "{down:?}");
    // Thirty seconds of the nodes' time pass with the link cut.
    c.clock.advance(Duration::from_secs(30));
    c.link("CHL").set_passage(Passage::Open);
    until_all_receipted(&c, &ids, 30).await;
    for id in &ids {
        assert_eq!(c.times_received(1, id), 1, "{id} is logged once by CHL");
    }
    let up = link_of(&c, "CHL").await.unwrap();
    assert!(up.reachable && up.failed_attempts == 0, "{up:?}");
    // The event stream told the operator both turns.
    let mut turns = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let Some(event::Body::Link(l)) = e.body {
            turns.push(l.reachable);
        }
    }
    assert_eq!(turns, [false, true], "the link went down once and came back once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backlog_goes_when_a_probe_finds_the_link_back_not_at_the_next_retry() {
    // Retries two hours apart: only the probe of the unreachable peer can send it sooner.
    let c = Cluster::start_behind_proxies_with(&["PER", "CHL"], FAST_NORMS, &["CHL"], |config| {
        config.retry_base = Duration::from_secs(7_200);
        config.retry_max = Duration::from_secs(7_200);
    })
    .await;
    c.link("CHL").set_passage(Passage::Cut);
    // LOW: no acknowledgement due for an hour, so no escalation goes to CHL meanwhile.
    let mut low = notice(&["CHL"], "After the outage");
    low.severity = hotline::proto::Severity::Low as i32;
    let id = c.send(0, low).await;
    c.eventually(10, "PER finds CHL unreachable", |c| {
        c.node(0).links().get("CHL").is_some_and(|l| !l.reachable)
    })
    .await;
    c.link("CHL").set_passage(Passage::Open);
    // At most twenty minutes of the nodes' clock, a probe interval at a time:
    // short of the first retry (an hour at least, with its jitter), and enough
    // probes that a loaded machine's slow reconnection cannot use them all up.
    let step = hotline::links::PROBE_EVERY;
    c.eventually_advancing_at_most(
        30,
        step,
        Duration::from_secs(1_200),
        "the probe finds CHL back and its backlog goes",
        |c| c.node(0).read(|db| hotline::state::receipts(db, &id)).unwrap().len() == 1,
    )
    .await;
    assert_eq!(c.times_received(1, &id), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_stall_holds_no_delivery_for_ever() {
    let c = Cluster::start_behind_proxies(&["PER", "CHL"], FAST_NORMS, &["CHL"]).await;
    // Bytes are taken and go nowhere: no reset, no close, nothing.
    c.link("CHL").set_passage(Passage::Stalled);
    let ids = send_many(&c, "CHL", 10).await;
    // The call's deadline (or the connection's keepalive) gives up on the stalled connection.
    c.eventually(60, "PER finds the stalled link", |c| {
        c.node(0).links().get("CHL").is_some_and(|l| !l.reachable)
    })
    .await;
    let stalled = link_of(&c, "CHL").await.unwrap();
    assert!(!stalled.last_failure.is_empty(), "{stalled:?}");
    c.link("CHL").set_passage(Passage::Open);
    until_all_receipted(&c, &ids, 60).await;
    for id in &ids {
        assert_eq!(c.times_received(1, id), 1, "{id} is logged once by CHL");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_deadline_missed_during_a_cut_is_logged_with_the_attempts() {
    let c = Cluster::start_behind_proxies(&["PER", "CHL"], FAST_NORMS, &["CHL"]).await;
    c.link("CHL").set_passage(Passage::Cut);
    let id = c.send(0, notice(&["CHL"], "Into the dark")).await;
    common::awaited("PER sees CHL unreachable", || async {
        link_of(&c, "CHL").await.filter(|l| !l.reachable)
    })
    .await;
    // The receipt is owed within 5 s.
    let missed = |c: &Cluster| {
        c.node(0)
            .read(|db| hotline::state::norm_events(db, Some(&id), 10))
            .unwrap()
            .into_iter()
            .find(|e| e.kind() == NormEventKind::DeadlineMissed && e.deadline() == Deadline::Receipt)
    };
    c.eventually_advancing(20, Duration::from_millis(500), "the receipt deadline missed", |c| {
        missed(c).is_some()
    })
    .await;
    let attempts = missed(&c).unwrap().attempts.expect("the sender's attempts are logged");
    assert!(attempts.unreachable && attempts.failed >= 1, "{attempts:?}");
    assert!(attempts.unreachable_since.is_some() && !attempts.last_failure.is_empty());
    // The report counts it as missed with the link down.
    let ledger = hotline::report::Ledger::from_data_dir(&c.configs[0].data, None).unwrap();
    let figures = hotline::report::figures(&ledger, c.node(0).in_force().agreement(), "PER");
    let receipt = figures
        .iter()
        .find(|f| f.party == "CHL" && f.norm == "receipt")
        .unwrap();
    assert_eq!((receipt.missed, receipt.link_down), (1, 1), "{receipt:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_down_longer_than_the_agreed_link_down_alert_raises_one_event() {
    let norms = format!("{FAST_NORMS}link_down_alert = \"1m\"\n");
    let c = Cluster::start_behind_proxies(&["PER", "CHL"], &norms, &["CHL"]).await;
    let mut events = c.node(0).subscribe();
    c.link("CHL").set_passage(Passage::Cut);
    c.send(0, notice(&["CHL"], "Anyone there?")).await;
    let too_long = |e: &hotline::proto::Event| matches!(&e.body, Some(event::Body::Link(l)) if l.down_too_long);
    let mut alerts = 0;
    c.eventually_advancing(30, RETRY_MAX, "the link_down event", |_| {
        while let Ok(e) = events.try_recv() {
            alerts += usize::from(too_long(&e));
        }
        alerts > 0
    })
    .await;
    // More failures later raise no second one for the same outage.
    c.clock.advance(Duration::from_secs(120));
    c.eventually_advancing(30, RETRY_MAX, "more failed attempts", |c| {
        c.node(0).links().get("CHL").is_some_and(|l| l.failed_attempts >= 10)
    })
    .await;
    while let Ok(e) = events.try_recv() {
        alerts += usize::from(too_long(&e));
    }
    assert_eq!(alerts, 1);
    let e = hotline::proto::Event {
        at: None,
        body: Some(event::Body::Link(link_of(&c, "CHL").await.unwrap())),
    };
    let mut with_flag = e.clone();
    if let Some(event::Body::Link(l)) = with_flag.body.as_mut() {
        l.down_too_long = true;
    }
    assert_eq!(hotline::alerts::kind_of(&e), None, "a link turning is no alert");
    assert_eq!(
        hotline::alerts::kind_of(&with_flag),
        Some(hotline::alerts::AlertKind::LinkDown)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_mebibyte_notice_crosses_a_64_kbit_link_in_one_attempt() {
    if !common::on_sqlite("the link, not the store, is under test") {
        return;
    }
    let c = Cluster::start_behind_proxies(&["PER", "CHL"], FAST_NORMS, &["CHL"]).await;
    c.link("CHL")
        .impair(hotline::impair::LinkProfile::Narrowband.impairment());
    let mut big = notice(&["CHL"], "Full packet capture summary");
    big.summary = "x".repeat(1_000_000);
    let before = c.link("CHL").bytes_forwarded();
    let id = c.send(0, big).await;
    // About 130 s of real time at 8,000 bytes a second; the nodes' clock stands still.
    c.eventually(400, "the large notice receipted", |c| {
        c.node(0).read(|db| hotline::state::receipts(db, &id)).unwrap().len() == 1
    })
    .await;
    assert_eq!(c.times_received(1, &id), 1);
    let link = link_of(&c, "CHL").await.unwrap();
    assert!(
        link.reachable && link.failed_attempts == 0,
        "never cut by a deadline: {link:?}"
    );
    let crossed = c.link("CHL").bytes_forwarded() - before;
    assert!(
        crossed < 1_300_000,
        "sent once, not again from the start: {crossed} bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_party_listing_a_dead_endpoint_first_is_reached_at_the_one_that_answers() {
    use hotline::agreement::SignedAgreement;
    use hotline::keys::IdentityKey;
    let dir = tempfile::tempdir().unwrap();
    let made = hotline::setup::local_cluster(dir.path(), &["PER", "CHL"], FAST_NORMS)
        .await
        .unwrap();
    // CHL's entry lists an endpoint nobody answers at, first, then its node's.
    let chl = &made[1].0;
    let signed = SignedAgreement::load(&chl.agreement).unwrap();
    let live = format!("endpoint = \"https://{}\"", chl.listen);
    let both = format!(
        "endpoint = [\"https://127.0.0.1:{}\", \"https://{}\"]",
        common::free_port(),
        chl.listen
    );
    assert!(signed.text().contains(&live));
    let mut resigned = SignedAgreement::parse(signed.text().replace(&live, &both).as_bytes()).unwrap();
    for (config, _) in &made {
        resigned
            .sign(&IdentityKey::load(&config.identity_key).unwrap())
            .unwrap();
    }
    for (config, _) in &made {
        std::fs::write(&config.agreement, resigned.to_bytes()).unwrap();
    }
    let c = Cluster::start_made(dir, made, |_| {}).await;
    let mut events = c.node(0).subscribe();
    let ids = send_many(&c, "CHL", 10).await;
    until_all_receipted(&c, &ids, 20).await;
    for id in &ids {
        assert_eq!(c.times_received(1, id), 1, "{id} is logged once by CHL");
    }
    // No call went to the dead endpoint: the link never turned down.
    while let Ok(e) = events.try_recv() {
        assert!(
            !matches!(&e.body, Some(event::Body::Link(l)) if !l.reachable),
            "a call failed: {e:?}"
        );
    }
    assert!(
        c.node(0)
            .links()
            .get("CHL")
            .is_some_and(|l| l.reachable && l.failed_attempts == 0)
    );
}
