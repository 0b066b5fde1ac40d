//! Hot standby on PostgreSQL: two `hotline serve` processes of one party
//! share one database; the writer-lease holder is killed with SIGKILL while
//! a peer sends notices, and the standby takes over with nothing lost,
//! nothing logged twice, and no fork seen by the peer.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hotline::agreement::SignedAgreement;
use hotline::keys::IdentityKey;

fn serve(config: &Path, log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// Waits (up to a minute) until `hotline status` answers on `config`'s node.
fn serving(config: &Path, what: &str) {
    until(
        60,
        || format!("{what} did not start serving"),
        || {
            common::hotline(&["status", "--config", config.to_str().unwrap()])
                .status
                .success()
        },
    );
}

/// Polls `done` (these nodes are other processes: there is nothing to await)
/// until it holds, failing with `why` after `secs` seconds.
fn until(secs: u64, why: impl Fn() -> String, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(secs), "{}", why());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn send(config: &Path, title: &str) -> Option<String> {
    let (ok, out) = common::hotline_json(&[
        "notice",
        "send",
        "--config",
        config.to_str().unwrap(),
        "--to",
        "PER",
        "--severity",
        "low",
        "--title",
        title,
    ]);
    ok.then(|| out["id"].as_str().unwrap().to_owned())
}

/// The notices CHL holds PER's receipt for.
fn receipted(chl_data: &Path) -> Vec<String> {
    let db = hotline::store::open_reader(chl_data).unwrap();
    let mut stmt = db
        .prepare("SELECT message_id FROM receipts WHERE party = 'PER'")
        .unwrap();
    let rows = stmt.query_map([], |r| r.get(0)).unwrap();
    rows.collect::<Result<Vec<String>, _>>().unwrap()
}

fn describe(entry: &hotline::log::entry::Entry) -> String {
    use prost::Message;
    hotline::log::entry::describe(&hotline::proto::LogEntry::decode(&entry.data[..]).unwrap())
}

/// PER with two nodes on one PostgreSQL database (the first holding the
/// writer lease, the second waiting as its standby) and CHL on SQLite, all
/// serving; the agreement lists both of PER's endpoints.
struct TwoNodes {
    root: tempfile::TempDir,
    configs: Vec<PathBuf>,
    chl: hotline::config::Config,
    standby_dir: PathBuf,
    logs: PathBuf,
    database: String,
    chl_node: Child,
    holder: Child,
    standby: Child,
}

fn two_nodes_of_per(admin: &str) -> TwoNodes {
    let root = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let made = rt
        .block_on(hotline::setup::local_cluster(
            root.path(),
            &["PER", "CHL"],
            common::FAST_NORMS,
        ))
        .unwrap();
    let configs: Vec<PathBuf> = made.iter().map(|(c, _)| c.path.clone()).collect();
    let (per, chl) = (made[0].0.clone(), made[1].0.clone());
    drop(made);

    // PER's standby: a copy of its node's files, listening elsewhere, sharing its store.
    let standby_dir = root.path().join("PER-standby");
    std::fs::create_dir_all(&standby_dir).unwrap();
    let per_dir = per.path.parent().unwrap();
    let copied = Command::new("cp")
        .arg("-r")
        .arg(format!("{}/.", per_dir.display()))
        .arg(&standby_dir)
        .status();
    assert!(copied.unwrap().success());
    for f in ["hotline.db", "hotline.db-wal", "hotline.db-shm"] {
        let _ = std::fs::remove_file(standby_dir.join(f));
    }
    let standby_port = common::free_port();
    let database = common::fresh_database(admin);
    let standby_config = standby_dir.join("hotline.toml");
    let text = std::fs::read_to_string(&standby_config).unwrap();
    let text = text.replace(&per.listen.to_string(), &format!("127.0.0.1:{standby_port}"));
    std::fs::write(&standby_config, format!("database = {database:?}\n{text}")).unwrap();
    let text = std::fs::read_to_string(&per.path).unwrap();
    std::fs::write(&per.path, format!("database = {database:?}\n{text}")).unwrap();

    // The agreement lists both of PER's endpoints, signed again by both parties.
    let signed = SignedAgreement::load(&per.agreement).unwrap();
    let primary = format!("endpoint = \"https://{}\"", per.listen);
    assert!(signed.text().contains(&primary));
    let both = format!(
        "endpoint = [\"https://{}\", \"https://127.0.0.1:{standby_port}\"]",
        per.listen
    );
    let mut resigned = SignedAgreement::parse(signed.text().replace(&primary, &both).as_bytes()).unwrap();
    for c in [&per, &chl] {
        resigned.sign(&IdentityKey::load(&c.identity_key).unwrap()).unwrap();
    }
    for path in [
        per.agreement.clone(),
        chl.agreement.clone(),
        standby_dir.join(per.agreement.file_name().unwrap()),
    ] {
        std::fs::write(path, resigned.to_bytes()).unwrap();
    }

    // Retries at most half a second apart, so the test waits on the takeover, not on a backoff.
    for config in [&configs[0], &configs[1], &standby_config] {
        let text = std::fs::read_to_string(config).unwrap();
        assert!(text.contains("retry_max = \"30s\""));
        std::fs::write(config, text.replace("retry_max = \"30s\"", "retry_max = \"500ms\"")).unwrap();
    }
    let logs = root.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let chl_node = serve(&configs[1], &logs.join("chl.log"));
    let holder = serve(&configs[0], &logs.join("per.log"));
    serving(&configs[0], "PER's first node");
    let standby = serve(&standby_config, &logs.join("per-standby.log"));
    serving(&configs[1], "CHL");

    TwoNodes {
        root,
        configs,
        chl,
        standby_dir,
        logs,
        database,
        chl_node,
        holder,
        standby,
    }
}

#[test]
fn the_standby_takes_over_when_the_lease_holder_is_killed_losing_and_doubling_nothing() {
    let Some((admin, _server)) = common::postgres_server("two nodes of one party share a PostgreSQL store") else {
        return;
    };
    let TwoNodes {
        root: _root,
        configs,
        chl,
        standby_dir,
        logs,
        mut chl_node,
        mut holder,
        mut standby,
        ..
    } = two_nodes_of_per(&admin);

    // CHL sends continuously; PER's holder is killed after the first receipts.
    let mut sent = Vec::new();
    let mut killed_at = None;
    let mut first_after_kill = None;
    let mut sent_before_kill = 0;
    for i in 0..400 {
        if let Some(id) = send(&configs[1], &format!("Notice {i}")) {
            sent.push(id);
        }
        let now = receipted(&chl.data);
        match killed_at {
            None if now.len() >= 5 => {
                holder.kill().unwrap(); // SIGKILL
                holder.wait().unwrap();
                killed_at = Some(Instant::now());
                sent_before_kill = sent.len();
            }
            // A receipt for a notice sent after the kill can only be the new holder's.
            Some(at) if first_after_kill.is_none() && sent[sent_before_kill..].iter().any(|id| now.contains(id)) => {
                first_after_kill = Some(at.elapsed())
            }
            _ => {}
        }
        if first_after_kill.is_some() && sent.len() >= 30 {
            break;
        }
        // Pacing of the sender, not a wait for a condition.
        std::thread::sleep(Duration::from_millis(20));
    }
    let said = || {
        ["per.log", "per-standby.log", "chl.log"]
            .map(|f| format!("{f}:\n{}", std::fs::read_to_string(logs.join(f)).unwrap_or_default()))
            .join("\n")
    };
    let takeover =
        first_after_kill.unwrap_or_else(|| panic!("no receipt came from the standby after the kill\n{}", said()));
    println!("failover: {takeover:?} from SIGKILL of the lease holder to the first receipt from the new holder");

    // Everything CHL sent is receipted, and logged by PER exactly once.
    until(
        60,
        || "not every notice was receipted".into(),
        || {
            let got = receipted(&chl.data);
            sent.iter().all(|id| got.contains(id))
        },
    );
    let reader = hotline::log::LogReader::open(&standby_dir).unwrap();
    let size = reader.latest_checkpoint().unwrap().0;
    let mut logged: HashMap<String, usize> = HashMap::new();
    for (_, entry) in reader.entries(0, size, usize::MAX).unwrap() {
        let line = describe(&entry);
        for id in &sent {
            if line.starts_with("received from CHL: notice") && line.contains(id.as_str()) {
                *logged.entry(id.clone()).or_default() += 1;
            }
        }
    }
    for id in &sent {
        assert_eq!(logged.get(id), Some(&1), "notice {id} is in PER's log once");
    }
    let verified = common::hotline(&["audit", "verify", "--data", standby_dir.to_str().unwrap()]);
    assert!(verified.status.success(), "{verified:?}");

    standby.kill().unwrap();
    chl_node.kill().unwrap();
    let _ = (standby.wait(), chl_node.wait());
    let chl_log = hotline::log::LogReader::open(&chl.data).unwrap();
    let size = chl_log.latest_checkpoint().unwrap().0;
    let forks = chl_log
        .entries(0, size, usize::MAX)
        .unwrap()
        .into_iter()
        .filter(|(_, e)| describe(e).starts_with("CHECKPOINT_FORK"))
        .count();
    assert_eq!(forks, 0, "CHL saw no fork of PER's log");
}

#[test]
fn a_holder_whose_database_session_ends_stops_and_its_standby_takes_over() {
    let Some((admin, _server)) = common::postgres_server("two nodes of one party share a PostgreSQL store") else {
        return;
    };
    let mut two = two_nodes_of_per(&admin);
    // The server ends the holder's writer session (the one granted the lease, key 0x00686f746c696e65
    // in store.rs), as a network failure or an administrator would.
    let probe = two.root.path().join("probe");
    hotline::store::bind(&probe, Some(&two.database)).unwrap();
    hotline::store::open_reader(&probe)
        .unwrap()
        .execute_batch(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted
             AND classid = 6844276 AND objid = 1818848869 AND objsubid = 1
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .unwrap();
    // The holder learns it at its next commit, at the latest when CHL's channel next sends it a
    // delivery (the standby, holding the lease now, may be sent the first ones): send until it stops.
    let mut sent = Vec::new();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = two.holder.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the holder went on without its lease:\n{}",
            std::fs::read_to_string(two.logs.join("per.log")).unwrap_or_default()
        );
        sent.extend(send(
            &two.configs[1],
            &format!("After the session ended, {}", sent.len()),
        ));
        // Pacing of the sender, not a wait for a condition.
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status.code(), Some(75), "the holder stopped, saying why");
    let why = || {
        format!(
            "the standby did not receipt everything:\n{}\n{}",
            std::fs::read_to_string(two.logs.join("per-standby.log")).unwrap_or_default(),
            std::fs::read_to_string(two.logs.join("chl.log")).unwrap_or_default()
        )
    };
    until(120u64.saturating_sub(start.elapsed().as_secs()), why, || {
        let got = receipted(&two.chl.data);
        sent.iter().all(|id| got.contains(id))
    });
    let said = std::fs::read_to_string(two.logs.join("per.log")).unwrap();
    assert!(
        said.contains("lost the PostgreSQL session and with it the writer lease"),
        "{said}"
    );
    for child in [&mut two.standby, &mut two.chl_node] {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let verified = common::hotline(&["audit", "verify", "--data", two.standby_dir.to_str().unwrap()]);
    assert!(verified.status.success(), "{verified:?}");
}
