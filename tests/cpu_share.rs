//! Signature checks run off the async workers, within a share per caller:
//! one peer's flood waits for its own share and leaves the other cores free, and
//! a heavy caller's checks run in the idle scheduling class.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use hotline::limits::CpuShare;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_second_job_waits_for_its_share_while_another_caller_runs() {
    let cpu = Arc::new(CpuShare::new(2, 1));
    let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let first = {
        let cpu = cpu.clone();
        tokio::spawn(async move {
            cpu.run("CHL", move || {
                started_tx.send(()).unwrap();
                release_rx.recv().unwrap();
            })
            .await
            .unwrap()
        })
    };
    tokio::task::spawn_blocking(move || started_rx.recv().unwrap())
        .await
        .unwrap();
    let second_ran = Arc::new(AtomicBool::new(false));
    let second = {
        let (cpu, ran) = (cpu.clone(), second_ran.clone());
        tokio::spawn(async move { cpu.run("CHL", move || ran.store(true, Ordering::SeqCst)).await.unwrap() })
    };
    // Another caller gets the free core at once.
    assert_eq!(cpu.run("ARG", || "ARG's check").await.unwrap(), "ARG's check");
    assert!(
        !second_ran.load(Ordering::SeqCst),
        "CHL ran a second job beyond its share"
    );
    release_tx.send(()).unwrap();
    first.await.unwrap();
    second.await.unwrap();
    assert!(second_ran.load(Ordering::SeqCst));
}

/// The scheduling class of the thread a check ran on.
#[cfg(target_os = "linux")]
fn class() -> thread_priority::ThreadSchedulePolicy {
    thread_priority::thread_schedule_policy().unwrap()
}

/// A check that keeps a core busy for a fifth of a second, and says where it ran.
#[cfg(target_os = "linux")]
fn busy_check() -> thread_priority::ThreadSchedulePolicy {
    let started = std::time::Instant::now();
    let mut x = 0u64;
    while started.elapsed() < std::time::Duration::from_millis(200) {
        x = std::hint::black_box(x.wrapping_add(1));
    }
    class()
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_callers_compete_a_heavy_callers_checks_run_in_the_idle_class_and_a_light_callers_do_not() {
    use thread_priority::{NormalThreadSchedulePolicy::*, ThreadSchedulePolicy::Normal};
    let cpu = CpuShare::new(2, 1);
    assert_eq!(cpu.run("ARG", class).await.unwrap(), Normal(Other));
    // CHL's first check is light when it starts, and takes a fifth of a second of CPU.
    assert_eq!(cpu.run("CHL", busy_check).await.unwrap(), Normal(Other));
    assert_eq!(cpu.run("CHL", class).await.unwrap(), Normal(Idle), "CHL is heavy now");
    assert_eq!(cpu.run("ARG", class).await.unwrap(), Normal(Other), "ARG is not");
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_heavy_caller_has_nobody_to_yield_to_and_runs_in_the_normal_class() {
    use thread_priority::{NormalThreadSchedulePolicy::*, ThreadSchedulePolicy::Normal};
    let cpu = CpuShare::new(2, 1);
    assert_eq!(cpu.run("CHL", busy_check).await.unwrap(), Normal(Other));
    assert_eq!(cpu.run("CHL", class).await.unwrap(), Normal(Other));
}
