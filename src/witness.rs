//! Cross-witnessing: every delivery carries the sender's latest checkpoint
//! and every receipt the receiver's. A node verifies each one, checks that it
//! extends the last one it holds from that peer, and logs it; a checkpoint the
//! peer cannot prove consistent is a fork, logged as a norm event.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::Clock;
use crate::events::Events;
use crate::in_force::Live;
use crate::keys::VerifierKey;
use crate::log::tree::proof_from_wire;
use crate::log::{Log, checkpoint, entry};
use crate::norm_event;
use crate::proto::log_entry::Body;
use crate::proto::{ConsistencyProofRequest, Deadline, NormEventKind, SignedCheckpoint, WitnessedCheckpoint};
use crate::state;

/// How many recently verified checkpoint notes are remembered per peer:
/// receipts from one batch of the peer arrive interleaved with the next.
const RECENT_NOTES: usize = 16;

/// How many distinct checkpoints of one peer may wait while a check runs;
/// past that the smallest is dropped unchecked, with a warning.
const MAX_SET_ASIDE: usize = 1024;

/// How long a peer has to answer a consistency proof request.
const PROOF_TIMEOUT: Duration = Duration::from_secs(10);

/// A peer's checkpoints waiting to be checked, by size and root: two of one
/// size with different roots are both kept, since together they are a fork.
type SetAside = std::collections::BTreeMap<(u64, [u8; 32]), checkpoint::VerifiedCheckpoint>;

/// The witness of every peer's log: what it verified and witnessed of each,
/// and what waits to be checked. It is handed only what it needs: our log,
/// the agreement in force (the peers to ask for proofs, their keys), the
/// event stream and the clock.
pub struct Witness {
    log: Arc<Log>,
    live: Arc<Live>,
    events: Events,
    clock: Clock,
    /// The checkpoint notes verified last from each peer.
    recent: Mutex<HashMap<String, VecDeque<checkpoint::VerifiedCheckpoint>>>,
    /// Checkpoints of each peer set aside while another is being checked.
    pending: Mutex<HashMap<String, SetAside>>,
    /// The last checkpoint witnessed from each peer, held while one is checked.
    witnessing: Mutex<HashMap<String, Slot>>,
}

/// The last checkpoint witnessed from one peer, locked while one is checked.
type Slot = Arc<tokio::sync::Mutex<Option<checkpoint::VerifiedCheckpoint>>>;

impl Witness {
    /// A witness of every peer of the agreement in force, logging to `log`.
    pub fn new(log: Arc<Log>, live: Arc<Live>, events: Events, clock: Clock) -> Self {
        Self {
            log,
            live,
            events,
            clock,
            recent: Default::default(),
            pending: Default::default(),
            witnessing: Mutex::default(),
        }
    }

    /// The slot of `party` if it is a peer of the agreement in force.
    fn slot(&self, party: &str) -> Option<Slot> {
        if !self.live.get().peers.contains(party) {
            return None;
        }
        let mut slots = self.witnessing.lock().unwrap_or_else(|e| e.into_inner());
        Some(slots.entry(party.to_owned()).or_default().clone())
    }

