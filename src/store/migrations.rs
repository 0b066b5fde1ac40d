//! The schema, once in intent and twice in dialect: SQLite's migrations
//! (index + 1 is the schema version, `PRAGMA user_version`), and
//! PostgreSQL's, numbered on the same scale (the `schema_version` table).
//! PostgreSQL stores began at version 12, built whole by
//! `postgres_schema.sql`; every SQLite migration after it comes with its
//! PostgreSQL counterpart under the same number, and
//! `tests/store_migrations.rs` compares the schemas the two engines reach,
//! table by table and column by column.

/// PostgreSQL's migrations: the schema version each brings a store to, and
/// its SQL. The last one's version is SQLite's newest (`MIGRATIONS.len()`).
pub const POSTGRES_MIGRATIONS: &[(usize, &str)] = &[(12, include_str!("postgres_schema.sql"))];

/// SQLite's schema migrations, applied in order; index + 1 is the schema version.
pub const MIGRATIONS: &[&str] = &[
    r#"
    -- The audit log: entries verbatim, and the RFC 6962 tree's stored hashes
    -- indexed as in Go's sumdb/tlog (stored_hash_index).
    CREATE TABLE entries (idx INTEGER PRIMARY KEY, data BLOB NOT NULL) STRICT;
    CREATE TABLE hashes (idx INTEGER PRIMARY KEY, hash BLOB NOT NULL) STRICT;
    -- Every checkpoint this node signed, one per committed batch.
    CREATE TABLE checkpoints (size INTEGER PRIMARY KEY, note BLOB NOT NULL) STRICT;
    -- Peers' checkpoints this node verified and keeps as evidence.
    CREATE TABLE witnessed (
        party TEXT NOT NULL,
        size INTEGER NOT NULL,
        note BLOB NOT NULL,
        PRIMARY KEY (party, size)
    ) STRICT;
"#,
    r#"
    -- Node state, committed in the same transaction as the log entries that record it.
    -- Every notice and response sent or received, with its envelope verbatim.
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
    -- Deliveries not yet receipted, with their retry schedule.
    CREATE TABLE outbox (
        message_id TEXT NOT NULL,
        party TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_ms INTEGER NOT NULL,
        last_error TEXT,
        PRIMARY KEY (message_id, party)
    ) STRICT;
    -- Receipts peers signed for our messages.
    CREATE TABLE receipts (
        message_id TEXT NOT NULL,
        party TEXT NOT NULL,
        envelope BLOB NOT NULL,
        log_index INTEGER NOT NULL,
        PRIMARY KEY (message_id, party)
    ) STRICT;
    -- Clocks the norms run: who owes what by when.
    CREATE TABLE deadlines (
        message_id TEXT NOT NULL,
        party TEXT NOT NULL,
        kind INTEGER NOT NULL,
        due_ms INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('running', 'met', 'missed')),
        PRIMARY KEY (message_id, party, kind)
    ) STRICT;
    CREATE INDEX deadlines_running ON deadlines (state, due_ms);
    -- Norm events, also in the log, kept here for status and threads.
    CREATE TABLE norm_events (
        log_index INTEGER PRIMARY KEY,
        message_id TEXT NOT NULL,
        event BLOB NOT NULL
    ) STRICT;
    -- Each peer's last successful communication check.
    CREATE TABLE comm_checks (
        party TEXT PRIMARY KEY,
        last_ok_ms INTEGER NOT NULL
    ) STRICT;
    -- Agreement versions this node adopted.
    CREATE TABLE adopted (
        version INTEGER PRIMARY KEY,
        sha256 BLOB NOT NULL,
        log_index INTEGER NOT NULL
    ) STRICT;
"#,
    r#"
    -- Envelopes are kept once, in the log entry that records them: a message
    -- row points at its entry (log_index), and so does a receipt from now on.
    ALTER TABLE messages DROP COLUMN envelope;
    CREATE TABLE receipts_v3 (
        message_id TEXT NOT NULL,
        party TEXT NOT NULL,
        -- The receiver's log index of our message, from the receipt.
        log_index INTEGER NOT NULL,
        -- Our log entry holding the receipt envelope.
        entry_index INTEGER,
        -- Receipts recorded before this version keep their own copy instead.
        envelope BLOB,
        PRIMARY KEY (message_id, party),
        CHECK ((entry_index IS NULL) <> (envelope IS NULL))
    ) STRICT;
    INSERT INTO receipts_v3 (message_id, party, log_index, envelope)
        SELECT message_id, party, log_index, envelope FROM receipts;
    DROP TABLE receipts;
    ALTER TABLE receipts_v3 RENAME TO receipts;
