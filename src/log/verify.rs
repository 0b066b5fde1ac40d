//! Offline verification of a whole log, as an auditor runs it: recompute the
//! tree from the entries, compare it with every stored hash and every signed
//! checkpoint, and name the first entry that does not fit.

use std::path::Path;

use crate::db::Connection;
use prost::Message;
use time::OffsetDateTime;
use tlog_tiles::Hash;

use std::collections::{BTreeMap, HashMap};

use super::checkpoint::{self, VerifiedCheckpoint};
use super::entry;
use super::tree::Frontier;
use crate::agreement::{Party, SignedAgreement};
use crate::keys::Keyring;
use crate::keys::VerifierKey;
use crate::proto::LogEntry;
use crate::proto::log_entry::Body;
use crate::store::{self, Context, StoreError};
use crate::{clock, envelope};

/// Why a log failed verification; names the first bad entry or checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// An entry is missing, altered or not a log entry.
    #[error("entry {index}: {what}")]
    Entry {
        /// The entry index.
        index: u64,
        /// What is wrong.
        what: String,
    },
    /// A checkpoint's signature or root does not match the entries before it.
    #[error("checkpoint at tree size {size}: {what}")]
    Checkpoint {
        /// The checkpoint's tree size.
        size: u64,
        /// What is wrong.
        what: String,
    },
    /// The log was cut short of what it signed.
    #[error(
        "log ends after {entries} entries but a signed checkpoint covers {signed}: entries {entries}..{signed} were removed"
    )]
    Truncated {
        /// How many entries the log holds.
        entries: u64,
        /// How many entries the latest signed checkpoint covers.
        signed: u64,
    },
    /// The database could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A node's Audit service failed to answer.
    #[error("node {node}: {what}")]
    Remote {
        /// The node's address.
        node: String,
        /// What is wrong.
        what: String,
    },
    /// An export file could not be read.
    #[error("{path}: {what}")]
    File {
        /// The file at fault.
        path: String,
        /// What is wrong.
        what: String,
    },
}

/// What a successful verification covered.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    /// Entries recomputed.
    pub entries: u64,
    /// Signed checkpoints checked.
    pub checkpoints: u64,
    /// Signatures checked inside entries (agreements, envelopes, witnessed checkpoints).
    pub signatures: u64,
    /// The root of the whole log, hex.
    pub root: String,
    /// Keys the agreement revoked that signed logged envelopes: each
    /// envelope such a key signed is suspect, above all those logged at or
    /// after the instant it was revoked from (accepted before the
    /// revocation was known).
    pub revoked_signers: Vec<RevokedSigner>,
    /// Envelopes the log commits to that were not given to this reader
    /// (an export's public tier, a reader's clearance), by TLP label: each
    /// entry still verified, its envelope's signature unread.
    pub withheld: BTreeMap<String, u64>,
}

/// A revoked key and the logged envelopes it signed.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RevokedSigner {
    /// The key (`name+hexkeyhash`).
    pub key: String,
    /// Its party.
    pub party: String,
    /// The instant it is revoked from, RFC 3339.
    pub revoked: String,
    /// How many logged envelopes it signed.
    pub signed: u64,
    /// The entries logged at or after that instant that it signed.
    pub after_revocation: Vec<u64>,
}

/// Recomputes a log from its entries in index order and checks each signed
/// checkpoint as its size is reached.
pub struct Replay {
    /// The keys our checkpoints may be signed by: the key given, and every
    /// key an adopted agreement lists under its name (a rotation).
    keys: Vec<VerifierKey>,
    /// Who signed each logged envelope, by key id: (entry index, logged at).
    envelope_signers: HashMap<String, Vec<(u64, OffsetDateTime)>>,
    frontier: Frontier,
    checkpoints: u64,
    /// The agreement the log adopted last: whose keys sign what follows.
    agreement: Option<(SignedAgreement, Keyring)>,
    /// Every party of any version adopted so far: a checkpoint witnessed
    /// just before a party left may be logged just after.
    parties: HashMap<String, Party>,
    /// The largest checkpoint size witnessed so far, per peer.
    witnessed: HashMap<String, u64>,
    signatures: u64,
    /// Whether an envelope may be missing (an export's tiers, a reader's
    /// clearance), and how many were, by TLP label.
    withheld: Option<BTreeMap<String, u64>>,
}

