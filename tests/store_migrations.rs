//! Schema migrations: a database written by an older version opens with
//! nothing lost.

use hotline::envelope::{self, NOTICE_TYPE, RECEIPT_TYPE};
use hotline::keys::IdentityKey;
use hotline::log::entry;
use hotline::proto::EnvelopeSent;
use hotline::proto::log_entry::Body;
use hotline::{state, store};
use prost::Message;
use rusqlite::params;

/// The two state tables that version 3 reshapes, as version 2 created them.
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
        let sent = entry::encode(Body::Sent(EnvelopeSent {
            envelope: Some(notice.clone()),
            to: vec!["CHL".into()],
        }));
        c.execute("INSERT INTO entries (idx, data) VALUES (0, ?1)", [sent])
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
