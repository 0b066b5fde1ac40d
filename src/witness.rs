//! Cross-witnessing: every delivery carries the sender's latest checkpoint
//! and every receipt the receiver's. A node verifies each one, checks that it
//! extends the last one it holds from that peer, and logs it; a checkpoint the
//! peer cannot prove consistent is a fork, logged as a norm event. The proof
//! usually comes with the checkpoint, from the last one the peer showed us
//! ([`Witness::show`], [`Witness::carried`]); otherwise the peer is asked.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::Clock;
use crate::events::Events;
use crate::in_force::Live;
use crate::keys::VerifierKey;
use crate::log::tree::proof_from_wire;
use crate::log::{Log, MAX_MORE_OLD_SIZES, checkpoint, entry};
use crate::norm_event;
use crate::proto::log_entry::Body;
use crate::proto::{ConsistencyProofRequest, Deadline, NormEventKind, SignedCheckpoint, WitnessedCheckpoint};
use crate::state;

mod carried;
mod shown;
use shown::Shown;

/// How many recently verified checkpoint notes are remembered per peer:
/// receipts from one batch of the peer arrive interleaved with the next.
const RECENT_NOTES: usize = 16;

/// How many distinct checkpoints of one peer may wait while a check runs;
/// past that the smallest is dropped unchecked, with a warning.
const MAX_SET_ASIDE: usize = 1024;

/// The least time between the starts of two checks of one peer's checkpoints.
const CHECK_EVERY: Duration = Duration::from_millis(100);

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
    /// The size of the last checkpoint of each peer logged as witnessed,
    /// locked while one is logged.
    logging: Mutex<HashMap<String, Arc<tokio::sync::Mutex<u64>>>>,
    /// The largest checkpoint of ours shown to each peer and when: where the
    /// next proof we send it starts, since the peer witnesses each one.
    shown: Mutex<HashMap<String, Shown>>,
}

/// The last checkpoint witnessed from one peer, and when it was last
/// checked; locked while one is checked.
type Slot = Arc<tokio::sync::Mutex<Held>>;

