//! What a log is checked for when a node opens it: the stored tree matches
//! the latest signed checkpoint, and every entry appended since the last
//! start (or every entry, on request) still hashes to what is stored, so a
//! log altered while the node was stopped is refused, naming the entry.

use std::path::Path;
use std::sync::Arc;

use crate::db::{Connection, OptionalExtension};
use prost::Message;
use tlog_tiles::{HashReader, record_hash, stored_hash_index, stored_hashes_for_record_hash, tree_hash};

use super::checkpoint;
use super::entry;
use super::error::{LogError, corrupt, tree_error};
use super::reader::latest_checkpoint;
use super::tree::DbHashes;
use super::writer::Head;
use crate::own_keys::OwnKeys;
use crate::proto::LogEntry;
use crate::store::{self, Context};

/// Which entries a node re-hashes when it opens its log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Recheck {
    /// Those appended since the last start's check (the default).
    #[default]
    NewEntries,
    /// Every entry (`hotline serve --recheck-log all`).
    All,
}

pub(crate) fn load_head(
    conn: &Connection,
    dir: &Path,
    keys: &OwnKeys,
    clock: &crate::clock::Clock,
) -> Result<Head, LogError> {
    let db = dir.join(store::DB_FILE);
    // The highest index, not COUNT(*): counting reads every page of a table
    // of millions of entries. A hole among the entries appended since the
    // last start is found by the re-hash below, one anywhere by audit verify.
    let entries: i64 = conn
        .query_row("SELECT COALESCE(MAX(idx) + 1, 0) FROM entries", [], |r| r.get(0))
        .at(&db)?;
    let corrupt = |what: String| corrupt(dir, what);
    let (size, Some(note)) = latest_checkpoint(conn, dir)? else {
        if entries != 0 {
            return Err(corrupt(format!("{entries} entries but no signed checkpoint")));
        }
        return Ok(Head {
            size: 0,
            root: tlog_tiles::EMPTY_HASH,
            note: Arc::new(checkpoint::sign(
                &super::error::signing_keys(keys, clock.now())?,
                0,
                tlog_tiles::EMPTY_HASH,
            )?),
        });
    };
    if entries as u64 != size {
        return Err(corrupt(format!(
            "{entries} entries but the latest signed checkpoint covers {size}; run hotline audit verify"
        )));
    }
    // Any key we hold will do: after a rotation the last checkpoint may be signed by either.
    let held = keys.all();
    let verified = held
        .iter()
        .map(|k| checkpoint::verify(&note, k.key.verifier()))
        .find(Result::is_ok)
        .unwrap_or_else(|| checkpoint::verify(&note, held[0].key.verifier()))
        .map_err(|e| corrupt(format!("latest checkpoint: {e}")))?;
    let root = tree_hash(size, &DbHashes(conn)).map_err(|e| tree_error(dir, e))?;
    if root != verified.root {
        return Err(corrupt(format!(
            "stored tree root at size {size} does not match the signed checkpoint; run hotline audit verify"
        )));
    }
    Ok(Head {
        size,
        root,
        note: Arc::new(note),
    })
}

/// Re-hashes the entries appended since the last check (all of them with
/// [`Recheck::All`]) and compares every stored hash they determine; then
/// records how far the log is checked. The first entry at fault is named.
pub(crate) fn recheck_entries(conn: &Connection, dir: &Path, size: u64, recheck: Recheck) -> Result<(), LogError> {
    let db = dir.join(store::DB_FILE);
    let checked: u64 = conn
        .query_row("SELECT through FROM startup_checked", [], |r| r.get::<i64>(0))
        .optional()
        .at(&db)?
        .unwrap_or(0) as u64;
    let from = if recheck == Recheck::All { 0 } else { checked.min(size) };
    let mut stmt = conn
        .prepare(&format!(
            "{} WHERE e.idx >= ?1 AND e.idx < ?2 ORDER BY e.idx",
            entry::STORED
        ))
        .at(&db)?;
    let mut rows = stmt.query([from as i64, size as i64]).at(&db)?;
    let mut next = from;
    let reader = DbHashes(conn);
    while let Some(row) = rows.next().at(&db)? {
        let index = row.get::<i64>(0).at(&db)? as u64;
        let data: Vec<u8> = row.get(1).at(&db)?;
        if index != next {
            return Err(corrupt(dir, format!("entry {next}: missing; run hotline audit verify")));
        }
        let expected =
            stored_hashes_for_record_hash(index, record_hash(&data), &reader).map_err(|e| tree_error(dir, e))?;
        let base = stored_hash_index(0, index);
        let wanted: Vec<u64> = (base..base + expected.len() as u64).collect();
        let stored = reader.read_hashes(&wanted).map_err(|e| tree_error(dir, e))?;
        if stored != expected {
            return Err(corrupt(
                dir,
                format!(
                    "entry {index}: content does not match its stored hashes: the entry was altered or moved; run hotline audit verify"
                ),
            ));
        }
        // An envelope kept beside its entry must still be the one the entry names.
        let outside: Option<Vec<u8>> = row.get(2).at(&db)?;
        if let Some(decoded) = LogEntry::decode(&data[..])
            .ok()
            .filter(|e| entry::outside_sha256(e).is_some())
        {
            entry::envelope(decoded, outside.as_deref())
                .map_err(|what| corrupt(dir, format!("entry {index}: {what}; run hotline audit verify")))?;
        }
        next += 1;
    }
    if next != size {
        return Err(corrupt(dir, format!("entry {next}: missing; run hotline audit verify")));
    }
    conn.execute("UPDATE startup_checked SET through = ?1", [size as i64])
        .at(&db)?;
    if from < size {
        tracing::info!(from, to = size, "log entries re-hashed and checked");
    }
    Ok(())
}
