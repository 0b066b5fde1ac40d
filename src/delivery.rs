//! The outbox worker: delivers every queued message to each recipient's
//! `Federation.Deliver`, retrying with exponential backoff and jitter until a
//! valid receipt comes back. The outbox is durable and reloaded at start, so
//! a restarted node resumes where it stopped; while running, new messages
//! reach the worker through an in-memory queue, so no table is rescanned.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tracing::Instrument;

use crate::clock;
use crate::node::Node;
use crate::state::{self, Pending};

/// Deliveries in flight at once, across all peers.
const MAX_IN_FLIGHT: usize = 512;

/// The delay before retry number `attempts` (1 for the first retry): doubling
/// from `base` up to `max`, then scaled by a random factor in [0.5, 1.0).
pub fn backoff(attempts: u32, base: Duration, max: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << attempts.saturating_sub(1).min(20)).min(max);
    let jitter = 0.5 + (rand_core::RngCore::next_u32(&mut rand_core::OsRng) as f64 / u32::MAX as f64) * 0.5;
    exp.mul_f64(jitter)
}

/// Runs until `stop` turns true.
pub async fn run(node: Arc<Node>, mut stop: watch::Receiver<bool>) {
    let Some(mut queue) = node.take_outbox_queue() else {
        return;
    };
    match node.read(state::outbox) {
        Ok(pending) => {
            for p in pending {
                node.queue_delivery(p);
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot read the outbox"),
    }
    let active: Arc<Mutex<HashSet<(String, String)>>> = Arc::default();
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    loop {
        let p = tokio::select! {
            p = queue.recv() => match p { Some(p) => p, None => return },
            _ = stop.changed() => return,
        };
        let key = (p.message_id.clone(), p.party.clone());
        if !active.lock().unwrap_or_else(|e| e.into_inner()).insert(key.clone()) {
            continue; // already being delivered
        }
        let (node, active, slots, stop) = (node.clone(), active.clone(), slots.clone(), stop.clone());
        let span = tracing::info_span!("deliver", message_id = %p.message_id, peer = %p.party);
        tokio::spawn(async move {
            deliver_until_receipted(node, p, slots, stop).instrument(span).await;
            active.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
        });
    }
}

/// Tries one delivery until it is receipted or the node stops.
async fn deliver_until_receipted(node: Arc<Node>, mut p: Pending, slots: Arc<Semaphore>, stop: watch::Receiver<bool>) {
    let wait = p.next_attempt_ms - clock::now_ms();
    if wait > 0 {
        // A retry loaded at start waits for its time; a fresh message goes at once
        // (even a zero sleep would wait for the timer's next tick).
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    }
    loop {
        if *stop.borrow() {
            return;
        }
        let result = {
            let Ok(_slot) = slots.acquire().await else { return };
            node.deliver_to(&p).await
        };
        let Err(error) = result else { return };
        p.attempts += 1;
        let delay = backoff(p.attempts, node.retry.0, node.retry.1);
        tracing::warn!(%error, attempt = p.attempts, retry_in = ?delay, "delivery failed");
        let failed = p.clone();
        let next = clock::now_ms() + delay.as_millis() as i64;
        let change = Box::new(move |c: &rusqlite::Connection, _| {
            state::delivery_failed(c, &failed, next, &error).map_err(|e| e.to_string())
        });
        let _ = node.log.append_with(vec![], change, false).await;
        tokio::time::sleep(delay).await;
    }
}
