//! What one party's export says that links it to the others: the messages
//! it logged as sent and received (by commitment), the receipts it holds,
//! the checkpoints of other logs it holds, the agreement versions it
//! adopted, and its leaf hashes. Read in one pass over a verified export;
//! nothing of a message's text is kept.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use prost::Message as _;
use sha2::{Digest, Sha256};
use tlog_tiles::{Hash, record_hash};

use super::chain::Chain;
use super::finding::{Finding, Kind, ReconcileError};
use crate::agreement::SignedAgreement;
use crate::envelope::RECEIPT_TYPE;
use crate::log::checkpoint::{self, VerifiedCheckpoint};
use crate::log::entry;
use crate::proto::log_entry::Body;
use crate::proto::{Deadline, Envelope, LogEntry, NormEventKind, Receipt};

/// A message a party logged as sent.
pub struct Sent {
    /// Its id.
    pub id: String,
    /// The SHA-256 of its envelope, as the entry commits to it.
    pub commitment: Vec<u8>,
    /// Its recipients.
    pub to: Vec<String>,
    /// The entry that logged it.
    pub index: u64,
    /// Its kind (`notice`, `response`, ...), as its metadata says.
    pub kind: String,
    /// The notice a response continues.
    pub thread: String,
}

/// A message a party logged as received.
pub struct Received {
    /// The SHA-256 of its envelope.
    pub commitment: Vec<u8>,
    /// The entry that logged it.
    pub index: u64,
}

/// A receipt a sender holds, checked: signed by its recipient, its
/// checkpoint signed by the recipient's key, its entry proven in it.
pub struct HeldReceipt {
    /// The SHA-256 of the receipt's envelope (hex): the entry's commitment,
    /// and its file's name in the sender's export (`envelope/<hex>`).
    pub envelope: String,
    /// The recipient's index it names.
    pub index: u64,
    /// The leaf hash of the entry the receipt carries, proven at that index.
    pub leaf: Hash,
    /// The size of the recipient's checkpoint that proves it.
    pub size: u64,
    /// That checkpoint, as signed.
    pub checkpoint: Arc<str>,
}

/// A deadline this party logged as missed.
pub struct Missed {
    /// The party that owed the step.
    pub party: String,
    /// The notice (or response) the deadline belongs to.
    pub message_id: String,
    /// Which step.
    pub deadline: Deadline,
    /// When it was due, by the logging party's clock.
    pub due: Option<time::OffsetDateTime>,
    /// The entry that logged it, and its bytes (what the leaf hashes).
    pub index: u64,
    /// The entry's bytes.
    pub entry: Vec<u8>,
}

/// A checkpoint of another party's log this party holds (witnessed, or in a receipt).
pub struct Held {
    /// Its size.
    pub size: u64,
    /// Its root.
    pub root: Hash,
    /// The signed note.
    pub note: Arc<str>,
}

/// Signed checkpoints read so far, each kept once however many parties hold it.
pub type Notes = HashMap<Vec<u8>, Arc<str>>;

/// What one export says.
pub struct Facts {
    /// Whose log it is.
    pub party: String,
    /// Its size, as its checkpoint says.
    pub size: u64,
    /// Its root.
    pub root: Hash,
    /// Its signed checkpoint.
    pub note: String,
    /// Every leaf hash, in order.
    pub leaves: Vec<Hash>,
    /// Messages logged as sent (receipts aside).
    pub sent: Vec<Sent>,
    /// Their ids.
    pub sent_ids: HashSet<String>,
    /// The notices this party answered: those a response it sent continues.
    pub answered: HashSet<String>,
    /// Messages logged as received, by (sender, id).
    pub received: HashMap<(String, String), Received>,
    /// Receipts held, by (recipient, message id).
    pub receipts: HashMap<(String, String), HeldReceipt>,
    /// Checkpoints of other logs held, by their party.
    pub held: HashMap<String, Vec<Held>>,
    /// Agreement versions adopted, with their text hashes.
    pub adopted: Vec<(u64, [u8; 32])>,
    /// The notes of those adopted, with when: later versions for the chain.
    pub notes: Vec<(Vec<u8>, time::OffsetDateTime)>,
    /// The deadlines it logged as missed.
    pub missed: Vec<Missed>,
    /// When its last entry was logged: how far its account of the clocks runs.
    pub last: Option<time::OffsetDateTime>,
    /// Receipts that do not hold.
    pub bad: Vec<Finding>,
    /// Receipts (by their signer) and checkpoints of other logs (by their
    /// party) that did not verify under the versions of the agreement known
    /// when they were read: checked again by [`Facts::settle`] once every
    /// version the exports adopted is known.
    unsettled: Vec<(String, Vec<u8>, bool)>,
}

