//! Schema migrations: a database written by an older version opens with
//! nothing lost.

mod common;

use hotline::envelope::{self, NOTICE_TYPE, RECEIPT_TYPE};
use hotline::keys::IdentityKey;
use hotline::{state, store};
use prost::Message;
use rusqlite::params;

#[test]
fn a_version_2_database_keeps_every_message_and_receipt_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let key = IdentityKey::generate("hotline.example/PER").unwrap();
    let notice = envelope::sign(NOTICE_TYPE, b"notice".to_vec(), &key).unwrap();
    let receipt = envelope::sign(RECEIPT_TYPE, b"receipt".to_vec(), &key).unwrap();
    {
        sqlite_store_at(dir.path(), 2);
        let c = rusqlite::Connection::open(dir.path().join(store::DB_FILE)).unwrap();
        let sent = common::inline_sent_entry(&notice);
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
        sqlite_store_at(dir.path(), 2);
        let c = rusqlite::Connection::open(dir.path().join(store::DB_FILE)).unwrap();
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
        sqlite_store_at(dir.path(), 2);
        let c = rusqlite::Connection::open(dir.path().join(store::DB_FILE)).unwrap();
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

/// One column as both engines can describe it: name, type (SQLite's names),
/// whether it may be NULL, and its place in the primary key (0: none).
type Column = (String, String, bool, i64);

/// Every table of the store on `c`, with its columns in order.
fn schema(c: &hotline::db::Connection) -> std::collections::BTreeMap<String, Vec<Column>> {
    let (tables, columns) = match c.is_postgres() {
        false => (
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
            "SELECT name, upper(type), \"notnull\" OR pk > 0, pk FROM pragma_table_info(?1) ORDER BY cid",
        ),
        true => (
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name <> 'schema_version'",
            "SELECT c.column_name::text, \
                    CASE c.data_type WHEN 'bigint' THEN 'INTEGER' WHEN 'bytea' THEN 'BLOB' \
                                     WHEN 'text' THEN 'TEXT' ELSE upper(c.data_type) END, \
                    c.is_nullable = 'NO', COALESCE(k.ordinal_position, 0)::bigint \
             FROM information_schema.columns c \
             LEFT JOIN information_schema.table_constraints t \
               ON t.table_schema = c.table_schema AND t.table_name = c.table_name AND t.constraint_type = 'PRIMARY KEY' \
             LEFT JOIN information_schema.key_column_usage k \
               ON k.constraint_name = t.constraint_name AND k.table_schema = c.table_schema \
              AND k.table_name = c.table_name AND k.column_name = c.column_name \
             WHERE c.table_schema = current_schema() AND c.table_name = ?1 ORDER BY c.ordinal_position",
        ),
    };
    let names: Vec<String> = c
        .prepare(tables)
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    names
        .into_iter()
        .map(|table| {
            let cols = c
                .prepare(columns)
                .unwrap()
                .query_map([&table], |r| Ok((r.get(0)?, r.get(1)?, r.get::<bool>(2)?, r.get(3)?)))
                .unwrap()
                .collect::<Result<Vec<Column>, _>>()
                .unwrap();
            (table, cols)
        })
        .collect()
}

/// A SQLite store in `dir` built by the first `version` migrations, as an
/// older hotline left it.
fn sqlite_store_at(dir: &std::path::Path, version: usize) {
    let c = rusqlite::Connection::open(dir.join(store::DB_FILE)).unwrap();
    for sql in &store::MIGRATIONS[..version] {
        c.execute_batch(sql).unwrap();
    }
    c.pragma_update(None, "user_version", version as i64).unwrap();
}

#[test]
fn postgresqls_migrations_reach_the_newest_schema_version() {
    let (last, _) = store::POSTGRES_MIGRATIONS.last().unwrap();
    assert_eq!(
        *last,
        store::MIGRATIONS.len(),
        "a new SQLite migration needs its PostgreSQL counterpart"
    );
    assert!(store::POSTGRES_MIGRATIONS.windows(2).all(|w| w[0].0 < w[1].0));
}

#[test]
fn a_sqlite_store_at_every_earlier_version_migrates_to_one_schema() {
    let newest = {
        let dir = tempfile::tempdir().unwrap();
        schema(&store::open_writer(dir.path()).unwrap())
    };
    for version in 0..store::MIGRATIONS.len() {
        let dir = tempfile::tempdir().unwrap();
        sqlite_store_at(dir.path(), version);
        let migrated = schema(&store::open_writer(dir.path()).unwrap());
        assert_eq!(migrated, newest, "a store at version {version}, migrated");
    }
}

#[test]
fn postgresql_at_every_earlier_version_migrates_to_the_schema_sqlite_has() {
    let Some((admin, _server)) = common::postgres_server("compare PostgreSQL's schema with SQLite's") else {
        return;
    };
    let sqlite = {
        let dir = tempfile::tempdir().unwrap();
        sqlite_store_at(dir.path(), store::MIGRATIONS.len());
        schema(&store::open_reader(dir.path()).unwrap())
    };
    // Every version a PostgreSQL store may be left at: empty, or after each migration but the last.
    let earlier = std::iter::once(0).chain(store::POSTGRES_MIGRATIONS.iter().rev().skip(1).map(|(v, _)| *v));
    for version in earlier {
        let dir = tempfile::tempdir().unwrap();
        let url = common::fresh_database(&admin);
        store::bind(dir.path(), Some(&url)).unwrap();
        if version > 0 {
            let c = store::open_reader(dir.path()).unwrap();
            for (_, sql) in store::POSTGRES_MIGRATIONS.iter().filter(|(v, _)| *v <= version) {
                c.execute_batch(sql).unwrap();
            }
            c.execute_batch("DELETE FROM schema_version").unwrap();
            c.execute("INSERT INTO schema_version (version) VALUES (?1)", [version as i64])
                .unwrap();
        }
        let postgres = schema(&store::open_writer(dir.path()).unwrap());
        assert_eq!(
            postgres, sqlite,
            "PostgreSQL from version {version} against SQLite, table by table and column by column"
        );
    }
}