"#,
    r#"
    -- The per-exchange tables again, cheaper to write: keyed by their
    -- primary key alone (WITHOUT ROWID, one b-tree instead of two), and the
    -- deadline state checked without an IN list, which SQLite evaluates by
    -- building a temporary table on every insert and update. Only running
    -- clocks are indexed by due time: those are the ones the node scans.
    CREATE TABLE messages_v4 (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind = 'notice' OR kind = 'response'),
        direction TEXT NOT NULL CHECK (direction = 'sent' OR direction = 'received'),
        sender TEXT NOT NULL,
        thread TEXT NOT NULL,
        payload_sha256 BLOB NOT NULL,
        log_index INTEGER NOT NULL,
        created_ms INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;
    INSERT INTO messages_v4 SELECT id, kind, direction, sender, thread, payload_sha256, log_index, created_ms FROM messages;
    DROP TABLE messages;
    ALTER TABLE messages_v4 RENAME TO messages;
    CREATE INDEX messages_thread ON messages (thread);

    CREATE TABLE outbox_v4 (
        message_id TEXT NOT NULL,
        party TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_ms INTEGER NOT NULL,
        last_error TEXT,
        PRIMARY KEY (message_id, party)
    ) STRICT, WITHOUT ROWID;
    INSERT INTO outbox_v4 SELECT message_id, party, attempts, next_attempt_ms, last_error FROM outbox;
    DROP TABLE outbox;
    ALTER TABLE outbox_v4 RENAME TO outbox;

    CREATE TABLE receipts_v4 (
        message_id TEXT NOT NULL,
        party TEXT NOT NULL,
        log_index INTEGER NOT NULL,
        entry_index INTEGER,
        envelope BLOB,
        PRIMARY KEY (message_id, party),
        CHECK ((entry_index IS NULL) <> (envelope IS NULL))
    ) STRICT, WITHOUT ROWID;
    INSERT INTO receipts_v4 SELECT message_id, party, log_index, entry_index, envelope FROM receipts;
    DROP TABLE receipts;
    ALTER TABLE receipts_v4 RENAME TO receipts;

    CREATE TABLE deadlines_v4 (
        message_id TEXT NOT NULL,
        party TEXT NOT NULL,
        kind INTEGER NOT NULL,
        due_ms INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state = 'running' OR state = 'met' OR state = 'missed'),
        PRIMARY KEY (message_id, party, kind)
    ) STRICT, WITHOUT ROWID;
    INSERT INTO deadlines_v4 SELECT message_id, party, kind, due_ms, state FROM deadlines;
    DROP TABLE deadlines;
    ALTER TABLE deadlines_v4 RENAME TO deadlines;
    CREATE INDEX deadlines_running ON deadlines (due_ms) WHERE state = 'running';
"#,
    r#"
    -- How far a node re-hashed its log's entries when it last started (schema version 5).
    CREATE TABLE startup_checked (through INTEGER NOT NULL) STRICT;
    INSERT INTO startup_checked (through) VALUES (0);
"#,
    r#"
    -- Envelopes too large for their entry, which names them by SHA-256 (schema version 6).
    CREATE TABLE envelopes (idx INTEGER PRIMARY KEY, data BLOB NOT NULL) STRICT;
