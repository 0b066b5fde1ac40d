//! Static export in the C2SP tlog-tiles layout, so existing tlog clients and
//! witnesses can read a hotline log served as plain files:
//! `checkpoint`, hash tiles `tile/<L>/<N>[.p/<W>]` and entry bundles
//! `tile/entries/<N>[.p/<W>]` (each entry prefixed by its big-endian u16 length),
//! and beside them `envelope/<sha256 hex>` for the envelopes the entries
//! commit to (and adopted agreements too large for their entry), named by
//! the hash the entry names. An export is in tiers: by default only the
//! envelopes of TLP:CLEAR messages are written, so the export can be handed
//! to anyone; a reader cleared further gets an export up to its clearance.

use std::collections::BTreeMap;
use std::path::Path;

use prost::Message;
use sha2::{Digest, Sha256};
use tlog_tiles::{Hash, HashReader, Tile};

use super::checkpoint;
use super::entry;
use super::tree::DbHashes;
use super::verify::{Replay, Report, VerifyError};
use crate::keys::VerifierKey;
use crate::message::{cleared_for, tlp_label};
use crate::proto::{LogEntry, Tlp};
use crate::store::{self, Context};

/// Tile height fixed by C2SP tlog-tiles.
const HEIGHT: u8 = 8;
/// Entries in a full tile.
const WIDTH: u64 = 1 << HEIGHT;

/// What an export wrote.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Exported {
    /// Tree size of the exported checkpoint.
    pub size: u64,
    /// Hash tiles written.
    pub hash_tiles: usize,
    /// Entry bundles written.
    pub entry_bundles: u64,
    /// Envelopes written, by TLP label.
    pub envelopes: BTreeMap<String, u64>,
    /// Envelopes the entries commit to that were left out, by TLP label.
    pub withheld: BTreeMap<String, u64>,
}

/// The C2SP path of a hash tile (Go's path without the height element).
fn hash_tile_path(tile: &Tile) -> String {
    tile.path().replacen(&format!("tile/{HEIGHT}/"), "tile/", 1)
}

/// The C2SP path of entry bundle `n` holding `width` entries.
fn bundle_path(n: u64, width: u64) -> String {
    Tile::new(HEIGHT, 0, n, width as u32, true)
        .path()
        .replacen(&format!("tile/{HEIGHT}/data/"), "tile/entries/", 1)
}

/// Where an export keeps an envelope too large for its entry: named by the
/// SHA-256 of its encoding, as the entry names it.
fn envelope_path(sha256: &[u8]) -> String {
    format!("envelope/{}", hex::encode(sha256))
}

fn file_error(path: &Path, what: impl ToString) -> VerifyError {
    VerifyError::File {
        path: path.display().to_string(),
        what: what.to_string(),
    }
}

fn write(out: &Path, rel: &str, data: &[u8]) -> Result<(), VerifyError> {
    let path = out.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| file_error(parent, e))?;
    }
    std::fs::write(&path, data).map_err(|e| file_error(&path, e))
}

