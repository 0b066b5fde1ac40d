//! Witnessing a checkpoint with the consistency proof that came with it:
//! checked at once against the last one witnessed from the peer, with no
//! call to it, and logged by one task per peer at most every `CHECK_EVERY`.

use std::sync::Arc;

use super::{CHECK_EVERY, Slot, Witness, consistent};
use crate::log::checkpoint;
use crate::proto::ConsistencyProof;

/// When a checkpoint proven with the proof it came with is logged.
enum Logging {
    /// At this instant, by a task of its own, from the peer's slot.
    At(tokio::time::Instant, Slot),
    /// By the task already due, with any newer one.
    AlreadyDue,
}

impl Witness {
    /// Witnesses `cp` of `party` with the consistency proof the peer sent
    /// with it, which starts at the largest checkpoint it showed us before:
    /// if that is the last one witnessed and the proof holds, `cp` is
    /// witnessed with no call to the peer. The check runs now, so the next
    /// proof the peer sends finds `cp` held; the future logs it (at most one
    /// a `CHECK_EVERY` per peer, the newest) or, when the proof could not be
    /// used (none, another check running, another start, or one that
    /// fails), checks `cp` as [`Self::witness`] does. No future when a task
    /// already due logs `cp`: a peer receipting thousands of messages a
    /// second costs ten such tasks a second, not one a receipt.
    pub fn carried(
        self: &Arc<Self>,
        party: &str,
        cp: checkpoint::VerifiedCheckpoint,
        proof: Option<&ConsistencyProof>,
    ) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        let proven = match self.check_carried(party, &cp, proof) {
            Some(Logging::AlreadyDue) => return None,
            Some(Logging::At(at, slot)) => Ok((at, slot)),
            None => Err(cp),
        };
        let (witness, party) = (self.clone(), party.to_owned());
        Some(async move {
            match proven {
                Ok((at, slot)) => witness.log_newest(&party, slot, at).await,
                Err(cp) => witness.witness(&party, cp).await,
            }
        })
    }

    /// Checks `proof` proves `cp` extends the last checkpoint witnessed from
    /// `party`; if so, `cp` is now the last one, logged by the task already
    /// due or at an instant of its own: now, or `CHECK_EVERY` after the last
    /// one was. `None` when the proof could not be used.
    fn check_carried(
        &self,
        party: &str,
        cp: &checkpoint::VerifiedCheckpoint,
        proof: Option<&ConsistencyProof>,
    ) -> Option<Logging> {
        let proof = proof.filter(|p| p.new_size == cp.size && p.more.is_empty())?;
        if self.log.is_held() {
            return None;
        }
        let slot = self.slot(party)?;
        let mut held = slot.try_lock().ok()?;
        self.load_last(party, &mut held);
        let last = held.last.as_ref()?;
        if last.size != proof.old_size || consistent(&proof.hashes, last, cp).is_err() {
            return None;
        }
        held.last = Some(cp.clone());
        if std::mem::replace(&mut held.log_due, true) {
            return Some(Logging::AlreadyDue);
        }
        let now = tokio::time::Instant::now();
        let at = held.checked_at.map_or(now, |at| now.max(at + CHECK_EVERY));
        drop(held);
        Some(Logging::At(at, slot))
    }

    /// At `at`, logs the newest checkpoint of `party` witnessed (unless it
    /// is logged already, or `party` is no longer a peer), then takes up
    /// what was set aside meanwhile.
    async fn log_newest(&self, party: &str, slot: Slot, at: tokio::time::Instant) {
        tokio::time::sleep_until(at).await;
        let mut held = slot.lock().await;
        // Cleared whatever follows, so a party that leaves and joins again
        // is logged again.
        held.log_due = false;
        if !self.live.get().peers.contains(party) {
            return;
        }
        let newest = held.last.clone();
        held.checked_at = Some(tokio::time::Instant::now());
        // Logged with the slot let go: a checkpoint that arrives with its
        // proof meanwhile is checked at once, not set aside.
        drop(held);
        if let Some(last) = newest {
            self.log_witnessed(party, last).await;
        }
        self.take_up(party, &slot).await;
    }
}
