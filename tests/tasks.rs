//! A node owns its background tasks: stopping awaits every one of them, and
//! a task that panics is not swallowed.

mod common;

use common::{Cluster, FAST_NORMS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_a_background_task_is_the_error_stop_returns() {
    let mut c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    c.node(0).tasks().spawn(async { panic!("the witness lost its mind") });
    let running = c.nodes[0].take().unwrap();
    let err = running.stop().await.expect_err("stop reports the panic");
    assert!(err.to_string().contains("the witness lost its mind"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "a background task of PER panicked: the courier tripped")]
async fn a_test_whose_background_task_panicked_fails() {
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    c.node(0).tasks().spawn(async { panic!("the courier tripped") });
    c.eventually(10, "the task has run", |c| c.node(0).tasks().panicked().is_some())
        .await;
    // The test's own assertions pass; dropping the cluster fails it.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_a_node_ends_its_tasks_and_aborts_one_that_ignores_the_stop() {
    let mut c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    c.stop(1).await; // PER's deliveries to CHL now wait in retry
    c.send(0, common::notice(&["CHL"], "queued while CHL is down")).await;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    c.node(0).tasks().spawn(async move {
        let _held = tx;
        std::future::pending::<()>().await
    });
    c.stop(0).await;
    assert!(rx.await.is_err(), "the task was ended and dropped what it held");
}
