//! What `hotline serve` tells the people who run it: a refused TLS
//! handshake is one INFO line naming the peer's address and the reason.

mod common;

use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_tls_handshake_is_logged_at_info_with_the_peers_address_and_reason() {
    let root = tempfile::tempdir().unwrap();
    let made = hotline::setup::local_cluster(root.path(), &["PER", "CHL"], common::NORMS)
        .await
        .unwrap();
    let per = made[0].0.clone();
    drop(made); // the ports are free for the real process
    let log_path = root.path().join("serve.log");
    let mut serve = std::process::Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args(["serve", "--config", per.path.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let wait_for = |what: &str, done: &dyn Fn(&str) -> bool| {
        let end = Instant::now() + Duration::from_secs(20);
        while !done(&log()) {
            assert!(Instant::now() < end, "timed out waiting for {what}: {}", log());
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for("the node to serve", &|l| l.contains("node serving"));
    // A client whose certificate comes from a CA outside the agreement.
    let stranger_ca = hotline::tls::new_ca("XYZ").unwrap();
    let stranger = hotline::tls::issue("XYZ", &stranger_ca, "XYZ", &[], hotline::tls::Usage::Client).unwrap();
    let channel = hotline::transport::channel(&per.client_node, &per.ca_pem().unwrap(), &stranger).unwrap();
    let refused = hotline::proto::operator_client::OperatorClient::new(channel)
        .status(hotline::proto::StatusRequest {})
        .await;
    assert!(refused.is_err());
    wait_for("the refusal to be logged", &|l| l.contains("TLS handshake refused"));
    let _ = serve.kill();
    let _ = serve.wait();
    let line = log()
        .lines()
        .find(|l| l.contains("TLS handshake refused"))
        .unwrap()
        .to_owned();
    assert!(line.contains("INFO"), "{line}");
    assert!(line.contains("peer=127.0.0.1:"), "{line}");
    assert!(line.contains("reason="), "{line}");
}
