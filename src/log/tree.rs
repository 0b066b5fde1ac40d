//! RFC 6962 Merkle tree arithmetic over stored hashes: reading them from the
//! database for proofs, and recomputing them from entries for verification.
//!
//! Hashes are stored at Go `sumdb/tlog` stored-hash indexes, so every proof
//! and any past root costs O(log n) point reads.

use crate::db::Connection;
use tlog_tiles::{Hash, HashReader, node_hash, record_hash};

/// The most stored hashes one query reads on PostgreSQL (a power of two,
/// well under its 65,535 parameters).
const MAX_READ_AT_ONCE: usize = 4096;

/// Reads stored hashes through one SQLite connection (or open transaction).
pub struct DbHashes<'a>(pub &'a Connection);

impl HashReader for DbHashes<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        let fail = |e: crate::db::Error| tlog_tiles::Error::InvalidInput(format!("reading stored hashes: {e}"));
        if self.0.is_postgres() && indexes.len() > 1 {
            return self.read_at_once(indexes).map_err(fail)?;
        }
        let mut stmt = self
            .0
            .prepare_cached("SELECT hash FROM hashes WHERE idx = ?1")
            .map_err(fail)?;
        indexes
            .iter()
            .map(|&i| {
                let bytes: Vec<u8> = stmt.query_row([i as i64], |r| r.get(0)).map_err(|e| match e {
                    crate::db::Error::NoRows | crate::db::Error::Sqlite(rusqlite::Error::QueryReturnedNoRows) => {
                        tlog_tiles::Error::IndexesNotInTree
                    }
                    e => fail(e),
                })?;
                bytes.try_into().map(Hash).map_err(|_| tlog_tiles::Error::MalformedHash)
            })
            .collect()
    }
}

impl DbHashes<'_> {
    /// All of `indexes` in one query: on PostgreSQL each query is a round
    /// trip to the server, where SQLite's point reads cost microseconds.
    fn read_at_once(&self, indexes: &[u64]) -> crate::db::Result<Result<Vec<Hash>, tlog_tiles::Error>> {
        let mut found = std::collections::HashMap::with_capacity(indexes.len());
        for chunk in indexes.chunks(MAX_READ_AT_ONCE) {
            // Lists padded to a power of two (the last index repeated) keep a few statements
            // prepared, not one per length.
            let width = chunk.len().next_power_of_two();
            let list = vec!["?"; width].join(", ");
            let mut stmt = self
                .0
                .prepare_cached(&format!("SELECT idx, hash FROM hashes WHERE idx IN ({list})"))?;
            let last = chunk[chunk.len() - 1];
            let wanted: Vec<i64> = (0..width).map(|n| *chunk.get(n).unwrap_or(&last) as i64).collect();
            let params: Vec<&dyn rusqlite::ToSql> = wanted.iter().map(|i| i as _).collect();
            for row in stmt.query_map(&params[..], |r| Ok((r.get::<i64>(0)?, r.get::<Vec<u8>>(1)?)))? {
                let (idx, hash) = row?;
                found.insert(idx as u64, hash);
            }
        }
        Ok(indexes
            .iter()
            .map(|i| match found.get(i) {
                None => Err(tlog_tiles::Error::IndexesNotInTree),
                Some(bytes) => bytes
                    .as_slice()
                    .try_into()
                    .map(Hash)
                    .map_err(|_| tlog_tiles::Error::MalformedHash),
            })
            .collect())
    }
}

/// Remembers the hashes read through it: the proofs of one batch's entries,
/// all at the same tree size, share most of their hashes.
pub struct CachedHashes<R> {
    inner: R,
    cache: std::cell::RefCell<std::collections::HashMap<u64, Hash>>,
}

impl<R: HashReader> CachedHashes<R> {
    /// Caches what `inner` reads.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            cache: Default::default(),
        }
    }

    /// Remembers hashes already known (a batch's new ones, the tree's right
    /// edge), so reading them costs no call to `inner`.
    pub fn know(&self, known: impl IntoIterator<Item = (u64, Hash)>) {
        self.cache.borrow_mut().extend(known);
    }

    /// Every hash known or read so far.
    pub fn known(self) -> impl Iterator<Item = (u64, Hash)> {
        self.cache.into_inner().into_iter()
    }
}

