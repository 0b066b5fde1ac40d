//! Cross-witnessing: every delivery carries the sender's latest checkpoint
//! and every receipt the receiver's. A node verifies each one, checks that it
//! extends the last one it holds from that peer, and logs it; a checkpoint the
//! peer cannot prove consistent is a fork, logged as a norm event.

use std::collections::HashMap;
use std::time::Duration;

use crate::clock;
use crate::log::tree::proof_from_wire;
use crate::log::{checkpoint, entry};
use crate::node::Node;
use crate::proto::log_entry::Body;
use crate::proto::{
    ConsistencyProofRequest, Deadline, NormEvent, NormEventKind, SignedCheckpoint, WitnessedCheckpoint, event,
};
use crate::state;

/// How many recently verified checkpoint notes are remembered per peer:
/// receipts from one batch of the peer arrive interleaved with the next.
const RECENT_NOTES: usize = 16;

impl Node {
    /// Verifies a peer's checkpoint note; the same bytes as the last one
    /// verified from that peer (one batch's checkpoint rides on many messages)
    /// are not verified again.
    pub(crate) fn verify_peer_checkpoint(
        &self,
        party: &str,
        note: &[u8],
        key: &crate::keys::VerifierKey,
    ) -> Result<checkpoint::VerifiedCheckpoint, checkpoint::CheckpointError> {
        let recent = |cache: &HashMap<String, std::collections::VecDeque<checkpoint::VerifiedCheckpoint>>| {
            cache
                .get(party)?
                .iter()
                .find(|cp| cp.note == note && cp.origin == key.name())
                .cloned()
        };
        if let Some(cp) = recent(&self.last_notes.lock().unwrap_or_else(|e| e.into_inner())) {
            return Ok(cp);
        }
        let cp = checkpoint::verify(note, key)?;
        let mut cache = self.last_notes.lock().unwrap_or_else(|e| e.into_inner());
        let notes = cache.entry(party.to_owned()).or_default();
        if notes.len() >= RECENT_NOTES {
            notes.pop_front();
        }
        notes.push_back(cp.clone());
        Ok(cp)
    }

    /// Witnesses a peer's checkpoint: checks it extends the last one we hold
    /// from that peer (asking the peer for a consistency proof) and logs it;
    /// a fork is logged as a CHECKPOINT_FORK norm event.
    ///
    /// One check runs at a time per peer. A checkpoint arriving meanwhile is
    /// set aside (the largest one set aside wins), and whoever holds the check
    /// takes it up next, so the newest checkpoint seen is always checked.
    pub async fn witness(&self, party: &str, cp: checkpoint::VerifiedCheckpoint) {
        let Some(slot) = self.witnessing.get(party) else { return };
        self.set_aside(party, Some(cp));
        loop {
            let Ok(mut last) = slot.try_lock() else { return }; // the holder will take ours up
            match self.set_aside(party, None) {
                Some(next) => self.check(party, &mut last, next).await,
                None => {
                    drop(last);
                    // One may have been set aside between our look and our release.
                    if self
                        .pending
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get(party)
                        .is_none()
                    {
                        return;
                    }
                }
            }
        }
    }