impl Replay {
    /// Starts a replay whose checkpoints must be signed by `key` (or by a
    /// key the log's adopted agreements list under its name).
    pub fn new(key: &VerifierKey) -> Self {
        Self {
            keys: vec![key.clone()],
            envelope_signers: HashMap::new(),
            frontier: Frontier::default(),
            checkpoints: 0,
            agreement: None,
            parties: HashMap::new(),
            witnessed: HashMap::new(),
            signatures: 0,
            withheld: None,
        }
    }

    /// Like [`Replay::new`], for a reader that may lack envelopes the log
    /// commits to: each missing one is counted by its TLP, never passed
    /// over in silence (a log's own data directory lacks none).
    pub fn withholding(key: &VerifierKey) -> Self {
        Self {
            withheld: Some(BTreeMap::new()),
            ..Self::new(key)
        }
    }

    /// Adds entry `index`, which must be the next one; returns the hashes it
    /// completes in stored order.
    /// An entry that names its envelope by hash comes with that envelope as `outside`.
    pub fn entry(&mut self, index: u64, data: &[u8], outside: Option<&[u8]>) -> Result<Vec<Hash>, VerifyError> {
        let expected = self.frontier.size();
        if index != expected {
            return Err(VerifyError::Entry {
                index: expected,
                what: format!("missing (the next entry present is {index})"),
            });
        }
        let Ok(entry) = LogEntry::decode(data) else {
            return Err(VerifyError::Entry {
                index,
                what: "is not a hotline.v1.LogEntry".into(),
            });
        };
        let hashes = self.frontier.push(data);
        self.content(entry, outside)
            .map_err(|what| VerifyError::Entry { index, what })?;
        Ok(hashes)
    }

