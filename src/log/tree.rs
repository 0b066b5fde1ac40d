//! RFC 6962 Merkle tree arithmetic over stored hashes: reading them from the
//! database for proofs, and recomputing them from entries for verification.
//!
//! Hashes are stored at Go `sumdb/tlog` stored-hash indexes, so every proof
//! and any past root costs O(log n) point reads.

use crate::db::Connection;
use tlog_tiles::{Hash, HashReader, node_hash, record_hash};

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
        let list = vec!["?"; indexes.len()].join(", ");
        let mut stmt = self
            .0
            .prepare_cached(&format!("SELECT idx, hash FROM hashes WHERE idx IN ({list})"))?;
        let wanted: Vec<i64> = indexes.iter().map(|&i| i as i64).collect();
        let params: Vec<&dyn rusqlite::ToSql> = wanted.iter().map(|i| i as _).collect();
        let mut found = std::collections::HashMap::with_capacity(indexes.len());
        for row in stmt.query_map(&params[..], |r| Ok((r.get::<i64>(0)?, r.get::<Vec<u8>>(1)?)))? {
            let (idx, hash) = row?;
            found.insert(idx as u64, hash);
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
        let mut levels = Vec::new();
        let mut indexes = Vec::new();
        let mut start = 0u64;
        for level in (0..64u8).rev().filter(|l| size >> l & 1 == 1) {
            levels.push(level);
            indexes.push(tlog_tiles::stored_hash_index(level, start >> level));
            start += 1 << level;
        }
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