/// Exports the log in `dir` as of its latest checkpoint into `out`, with
/// the envelopes of messages labelled up to `clearance` (CLEAR: the public
/// tier). The checkpoint is written last, so a reader never sees one whose
/// tiles are missing.
pub fn export(
    dir: &Path,
    out: &Path,
    clearance: Tlp,
    mut progress: impl FnMut(u64, u64),
) -> Result<Exported, VerifyError> {
    let db = dir.join(store::DB_FILE);
    let conn = store::open_reader(dir)?;
    let tx = conn.transaction().at(&db)?;
    let (size, note): (i64, Vec<u8>) = tx
        .query_row(
            "SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .at(&db)?;
    let size = size as u64;
    let tiles = Tile::new_tiles(HEIGHT, 0, size);
    for tile in &tiles {
        let data = tile
            .read_data(&DbHashes(&tx))
            .map_err(|e| file_error(&db, format!("stored tree: {e}")))?;
        write(out, &hash_tile_path(tile), &data)?;
    }
    let mut stmt = tx
        .prepare(&format!(
            "{} WHERE e.idx >= ?1 AND e.idx < ?2 ORDER BY e.idx",
            entry::STORED
        ))
        .at(&db)?;
    let bundles = size.div_ceil(WIDTH);
    let (mut envelopes, mut withheld) = (BTreeMap::new(), BTreeMap::new());
    for n in 0..bundles {
        let start = n * WIDTH;
        let width = WIDTH.min(size - start);
        let mut bundle = Vec::new();
        let mut rows = stmt.query([start as i64, (start + width) as i64]).at(&db)?;
        let mut count = 0;
        while let Some(row) = rows.next().at(&db)? {
            let index = start + count;
            let data: Vec<u8> = row.get(1).at(&db)?;
            let len = u16::try_from(data.len()).map_err(|_| VerifyError::Entry {
                index,
                what: format!(
                    "is {} bytes, over the 65535-byte limit of tlog-tiles entry bundles",
                    data.len()
                ),
            })?;
            bundle.extend_from_slice(&len.to_be_bytes());
            bundle.extend_from_slice(&data);
            if let Some(envelope) = row.get::<Option<Vec<u8>>>(2).at(&db)? {
                let label = LogEntry::decode(&data[..]).map_or(Tlp::Red, |e| entry::label(&e, &envelope));
                let tally = match cleared_for(label, clearance) {
                    true => {
                        write(out, &envelope_path(&Sha256::digest(&envelope)), &envelope)?;
                        &mut envelopes
                    }
                    false => &mut withheld,
                };
                *tally.entry(tlp_label(label).to_owned()).or_default() += 1;
            }
            count += 1;
        }
        if count != width {
            return Err(VerifyError::Entry {
                index: start + count,
                what: "missing from the database".into(),
            });
        }
        write(out, &bundle_path(n, width), &bundle)?;
        progress(start + width, size);
    }
    write(out, "checkpoint", &note)?;
    Ok(Exported {
        size,
        hash_tiles: tiles.len(),
        entry_bundles: bundles,
        envelopes,
        withheld,
    })
}

/// Stored hashes held in memory while an export is verified.
struct MemHashes(Vec<Hash>);

impl HashReader for MemHashes {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&i| {
                self.0
                    .get(i as usize)
                    .copied()
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

/// Verifies an export directory: the checkpoint's signature, every entry
/// bundle against the checkpoint's root, every hash tile, and every
/// envelope present against the commitment its entry holds; an envelope
/// left out of the export's tier is counted by its TLP in the report.
pub fn verify_export(out: &Path, key: &VerifierKey, progress: impl FnMut(u64, u64)) -> Result<Report, VerifyError> {
    verify_export_each(out, key, progress, |_, _, _| {}).map(|(report, _)| report)
}

/// Like [`verify_export`], handing `each` every entry once it verified
/// (its index, its bytes, the envelope beside it if the export holds it);
/// also returns the export's signed checkpoint.
pub fn verify_export_each(
    out: &Path,
    key: &VerifierKey,
    mut progress: impl FnMut(u64, u64),
    mut each: impl FnMut(u64, &[u8], Option<&[u8]>),
) -> Result<(Report, Vec<u8>), VerifyError> {
    let cp_path = out.join("checkpoint");
    let note = std::fs::read(&cp_path).map_err(|e| file_error(&cp_path, e))?;
    let cp = checkpoint::verify(&note, key).map_err(|e| file_error(&cp_path, e))?;
    let mut replay = Replay::withholding(key);
    let mut stored = Vec::new();
    for n in 0..cp.size.div_ceil(WIDTH) {
        let start = n * WIDTH;
        let width = WIDTH.min(cp.size - start);
        let path = out.join(bundle_path(n, width));
        let bundle = std::fs::read(&path).map_err(|e| file_error(&path, e))?;
        let mut rest = &bundle[..];
        for index in start..start + width {
            let entry = (rest.len() >= 2)
                .then(|| u16::from_be_bytes([rest[0], rest[1]]) as usize)
                .and_then(|len| rest.get(2..2 + len))
                .ok_or_else(|| VerifyError::Entry {
                    index,
                    what: format!("bundle {} ends early", path.display()),
                })?;
            rest = &rest[2 + entry.len()..];
            let outside = match LogEntry::decode(entry).ok().as_ref().and_then(entry::outside_sha256) {
                Some(sha) => {
                    let path = out.join(envelope_path(sha));
                    match std::fs::read(&path) {
                        Ok(bytes) => Some(bytes),
                        // Withheld from this tier: the replay counts it.
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                        Err(e) => return Err(file_error(&path, e)),
                    }
                }
                None => None,
            };
            stored.extend(replay.entry(index, entry, outside.as_deref())?);
            each(index, entry, outside.as_deref());
        }
        if !rest.is_empty() {
            return Err(file_error(&path, format!("{} bytes after the last entry", rest.len())));
        }
        progress(start + width, cp.size);
    }
    replay.checkpoint(&note)?;
    let hashes = MemHashes(stored);
    for tile in Tile::new_tiles(HEIGHT, 0, cp.size) {
        let path = out.join(hash_tile_path(&tile));
        let expected = tile.read_data(&hashes).map_err(|e| file_error(&path, e))?;
        let found = std::fs::read(&path).map_err(|e| file_error(&path, e))?;
        if found != expected {
            return Err(file_error(&path, "hash tile does not match the entries"));
        }
    }
    Ok((replay.report(), note))
}

/// A party's rewrite of its own export: the log in `from` without entry
/// `index`, re-hashed and signed again with its `key`, written to `to`;
/// returns the new size. What a state that wants to deny a message it
/// received would hand an auditor; it exists so that the demo and the
/// tests show `hotline audit reconcile` finding it. No node calls it.
pub fn rewrite_without(from: &Path, to: &Path, index: u64, key: &crate::keys::IdentityKey) -> Result<u64, VerifyError> {
    let mut kept = Vec::new();
    verify_export_each(
        from,
        key.verifier(),
        |_, _| {},
        |i, data, outside| {
            if i != index {
                kept.push((data.to_vec(), outside.map(<[u8]>::to_vec)));
            }
        },
    )?;
    let size = write_export(to, &kept, |size, root| {
        checkpoint::sign(std::slice::from_ref(key), size, root).map_err(|e| VerifyError::Checkpoint {
            size,
            what: e.to_string(),
        })
    })?;
    Ok(size)
}

/// Writes `entries` (each with the envelope kept beside it, if any) as an
/// export in `to`, under the checkpoint `note` makes of the tree's size and
/// root; returns the size.
pub fn write_export(
    to: &Path,
    entries: &[(Vec<u8>, Option<Vec<u8>>)],
    note: impl FnOnce(u64, Hash) -> Result<Vec<u8>, VerifyError>,
) -> Result<u64, VerifyError> {
    let mut tree = super::tree::Frontier::default();
    let mut stored = Vec::new();
    for (data, outside) in entries {
        stored.extend(tree.push(data));
        if let Some(envelope) = outside {
            write(to, &envelope_path(&Sha256::digest(envelope)), envelope)?;
        }
    }
    let size = tree.size();
    let hashes = MemHashes(stored);
    for tile in Tile::new_tiles(HEIGHT, 0, size) {
        let data = tile.read_data(&hashes).map_err(|e| file_error(to, e))?;
        write(to, &hash_tile_path(&tile), &data)?;
    }
    for (n, chunk) in entries.chunks(WIDTH as usize).enumerate() {
        let mut bundle = Vec::new();
        for (data, _) in chunk {
            bundle.extend_from_slice(&(data.len() as u16).to_be_bytes());
            bundle.extend_from_slice(data);
        }
        write(to, &bundle_path(n as u64, chunk.len() as u64), &bundle)?;
    }
    write(to, "checkpoint", &note(size, tree.root())?)?;
    Ok(size)
}