    /// Checks what an entry says: the agreement it adopts is signed by its
    /// quorum, envelopes are signed by keys of the agreement in force, and
    /// each peer's witnessed checkpoints are signed and only grow.
    fn content(&mut self, entry: LogEntry, outside: Option<&[u8]>) -> Result<(), String> {
        let at = entry
            .logged_at
            .as_ref()
            .and_then(clock::from_proto)
            .ok_or("has no valid logged_at time")?;
        if matches!(entry.body, Some(Body::Sent(_) | Body::Received(_))) {
            if let (None, Some(_), Some(withheld)) = (outside, entry::outside_sha256(&entry), &mut self.withheld) {
                let tlp = entry::meta(&entry).map_or(crate::proto::Tlp::Unspecified, |m| m.tlp());
                *withheld.entry(crate::message::tlp_label(tlp).to_owned()).or_default() += 1;
                return Ok(());
            }
            let env = entry::envelope(entry, outside)?;
            if let (Some(env), Some((_, keyring))) = (env, &self.agreement) {
                let signer = envelope::verify(&env, &env.payload_type, keyring, at)
                    .map_err(|e| format!("logged envelope: {e}"))?;
                self.envelope_signers
                    .entry(signer.key.key_id())
                    .or_default()
                    .push((self.frontier.size() - 1, at));
                self.signatures += 1;
            }
            return Ok(());
        }
        match &entry.body {
            Some(Body::AgreementAdopted(a)) => {
                let note = entry::adopted_note(a, outside)?;
                let signed = SignedAgreement::parse(&note).map_err(|e| format!("adopted agreement: {e}"))?;
                if signed.agreement.version != a.version
                    || (!a.text_sha256.is_empty() && a.text_sha256 != signed.text_sha256())
                {
                    return Err("adopted agreement: the entry's version or text hash is not its note's".into());
                }
                // The first version is signed by its own quorum; each one after
                // follows the one before by the chain rule (its signers' keys are
                // judged by the version they amend: a key the new version revokes
                // may have signed it).
                match &self.agreement {
                    Some((held, _)) if held.text() == signed.text() => {}
                    Some((held, _)) => signed
                        .verify_successor(held, at)
                        .map_err(|e| format!("adopted agreement version {}: {e}", signed.agreement.version))?,
                    None => {
                        signed.verify(at).map_err(|e| format!("adopted agreement: {e}"))?;
                    }
                }
                let keyring = signed.agreement.keyring();
                for p in &signed.agreement.parties {
                    self.parties.insert(p.id.clone(), p.clone());
                    let origin = self.keys[0].name().to_owned();
                    for k in p.keys.iter().filter(|k| k.key.name() == origin) {
                        if !self.keys.contains(&k.key) {
                            self.keys.push(k.key.clone());
                        }
                    }
                }
                self.agreement = Some((signed, keyring));
                self.signatures += 1;
            }
            Some(Body::WitnessedCheckpoint(w)) if self.agreement.is_some() => {
                let note = w.checkpoint.as_ref().map(|c| c.note.as_slice()).unwrap_or_default();
                let party = self
                    .parties
                    .get(&w.party)
                    .ok_or_else(|| format!("witnessed checkpoint of unknown party {}", w.party))?;
                let cp = party
                    .keys
                    .iter()
                    .find_map(|k| checkpoint::verify(note, &k.key).ok())
                    .ok_or_else(|| format!("witnessed checkpoint of {} is not signed by its key", w.party))?;
                let last = self.witnessed.entry(w.party.clone()).or_insert(0);
                if cp.size <= *last && *last > 0 {
                    return Err(format!(
                        "witnessed checkpoint of {} at size {} after one of size {last}",
                        w.party, cp.size
                    ));
                }
                *last = cp.size;
                self.signatures += 1;
            }
            _ => {}
        }
        Ok(())
    }

    /// Checks a signed checkpoint against the entries replayed so far, whose
    /// count must equal its size.
    pub fn checkpoint(&mut self, note: &[u8]) -> Result<VerifiedCheckpoint, VerifyError> {
        let size = self.frontier.size();
        let cp = self
            .keys
            .iter()
            .map(|k| checkpoint::verify(note, k))
            .find(Result::is_ok)
            .unwrap_or_else(|| checkpoint::verify(note, &self.keys[0]))
            .map_err(|e| VerifyError::Checkpoint {
                size,
                what: e.to_string(),
            })?;
        if cp.size != size {
            return Err(VerifyError::Checkpoint {
                size: cp.size,
                what: format!("checked after {size} entries"),
            });
        }
        if cp.root != self.frontier.root() {
            return Err(VerifyError::Checkpoint {
                size,
                what: "signed root hash does not match the entries: an entry before this size was altered, and the stored hashes with it".into(),
            });
        }
        self.checkpoints += 1;
        Ok(cp)
    }

    /// Entries replayed so far.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// The report of a finished replay.
    pub fn report(&self) -> Report {
        Report {
            entries: self.frontier.size(),
            checkpoints: self.checkpoints,
            signatures: self.signatures,
            root: hex::encode(self.frontier.root().0),
            revoked_signers: self.revoked_signers(),
            withheld: self.withheld.clone().unwrap_or_default(),
        }
    }

