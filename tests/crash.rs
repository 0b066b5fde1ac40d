//! A process killed with SIGKILL in the middle of group commits loses no
//! acknowledged entry, and the log it leaves verifies and reopens.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;

use hotline::keys::IdentityKey;
use hotline::log::{Log, LogReader, verify};
use hotline::proto::LogEntry;
use prost::Message;

/// The child process of the crash test: appends from many tasks at once and
/// prints `ack INDEX DETAIL` for each append the log acknowledged.
#[test]
#[ignore = "helper process for a_log_killed_mid_batch_keeps_every_acknowledged_entry"]
fn append_until_killed() {
    let (Ok(dir), Ok(key)) = (std::env::var("HOTLINE_CRASH_DIR"), std::env::var("HOTLINE_CRASH_KEY")) else {
        return;
    };
    let key = IdentityKey::parse_private(&key).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let log = Arc::new(Log::open(std::path::Path::new(&dir), key).unwrap());
        let round = log.head().size;
        let tasks: Vec<_> = (0..16)
            .map(|t| {
                let log = log.clone();
                tokio::spawn(async move {
                    for n in 0.. {
                        let detail = format!("r{round}-t{t}-n{n}");
                        let done = log.append(vec![common::entry(&detail)]).await.unwrap();
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "ack {} {detail}", done.first_index).unwrap();
                        out.flush().unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[test]
fn a_log_killed_mid_batch_keeps_every_acknowledged_entry() {
    let dir = tempfile::tempdir().unwrap();
    let key = IdentityKey::generate("hotline.example/TST").unwrap();
    let mut acked: Vec<(u64, String)> = Vec::new();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as usize;
    for round in 0..5 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "append_until_killed",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("HOTLINE_CRASH_DIR", dir.path())
            .env("HOTLINE_CRASH_KEY", key.encode_private())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let want = 100 + (seed / (round + 1)) % 400;
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut got = 0;
        while got < want {
            let line = lines.next().expect("child ended early").unwrap();
            if let Some(rest) = line.strip_prefix("ack ") {
                let (index, detail) = rest.split_once(' ').unwrap();
                acked.push((index.parse().unwrap(), detail.to_owned()));
                got += 1;
            }
        }
        child.kill().unwrap(); // SIGKILL, mid-stream
        child.wait().unwrap();
        // Anything the child printed before it died was acknowledged too.
        for line in lines.map_while(Result::ok) {
            if let Some((index, detail)) = line.strip_prefix("ack ").and_then(|r| r.split_once(' ')) {
                acked.push((index.parse().unwrap(), detail.to_owned()));
            }
        }
    }

    let reader = LogReader::open(dir.path()).unwrap();
    for (index, detail) in &acked {
        let entries = reader.entries(*index, index + 1, 1).unwrap();
        assert_eq!(entries.len(), 1, "acknowledged entry {index} is gone");
        let entry = LogEntry::decode(&entries[0].1.data[..]).unwrap();
        assert!(
            hotline::log::entry::describe(&entry).contains(detail.as_str()),
            "entry {index} is not {detail}"
        );
    }
    let mut indexes: Vec<u64> = acked.iter().map(|a| a.0).collect();
    indexes.sort();
    indexes.dedup();
    assert_eq!(indexes.len(), acked.len(), "an index was acknowledged twice");
    let report = verify::verify_data_dir(dir.path(), key.verifier(), |_, _| {}).unwrap();
    assert!(report.entries >= acked.len() as u64);
    Log::open(dir.path(), key).unwrap().close();
}
