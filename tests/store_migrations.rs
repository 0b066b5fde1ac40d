//! Schema migrations: a database written by an older version opens with
//! nothing lost.

use hotline::envelope::{self, NOTICE_TYPE, RECEIPT_TYPE};
use hotline::keys::IdentityKey;
use hotline::log::entry;
use hotline::{state, store};
use prost::Message;
use rusqlite::params;

/// The state tables that versions 3 and 4 reshape, as version 2 created them.
const V2_TABLES: &str = "
    CREATE TABLE entries (idx INTEGER PRIMARY KEY, data BLOB NOT NULL) STRICT;
    CREATE TABLE messages (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('notice', 'response')),
        direction TEXT NOT NULL CHECK (direction IN ('sent', 'received')),
        sender TEXT NOT NULL,
        thread TEXT NOT NULL,
        payload_sha256 BLOB NOT NULL,
        envelope BLOB NOT NULL,
        log_index INTEGER NOT NULL,
        created_ms INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX messages_thread ON messages (thread);
    CREATE TABLE receipts (
        message_id TEXT NOT NULL,
        party TEXT NOT NULL,
        envelope BLOB NOT NULL,
        log_index INTEGER NOT NULL,
        PRIMARY KEY (message_id, party)
    ) STRICT;
    CREATE TABLE outbox (
        message_id TEXT NOT NULL,
        party TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_ms INTEGER NOT NULL,
        last_error TEXT,
        PRIMARY KEY (message_id, party)
    ) STRICT;
    CREATE TABLE deadlines (
        message_id TEXT NOT NULL,
        party TEXT NOT NULL,
        kind INTEGER NOT NULL,
        due_ms INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('running', 'met', 'missed')),
        PRIMARY KEY (message_id, party, kind)
    ) STRICT;
    CREATE INDEX deadlines_running ON deadlines (state, due_ms);
    PRAGMA user_version = 2;
";

#[test]
fn a_version_2_database_keeps_every_message_and_receipt_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let key = IdentityKey::generate("hotline.example/PER").unwrap();
    let notice = envelope::sign(NOTICE_TYPE, b"notice".to_vec(), &key);
    let receipt = envelope::sign(RECEIPT_TYPE, b"receipt".to_vec(), &key);
    {
        let c = rusqlite::Connection::open(dir.path().join(store::DB_FILE)).unwrap();
        c.execute_batch(V2_TABLES).unwrap();
        let sent = entry::sent(hotline::clock::now(), notice.clone(), vec!["CHL".into()]);
        c.execute("INSERT INTO entries (idx, data) VALUES (0, ?1)", [sent.data])
            .unwrap();
        c.execute(
            "INSERT INTO messages VALUES ('m1', 'notice', 'sent', 'PER', 'm1', x'00', ?1, 0, 1)",
            [notice.encode_to_vec()],
        )
        .unwrap();
        c.execute(
            "INSERT INTO receipts VALUES ('m1', 'CHL', ?1, 7)",
            params![receipt.encode_to_vec()],
        )
        .unwrap();
    }
    let c = store::open_writer(dir.path()).unwrap();
    let m = state::message(&c, "m1").unwrap().expect("the message survives");
    assert_eq!(m.envelope, notice, "the envelope is read from its log entry");
    assert_eq!(
        state::receipts(&c, "m1").unwrap(),
        vec![("CHL".to_owned(), receipt)],
        "an old receipt keeps its own copy"
    );
    let columns: Vec<String> = c
        .prepare("SELECT name FROM pragma_table_info('messages')")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        !columns.contains(&"envelope".to_owned()),
        "messages no longer copy envelopes"
    );
}

#[test]
fn a_version_2_database_keeps_its_queued_deliveries_and_running_clocks() {
    let dir = tempfile::tempdir().unwrap();
    {
        let c = rusqlite::Connection::open(dir.path().join(store::DB_FILE)).unwrap();
        c.execute_batch(V2_TABLES).unwrap();
        c.execute_batch(
            "INSERT INTO outbox VALUES ('m1', 'CHL', 3, 5000, 'unreachable');
             INSERT INTO deadlines VALUES ('m1', 'CHL', 1, 9000, 'running');
             INSERT INTO deadlines VALUES ('m0', 'CHL', 1, 1000, 'met');
             INSERT INTO deadlines VALUES ('m2', 'ARG', 2, 7000, 'running');",
        )
        .unwrap();
    }
    let c = store::open_writer(dir.path()).unwrap();
    let queued = state::outbox(&c).unwrap();
    assert_eq!(queued.len(), 1);
    let p = &queued[0];
    assert_eq!(
        (p.message_id.as_str(), p.party.as_str(), p.attempts, p.next_attempt_ms),
        ("m1", "CHL", 3, 5000)
    );
    assert_eq!(p.last_error.as_deref(), Some("unreachable"));
    let running: Vec<(String, i64)> = state::running_deadlines(&c, i64::MAX, 100)
        .unwrap()
        .into_iter()
        .map(|d| (d.message_id, d.due_ms))
        .collect();
    assert_eq!(
        running,
        vec![("m2".to_owned(), 7000), ("m1".to_owned(), 9000)],
        "running clocks survive, soonest first; the met one stays stopped"
    );
}

#[test]
fn a_version_2_database_keeps_its_compliance_figures() {
    let dir = tempfile::tempdir().unwrap();
    {
        let c = rusqlite::Connection::open(dir.path().join(store::DB_FILE)).unwrap();
        c.execute_batch(V2_TABLES).unwrap();
        c.execute_batch(
            "INSERT INTO messages VALUES ('m0', 'notice', 'sent', 'PER', 'm0', x'00', x'', 0, 1);
             INSERT INTO messages VALUES ('m1', 'notice', 'sent', 'PER', 'm1', x'00', x'', 1, 1);
             INSERT INTO deadlines VALUES ('m0', 'CHL', 1, 1000, 'met');
             INSERT INTO deadlines VALUES ('m1', 'CHL', 1, 2000, 'missed');
             INSERT INTO deadlines VALUES ('m1', 'CHL', 2, 9000, 'running');",
        )
        .unwrap();
    }
    let c = store::open_writer(dir.path()).unwrap();
    let figures = state::compliance(&c).unwrap();
    assert_eq!(figures.len(), 1, "{figures:?}");
    let (party, kind, met, missed) = &figures[0];
    assert_eq!((party.as_str(), *kind as i32, *met, *missed), ("CHL", 1, 1, 1));
}