    /// The keys, as the last version adopted knows them, that are revoked
    /// and signed logged envelopes.
    fn revoked_signers(&self) -> Vec<RevokedSigner> {
        let mut out = Vec::new();
        for party in self.parties.values() {
            for k in &party.keys {
                let (Some(revoked), Some(signed)) = (k.revoked, self.envelope_signers.get(&k.key.key_id())) else {
                    continue;
                };
                out.push(RevokedSigner {
                    key: k.key.key_id(),
                    party: party.id.clone(),
                    revoked: clock::rfc3339(revoked),
                    signed: signed.len() as u64,
                    after_revocation: signed
                        .iter()
                        .filter(|(_, at)| *at >= revoked)
                        .map(|(i, _)| *i)
                        .collect(),
                });
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }
}

/// Verifies the log in a node's data directory against `key`; `progress` is
/// told (done, total) as entries are checked.
pub fn verify_data_dir(
    dir: &Path,
    key: &VerifierKey,
    mut progress: impl FnMut(u64, u64),
) -> Result<Report, VerifyError> {
    let db = dir.join(store::DB_FILE);
    let conn = store::open_reader(dir)?;
    // Every read from one snapshot: a serving node may append while its log is verified.
    // SQLite's cursors on one connection share one; PostgreSQL gives each statement its own.
    if conn.is_postgres() {
        conn.execute_batch("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .at(&db)?;
    }
    let checkpoints = load_checkpoints(&conn, &db)?;
    let total = checkpoints.last().map(|c| c.0).unwrap_or(0);
    let mut next_cp = checkpoints.iter().peekable();
    let mut replay = Replay::new(key);

    let mut hashes_stmt = conn.prepare("SELECT idx, hash FROM hashes ORDER BY idx").at(&db)?;
    let mut hashes = hashes_stmt.query([]).at(&db)?;
    let mut entries_stmt = conn.prepare(&format!("{} ORDER BY e.idx", entry::STORED)).at(&db)?;
    let mut rows = entries_stmt.query([]).at(&db)?;
    let mut stored_index = 0u64;
    while let Some(row) = rows.next().at(&db)? {
        let index = row.get::<i64>(0).at(&db)? as u64;
        let data: Vec<u8> = row.get(1).map_err(|_| VerifyError::Entry {
            index,
            what: "data is not a blob".into(),
        })?;
        let outside: Option<Vec<u8>> = row.get(2).at(&db)?;
        for (k, computed) in replay.entry(index, &data, outside.as_deref())?.into_iter().enumerate() {
            let stored = hashes.next().at(&db)?;
            let matches = match stored {
                Some(h) => {
                    let idx = h.get::<i64>(0).at(&db)? as u64;
                    let hash: Vec<u8> = h.get(1).unwrap_or_default();
                    idx == stored_index && hash == computed.0
                }
                None => false,
            };
            if !matches {
                let what = if k == 0 {
                    "content does not match its stored leaf hash: the entry was altered or moved"
                } else {
                    "stored tree hashes above this entry do not match: the tree was altered"
                };
                return Err(VerifyError::Entry {
                    index,
                    what: what.into(),
                });
            }
            stored_index += 1;
        }
        while let Some((size, note)) = next_cp.peek() {
            if *size != replay.size() {
                break;
            }
            replay.checkpoint(note)?;
            next_cp.next();
        }
        if index.is_multiple_of(4096) {
            progress(index + 1, total);
        }
    }
    if let Some((size, _)) = next_cp.next() {
        return Err(VerifyError::Truncated {
            entries: replay.size(),
            signed: *size,
        });
    }
    if hashes.next().at(&db)?.is_some() {
        return Err(VerifyError::Entry {
            index: replay.size(),
            what: "missing, but tree hashes for it remain: entries were deleted".into(),
        });
    }
    progress(replay.size(), total);
    Ok(replay.report())
}

fn load_checkpoints(conn: &Connection, db: &Path) -> Result<Vec<(u64, Vec<u8>)>, VerifyError> {
    let mut stmt = conn
        .prepare("SELECT size, note FROM checkpoints ORDER BY size")
        .at(db)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<i64>(0)? as u64, r.get(1)?)))
        .at(db)?;
    Ok(rows.collect::<Result<Vec<_>, _>>().at(db)?)
}
