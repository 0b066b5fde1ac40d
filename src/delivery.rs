//! The outbox worker: delivers every queued message to each recipient's
//! `Federation.Deliver`, retrying with exponential backoff and jitter until a
//! valid receipt comes back. The outbox is durable, so a restarted node
//! resumes where it stopped.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tracing::Instrument;

use crate::clock;
use crate::node::Node;
use crate::state;

/// Deliveries in flight at once, across all peers.
const MAX_IN_FLIGHT: usize = 256;

/// The delay before retry number `attempts` (1 for the first retry): doubling
/// from `base` up to `max`, then scaled by a random factor in [0.5, 1.0).
pub fn backoff(attempts: u32, base: Duration, max: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << attempts.saturating_sub(1).min(20)).min(max);
    let jitter = 0.5 + (rand_core::RngCore::next_u32(&mut rand_core::OsRng) as f64 / u32::MAX as f64) * 0.5;
    exp.mul_f64(jitter)
}

/// Runs until `stop` turns true.
pub async fn run(node: Arc<Node>, mut stop: watch::Receiver<bool>) {
    let in_flight: Arc<Mutex<HashSet<(String, String)>>> = Arc::default();
    loop {
        let pending = match node.read(state::outbox) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the outbox");
                Vec::new()
            }
        };
        let now = clock::now_ms();
        let mut next_wake = now + 1_000;
        for p in pending {
            if p.next_attempt_ms > now {
                next_wake = next_wake.min(p.next_attempt_ms);
                continue;
            }
            let key = (p.message_id.clone(), p.party.clone());
            {
                let mut set = in_flight.lock().unwrap_or_else(|e| e.into_inner());
                if set.len() >= MAX_IN_FLIGHT || !set.insert(key.clone()) {
                    continue;
                }
            }
            let (node, in_flight) = (node.clone(), in_flight.clone());
            let span =
                tracing::info_span!("deliver", message_id = %p.message_id, peer = %p.party, attempt = p.attempts + 1);
            tokio::spawn(
                async move {
                    if let Err(error) = node.deliver_to(&p).await {
                        let delay = backoff(p.attempts + 1, node.retry.0, node.retry.1);
                        tracing::warn!(%error, retry_in = ?delay, "delivery failed");
                        let next = clock::now_ms() + delay.as_millis() as i64;
                        let failed = p.clone();
                        let change = Box::new(move |c: &rusqlite::Connection, _| {
                            state::delivery_failed(c, &failed, next, &error).map_err(|e| e.to_string())
                        });
                        let _ = node.log.append_with(vec![], change, false).await;
                    }
                    in_flight.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
                    node.wake_delivery.notify_one();
                }
                .instrument(span),
            );
        }
        let wait = Duration::from_millis((next_wake - clock::now_ms()).clamp(5, 1_000) as u64);
        tokio::select! {
            _ = node.wake_delivery.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}