    /// Sets `cp` aside for `party` if it is the largest so far; with `None`, takes what was set aside.
    fn set_aside(
        &self,
        party: &str,
        cp: Option<checkpoint::VerifiedCheckpoint>,
    ) -> Option<checkpoint::VerifiedCheckpoint> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        match cp {
            None => pending.remove(party),
            Some(cp) => {
                if pending.get(party).is_none_or(|held| cp.size >= held.size) {
                    pending.insert(party.to_owned(), cp);
                }
                None
            }
        }
    }

    /// Checks one checkpoint of `party` against `last`, the newest one witnessed, and logs the outcome.
    async fn check(
        &self,
        party: &str,
        last: &mut Option<checkpoint::VerifiedCheckpoint>,
        cp: checkpoint::VerifiedCheckpoint,
    ) {
        if last.is_none() {
            let key = self
                .agreement
                .party(party)
                .and_then(|p| p.keys.iter().find(|k| k.valid_at(clock::now())));
            let held = self.read(|c| state::last_witnessed(c, party)).ok().flatten();
            *last = held
                .zip(key)
                .and_then(|((_, note), key)| checkpoint::verify(&note, &key.key).ok());
        }
        let fork = match last.as_ref() {
            Some(old) if cp.size < old.size => return,
            Some(old) if cp.size == old.size => {
                if old.root == cp.root {
                    return;
                }
                Some(format!("two checkpoints of size {} with different roots", cp.size))
            }
            Some(old) => match self.consistency(party, old, &cp).await {
                Ok(()) => None,
                Err(Some(reason)) => Some(reason),
                Err(None) => return, // peer unreachable: try again with a later checkpoint
            },
            None => None,
        };
        let note = cp.note.clone();
        if fork.is_none() {
            *last = Some(cp.clone());
        }
        let (entry_body, event) = match &fork {
            None => (
                Body::WitnessedCheckpoint(WitnessedCheckpoint {
                    party: party.to_owned(),
                    checkpoint: Some(SignedCheckpoint { note: note.clone() }),
                }),
                None,
            ),
            Some(reason) => {
                tracing::error!(party, reason, "peer checkpoint forks from the one we witnessed");
                let ev = NormEvent {
                    kind: NormEventKind::CheckpointFork as i32,
                    party: party.to_owned(),
                    message_id: String::new(),
                    deadline: Deadline::Unspecified as i32,
                    due_at: None,
                    observed_at: Some(clock::to_proto(clock::now())),
                    detail: format!("checkpoint of size {} forks from the one witnessed: {reason}", cp.size),
                };
                (Body::NormEvent(ev.clone()), Some(ev))
            }
        };
        let (p, size, ev) = (party.to_owned(), cp.size, event.clone());
        let change = Box::new(move |c: &rusqlite::Connection, index: u64| {
            match &ev {
                None => {
                    state::insert_witnessed(c, &p, size, &note).map_err(|e| e.to_string())?;
                }
                Some(ev) => state::insert_norm_event(c, index, ev).map_err(|e| e.to_string())?,
            }
            Ok(())
        });
        if let Err(e) = self
            .log
            .append_with(vec![entry::encode(entry_body)], change, false)
            .await
        {
            tracing::warn!(party, error = %e, "could not log witnessed checkpoint");
        }
        if let Some(ev) = event {
            self.emit(event::Body::NormEvent(ev));
        }
    }

    /// Asks `party` to prove `new` extends `old`: Err(None) if it cannot be asked, Err(Some) on a fork.
    async fn consistency(
        &self,
        party: &str,
        old: &checkpoint::VerifiedCheckpoint,
        new: &checkpoint::VerifiedCheckpoint,
    ) -> Result<(), Option<String>> {
        let mut client = self.peer(party).ok_or(None)?;
        let req = ConsistencyProofRequest {
            old_size: old.size,
            new_size: new.size,
        };
        let proof = match tokio::time::timeout(Duration::from_secs(10), client.prove_consistency(req)).await {
            Ok(Ok(p)) => p.into_inner(),
            // A peer that answers but cannot prove a checkpoint it signed has forked.
            Ok(Err(s)) if matches!(s.code(), tonic::Code::OutOfRange | tonic::Code::InvalidArgument) => {
                return Err(Some(format!("the peer cannot prove it: {}", s.message())));
            }
            _ => return Err(None),
        };
        let hashes = proof_from_wire(&proof.hashes).map_err(|e| Some(format!("consistency proof has {e}")))?;
        tlog_tiles::check_tree(&hashes, new.size, new.root, old.size, old.root).map_err(|e| {
            Some(format!(
                "no valid consistency proof from size {} to {}: {e}",
                old.size, new.size
            ))
        })
    }
}
