//! What `hotline serve` tells the people who run it: a refused TLS
//! handshake is one INFO line naming the peer's address and the reason; a
//! refused call is one WARN line; the same failure repeated is summarised;
//! under systemd text lines leave the timestamp to journald, and JSON lines
//! carry the fields a log shipper indexes.

mod common;

use std::time::{Duration, Instant};

/// PER's node as a real `hotline serve` process logging at INFO to a file.
struct Serve {
    _root: tempfile::TempDir,
    per: hotline::config::Config,
    process: std::process::Child,
    log_path: std::path::PathBuf,
}

impl Serve {
    async fn start() -> Serve {
        Self::start_with(&[], &[]).await
    }

    /// With more `serve` arguments and environment variables.
    async fn start_with(args: &[&str], env: &[(&str, &str)]) -> Serve {
        let root = tempfile::tempdir().unwrap();
        let made = hotline::setup::local_cluster(root.path(), &["PER", "CHL"], common::NORMS)
            .await
            .unwrap();
        let per = made[0].0.clone();
        drop(made); // the ports are free for the real process
        let log_path = root.path().join("serve.log");
        let process = std::process::Command::new(env!("CARGO_BIN_EXE_hotline"))
            .args(["serve", "--config", per.path.to_str().unwrap()])
            .args(args)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap();
        let serve = Serve {
            _root: root,
            per,
            process,
            log_path,
        };
        serve
            .wait_for("the node to serve", &|l| l.contains("node serving"))
            .await;
        serve
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits until the log shows what `done` looks for: the process writes
    /// its log to a file, so it is read again until it does (20 s at most).
    async fn wait_for(&self, what: &str, done: &dyn Fn(&str) -> bool) {
        let end = Instant::now() + Duration::from_secs(20);
        while !done(&self.log()) {
            assert!(Instant::now() < end, "timed out waiting for {what}: {}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the process; its whole log.
    fn stop(mut self) -> String {
        let _ = self.process.kill();
        let _ = self.process.wait();
        self.log()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_tls_handshake_is_logged_at_info_with_the_peers_address_and_reason() {
    let serve = Serve::start().await;
    let per = &serve.per;
    // A client whose certificate comes from a CA outside the agreement.
    let stranger_ca = hotline::tls::new_ca("XYZ").unwrap();
    let stranger = hotline::tls::issue("XYZ", &stranger_ca, "XYZ", &[], hotline::tls::Usage::Client).unwrap();
    let channel = hotline::transport::channel(&per.client_node, &per.ca_pem().unwrap(), &stranger).unwrap();
    let refused = hotline::proto::operator_client::OperatorClient::new(channel)
        .status(hotline::proto::StatusRequest {})
        .await;
    assert!(refused.is_err());
    serve
        .wait_for("the refusal to be logged", &|l| l.contains("TLS handshake refused"))
        .await;
    let line = serve
        .stop()
        .lines()
        .find(|l| l.contains("TLS handshake refused"))
        .unwrap()
        .to_owned();
    assert!(line.contains("INFO"), "{line}");
    assert!(line.contains("peer=127.0.0.1:"), "{line}");
    assert!(line.contains("reason="), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_refused_call_repeated_is_one_warn_line_naming_caller_method_and_code() {
    let serve = Serve::start().await;
    let per = &serve.per;
    let channel =
        hotline::transport::channel(&per.client_node, &per.ca_pem().unwrap(), &per.client_cert().unwrap()).unwrap();
    let mut operator = hotline::proto::operator_client::OperatorClient::new(channel);
    for _ in 0..20 {
        let refused = operator
            .get_notice(hotline::proto::GetNoticeRequest {
                id: "no-such-notice".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::NotFound);
    }
    // A call that succeeds after them: every refusal before it has been logged, if it was going to be.
    operator.status(hotline::proto::StatusRequest {}).await.unwrap();
    let log = serve.stop();
    let refusals: Vec<String> = log
        .lines()
        .filter(|l| l.contains("call refused"))
        .map(str::to_owned)
        .collect();
    assert_eq!(refusals.len(), 1, "{refusals:#?}");
    let line = &refusals[0];
    for part in [
        "WARN",
        "caller=\"local ",
        "method=\"/hotline.v1.Operator/GetNotice\"",
        "code=NotFound",
        "no-such-notice",
    ] {
        assert!(line.contains(part), "{part} missing from {line}");
    }
    assert!(!log.contains("ERROR"), "{log}");
}

#[test]
fn an_internal_failure_repeated_is_logged_once_and_every_caller_gets_its_reference() {
    use std::io::Write;
    #[derive(Clone, Default)]
    struct Lines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl Write for Lines {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let statuses: Vec<tonic::Status> = tracing::subscriber::with_default(subscriber, || {
        (0..100)
            .map(|_| {
                tonic::Status::from(hotline::log::LogError::Corrupt {
                    path: "/srv/hotline/data".into(),
                    what: "batch not committed: database or disk is full (test 8d1f)".into(),
                })
            })
            .collect()
    });
    let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("ERROR") && text.contains("disk is full"), "{text}");
    let first = statuses[0].message().to_owned();
    assert!(
        statuses
            .iter()
            .all(|s| s.code() == tonic::Code::Internal && s.message() == first)
    );
    let reference = first.split_whitespace().nth(2).unwrap().trim_end_matches(':');
    assert!(
        text.contains(reference),
        "the logged line carries the reference {reference}: {text}"
    );
    assert!(!first.contains("/srv/hotline"), "no path reaches the caller: {first}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_systemd_text_lines_leave_the_timestamp_to_journald() {
    // systemd sets JOURNAL_STREAM when standard error goes to the journal.
    let serve = Serve::start_with(&["--log-format", "text"], &[("JOURNAL_STREAM", "8:12345")]).await;
    let log = serve.stop();
    let line = log.lines().find(|l| l.contains("node serving")).unwrap();
    assert!(line.trim_start().starts_with("INFO"), "{line}");
    assert!(!line.contains('\u{1b}'), "{line:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_carry_one_event_each_with_its_fields() {
    let serve = Serve::start_with(&["--log-format", "json"], &[]).await;
    let log = serve.stop();
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let event: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(event["level"].is_string() && event["fields"].is_object(), "{line}");
    }
    let serving = log.lines().find(|l| l.contains("node serving")).unwrap();
    let event: serde_json::Value = serde_json::from_str(serving).unwrap();
    assert_eq!(event["fields"]["party"], "PER", "{serving}");
}