    /// Verifies a peer's checkpoint note; the same bytes as the last one
    /// verified from that peer (one batch's checkpoint rides on many messages)
    /// are not verified again.
    pub fn verify(
        &self,
        party: &str,
        note: &[u8],
        key: &VerifierKey,
    ) -> Result<checkpoint::VerifiedCheckpoint, checkpoint::CheckpointError> {
        let recent = |cache: &HashMap<String, VecDeque<checkpoint::VerifiedCheckpoint>>| {
            cache
                .get(party)?
                .iter()
                .find(|cp| cp.note == note && cp.origin == key.name())
                .cloned()
        };
        if let Some(cp) = recent(&self.recent.lock().unwrap_or_else(|e| e.into_inner())) {
            return Ok(cp);
        }
        let cp = checkpoint::verify(note, key)?;
        let mut cache = self.recent.lock().unwrap_or_else(|e| e.into_inner());
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
    /// One check runs at a time per peer. Checkpoints arriving meanwhile are
    /// set aside, and whoever holds the check takes them all up next: the
    /// largest is checked against the last one witnessed and logged, and
    /// every other one is proven a prefix of it, so none the peer showed us
    /// goes unchecked.
    pub async fn witness(&self, party: &str, cp: checkpoint::VerifiedCheckpoint) {
        // A starting node logs nothing yet; the peer's next checkpoint, which
        // extends this one, is witnessed and checked instead.
        if self.log.is_held() {
            return;
        }
        let Some(slot) = self.slot(party) else { return };
        self.set_aside(party, Some(cp));
        loop {
            let Ok(mut last) = slot.try_lock() else { return }; // the holder will take ours up
            let mut waiting: Vec<_> = self.set_aside(party, None).into_values().collect();
            match waiting.pop() {
                Some(newest) => {
                    self.check(party, &mut last, newest).await;
                    if let Some(held) = last.as_ref() {
                        for cp in waiting {
                            self.check_prefix(party, cp, held).await;
                        }
                    }
                }
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

    /// Sets `cp` aside for `party`; with `None`, takes all that was set aside.
    fn set_aside(&self, party: &str, cp: Option<checkpoint::VerifiedCheckpoint>) -> SetAside {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        match cp {
            None => pending.remove(party).unwrap_or_default(),
            Some(cp) => {
                let waiting = pending.entry(party.to_owned()).or_default();
                waiting.insert((cp.size, cp.root.0), cp);
                if waiting.len() > MAX_SET_ASIDE
                    && let Some(((size, _), _)) = waiting.pop_first()
                {
                    tracing::warn!(party, size, "too many checkpoints waiting; the smallest goes unchecked");
                }
                SetAside::new()
            }
        }
    }

    /// Checks that `cp`, a checkpoint of `party` set aside during a check, is
    /// a prefix of `held`, the newest one witnessed; logs a fork if not.
    async fn check_prefix(
        &self,
        party: &str,
        cp: checkpoint::VerifiedCheckpoint,
        held: &checkpoint::VerifiedCheckpoint,
    ) {
        if cp.size > held.size {
            return; // newer than what we hold: the next check takes it
        }
        match self.agree(party, &cp, held).await {
            Ok(()) => {}
            Err(Some(fork)) => self.log_fork(party, &cp, &fork).await,
            Err(None) => {
                tracing::warn!(
                    party,
                    size = cp.size,
                    "peer unreachable; a superseded checkpoint goes unchecked"
                );
            }
        }
    }

    /// Whether two checkpoints of `party` agree, the smaller a prefix of the
    /// larger: Err(Some) says how they fork, Err(None) that the peer cannot be asked.
    async fn agree(
        &self,
        party: &str,
        a: &checkpoint::VerifiedCheckpoint,
        b: &checkpoint::VerifiedCheckpoint,
    ) -> Result<(), Option<String>> {
        match a.size.cmp(&b.size) {
            std::cmp::Ordering::Equal if a.root == b.root => Ok(()),
            std::cmp::Ordering::Equal => Err(Some(format!("two checkpoints of size {} with different roots", a.size))),
            std::cmp::Ordering::Less => self.consistency(party, a, b).await,
            std::cmp::Ordering::Greater => self.consistency(party, b, a).await,
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
            let now = self.clock.now();
            let live = self.live.get();
            let key = live.keyring.keys().find(|k| k.party == party && k.valid_at(now));
            let held = self
                .log
                .reader()
                .read(|c| Ok(state::last_witnessed(c, party).ok().flatten()))
                .ok()
                .flatten();
            *last = held
                .zip(key)
                .and_then(|((_, note), key)| checkpoint::verify(&note, &key.key).ok());
        }
        let fork = match last.as_ref() {
            // Older than, or the very one, we hold: nothing new to log.
            Some(old) if cp.size < old.size || (cp.size == old.size && cp.root == old.root) => return,
            Some(old) => match self.agree(party, old, &cp).await {
                Ok(()) => None,
                Err(Some(reason)) => Some(reason),
                Err(None) => return, // peer unreachable: try again with a later checkpoint
            },
            None => None,
        };
        match fork {
            None => {
                *last = Some(cp.clone());
                self.log_witnessed(party, cp).await;
            }
            Some(reason) => self.log_fork(party, &cp, &reason).await,
        }
    }

    /// Logs a checkpoint of `party` proven to extend the last one witnessed.
    async fn log_witnessed(&self, party: &str, cp: checkpoint::VerifiedCheckpoint) {
        let body = Body::WitnessedCheckpoint(WitnessedCheckpoint {
            party: party.to_owned(),
            checkpoint: Some(SignedCheckpoint { note: cp.note.clone() }),
        });
        let (p, size, note) = (party.to_owned(), cp.size, cp.note);
        let change = Box::new(move |c: &crate::db::Connection, _| state::insert_witnessed(c, &p, size, &note));
        let e = entry::encode(self.clock.now(), body);
        match self.log.append_with(vec![e], change, false).await {
            Ok(_) => {
                let peer = vec![("peer", party.to_owned())];
                self.events.metrics().witnessed.get_or_create(&peer).inc();
            }
            Err(e) => tracing::warn!(party, error = %e, "could not log witnessed checkpoint"),
        }
    }

    /// Logs and announces a checkpoint of `party` that forks from what we witnessed.
    async fn log_fork(&self, party: &str, cp: &checkpoint::VerifiedCheckpoint, reason: &str) {
        tracing::error!(party, reason, "peer checkpoint forks from the one witnessed");
        let event = norm_event::new(
            NormEventKind::CheckpointFork,
            party,
            "",
            Deadline::Unspecified,
            None,
            self.clock.now(),
            format!("checkpoint of size {} forks from the one witnessed: {reason}", cp.size),
        );
        if let Err(e) = norm_event::log(&self.log, &self.events, event, |_| Ok(())).await {
            tracing::warn!(party, error = %e, "could not log the fork");
        }
    }

    /// Asks `party` to prove `new` extends `old`: Err(None) if it cannot be asked, Err(Some) on a fork.
    async fn consistency(
        &self,
        party: &str,
        old: &checkpoint::VerifiedCheckpoint,
        new: &checkpoint::VerifiedCheckpoint,
    ) -> Result<(), Option<String>> {
        let mut client = self.live.get().peers.get(party).ok_or(None)?;
        let req = ConsistencyProofRequest {
            old_size: old.size,
            new_size: new.size,
        };
        let proof = match tokio::time::timeout(PROOF_TIMEOUT, client.prove_consistency(req)).await {
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
