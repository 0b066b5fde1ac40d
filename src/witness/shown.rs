//! The proofs we send with our checkpoints: which checkpoint each peer was
//! shown last, and the consistency proof from it to the one we show next.

use std::time::Duration;

use super::Witness;
use crate::proto::{ConsistencyProof, ConsistencyProofRequest};

/// The least time between two checkpoints shown to one peer for the second
/// to carry a proof: a proof whose hashes the log does not hold in memory is
/// a read of our tree's hashes on the path of the call (two round trips on
/// PostgreSQL), and a peer called more often than this asks for its proofs
/// instead, at most once a `CHECK_EVERY`.
const PROOF_EVERY: Duration = Duration::from_millis(10);

/// The largest checkpoint of ours shown to a peer, and when.
#[derive(Clone, Copy)]
pub(super) struct Shown {
    size: u64,
    at: tokio::time::Instant,
}

impl Witness {
    /// A proof for `party` that our checkpoint of `new_size`, about to be
    /// shown to it, extends the largest one shown to it before (none when
    /// none was, none smaller, or that one went less than `PROOF_EVERY`
    /// ago); `new_size` is then noted as shown. The proof is read on the
    /// blocking pool: on PostgreSQL it is a round trip, on the path of a call.
    pub async fn show(&self, party: &str, new_size: u64) -> Option<ConsistencyProof> {
        let now = tokio::time::Instant::now();
        let before = {
            let mut shown = self.shown.lock().unwrap_or_else(|e| e.into_inner());
            let last = shown.entry(party.to_owned()).or_insert(Shown { size: 0, at: now });
            let before = *last;
            *last = Shown {
                size: new_size.max(before.size),
                at: now,
            };
            before
        };
        if now.duration_since(before.at) < PROOF_EVERY {
            return None;
        }
        self.prove(before.size, new_size).await
    }

    /// A proof that our checkpoint of `new_size` extends the one of
    /// `old_size`; none when `old_size` is 0, not smaller, or not ours.
    /// From the hashes the log holds in memory when it holds them all (two
    /// recent sizes), else read on the blocking pool.
    async fn prove(&self, old_size: u64, new_size: u64) -> Option<ConsistencyProof> {
        if old_size == 0 || old_size >= new_size {
            return None;
        }
        if let Some(hashes) = self.log.reader().recent_consistency(old_size, new_size) {
            return Some(ConsistencyProof {
                old_size,
                new_size,
                hashes: crate::log::tree::proof_to_wire(&hashes),
                more: Vec::new(),
            });
        }
        let req = ConsistencyProofRequest {
            old_size,
            new_size,
            more_old_sizes: Vec::new(),
        };
        let log = self.log.clone();
        crate::db::on_blocking_pool(move || log.reader().prove_consistency(&req).ok())
            .await
            .ok()
            .flatten()
    }
}
