//! The audit log on a real database file: it verifies when intact, and every
//! kind of tampering is caught and the first bad entry named.

mod common;

use common::{filled_log, hotline_json};
use hotline::db::Connection;

fn db(dir: &tempfile::TempDir) -> Connection {
    hotline::store::open_writer(dir.path()).unwrap()
}

fn verify(dir: &tempfile::TempDir) -> (bool, serde_json::Value) {
    hotline_json(&["audit", "verify", "--data", dir.path().to_str().unwrap()])
}

fn assert_bad_entry(dir: &tempfile::TempDir, index: u64) {
    let (ok, v) = verify(dir);
    assert!(!ok, "tampered log verified: {v}");
    assert_eq!(v["valid"], false);
    assert_eq!(v["first_bad_entry"], index, "{v}");
}

#[test]
fn an_intact_log_verifies_with_every_checkpoint() {
    let (dir, _) = filled_log(1000, 64);
    let (ok, v) = verify(&dir);
    assert!(ok, "{v}");
    assert_eq!(v["entries"], 1000);
    assert_eq!(v["checkpoints"], 16);
}

#[test]
fn one_changed_byte_in_an_entry_is_named() {
    let (dir, _) = filled_log(300, 50);
    alter_entry(&dir, 123);
    assert_bad_entry(&dir, 123);
}

#[test]
fn a_deleted_entry_is_named() {
    let (dir, _) = filled_log(300, 50);
    db(&dir).execute("DELETE FROM entries WHERE idx = 77", []).unwrap();
    assert_bad_entry(&dir, 77);
}

#[test]
fn two_swapped_entries_are_caught_at_the_first() {
    let (dir, _) = filled_log(300, 50);
    let conn = db(&dir);
    conn.execute_batch(
        "UPDATE entries SET idx = -1 WHERE idx = 40; UPDATE entries SET idx = 40 WHERE idx = 200; UPDATE entries SET idx = 200 WHERE idx = -1;",
    )
    .unwrap();
    assert_bad_entry(&dir, 40);
}

#[test]
fn a_truncated_log_is_caught_against_its_signed_checkpoint() {
    let (dir, _) = filled_log(300, 50);
    let conn = db(&dir);
    conn.execute("DELETE FROM entries WHERE idx >= 280", []).unwrap();
    let (ok, v) = verify(&dir);
    assert!(!ok);
    assert_eq!(v["first_bad_entry"], 280, "{v}");
    // Also cutting the stored hashes does not hide it.
    conn.execute("DELETE FROM hashes WHERE idx >= 500", []).unwrap();
    assert!(!verify(&dir).0);
}

#[test]
fn a_rewritten_entry_with_recomputed_hashes_fails_the_signed_checkpoint() {
    let (dir, _) = filled_log(100, 10);
    let conn = db(&dir);
    conn.execute(
        "UPDATE entries SET data = ?1 WHERE idx = 55",
        [common::entry("forged").data],
    )
    .unwrap();
    // Recompute every stored hash as a careful forger would.
    let entries: Vec<Vec<u8>> = conn
        .prepare("SELECT data FROM entries ORDER BY idx")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut frontier = hotline::log::tree::Frontier::default();
    let mut idx = 0i64;
    for e in &entries {
        for h in frontier.push(e) {
            conn.execute(
                "UPDATE hashes SET hash = ?1 WHERE idx = ?2",
                rusqlite::params![&h.0[..], idx],
            )
            .unwrap();
            idx += 1;
        }
    }
    let (ok, v) = verify(&dir);
    assert!(!ok);
    assert_eq!(v["first_bad_entry"], serde_json::Value::Null);
    let err = v["error"].as_str().unwrap();
    assert!(
        err.contains("checkpoint at tree size 60") && err.contains("signed root hash does not match"),
        "{err}"
    );
}

#[test]
fn a_node_refuses_to_open_a_log_cut_short_of_its_checkpoint() {
    let (dir, key) = filled_log(100, 10);
    db(&dir).execute("DELETE FROM entries WHERE idx >= 95", []).unwrap();
    let err = hotline::log::Log::open(dir.path(), key)
        .err()
        .expect("opened a truncated log");
    assert!(
        err.to_string()
            .contains("95 entries but the latest signed checkpoint covers 100"),
        "{err}"
    );
}

