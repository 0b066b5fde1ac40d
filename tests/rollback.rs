//! Backup, restore and rollback protection: a consistent copy of a serving
//! node's store, put back only once it verifies; a node started on an old
//! copy refuses to serve, naming the entries its peers saw that it lacks,
//! instead of signing a fork; the same node on its full store starts.

mod common;

use common::{Cluster, FAST_NORMS, hotline, hotline_json, notice};

/// Waits until every notice node `i` sent is receipted.
async fn all_receipted(c: &Cluster, i: usize) {
    common::awaited("every delivery receipted", || async {
        c.status(i).await.peers.iter().all(|p| p.outbox == 0).then_some(())
    })
    .await
}

/// Moves node `i`'s store (and its WAL files) out of its data directory.
fn remove_store(c: &Cluster, i: usize) {
    if c.configs[i].database.is_some() {
        // PostgreSQL's database is emptied; the next open makes the schema again.
        let db = hotline::store::open_writer(&c.configs[i].data).unwrap();
        db.execute_batch("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
            .unwrap();
        return;
    }
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(c.configs[i].data.join(format!("hotline.db{suffix}")));
    }
}

fn restore(c: &Cluster, i: usize, file: &std::path::Path) -> std::process::Output {
    hotline(&[
        "restore",
        file.to_str().unwrap(),
        "--config",
        c.configs[i].path.to_str().unwrap(),
    ])
}

async fn start(c: &Cluster, i: usize) -> Result<hotline::server::Running, hotline::node::NodeError> {
    let listener = tokio::net::TcpListener::bind(c.configs[i].listen_addr()).await.unwrap();
    hotline::server::start(&c.configs[i], Some(listener), c.clock.clone()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restored_from_an_old_backup_refuses_to_serve_naming_the_missing_entries_and_starts_on_its_full_store() {
    let mut c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    c.send(0, notice(&["CHL"], "Before the backup")).await;
    all_receipted(&c, 0).await;
    let old = c.dir.path().join("old.hotline-backup");
    let config = c.configs[0].path.to_str().unwrap().to_owned();
    let (ok, taken) = hotline_json(&["backup", "--config", &config, "--out", old.to_str().unwrap()]);
    assert!(ok, "a backup of a serving node: {taken}");
    let old_size = taken["entries"].as_u64().unwrap();

    c.send(0, notice(&["CHL"], "After the backup, one")).await;
    c.send(0, notice(&["CHL"], "After the backup, two")).await;
    all_receipted(&c, 0).await;
    // CHL checks PER's checkpoints at most every 100 ms: it logs one past the backup soon after.
    let witnessed = |c: &Cluster| {
        c.node(1)
            .read(|db| hotline::state::last_witnessed(db, "PER"))
            .unwrap()
            .map_or(0, |w| w.0)
    };
    c.eventually(10, "CHL witnessed PER's log past the backup", |c| {
        witnessed(c) > old_size
    })
    .await;
    c.stop(0).await;
    let full = c.dir.path().join("full.hotline-backup");
    let (ok, _) = hotline_json(&["backup", "--config", &config, "--out", full.to_str().unwrap()]);
    assert!(ok);

    remove_store(&c, 0);
    let restored = restore(&c, 0, &old);
    assert!(restored.status.success(), "{restored:?}");
    // Read once PER is stopped and two commands have run: CHL logs the newest
    // checkpoint it witnessed up to 100 ms after it arrived.
    let seen = witnessed(&c);
    let refused = start(&c, 0).await.err().expect("a node on an old copy does not serve");
    let said = refused.to_string();
    assert!(
        said.contains(&format!("entries {old_size}..{seen}")) && said.contains(&format!("CHL saw {seen}")),
        "{said}"
    );
    assert_eq!(
        hotline::log::LogReader::open(&c.configs[0].data)
            .unwrap()
            .latest_checkpoint()
            .unwrap()
            .0,
        old_size,
        "it signed nothing"
    );

    remove_store(&c, 0);
    assert!(restore(&c, 0, &full).status.success());
    c.nodes[0] = Some(start(&c, 0).await.expect("the full store starts"));
    c.send(0, notice(&["CHL"], "After the restore")).await;
    all_receipted(&c, 0).await;
    assert!(
        !c.log_lines(1).iter().any(|l| l.starts_with("CHECKPOINT_FORK")),
        "CHL saw no fork"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_whose_entries_were_altered_is_not_restored() {
    let mut c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    c.send(0, notice(&["CHL"], "Kept")).await;
    all_receipted(&c, 0).await;
    let file = c.dir.path().join("altered.hotline-backup");
    let config = c.configs[0].path.to_str().unwrap().to_owned();
    assert!(hotline_json(&["backup", "--config", &config, "--out", file.to_str().unwrap()]).0);
    let db = rusqlite::Connection::open(&file).unwrap();
    db.execute(
        "UPDATE entries SET data = CAST(data || x'00' AS BLOB) WHERE idx = 1",
        [],
    )
    .unwrap();
    drop(db);
    c.stop(0).await;
    remove_store(&c, 0);

    let refused = restore(&c, 0, &file);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("does not verify") && said.contains("entry 1"), "{said}");
    let store = hotline::store::open_writer(&c.configs[0].data).unwrap();
    let held: i64 = store
        .query_row("SELECT COUNT(*) FROM entries", [], |r| r.get(0))
        .unwrap();
    assert_eq!(held, 0, "nothing put in place");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_refuses_to_replace_a_store_that_is_there() {
    let c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    let file = c.dir.path().join("b.hotline-backup");
    let config = c.configs[0].path.to_str().unwrap().to_owned();
    assert!(hotline_json(&["backup", "--config", &config, "--out", file.to_str().unwrap()]).0);
    let refused = restore(&c, 0, &file);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("a store is there already"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starting_node_reports_not_serving_and_refuses_operators_until_its_peers_were_asked() {
    let mut c = Cluster::start(&["PER", "CHL"], FAST_NORMS).await;
    c.stop(1).await;
    c.stop(0).await;
    // CHL's address accepts connections and never answers: PER waits its startup_check_timeout.
    let _silent = tokio::net::TcpListener::bind(c.configs[1].listen_addr()).await.unwrap();
    c.configs[0].startup_check_timeout = std::time::Duration::from_secs(2);
    let listener = tokio::net::TcpListener::bind(c.configs[0].listen_addr()).await.unwrap();
    let (config, clock) = (c.configs[0].clone(), c.clock.clone());
    let starting = tokio::spawn(async move { hotline::server::start(&config, Some(listener), clock).await });

    let channel = hotline::transport::channel(
        &c.configs[0].client_node,
        &c.configs[0].ca_pem().unwrap(),
        &c.configs[0].client_cert().unwrap(),
    )
    .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let check = tonic_health::pb::HealthCheckRequest {
        service: "hotline.v1.Federation".into(),
    };
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving;
    let first = common::awaited("PER answers health checks", || async {
        health
            .clone()
            .check(check.clone())
            .await
            .ok()
            .map(|r| r.into_inner().status())
    })
    .await;
    assert_eq!(
        first,
        tonic_health::pb::health_check_response::ServingStatus::NotServing
    );
    let refused = c
        .operator(0)
        .status(hotline::proto::StatusRequest {})
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains("starting"), "{refused:?}");

    c.nodes[0] = Some(
        starting
            .await
            .unwrap()
            .expect("PER starts once CHL's answer is overdue"),
    );
    assert_eq!(health.check(check).await.unwrap().into_inner().status(), serving);
    assert!(c.operator(0).status(hotline::proto::StatusRequest {}).await.is_ok());
}
