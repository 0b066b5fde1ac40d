-- hotline's store in PostgreSQL at schema version 12, where PostgreSQL
-- stores begin: the same tables as SQLite's schema 12 (store/migrations.rs),
-- in PostgreSQL's types; later versions are POSTGRES_MIGRATIONS there. Integers are BIGINT, so
-- they read back as SQLite's 64-bit integers; blobs are BYTEA.

-- The audit log: entries verbatim, and the RFC 6962 tree's stored hashes
-- indexed as in Go's sumdb/tlog (stored_hash_index).
CREATE TABLE entries (idx BIGINT PRIMARY KEY, data BYTEA NOT NULL);
CREATE TABLE hashes (idx BIGINT PRIMARY KEY, hash BYTEA NOT NULL);
-- Envelopes too large for their entry, which names them by SHA-256.
CREATE TABLE envelopes (idx BIGINT PRIMARY KEY, data BYTEA NOT NULL);
-- Every checkpoint this node signed, one per committed batch.
CREATE TABLE checkpoints (size BIGINT PRIMARY KEY, note BYTEA NOT NULL);
-- Peers' checkpoints this node verified and keeps as evidence.
CREATE TABLE witnessed (
    party TEXT NOT NULL,
    size BIGINT NOT NULL,
    note BYTEA NOT NULL,
    PRIMARY KEY (party, size)
);
-- How far a node re-hashed its log's entries when it last started.
CREATE TABLE startup_checked (through BIGINT NOT NULL);
INSERT INTO startup_checked (through) VALUES (0);

-- Node state, committed in the same transaction as the log entries that record it.
CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('notice', 'response', 'amendment', 'roster')),
    direction TEXT NOT NULL CHECK (direction IN ('sent', 'received')),
    sender TEXT NOT NULL,
    thread TEXT NOT NULL,
    payload_sha256 BYTEA NOT NULL,
    log_index BIGINT NOT NULL,
    created_ms BIGINT NOT NULL,
    exercise BIGINT NOT NULL DEFAULT 0 CHECK (exercise IN (0, 1))
);
CREATE INDEX messages_thread ON messages (thread);
CREATE TABLE outbox (
    message_id TEXT NOT NULL,
    party TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL,
    last_error TEXT,
    PRIMARY KEY (message_id, party)
);
CREATE TABLE receipts (
    message_id TEXT NOT NULL,
    party TEXT NOT NULL,
    log_index BIGINT NOT NULL,
    entry_index BIGINT,
    envelope BYTEA,
    PRIMARY KEY (message_id, party),
    CHECK ((entry_index IS NULL) <> (envelope IS NULL))
);
CREATE TABLE deadlines (
    message_id TEXT NOT NULL,
    party TEXT NOT NULL,
    kind BIGINT NOT NULL,
    due_ms BIGINT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('running', 'met', 'missed', 'closed')),
    PRIMARY KEY (message_id, party, kind)
);
CREATE INDEX deadlines_running ON deadlines (due_ms) WHERE state = 'running';
CREATE TABLE norm_events (
    log_index BIGINT PRIMARY KEY,
    message_id TEXT NOT NULL,
    event BYTEA NOT NULL
);
CREATE TABLE comm_checks (party TEXT PRIMARY KEY, last_ok_ms BIGINT NOT NULL);
CREATE TABLE adopted (version BIGINT PRIMARY KEY, sha256 BYTEA NOT NULL, log_index BIGINT NOT NULL);
CREATE TABLE proposals (
    sha256 BYTEA PRIMARY KEY,
    version BIGINT NOT NULL,
    note BYTEA NOT NULL,
    proposed_by TEXT NOT NULL,
    proposed_ms BIGINT NOT NULL
);
CREATE TABLE rejections (
    sha256 BYTEA NOT NULL,
    party TEXT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (sha256, party)
);
CREATE TABLE human_checks (
    notice_id TEXT PRIMARY KEY,
    party TEXT NOT NULL,
    round_trip_ms BIGINT NOT NULL,
    answered_ms BIGINT NOT NULL
);
CREATE INDEX human_checks_party ON human_checks (party, answered_ms);
CREATE TABLE escalations (
    message_id TEXT NOT NULL,
    party TEXT NOT NULL,
    kind BIGINT NOT NULL,
    level BIGINT NOT NULL,
    next_ms BIGINT,
    PRIMARY KEY (message_id, party, kind)
);
CREATE INDEX escalations_due ON escalations (next_ms) WHERE next_ms IS NOT NULL;
CREATE TABLE rosters (
    party TEXT NOT NULL,
    version BIGINT NOT NULL,
    note BYTEA NOT NULL,
    log_index BIGINT NOT NULL,
    PRIMARY KEY (party, version)
);
CREATE TABLE compliance (
    party TEXT NOT NULL,
    kind BIGINT NOT NULL,
    met BIGINT NOT NULL,
    missed BIGINT NOT NULL,
    PRIMARY KEY (party, kind)
);