/// Flips the last byte of entry `index`, as someone with the file could while the node is stopped.
fn alter_entry(dir: &tempfile::TempDir, index: u64) {
    let conn = db(dir);
    let mut data: Vec<u8> = conn
        .query_row("SELECT data FROM entries WHERE idx = ?1", [index], |r| r.get(0))
        .unwrap();
    let last = data.len() - 1;
    data[last] ^= 0x01;
    conn.execute(
        "UPDATE entries SET data = ?1 WHERE idx = ?2",
        rusqlite::params![data, index],
    )
    .unwrap();
}

#[test]
fn a_node_refuses_to_open_a_log_whose_entry_was_altered_since_its_last_start_naming_it() {
    let (dir, key) = filled_log(100, 10);
    alter_entry(&dir, 57);
    let err = hotline::log::Log::open(dir.path(), key)
        .err()
        .expect("opened a log with an altered entry");
    assert!(err.to_string().contains("entry 57: content does not match"), "{err}");
}

#[test]
fn an_entry_checked_at_an_earlier_start_is_rechecked_on_request() {
    use hotline::log::{Log, Recheck};
    let (dir, key) = filled_log(100, 10);
    Log::open(dir.path(), key.clone()).unwrap().close(); // checks all 100, once
    alter_entry(&dir, 12);
    Log::open(dir.path(), key.clone()).unwrap().close(); // only new entries: none
    let err = Log::open_with(
        dir.path(),
        hotline::own_keys::OwnKeys::single(key),
        Recheck::All,
        hotline::clock::Clock::system(),
    )
    .err()
    .expect("a full recheck opened an altered log");
    assert!(err.to_string().contains("entry 12: content does not match"), "{err}");
}

