//! A failure repeated many times is logged once per interval, with a count
//! of those held back, not once each.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use hotline::repeats::Repeats;

#[test]
fn an_identical_failure_is_logged_once_per_interval_with_the_count_held_back() {
    let repeats = Repeats::new(Duration::from_secs(60));
    let t0 = Instant::now();
    assert_eq!(repeats.check("CHL: Unavailable", t0), Some(0), "the first is logged");
    for i in 1..=500 {
        assert_eq!(
            repeats.check("CHL: Unavailable", t0 + Duration::from_millis(i * 100)),
            None
        );
    }
    assert_eq!(
        repeats.check("ARG: Unavailable", t0),
        Some(0),
        "another kind is logged at once"
    );
    assert_eq!(
        repeats.check("CHL: Unavailable", t0 + Duration::from_secs(61)),
        Some(500),
        "a minute later: one line saying how many were held back"
    );
}

/// What the process logged, for the test below.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_full_disk_logs_the_failing_wal_checkpoint_once_not_every_round() {
    if !common::on_sqlite("the WAL checkpoint of the SQLite file") {
        return;
    }
    // A 2 MiB tmpfs as the data directory (mounting needs root, as CI runs).
    let dir = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(dir.path())
        .output();
    if !mounted.as_ref().is_ok_and(|o| o.status.success()) {
        let why = format!("a full disk needs a small tmpfs, and mount failed: {mounted:?}");
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
        eprintln!("SKIPPED: {why}");
        return;
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg("-l").arg(self.0).status();
        }
    }
    let _unmount = Unmount(dir.path());
    let captured = Captured::default();
    let writer = captured.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish(),
    )
    .unwrap();
    let key = hotline::keys::IdentityKey::generate("hotline.example/TST").unwrap();
    let log = hotline::log::Log::open(dir.path(), key).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Append until the disk is full; the WAL then holds pages the database file cannot take.
    rt.block_on(async {
        for i in 0.. {
            let big = common::entry(&format!("{i} {}", "x".repeat(40_000)));
            if log.append(vec![big]).await.is_err() {
                break;
            }
        }
    });
    let failures = log.checkpoint_failures();
    // Rounds run once a second: three fail within the wait.
    rt.block_on(common::awaited("three failed checkpoint rounds", || {
        let failed = failures.get();
        async move { (failed >= 3).then_some(()) }
    }));
    let text = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    let lines = text.matches("background WAL checkpoint failed").count();
    assert_eq!(
        lines,
        1,
        "{} failed rounds logged as {lines} lines:\n{text}",
        failures.get()
    );
    drop(log);
}