impl<R: HashReader> HashReader for CachedHashes<R> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        let mut cache = self.cache.borrow_mut();
        let missing: Vec<u64> = indexes.iter().copied().filter(|i| !cache.contains_key(i)).collect();
        if !missing.is_empty() {
            for (i, h) in missing.iter().zip(self.inner.read_hashes(&missing)?) {
                cache.insert(*i, h);
            }
        }
        Ok(indexes.iter().map(|i| cache[i]).collect())
    }
}

/// The stored hashes a node wrote or read lately, in memory, shared by its
/// log's writer and readers: a consistency proof between two recent tree
/// sizes (the one a peer was last shown and ours now) needs only these, so
/// showing a peer our checkpoint with its proof costs no read of the store
/// (at 193 parties the reads were 6 % of the machine). Stored hashes never
/// change once committed, so a held hash is never stale. Two generations
/// bound it: new and used hashes go to the current one, and when that is
/// full it becomes the previous and the one before is forgotten, so the
/// roots of the tree's old left subtrees, which every proof uses, stay.
#[derive(Default)]
pub struct RecentHashes(std::sync::Mutex<Generations>);

#[derive(Default)]
struct Generations {
    current: std::collections::HashMap<u64, Hash>,
    previous: std::collections::HashMap<u64, Hash>,
}

impl Generations {
    fn keep(&mut self, index: u64, hash: Hash) {
        self.current.insert(index, hash);
        if self.current.len() >= RecentHashes::CAPACITY / 2 {
            let fresh = std::collections::HashMap::with_capacity(RecentHashes::CAPACITY / 2);
            self.previous = std::mem::replace(&mut self.current, fresh);
        }
    }
}

impl RecentHashes {
    /// At most this many hashes (about 200 kB): those of the last 1,000 to
    /// 2,000 entries, with the older ones proofs used since.
    pub const CAPACITY: usize = 4_096;

    /// Remembers committed hashes.
    pub fn remember(&self, hashes: impl IntoIterator<Item = (u64, Hash)>) {
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for (index, hash) in hashes {
            held.keep(index, hash);
        }
    }

    /// Those of `indexes` held, each kept as used.
    pub fn held(&self, indexes: &[u64]) -> Only {
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let found: std::collections::HashMap<u64, Hash> = indexes
            .iter()
            .filter_map(|i| Some((*i, *held.current.get(i).or_else(|| held.previous.get(i))?)))
            .collect();
        for (&index, &hash) in &found {
            if !held.current.contains_key(&index) {
                held.keep(index, hash);
            }
        }
        Only(found)
    }
}

/// Answers only the hashes it holds; any other read fails.
pub struct Only(pub std::collections::HashMap<u64, Hash>);

impl HashReader for Only {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|i| self.0.get(i).copied().ok_or(tlog_tiles::Error::IndexesNotInTree))
            .collect()
    }
}

/// Notes which stored hashes are read through it and answers with
/// placeholders: a dry run of proofs learns what to fetch in one query.
#[derive(Default)]
pub struct Recorder(std::cell::RefCell<Vec<u64>>);

impl Recorder {
    /// The indexes read so far, each once.
    pub fn indexes(&self) -> Vec<u64> {
        let mut all = self.0.borrow().clone();
        all.sort_unstable();
        all.dedup();
        all
    }
}

impl HashReader for Recorder {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        self.0.borrow_mut().extend_from_slice(indexes);
        Ok(vec![tlog_tiles::EMPTY_HASH; indexes.len()])
    }
}

/// The right edge of a tree being rebuilt entry by entry: the roots of its
/// perfect subtrees, largest first. Yields the hashes a log must have stored.
#[derive(Clone, Default)]
pub struct Frontier {
    size: u64,
    stack: Vec<(u8, Hash)>,
}

impl Frontier {
    /// The right edge of a stored tree of `size` entries, read from its
    /// stored hashes in one call: the roots of its perfect subtrees.
    pub fn at(size: u64, hashes: &impl HashReader) -> Result<Self, tlog_tiles::Error> {
        let (levels, indexes): (Vec<u8>, Vec<u64>) = right_edge(size).unzip();
        let read = if indexes.is_empty() {
            Vec::new()
        } else {
            hashes.read_hashes(&indexes)?
        };
        Ok(Self {
            size,
            stack: levels.into_iter().zip(read).collect(),
        })
    }