#[test]
fn a_corrupted_database_file_is_a_clean_error() {
    if !common::on_sqlite("a database file cut in half") {
        return;
    }
    let (dir, _) = filled_log(2000, 500);
    let path = dir.path().join("hotline.db");
    let len = std::fs::metadata(&path).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(len / 2).unwrap();
    let out = common::hotline(&["audit", "verify", "--data", dir.path().to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr) + String::from_utf8_lossy(&out.stdout);
    assert!(err.contains("hotline.db") || err.contains("NOT VALID"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_checkpoint_signed_by_another_key_is_refused() {
    let (dir, _) = filled_log(10, 5);
    let other = hotline::keys::IdentityKey::generate("hotline.example/TST").unwrap();
    let (ok, v) = hotline_json(&[
        "audit",
        "verify",
        "--data",
        dir.path().to_str().unwrap(),
        "--vkey",
        &other.verifier().to_string(),
    ]);
    assert!(!ok);
    assert!(
        v["error"].as_str().unwrap().contains("checkpoint at tree size 5"),
        "{v}"
    );
}

#[test]
fn an_export_follows_the_tlog_tiles_layout_and_verifies() {
    let (dir, _) = filled_log(600, 100);
    let out = tempfile::tempdir().unwrap();
    let o = out.path().to_str().unwrap();
    let (ok, v) = hotline_json(&["audit", "export", "--data", dir.path().to_str().unwrap(), "--out", o]);
    assert!(ok, "{v}");
    for file in [
        "checkpoint",
        "tile/0/000",
        "tile/0/001",
        "tile/0/002.p/88",
        "tile/1/000.p/2",
        "tile/entries/000",
        "tile/entries/001",
        "tile/entries/002.p/88",
    ] {
        assert!(out.path().join(file).is_file(), "missing {file}");
    }
    assert_eq!(
        std::fs::metadata(out.path().join("tile/0/000")).unwrap().len(),
        256 * 32
    );
    let vkey = std::fs::read_to_string(dir.path().join("identity.pub")).unwrap();
    let (ok, v) = hotline_json(&["audit", "verify", "--export", o, "--vkey", vkey.trim()]);
    assert!(ok, "{v}");
    assert_eq!(v["entries"], 600);

    // One flipped byte in an entry bundle is named.
    let bundle = out.path().join("tile/entries/001");
    let mut bytes = std::fs::read(&bundle).unwrap();
    bytes[100] ^= 0x20;
    std::fs::write(&bundle, bytes).unwrap();
    let (ok, v) = hotline_json(&["audit", "verify", "--export", o, "--vkey", vkey.trim()]);
    assert!(!ok, "{v}");
}

#[test]
fn entries_prove_and_checkpoint_read_the_log() {
    let (dir, key) = filled_log(20, 7);
    let d = dir.path().to_str().unwrap();
    let (ok, v) = hotline_json(&["audit", "checkpoint", "--data", d]);
    assert!(ok);
    assert_eq!(v["size"], 20);
    assert_eq!(v["origin"], "hotline.example/TST");
    let note = v["checkpoint"].as_str().unwrap();
    hotline::log::checkpoint::verify(note.as_bytes(), key.verifier()).unwrap();

    let (ok, v) = hotline_json(&["audit", "entries", "--data", d, "--start", "5", "--end", "8"]);
    assert!(ok);
    assert_eq!(v.as_array().unwrap().len(), 3);
    assert_eq!(v[0]["index"], 5);
    assert!(v[0]["summary"].as_str().unwrap().contains("entry 5"));

    let (ok, v) = hotline_json(&["audit", "prove", "--data", d, "--index", "9", "--size", "13"]);
    assert!(ok);
    assert_eq!(v["tree_size"], 13);
    let hash = |s: &serde_json::Value| tlog_tiles::Hash(hex::decode(s.as_str().unwrap()).unwrap().try_into().unwrap());
    let proof: Vec<_> = v["proof"].as_array().unwrap().iter().map(hash).collect();
    tlog_tiles::check_record(&proof, 13, hash(&v["root_hash"]), 9, hash(&v["leaf_hash"])).unwrap();

    let out = common::hotline(&["audit", "prove", "--data", d, "--index", "20"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("valid indexes are 0 to 19"));
}

#[tokio::test]
async fn an_envelope_not_signed_under_the_adopted_agreement_is_named() {
    use hotline::log::entry::encode;
    use hotline::proto::AgreementAdopted;
    use hotline::proto::log_entry::Body;
    let (dir, log, key) = common::temp_log();
    let p = common::parties(&["TST", "CHL"]);
    let signed = common::signed_agreement(&p, "", &[&p[0], &p[1]]);
    let sent = |k: &hotline::keys::IdentityKey| {
        let envelope = hotline::envelope::sign(hotline::envelope::NOTICE_TYPE, b"n".to_vec(), k).unwrap();
        common::sent_entry(&envelope)
    };
    log.append(vec![
        encode(
            hotline::clock::now(),
            Body::AgreementAdopted(AgreementAdopted {
                signed_note: signed.to_bytes(),
                version: 1,
                ..Default::default()
            }),
        ),
        sent(&p[0].key),
        sent(&hotline::keys::IdentityKey::generate("hotline.example/TST").unwrap()),
    ])
    .await
    .unwrap();
    log.close();
    let err = hotline::log::verify::verify_data_dir(dir.path(), key.verifier(), |_, _| {}).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("entry 2: logged envelope: no signature by a key of the agreement"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_state_change_leaves_the_rest_of_its_batch_intact() {
    use hotline::log::{LogError, StateError};
    let (dir, log, key) = common::temp_log();
    let log = std::sync::Arc::new(log);
    // 200 appends at once, so the writer commits them in shared batches.
    // Every change writes a row; every fifth then refuses, and its row must
    // go with it while the others' rows stay, each written exactly once.
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move {
                let party = format!("P{i}");
                let change = Box::new(move |c: &Connection, _| {
                    c.execute("INSERT INTO comm_checks (party, last_ok_ms) VALUES (?1, 0)", [&party])?;
                    if i % 5 == 0 {
                        Err(StateError::NotRunning(party.clone()))
                    } else {
                        Ok(())
                    }
                });
                log.append_with(vec![common::entry(&format!("entry {i}"))], change, true)
                    .await
            })
        })
        .collect();
    let mut indexes = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await.unwrap() {
            Err(LogError::Refused(StateError::NotRunning(why))) if i % 5 == 0 => assert_eq!(why, format!("P{i}")),
            Ok(done) if i % 5 != 0 => {
                let root = hotline::log::checkpoint::verify(&done.checkpoint, key.verifier())
                    .unwrap()
                    .root;
                indexes.push((done.first_index, done.tree_size, root, done.proof));
            }
            other => panic!("append {i}: {other:?}"),
        }
    }
    let log = std::sync::Arc::try_unwrap(log).ok().unwrap();
    log.close();
    let conn = db(&dir);
    for (index, size, root, proof) in &indexes {
        let data: Vec<u8> = conn
            .query_row("SELECT data FROM entries WHERE idx = ?1", [*index as i64], |r| r.get(0))
            .unwrap();
        tlog_tiles::check_record(proof, *size, *root, *index, tlog_tiles::record_hash(&data)).unwrap();
    }
    let mut firsts: Vec<u64> = indexes.iter().map(|x| x.0).collect();
    firsts.sort();
    assert_eq!(
        firsts,
        (0..160).collect::<Vec<u64>>(),
        "every accepted append has its own index"
    );
    let rows: Vec<String> = conn
        .prepare("SELECT party FROM comm_checks ORDER BY CAST(substr(party, 2) AS INTEGER)")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let expected: Vec<String> = (0..200).filter(|i| i % 5 != 0).map(|i| format!("P{i}")).collect();
    assert_eq!(rows, expected);
    let batches: i64 = conn
        .query_row("SELECT COUNT(*) FROM checkpoints", [], |r| r.get(0))
        .unwrap();
    assert!(
        batches < 160,
        "the appends shared batches ({batches} checkpoints for 160 appends)"
    );
    std::fs::write(dir.path().join("identity.pub"), format!("{}\n", key.verifier())).unwrap();
    let (ok, v) = verify(&dir);
    assert!(ok, "{v}");
    assert_eq!(v["entries"], 160);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_refused_by_the_database_refuses_only_its_own_append() {
    let (dir, log, key) = common::temp_log();
    let log = std::sync::Arc::new(log);
    let write = |party: String| {
        move |c: &Connection| {
            c.prepare_cached("INSERT INTO comm_checks (party, last_ok_ms) VALUES (?1, 0)")?
                .execute_later([&party])
        }
    };
    let taken = write("TAKEN".into());
    log.append_with(vec![common::entry("first")], Box::new(move |c, _| Ok(taken(c)?)), false)
        .await
        .unwrap();
    // Writes whose outcome nobody reads at once: on PostgreSQL they are held back and sent with the
    // batch, so a key already taken is found only there, after the other jobs' writes.
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move {
                let (own, again) = (write(format!("P{i}")), write("TAKEN".into()));
                let change = Box::new(move |c: &Connection, _| {
                    own(c)?;
                    if i % 5 == 0 {
                        again(c)?;
                    }
                    Ok(())
                });
                log.append_with(vec![common::entry(&format!("entry {i}"))], change, true)
                    .await
            })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        let appended = task.await.unwrap();
        assert_eq!(appended.is_ok(), i % 5 != 0, "append {i}: {appended:?}");
    }
    let log = std::sync::Arc::try_unwrap(log).ok().unwrap();
    log.close();
    let conn = db(&dir);
    let rows: Vec<String> = conn
        .prepare("SELECT party FROM comm_checks WHERE party <> 'TAKEN' ORDER BY CAST(substr(party, 2) AS INTEGER)")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let expected: Vec<String> = (0..100).filter(|i| i % 5 != 0).map(|i| format!("P{i}")).collect();
    assert_eq!(rows, expected);
    std::fs::write(dir.path().join("identity.pub"), format!("{}\n", key.verifier())).unwrap();
    let (ok, v) = verify(&dir);
    assert!(ok, "{v}");
    assert_eq!(v["entries"], 81);
}

/// A log whose entry 1 records a signed envelope of about `bytes` bytes,
/// under an adopted agreement so that its signature is checked.
fn log_with_envelope_of(bytes: usize) -> (tempfile::TempDir, hotline::keys::IdentityKey) {
    use hotline::proto::AgreementAdopted;
    use hotline::proto::log_entry::Body;
    let (dir, log, key) = common::temp_log();
    let p = common::parties(&["TST", "CHL"]);
    let signed = common::signed_agreement(&p, "", &[&p[0], &p[1]]);
    let envelope = hotline::envelope::sign(hotline::envelope::NOTICE_TYPE, vec![7; bytes], &p[0].key).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(log.append(vec![
        hotline::log::entry::encode(
            hotline::clock::now(),
            Body::AgreementAdopted(AgreementAdopted {
                signed_note: signed.to_bytes(),
                version: 1,
                ..Default::default()
            }),
        ),
        common::sent_entry(&envelope),
    ]))
    .unwrap();
    log.close();
    std::fs::write(dir.path().join("identity.pub"), format!("{}\n", key.verifier())).unwrap();
    (dir, key)
}

#[test]
fn an_envelope_larger_than_an_entry_bundle_is_kept_beside_its_entry_and_the_log_exports_and_verifies() {
    let (dir, _) = log_with_envelope_of(200 * 1024);
    let entry_bytes: usize = db(&dir)
        .query_row("SELECT length(data) FROM entries WHERE idx = 1", [], |r| r.get(0))
        .unwrap();
    assert!(
        entry_bytes < 1024,
        "the entry names the envelope by hash: {entry_bytes} bytes"
    );
    let (ok, v) = verify(&dir);
    assert!(ok, "{v}");
    assert_eq!(
        v["signatures"], 2,
        "the envelope kept beside the log had its signature checked: {v}"
    );

    let out = tempfile::tempdir().unwrap();
    let o = out.path().to_str().unwrap();
    let (ok, v) = hotline_json(&[
        "audit",
        "export",
        "--data",
        dir.path().to_str().unwrap(),
        "--out",
        o,
        "--envelopes-up-to",
        "red",
    ]);
    assert!(ok, "{v}");
    let envelopes: Vec<_> = std::fs::read_dir(out.path().join("envelope")).unwrap().collect();
    assert_eq!(envelopes.len(), 1);
    let vkey = std::fs::read_to_string(dir.path().join("identity.pub")).unwrap();
    let (ok, v) = hotline_json(&["audit", "verify", "--export", o, "--vkey", vkey.trim()]);
    assert!(ok, "{v}");
    assert_eq!(v["entries"], 2);

    // The exported envelope is bound to its entry: another one is named.
    let file = envelopes[0].as_ref().unwrap().path();
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[1000] ^= 0x01;
    std::fs::write(&file, bytes).unwrap();
    let (ok, v) = hotline_json(&["audit", "verify", "--export", o, "--vkey", vkey.trim()]);
    assert!(!ok, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("entry 1: the envelope kept beside the log does not match"),
        "{v}"
    );
}

#[test]
fn an_altered_envelope_kept_beside_the_log_is_named_by_verify_and_refused_at_startup() {
    let (dir, key) = log_with_envelope_of(100 * 1024);
    let conn = db(&dir);
    let mut data: Vec<u8> = conn
        .query_row("SELECT data FROM envelopes WHERE idx = 1", [], |r| r.get(0))
        .unwrap();
    data[5000] ^= 0x01;
    conn.execute("UPDATE envelopes SET data = ?1 WHERE idx = 1", [data])
        .unwrap();
    assert_bad_entry(&dir, 1);
    let err = hotline::log::Log::open(dir.path(), key)
        .err()
        .expect("opened a log with an altered envelope");
    assert!(
        err.to_string()
            .contains("entry 1: the envelope kept beside the log does not match"),
        "{err}"
    );
}

#[tokio::test]
async fn an_agreement_too_large_for_an_entry_is_kept_beside_it_verified_and_a_changed_copy_named() {
    use hotline::proto::AgreementAdopted;
    use hotline::proto::log_entry::Body;
    let (dir, log, key) = common::temp_log();
    // A hundred parties, each signing, and a long preamble: an agreement of about 100 KB, as a
    // UN-wide hotline's would be (a signed note holds at most 100 signatures).
    let ids: Vec<String> = (0..100).map(|i| format!("P{i:03}")).collect();
    let p = common::parties(&ids.iter().map(String::as_str).collect::<Vec<_>>());
    let preamble = format!(
        "# {}",
        "The parties agree to notify each other of significant incidents. ".repeat(1_100)
    );
    let signed = common::signed_agreement(&p, &preamble, &p.iter().collect::<Vec<_>>());
    let note = signed.to_bytes();
    assert!(
        note.len() > hotline::log::entry::MAX_ENTRY_BYTES,
        "{} bytes",
        note.len()
    );
    let adopted = hotline::log::entry::encode(
        hotline::clock::now(),
        Body::AgreementAdopted(AgreementAdopted {
            signed_note: note.clone(),
            version: 1,
            text_sha256: signed.text_sha256().to_vec(),
            ..Default::default()
        }),
    );
    assert!(adopted.data.len() <= hotline::log::entry::MAX_ENTRY_BYTES);
    assert_eq!(
        adopted.envelope.as_deref(),
        Some(&note[..]),
        "the note goes beside the entry"
    );
    log.append(vec![adopted]).await.unwrap();
    log.close();
    let report = hotline::log::verify::verify_data_dir(dir.path(), key.verifier(), |_, _| {}).unwrap();
    assert_eq!(report.entries, 1);

    // A changed byte in the copy kept beside the entry is named.
    let db = db(&dir);
    let mut changed = note.clone();
    changed[10] ^= 1;
    db.execute("UPDATE envelopes SET data = ?1", [changed]).unwrap();
    let err = hotline::log::verify::verify_data_dir(dir.path(), key.verifier(), |_, _| {}).unwrap_err();
    assert!(
        err.to_string().contains("does not match the SHA-256 the entry names"),
        "{err}"
    );
}