impl Facts {
    /// The checkpoint origin of the export in `dir` (empty if it has none).
    pub fn origin(dir: &Path) -> String {
        std::fs::read(dir.join("checkpoint"))
            .ok()
            .and_then(|n| checkpoint::origin_of(&n).map(str::to_owned))
            .unwrap_or_default()
    }

    /// Verifies the export in `dir` against its party's key in `chain`, and reads its facts.
    pub fn read(dir: &Path, chain: &Chain, notes: &mut Notes) -> Result<Self, ReconcileError> {
        let failed = |source| ReconcileError::Export {
            path: dir.to_owned(),
            source,
        };
        let cp_path = dir.join("checkpoint");
        let note = std::fs::read(&cp_path).map_err(|e| {
            failed(crate::log::verify::VerifyError::File {
                path: cp_path.display().to_string(),
                what: e.to_string(),
            })
        })?;
        let origin = checkpoint::origin_of(&note).unwrap_or_default().to_owned();
        let party = chain
            .party_by_origin(&origin)
            .ok_or_else(|| ReconcileError::UnknownOrigin {
                path: dir.to_owned(),
                origin: origin.clone(),
            })?;
        let key = party
            .keys
            .iter()
            .map(|k| &k.key)
            .find(|k| k.name() == origin)
            .expect("party_by_origin found a key of this name");
        let mut facts = Facts {
            party: party.id.clone(),
            size: 0,
            root: tlog_tiles::EMPTY_HASH,
            note: String::new(),
            leaves: Vec::new(),
            sent: Vec::new(),
            sent_ids: HashSet::new(),
            answered: HashSet::new(),
            received: HashMap::new(),
            receipts: HashMap::new(),
            held: HashMap::new(),
            adopted: Vec::new(),
            notes: Vec::new(),
            missed: Vec::new(),
            last: None,
            bad: Vec::new(),
            unsettled: Vec::new(),
        };
        let (_, note) = crate::log::export::verify_export_each(
            dir,
            key,
            |_, _| {},
            |index, data, outside| {
                facts.leaves.push(record_hash(data));
                if let Ok(e) = LogEntry::decode(data) {
                    facts.entry(index, data, e, outside, chain, notes);
                }
            },
        )
        .map_err(failed)?;
        let cp = checkpoint::verify(&note, key).map_err(|e| {
            failed(crate::log::verify::VerifyError::File {
                path: cp_path.display().to_string(),
                what: e.to_string(),
            })
        })?;
        (facts.size, facts.root, facts.note) = (cp.size, cp.root, String::from_utf8_lossy(&note).into_owned());
        Ok(facts)
    }

    /// Checks again, against `chain`, complete now, the receipts and
    /// checkpoints that did not verify when read; a receipt that still does
    /// not hold is a finding.
    pub fn settle(&mut self, chain: &Chain, notes: &mut Notes) {
        for (party, bytes, receipt) in std::mem::take(&mut self.unsettled) {
            match receipt {
                true => {
                    if let Err(why) = self.receipt(&party, &bytes, chain, notes) {
                        self.bad.push(Finding {
                            kind: Kind::BadReceipt,
                            party: party.clone(),
                            message_id: String::new(),
                            says: format!(
                                "{}'s log holds a receipt from {party} that does not hold: {why}",
                                self.party
                            ),
                            evidence: vec![(format!("the receipt {} holds", self.party), hex::encode(&bytes))],
                        });
                    }
                }
                false => {
                    if let Some(cp) = verified(&bytes, chain, &party) {
                        self.hold(&party, cp, notes);
                    }
                }
            }
        }
    }