    /// Adds the next entry; returns the hashes it completes, in stored order
    /// (leaf hash first, then each new interior hash up the tree).
    pub fn push(&mut self, entry: &[u8]) -> Vec<Hash> {
        self.push_leaf(record_hash(entry))
    }

    /// Like [`Frontier::push`] for an already hashed leaf.
    pub fn push_leaf(&mut self, leaf: Hash) -> Vec<Hash> {
        let mut out = vec![leaf];
        let mut level = 0u8;
        let mut h = leaf;
        while let Some(&(top_level, top)) = self.stack.last() {
            if top_level != level {
                break;
            }
            self.stack.pop();
            h = node_hash(top, h);
            level += 1;
            out.push(h);
        }
        self.stack.push((level, h));
        self.size += 1;
        out
    }

    /// The stored hashes of the right edge, by stored-hash index: with the
    /// hashes of entries added after it, every hash an inclusion proof of
    /// those entries needs.
    pub fn stored(&self) -> impl Iterator<Item = (u64, Hash)> + '_ {
        right_edge(self.size)
            .zip(&self.stack)
            .map(|((_, index), &(_, h))| (index, h))
    }

    /// Entries added so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The RFC 6962 root of the entries added so far.
    pub fn root(&self) -> Hash {
        let mut iter = self.stack.iter().rev();
        let Some(&(_, mut h)) = iter.next() else {
            return tlog_tiles::EMPTY_HASH;
        };
        for &(_, left) in iter {
            h = node_hash(left, h);
        }
        h
    }
}

/// The perfect subtrees of a tree of `size` entries, largest first: each one's
/// level and the stored-hash index of its root.
fn right_edge(size: u64) -> impl Iterator<Item = (u8, u64)> {
    let mut start = 0u64;
    (0..64u8).rev().filter(move |l| size >> l & 1 == 1).map(move |level| {
        let index = tlog_tiles::stored_hash_index(level, start >> level);
        start += 1 << level;
        (level, index)
    })
}

/// The most hashes an RFC 6962 proof can need (two per level of a 2^64 tree);
/// a longer proof from the network is refused before any hashing.
pub const MAX_PROOF_HASHES: usize = 128;

/// A proof as it goes on the wire: one 32-byte string per hash.
pub fn proof_to_wire(proof: &[Hash]) -> Vec<Vec<u8>> {
    proof.iter().map(|h| h.0.to_vec()).collect()
}

/// A proof from the wire, refused if it is longer than any tree needs or
/// holds a hash that is not 32 bytes.
pub fn proof_from_wire(hashes: &[Vec<u8>]) -> Result<Vec<Hash>, String> {
    if hashes.len() > MAX_PROOF_HASHES {
        return Err(format!(
            "{} hashes; a tree needs at most {MAX_PROOF_HASHES}",
            hashes.len()
        ));
    }
    hashes
        .iter()
        .map(|h| h.as_slice().try_into().map(Hash))
        .collect::<Result<_, _>>()
        .map_err(|_| "a hash that is not 32 bytes".to_owned())
}

#[cfg(test)]
mod tests {
    use crate::log::tree::*;
    use tlog_tiles::prove_record;

    #[test]
    fn the_right_edge_and_a_batchs_hashes_prove_every_entry_of_the_batch() {
        for before in 0..70u64 {
            let mut frontier = Frontier::default();
            for n in 0..before {
                frontier.push(&n.to_be_bytes());
            }
            for batch in 1..40u64 {
                let mut grown = frontier.clone();
                let mut known: std::collections::HashMap<u64, Hash> = frontier.stored().collect();
                for n in before..before + batch {
                    let base = tlog_tiles::stored_hash_index(0, n);
                    known.extend((base..).zip(grown.push(&n.to_be_bytes())));
                }
                let size = before + batch;
                for index in before..size {
                    let proof = prove_record(size, index, &Only(known.clone()))
                        .unwrap_or_else(|e| panic!("entry {index} of {size} after {before}: {e}"));
                    let leaf = record_hash(&index.to_be_bytes());
                    assert!(tlog_tiles::check_record(&proof, size, grown.root(), index, leaf).is_ok());
                }
            }
        }
    }
}