"#,
    r#"
    -- Schema version 7: amendments of the agreement travel as messages, and a
    -- clock closes (neither met nor missed) when its party leaves.
    CREATE TABLE messages_v7 (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind = 'notice' OR kind = 'response' OR kind = 'amendment'),
        direction TEXT NOT NULL CHECK (direction = 'sent' OR direction = 'received'),
        sender TEXT NOT NULL,
        thread TEXT NOT NULL,
        payload_sha256 BLOB NOT NULL,
        log_index INTEGER NOT NULL,
        created_ms INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;
    INSERT INTO messages_v7 SELECT * FROM messages;
    DROP TABLE messages;
    ALTER TABLE messages_v7 RENAME TO messages;
    CREATE INDEX messages_thread ON messages (thread);

    CREATE TABLE deadlines_v7 (
        message_id TEXT NOT NULL,
        party TEXT NOT NULL,
        kind INTEGER NOT NULL,
        due_ms INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state = 'running' OR state = 'met' OR state = 'missed' OR state = 'closed'),
        PRIMARY KEY (message_id, party, kind)
    ) STRICT, WITHOUT ROWID;
    INSERT INTO deadlines_v7 SELECT * FROM deadlines;
    DROP TABLE deadlines;
    ALTER TABLE deadlines_v7 RENAME TO deadlines;
    CREATE INDEX deadlines_running ON deadlines (due_ms) WHERE state = 'running';

    -- Versions of the agreement proposed over the hotline, each with every
    -- signature gathered so far, until one is adopted.
    CREATE TABLE proposals (
        sha256 BLOB PRIMARY KEY,
        version INTEGER NOT NULL,
        note BLOB NOT NULL,
        proposed_by TEXT NOT NULL,
        proposed_ms INTEGER NOT NULL
    ) STRICT;
    -- Parties that rejected a proposed version, and why.
    CREATE TABLE rejections (
        sha256 BLOB NOT NULL,
        party TEXT NOT NULL,
        reason TEXT NOT NULL,
        PRIMARY KEY (sha256, party)
    ) STRICT;
"#,
    r#"
    -- Schema version 8: exercise traffic is marked, so compliance figures leave it out.
    ALTER TABLE messages ADD COLUMN exercise INTEGER NOT NULL DEFAULT 0 CHECK (exercise = 0 OR exercise = 1);
"#,
    r#"
    -- Schema version 9: answers to human communication checks, with their round-trip time.
    CREATE TABLE human_checks (
        notice_id TEXT PRIMARY KEY,
        party TEXT NOT NULL,
        round_trip_ms INTEGER NOT NULL,
        answered_ms INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX human_checks_party ON human_checks (party, answered_ms);
"#,
    r#"
    -- Schema version 10: escalations of missed steps, and when the next level is due.
    CREATE TABLE escalations (
        message_id TEXT NOT NULL,
        party TEXT NOT NULL,
        kind INTEGER NOT NULL,
        level INTEGER NOT NULL,
        next_ms INTEGER,
        PRIMARY KEY (message_id, party, kind)
    ) STRICT;
    CREATE INDEX escalations_due ON escalations (next_ms) WHERE next_ms IS NOT NULL;
"#,
    r#"
    -- Schema version 11: parties' rosters of points of contact travel as messages,
    -- and every version a node logged is kept.
    CREATE TABLE messages_v11 (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind = 'notice' OR kind = 'response' OR kind = 'amendment' OR kind = 'roster'),
        direction TEXT NOT NULL CHECK (direction = 'sent' OR direction = 'received'),
        sender TEXT NOT NULL,
        thread TEXT NOT NULL,
        payload_sha256 BLOB NOT NULL,
        log_index INTEGER NOT NULL,
        created_ms INTEGER NOT NULL,
        exercise INTEGER NOT NULL DEFAULT 0 CHECK (exercise = 0 OR exercise = 1)
    ) STRICT, WITHOUT ROWID;
    INSERT INTO messages_v11 SELECT * FROM messages;
    DROP TABLE messages;
    ALTER TABLE messages_v11 RENAME TO messages;
    CREATE INDEX messages_thread ON messages (thread);

    CREATE TABLE rosters (
        party TEXT NOT NULL,
        version INTEGER NOT NULL,
        note BLOB NOT NULL,
        log_index INTEGER NOT NULL,
        PRIMARY KEY (party, version)
    ) STRICT;
"#,
    r#"
    -- Schema version 12: the compliance figures are counted as clocks are met and
    -- missed, so Status reads one row per party and kind (real traffic only).
    CREATE TABLE compliance (
        party TEXT NOT NULL,
        kind INTEGER NOT NULL,
        met INTEGER NOT NULL,
        missed INTEGER NOT NULL,
        PRIMARY KEY (party, kind)
    ) STRICT, WITHOUT ROWID;
    INSERT INTO compliance (party, kind, met, missed)
        SELECT d.party, d.kind, SUM(d.state = 'met'), SUM(d.state = 'missed') FROM deadlines d
        JOIN messages m ON m.id = d.message_id WHERE m.exercise = 0 AND d.state IN ('met', 'missed')
        GROUP BY d.party, d.kind;
"#,
];