    fn entry(
        &mut self,
        index: u64,
        data: &[u8],
        e: LogEntry,
        outside: Option<&[u8]>,
        chain: &Chain,
        notes: &mut Notes,
    ) {
        let meta = entry::meta(&e).cloned().unwrap_or_default();
        let at = e.logged_at.as_ref().and_then(crate::clock::from_proto);
        self.last = self.last.max(at);
        let commitment = commitment(&e);
        match e.body {
            Some(Body::Sent(s)) if meta.kind != "receipt" => {
                self.sent_ids.insert(meta.id.clone());
                if meta.kind == "response" {
                    self.answered.insert(meta.thread.clone());
                }
                self.sent.push(Sent {
                    id: meta.id,
                    commitment,
                    to: s.to,
                    index,
                    kind: meta.kind,
                    thread: meta.thread,
                });
            }
            Some(Body::Received(r)) if meta.kind == "receipt" => {
                let envelope = r
                    .envelope
                    .map(|e| e.encode_to_vec())
                    .or_else(|| outside.map(<[u8]>::to_vec));
                if let Some(envelope) = envelope
                    && self.receipt(&r.from, &envelope, chain, notes).is_err()
                {
                    self.unsettled.push((r.from, envelope, true));
                }
            }
            Some(Body::Received(r)) => {
                self.received.insert((r.from, meta.id), Received { commitment, index });
            }
            Some(Body::WitnessedCheckpoint(w)) => {
                let note = w.checkpoint.map(|c| c.note).unwrap_or_default();
                match verified(&note, chain, &w.party) {
                    Some(cp) => self.hold(&w.party, cp, notes),
                    None => self.unsettled.push((w.party, note, false)),
                }
            }
            Some(Body::NormEvent(n)) if n.kind() == NormEventKind::DeadlineMissed => {
                self.missed.push(Missed {
                    deadline: n.deadline(),
                    due: n.due_at.as_ref().and_then(crate::clock::from_proto),
                    party: n.party,
                    message_id: n.message_id,
                    index,
                    entry: data.to_vec(),
                });
            }
            Some(Body::AgreementAdopted(a)) => {
                let note = entry::adopted_note(&a, outside).ok();
                let sha = match <[u8; 32]>::try_from(&a.text_sha256[..]) {
                    Ok(sha) => Some(sha),
                    Err(_) => note
                        .as_deref()
                        .and_then(|n| SignedAgreement::parse(n).ok())
                        .map(|s| s.text_sha256()),
                };
                if let Some(sha) = sha {
                    self.adopted.push((a.version, sha));
                }
                if let (Some(note), Some(at)) = (note, at) {
                    self.notes.push((note, at));
                }
            }
            _ => {}
        }
    }

    /// Takes in a receipt `from` a recipient, if it holds.
    fn receipt(&mut self, from: &str, bytes: &[u8], chain: &Chain, notes: &mut Notes) -> Result<(), String> {
        let env = Envelope::decode(bytes).map_err(|e| format!("not an envelope: {e}"))?;
        let r = Receipt::decode(&env.payload[..]).map_err(|e| format!("not a receipt: {e}"))?;
        let at = r
            .received_at
            .as_ref()
            .and_then(crate::clock::from_proto)
            .ok_or("it has no valid received_at")?;
        let keyring = chain.keyring();
        let signer = crate::envelope::verify(&env, RECEIPT_TYPE, &keyring, at).map_err(|e| e.to_string())?;
        if signer.party != from || r.from != from {
            return Err(format!("it is signed by {}, not by {from}", signer.party));
        }
        let note = r.checkpoint.as_ref().map(|c| c.note.clone()).unwrap_or_default();
        let cp = verified(&note, chain, from).ok_or("its checkpoint is not signed by the recipient's key")?;
        let proof = crate::log::tree::proof_from_wire(&r.inclusion_proof)?;
        tlog_tiles::check_record(&proof, cp.size, cp.root, r.log_index, record_hash(&r.log_entry))
            .map_err(|e| format!("its inclusion proof: {e}"))?;
        let held = HeldReceipt {
            envelope: hex::encode(Sha256::digest(bytes)),
            index: r.log_index,
            leaf: record_hash(&r.log_entry),
            size: cp.size,
            checkpoint: intern(notes, &cp.note),
        };
        self.receipts.insert((from.to_owned(), r.message_id), held);
        self.hold(from, cp, notes);
        Ok(())
    }

    fn hold(&mut self, party: &str, cp: VerifiedCheckpoint, notes: &mut Notes) {
        self.held.entry(party.to_owned()).or_default().push(Held {
            size: cp.size,
            root: cp.root,
            note: intern(notes, &cp.note),
        });
    }
}

/// `note` as text, kept once.
fn intern(notes: &mut Notes, note: &[u8]) -> Arc<str> {
    notes
        .entry(note.to_vec())
        .or_insert_with(|| String::from_utf8_lossy(note).into())
        .clone()
}

/// The commitment an entry holds to its envelope: the hash it names, or
/// that of the envelope inline in an entry written before commitments.
fn commitment(e: &LogEntry) -> Vec<u8> {
    if let Some(sha) = entry::outside_sha256(e) {
        return sha.to_vec();
    }
    let inline = match &e.body {
        Some(Body::Sent(s)) => s.envelope.as_ref(),
        Some(Body::Received(r)) => r.envelope.as_ref(),
        _ => None,
    };
    inline.map_or_else(Vec::new, |env| Sha256::digest(env.encode_to_vec()).to_vec())
}

/// `note` as a checkpoint signed by one of `party`'s keys in the chain.
fn verified(note: &[u8], chain: &Chain, party: &str) -> Option<VerifiedCheckpoint> {
    chain
        .keys(party)
        .into_iter()
        .find_map(|k| checkpoint::verify(note, k).ok())
}