/// What a peer's slot holds.
#[derive(Default)]
struct Held {
    last: Option<checkpoint::VerifiedCheckpoint>,
    checked_at: Option<tokio::time::Instant>,
    /// A task will log `last` then: checkpoints proven meanwhile need none
    /// of their own, as the task logs the newest when it runs.
    log_due: bool,
}

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
            shown: Mutex::default(),
            logging: Mutex::default(),
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
    /// One check runs at a time per peer, and checks of one peer start at
    /// least `CHECK_EVERY` apart. Checkpoints arriving meanwhile are set
    /// aside, and whoever holds the check takes them all up next: the largest
    /// is checked against the last one witnessed and logged, and every other
    /// one is proven a prefix of it in the same call, so none the peer showed
    /// us goes unchecked, and a peer committing hundreds of times a second
    /// costs a few calls and log entries a second, not one each.
    pub async fn witness(&self, party: &str, cp: checkpoint::VerifiedCheckpoint) {
        // A starting node logs nothing yet; the peer's next checkpoint, which
        // extends this one, is witnessed and checked instead.
        if self.log.is_held() {
            return;
        }
        let Some(slot) = self.slot(party) else { return };
        self.set_aside(party, Some(cp));
        self.take_up(party, &slot).await;
    }

    /// Checks what is set aside for `party`, unless another holds its slot
    /// (the holder takes it up), until nothing is.
    async fn take_up(&self, party: &str, slot: &Slot) {
        let waits = || {
            self.pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(party)
        };
        loop {
            // Whoever holds the slot takes up what waits when it lets go.
            let Ok(mut held) = slot.try_lock() else { return };
            if !waits() {
                drop(held);
                // One may have been set aside between our look and our release.
                match waits() {
                    true => continue,
                    false => return,
                }
            }
            // The pause between checks is waited out with the slot let go, so
            // a checkpoint sent with its proof meanwhile is checked at once.
            if let Some(at) = held.checked_at.map(|at| at + CHECK_EVERY)
                && at > tokio::time::Instant::now()
            {
                drop(held);
                tokio::time::sleep_until(at).await;
                continue;
            }
            let mut waiting: Vec<_> = self.set_aside(party, None).into_values().collect();
            if let Some(newest) = waiting.pop() {
                held.checked_at = Some(tokio::time::Instant::now());
                self.load_last(party, &mut held);
                let witnessed = self.check(party, &mut held.last, newest, waiting).await;
                // Logged with the slot let go, as `log_newest` does.
                drop(held);
                if let Some(cp) = witnessed {
                    self.log_witnessed(party, cp).await;
                }
            }
        }
    }

    /// Fills `held`, when empty, with the newest checkpoint of `party` the
    /// log holds as witnessed (none on a node that never witnessed one).
    fn load_last(&self, party: &str, held: &mut Held) {
        if held.last.is_some() {
            return;
        }
        let now = self.clock.now();
        let live = self.live.get();
        let key = live.keyring.keys().find(|k| k.party == party && k.valid_at(now));
        let logged = self
            .log
            .reader()
            .read(|c| Ok(state::last_witnessed(c, party).ok().flatten()))
            .ok()
            .flatten();
        held.last = logged
            .zip(key)
            .and_then(|((_, note), key)| checkpoint::verify(&note, &key.key).ok());
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

    /// Checks `newest`, the largest checkpoint of `party` set aside, against
    /// `last`, the newest one witnessed (none: `newest` is the first), and
    /// `others`, the rest set aside, as its prefixes; logs every fork, and
    /// answers the checkpoint it witnessed, now `last`, for the caller to log.
    async fn check(
        &self,
        party: &str,
        last: &mut Option<checkpoint::VerifiedCheckpoint>,
        newest: checkpoint::VerifiedCheckpoint,
        mut others: Vec<checkpoint::VerifiedCheckpoint>,
    ) -> Option<checkpoint::VerifiedCheckpoint> {
        match last.clone() {
            // Older than, or the very one, we hold: nothing new to log, and
            // what arrived must be a prefix of what we hold.
            Some(old) if newest.size < old.size || (newest.size == old.size && newest.root == old.root) => {
                others.push(newest);
                self.log_forks(party, &others, &old).await;
                None
            }
            Some(old) => {
                others.insert(0, old.clone());
                // Peer unreachable: tried again with a later checkpoint.
                let found = self.prefixes(party, &others, &newest).await.ok()?;
                match found.first().cloned().flatten() {
                    Some(reason) => {
                        self.log_fork(party, &newest, &reason).await;
                        // The rest are checked against what we hold instead.
                        self.log_forks(party, &others[1..], &old).await;
                        None
                    }
                    None => {
                        *last = Some(newest.clone());
                        self.log_found(party, &others[1..], found.into_iter().skip(1)).await;
                        Some(newest)
                    }
                }
            }
            None => {
                *last = Some(newest.clone());
                self.log_forks(party, &others, &newest).await;
                Some(newest)
            }
        }
    }

    /// Proves each of `cps` a prefix of `held`, logging a fork for any that is not.
    async fn log_forks(
        &self,
        party: &str,
        cps: &[checkpoint::VerifiedCheckpoint],
        held: &checkpoint::VerifiedCheckpoint,
    ) {
        match self.prefixes(party, cps, held).await {
            Ok(found) => self.log_found(party, cps, found).await,
            Err(()) => tracing::warn!(
                party,
                unchecked = cps.len(),
                "peer unreachable; superseded checkpoints go unchecked"
            ),
        }
    }

    /// Logs a fork for each of `cps` that `found` says forks.
    async fn log_found(
        &self,
        party: &str,
        cps: &[checkpoint::VerifiedCheckpoint],
        found: impl IntoIterator<Item = Option<String>>,
    ) {
        for (cp, reason) in cps.iter().zip(found) {
            if let Some(reason) = reason {
                self.log_fork(party, cp, &reason).await;
            }
        }
    }

    /// Whether each of `cps` is a prefix of `of`, all asked of `party` in one
    /// call (a call per 257): for each, `None` if it is, or how it forks;
    /// Err if the peer cannot be asked. Checkpoints larger than `of` are
    /// left to the next check.
    async fn prefixes(
        &self,
        party: &str,
        cps: &[checkpoint::VerifiedCheckpoint],
        of: &checkpoint::VerifiedCheckpoint,
    ) -> Result<Vec<Option<String>>, ()> {
        let mut found = vec![None; cps.len()];
        let mut asked = Vec::new();
        for (i, cp) in cps.iter().enumerate() {
            match cp.size.cmp(&of.size) {
                std::cmp::Ordering::Equal if cp.root != of.root => {
                    found[i] = Some(format!("two checkpoints of size {} with different roots", cp.size));
                }
                std::cmp::Ordering::Less => asked.push(i),
                _ => {}
            }
        }
        for chunk in asked.chunks(1 + MAX_MORE_OLD_SIZES) {
            let mut client = self.live.get().peers.get(party).ok_or(())?;
            let req = ConsistencyProofRequest {
                old_size: cps[chunk[0]].size,
                new_size: of.size,
                more_old_sizes: chunk[1..].iter().map(|&i| cps[i].size).collect(),
            };
            let peer = vec![("peer", party.to_owned())];
            self.events.metrics().proofs_asked.get_or_create(&peer).inc();
            let answer = tokio::time::timeout(PROOF_TIMEOUT, client.prove_consistency(req)).await;
            let proof = match answer {
                Ok(Ok(p)) if p.get_ref().more.len() == chunk.len() - 1 => p.into_inner(),
                // A peer that answers but cannot prove a checkpoint it signed has forked.
                Ok(Err(s))
                    if chunk.len() == 1
                        && matches!(s.code(), tonic::Code::OutOfRange | tonic::Code::InvalidArgument) =>
                {
                    found[chunk[0]] = Some(format!("the peer cannot prove it: {}", s.message()));
                    continue;
                }
                // Refused or answered short for several: asked one by one, so each refusal is its own.
                Ok(_) if chunk.len() > 1 => {
                    for &i in chunk {
                        found[i] = Box::pin(self.prefixes(party, std::slice::from_ref(&cps[i]), of)).await?[0].take();
                    }
                    continue;
                }
                _ => return Err(()),
            };
            let proofs = std::iter::once(&proof.hashes).chain(proof.more.iter().map(|p| &p.hashes));
            for (&i, hashes) in chunk.iter().zip(proofs) {
                found[i] = consistent(hashes, &cps[i], of).err();
            }
        }
        Ok(found)
    }

    /// Logs a checkpoint of `party` proven to extend the last one witnessed.
    /// One at a time per peer, and only one larger than the last logged
    /// since the node started (a smaller one is logged already), so the log
    /// holds each peer's checkpoints in increasing size (which `audit verify`
    /// checks) whichever path witnessed them.
    async fn log_witnessed(&self, party: &str, cp: checkpoint::VerifiedCheckpoint) {
        let order = {
            let mut logging = self.logging.lock().unwrap_or_else(|e| e.into_inner());
            logging.entry(party.to_owned()).or_default().clone()
        };
        let mut logged = order.lock().await;
        if cp.size <= *logged {
            return;
        }
        *logged = cp.size;
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
}

/// Checks a consistency proof from `old` to `new`: how it fails, if it does.
fn consistent(
    hashes: &[Vec<u8>],
    old: &checkpoint::VerifiedCheckpoint,
    new: &checkpoint::VerifiedCheckpoint,
) -> Result<(), String> {
    let hashes = proof_from_wire(hashes).map_err(|e| format!("consistency proof has {e}"))?;
    tlog_tiles::check_tree(&hashes, new.size, new.root, old.size, old.root)
        .map_err(|e| format!("no valid consistency proof from size {} to {}: {e}", old.size, new.size))
}
