//! `systemctl reload`: a `hotline serve` process sent SIGHUP takes up a new
//! roster, new limits, alerts, metrics, a log filter and its node certificate renewed on disk without
//! dropping an operator's open event stream, and names a changed `listen`
//! as needing a restart, serving on as before.

mod common;

use std::time::Duration;

use hotline::proto::{StatusRequest, WatchEventsRequest, event};

fn log_of(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

async fn until_logged(path: &std::path::Path, what: &str) -> String {
    common::awaited(&format!("{what:?} in the log"), || async {
        let log = log_of(path);
        log.contains(what).then_some(log)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_takes_up_a_new_roster_limits_and_certificate_keeps_open_streams_and_names_a_changed_listen() {
    let root = tempfile::tempdir().unwrap();
    let made = hotline::setup::local_cluster(root.path(), &["PER", "CHL"], common::NORMS)
        .await
        .unwrap();
    let (per, chl) = (made[0].0.clone(), made[1].0.clone());
    drop(made); // the ports are free for the real processes
    let log = root.path().join("per.log");
    let serve = |config: &hotline::config::Config, log: std::process::Stdio| {
        std::process::Command::new(env!("CARGO_BIN_EXE_hotline"))
            .args(["serve", "--config", config.path.to_str().unwrap()])
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    };
    // Killed when the test ends, passed or failed.
    let per_node = common::Killed(serve(&per, std::fs::File::create(&log).unwrap().into()));
    let _chl_node = common::Killed(serve(&chl, std::process::Stdio::null()));
    until_logged(&log, "node serving").await;
    let operator = |c: &hotline::config::Config| {
        let channel =
            hotline::transport::channel(&c.client_node, &c.ca_pem().unwrap(), &c.client_cert().unwrap()).unwrap();
        hotline::proto::operator_client::OperatorClient::new(channel)
    };
    let mut desk = operator(&per);
    let mut stream = common::awaited("PER's event stream", || {
        let mut desk = desk.clone();
        async move { desk.watch_events(WatchEventsRequest {}).await.ok() }
    })
    .await
    .into_inner();
    let version_before = desk.status(StatusRequest {}).await.unwrap().into_inner().roster_version;

    // A new roster version, signed as an operator would; limits of 1 a second; another listen.
    let dir = per.path.parent().unwrap();
    let roster = dir.join("roster.toml");
    let text = std::fs::read_to_string(&roster).unwrap();
    std::fs::write(&roster, text.replace("version = 1", "version = 2")).unwrap();
    let (ok, v) = common::hotline_json(&[
        "roster",
        "set",
        roster.to_str().unwrap(),
        "--key",
        dir.join("identity.key").to_str().unwrap(),
        "--out",
        dir.join("roster.signed").to_str().unwrap(),
    ]);
    assert!(ok, "{v}");
    // The node certificate renewed in place by the party's CA, as an expiring one would be.
    let ca = hotline::tls::CertKey {
        cert: std::fs::read_to_string(dir.join("tls/ca.pem")).unwrap(),
        key: std::fs::read_to_string(dir.join("tls/ca.key")).unwrap(),
    };
    let hosts = ["127.0.0.1".to_owned(), "localhost".to_owned()];
    let renewed = hotline::tls::issue("PER", &ca, "PER", &hosts, hotline::tls::Usage::Node).unwrap();
    std::fs::write(dir.join("tls/node.pem"), &renewed.cert).unwrap();
    std::fs::write(dir.join("tls/node.key"), &renewed.key).unwrap();
    let config = std::fs::read_to_string(&per.path).unwrap();
    let config = config
        .replace("requests_per_second = 20000", "requests_per_second = 1")
        .replace("burst = 5000", "burst = 3")
        .replace(
            &format!("listen = \"{}\"", per.listen),
            &format!("listen = \"127.0.0.1:{}\"", common::free_port()),
        );
    // Alerts and metrics, off at start, turned on; the log at WARN but for the reload's own lines.
    let metrics_at = format!("127.0.0.1:{}", common::free_port());
    let config = "log = \"warn,hotline::cli=info\"\n".to_owned()
        + &config
        + "\n[alerts]\ncommand = [\"/bin/true\"]\nkinds = [\"deadline_missed\"]\nper_minute = 6\n"
        + &format!("\n[metrics]\nlisten = \"{metrics_at}\"\n");
    std::fs::write(&per.path, config).unwrap();
    std::process::Command::new("kill")
        .args(["-HUP", &per_node.0.id().to_string()])
        .status()
        .unwrap();
    let logged = until_logged(&log, "reloaded").await;
    assert!(
        logged.contains("roster version 2, published to every peer")
            && logged.contains("limits: 1 requests per second, burst 3"),
        "{logged}"
    );
    assert!(
        logged.lines().any(|l| l.contains("WARN")
            && l.contains("settings=listen")
            && l.contains("cannot change while the node runs")),
        "{logged}"
    );
    assert!(logged.contains("the node certificate renewed on disk"), "{logged}");
    assert!(
        logged.contains(r#"alerts: ["/bin/true"] for 1 kind(s), 6 a minute"#),
        "{logged}"
    );
    assert!(logged.contains(&format!("metrics served on {metrics_at}")), "{logged}");
    let scraped = hotline::metrics::scrape(metrics_at.parse().unwrap(), "").await.unwrap();
    assert!(scraped.contains("hotline_log_size "), "{scraped}");
    // The next connection is served the renewed certificate (read by OpenSSL's own client).
    if let Some(openssl) = common::outside_tool("openssl", "read the certificate a node presents (Debian: openssl)") {
        let presented = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{} s_client -connect {} </dev/null 2>/dev/null | {} x509 -noout -fingerprint -sha256",
                openssl.display(),
                per.listen,
                openssl.display()
            ))
            .output()
            .unwrap();
        let presented = String::from_utf8_lossy(&presented.stdout)
            .replace(':', "")
            .to_lowercase();
        let der = hotline::tls::certs_from_pem("renewed", &renewed.cert).unwrap();
        let expected = hex::encode(hotline::tls::fingerprint(&der[0]));
        assert!(
            presented.contains(&expected),
            "presented {presented}, renewed {expected}"
        );
    }

    // The roster is in force, on the address the node started with.
    let status = desk.status(StatusRequest {}).await.unwrap().into_inner();
    assert_eq!(status.roster_version, 2);
    assert!(status.roster_version > version_before);
    // The new limits hold from the next calls: a burst of 3, then refusals.
    let mut refused = 0;
    for _ in 0..6 {
        if let Err(s) = desk.status(StatusRequest {}).await {
            assert_eq!(s.code(), tonic::Code::ResourceExhausted, "{s:?}");
            refused += 1;
        }
    }
    assert!(refused >= 2, "only {refused} of 6 calls refused");
    // The stream opened before the reload still delivers: CHL's notice arrives on it.
    operator(&chl)
        .send_notice(hotline::proto::SendNoticeRequest {
            notice: Some(common::notice(&["PER"], "After the reload")),
        })
        .await
        .unwrap();
    let arrived = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(e) = stream.message().await.unwrap() {
            if let Some(event::Body::NoticeReceived(n)) = e.body
                && n.title == "After the reload"
            {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(arrived, Ok(true), "the open stream carried the notice");
    // Logged at WARN since the reload: the notice's arrival, an INFO line, is not.
    let log = log_of(&log);
    let since = log.split("reloaded").nth(1).unwrap_or_default();
    assert!(log.contains("log: warn,hotline::cli=info"), "{log}");
    assert!(!since.contains("received and logged"), "{since}");
}
