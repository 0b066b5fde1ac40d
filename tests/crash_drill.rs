//! The crash drill: load between two `hotline serve` processes while one or
//! the other is killed with SIGKILL at random moments, again and again. After
//! the last restart every receipted notice is in both logs, none is logged
//! twice, both logs verify, and the outbox drains.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hotline::config::Config;
use hotline::proto::log_entry::Body;
use hotline::proto::operator_client::OperatorClient;
use hotline::proto::{SendNoticeRequest, StatusRequest};
use prost::Message;

fn serve(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn client(c: &Config) -> OperatorClient<tonic::transport::Channel> {
    OperatorClient::new(
        hotline::transport::channel(&c.client_node, &c.ca_pem().unwrap(), &c.client_cert().unwrap()).unwrap(),
    )
}

async fn until_up(c: &Config) {
    let end = Instant::now() + Duration::from_secs(30);
    while client(c).status(StatusRequest {}).await.is_err() {
        assert!(Instant::now() < end, "{} did not come up", c.party);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Notice ids in a node's log: (sent, received) counts per id.
fn logged_notices(dir: &Path) -> HashMap<String, (u32, u32)> {
    let reader = hotline::log::LogReader::open(dir).unwrap();
    let mut seen: HashMap<String, (u32, u32)> = HashMap::new();
    for (_, data) in reader.entries(0, i64::MAX as u64, usize::MAX >> 1).unwrap() {
        let entry = hotline::proto::LogEntry::decode(&data.data[..]).unwrap();
        let sent = matches!(entry.body, Some(Body::Sent(_)));
        // The entry says what it records without the envelope: its metadata.
        let Some(meta) = hotline::log::entry::meta(&entry).filter(|m| m.kind == "notice") else {
            continue;
        };
        let n = meta.clone();
        let e = seen.entry(n.id).or_default();
        if sent { e.0 += 1 } else { e.1 += 1 }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_and_duplicates_nothing() {
    let root = tempfile::tempdir().unwrap();
    let made = hotline::setup::local_cluster(root.path(), &["A", "B"], hotline::setup::LOAD_NORMS)
        .await
        .unwrap();
    let configs: Vec<Config> = made
        .into_iter()
        .map(|(c, l)| {
            drop(l);
            c
        })
        .collect();
    let mut nodes: Vec<Child> = configs.iter().map(|c| serve(&c.path)).collect();
    for c in &configs {
        until_up(c).await;
    }
    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    for round in 0..6u64 {
        // Load for a random while, from 16 concurrent operators.
        let run_for = Duration::from_millis(200 + (seed.wrapping_mul(round + 7) % 600));
        let stop_at = Instant::now() + run_for;
        let senders: Vec<_> = (0..16)
            .map(|w| {
                let (mut a, acked) = (client(&configs[0]), acknowledged.clone());
                tokio::spawn(async move {
                    let mut k = 0;
                    while Instant::now() < stop_at {
                        let n = common::notice(&["B"], &format!("round {round} worker {w} notice {k}"));
                        // A call to a node killed mid-call once never returned (the
                        // client's connection state hung, with no socket left); one
                        // that times out counts as not acknowledged, like an error.
                        let call = a.send_notice(SendNoticeRequest { notice: Some(n) });
                        if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(10), call).await {
                            acked.lock().unwrap().push(r.into_inner().id);
                        }
                        k += 1;
                    }
                })
            })
            .collect();
        tokio::time::sleep(run_for / 2).await;
        let victim = (round % 2) as usize; // A, then B, then A...
        nodes[victim].kill().unwrap(); // SIGKILL, mid-load
        nodes[victim].wait().unwrap();
        for s in senders {
            s.await.unwrap();
        }
        nodes[victim] = serve(&configs[victim].path);
        until_up(&configs[victim]).await;
    }
    // The outbox drains once both are up.
    let end = Instant::now() + Duration::from_secs(120);
    loop {
        let status = client(&configs[0]).status(StatusRequest {}).await.unwrap().into_inner();
        if status.peers.iter().all(|p| p.outbox == 0) {
            break;
        }
        assert!(Instant::now() < end, "outbox did not drain: {status:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for n in &mut nodes {
        let _ = Command::new("kill").arg("-TERM").arg(n.id().to_string()).status();
        n.wait().unwrap();
    }

    let acked = acknowledged.lock().unwrap().clone();
    assert!(acked.len() > 50, "too little load: {}", acked.len());
    let (a_log, b_log) = (logged_notices(&configs[0].data), logged_notices(&configs[1].data));
    let receipted: Vec<String> = {
        let conn = rusqlite::Connection::open(configs[0].data.join("hotline.db")).unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT r.message_id FROM receipts r JOIN messages m ON m.id = r.message_id \
                 WHERE r.party = 'B' AND m.kind = 'notice'",
            )
            .unwrap();
        stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    };
    for id in &acked {
        assert!(receipted.contains(id), "acknowledged notice {id} was never receipted");
    }
    for id in &receipted {
        assert_eq!(
            a_log.get(id).map(|c| c.0),
            Some(1),
            "{id} not logged exactly once as sent at A"
        );
        assert_eq!(
            b_log.get(id).map(|c| c.1),
            Some(1),
            "{id} not logged exactly once as received at B"
        );
    }
    assert!(b_log.values().all(|c| c.1 == 1), "a notice was logged twice at B");
    for c in &configs {
        let key = hotline::keys::IdentityKey::load(&c.identity_key).unwrap();
        hotline::log::verify::verify_data_dir(&c.data, key.verifier(), |_, _| {}).unwrap();
    }
}
