//! The outbox worker: delivers every queued message to each recipient's
//! `Federation.DeliverBatch`, retrying with exponential backoff and jitter
//! until a valid receipt comes back. The outbox is durable and reloaded at
//! start, so a restarted node resumes where it stopped; while running, new
//! messages reach the worker through an in-memory queue, so no table is
//! rescanned.
//!
//! Each message has its own task and retry schedule. Its attempts go through
//! one courier per peer, which sends whatever is waiting for that peer in
//! one call (up to [`BATCH`] envelopes, [`CALLS_PER_PEER`] calls at once): a
//! lone message goes at once, a busy hour costs one call per batch. The
//! courier, and the checks a receipt must pass before it is logged, are in
//! [`courier`].

mod courier;
mod relay;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::Instrument;

use crate::node::Node;
use crate::state::{self, Pending, StoredMessage};

use courier::Queued;
pub use courier::{BATCH, CALLS_AT_ONCE, CALLS_AT_ONCE_UNREACHED, CALLS_PER_PEER};

/// Deliveries in flight at once to one peer: a slow or dead peer holds at
/// most these, never the others' share.
const MAX_IN_FLIGHT: usize = 512;

/// What delivers to one peer: its courier's queue and its in-flight slots.
struct Courier {
    queue: mpsc::UnboundedSender<Queued>,
    slots: Semaphore,
}

/// Each peer's courier, started the first time something goes to it. A
/// party that an adopted amendment removes loses its courier, which
/// finishes the calls it has in flight and stops.
#[derive(Clone)]
struct Couriers {
    node: Arc<Node>,
    by_peer: Arc<Mutex<HashMap<String, Arc<Courier>>>>,
    /// The node's places for calls in flight to all peers.
    places: courier::Places,
}

impl Couriers {
    /// The courier of `party` if it is a peer of the agreement in force.
    fn get(&self, party: &str) -> Option<Arc<Courier>> {
        let is_peer = self.node.in_force().peers.contains(party);
        let mut by_peer = self.by_peer.lock().unwrap_or_else(|e| e.into_inner());
        if !is_peer {
            by_peer.remove(party);
            return None;
        }
        let courier = by_peer.entry(party.to_owned()).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let span = tracing::info_span!("courier", peer = %party);
            self.node
                .tasks()
                .spawn(courier::run(self.node.clone(), party.to_owned(), rx, self.places.clone()).instrument(span));
            Arc::new(Courier {
                queue: tx,
                slots: Semaphore::new(MAX_IN_FLIGHT),
            })
        });
        Some(courier.clone())
    }
}

/// Runs until the node's tasks are told to stop.
pub async fn run(node: Arc<Node>) {
    let Some(mut queue) = node.deliveries().take_receiver() else {
        return;
    };
    match node.read(state::outbox) {
        Ok(pending) => {
            for p in pending {
                node.deliveries().push(p);
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot read the outbox"),
    }
    let couriers = Couriers {
        node: node.clone(),
        by_peer: Arc::default(),
        places: courier::Places::new(),
    };
    let active: Arc<Mutex<HashSet<(String, String)>>> = Arc::default();
    loop {
        let p = tokio::select! {
            p = queue.recv() => match p { Some(p) => p, None => return },
            _ = node.tasks().stopping() => return,
        };
        let key = (p.message_id.clone(), p.party.clone());
        if !active.lock().unwrap_or_else(|e| e.into_inner()).insert(key.clone()) {
            continue; // already being delivered
        }
        let (worker, couriers, active) = (node.clone(), couriers.clone(), active.clone());
        let span = tracing::info_span!("deliver", message_id = %p.message_id, peer = %p.party);
        node.tasks().spawn(async move {
            deliver_until_receipted(worker, couriers, p).instrument(span).await;
            active.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
        });
    }
}

/// Tries one delivery until it is receipted or the node stops.
async fn deliver_until_receipted(node: Arc<Node>, couriers: Couriers, mut p: Pending) {
    // A retry loaded at start waits for its time; a fresh message goes at once
    // (even a zero sleep would wait for the timer's next tick).
    if p.next_attempt_ms > node.clock().now_ms() {
        tokio::select! {
            _ = node.clock().sleep_until_ms(p.next_attempt_ms) => {}
            _ = node.tasks().stopping() => return,
        }
    }
    loop {
        if node.tasks().is_stopping() {
            return;
        }
        // Listening from before the attempt: the peer speaking to us while the
        // attempt fails or its failure is recorded (a probe finding it back)
        // still ends the wait that follows, rather than waking no one.
        let heard = node.deliveries().heard(&p.party);
        let woken = heard.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let result = match (couriers.get(&p.party), relay::relay_for(&node, &p.party)) {
            // Not a peer (yet: a party a pending amendment adds; or any more:
            // its delivery was cancelled when it left, and then this ends).
            (None, _) => {
                if !still_queued(&node, &p).await {
                    return;
                }
                Err(format!(
                    "{} is not a peer of agreement version {}",
                    p.party,
                    node.in_force().version()
                ))
            }
            // The direct path has failed for longer than relay_after: through a relay.
            (Some(_), Some(relay)) => match message_of(&node, &p).await {
                Ok(m) => relay::through(&node, &relay, &p.party, &m).await,
                Err(e) => Err(e),
            },
            (Some(courier), None) => {
                let Ok(_slot) = courier.slots.acquire().await else {
                    return;
                };
                attempt(&node, &courier, &p).await
            }
        };
        node.metrics().delivery(&p.party, result.is_ok());
        let Err(error) = result else { return };
        p.attempts += 1;
        let delay = node.retry_delay(p.attempts);
        // One line per peer and kind of failure a minute, with how many were held back.
        if let Some(held_back) = node
            .repeats()
            .check(&format!("{}: {error}", p.party), std::time::Instant::now())
        {
            tracing::warn!(%error, attempt = p.attempts, retry_in = ?delay, held_back, "delivery failed");
        }
        let failed = p.clone();
        let next = node.clock().now_ms() + delay.as_millis() as i64;
        node.links().next_try(&p.party, next);
        let change = Box::new(move |c: &crate::db::Connection, _| state::delivery_failed(c, &failed, next, &error));
        if let Err(e) = node.log().append_with(vec![], change, false).await {
            tracing::warn!(error = %e, "could not record the failed attempt");
        }
        // The peer speaking to us (back up, or a party that just joined) ends the wait.
        tokio::select! {
            _ = node.clock().sleep(delay) => {}
            _ = woken => {}
            _ = node.tasks().stopping() => return,
        }
    }
}

/// Whether the delivery is still in the outbox (a party that left has its deliveries cancelled).
async fn still_queued(node: &Node, p: &Pending) -> bool {
    let (id, party) = (p.message_id.clone(), p.party.clone());
    node.query(move |c| state::is_queued(c, &id, &party))
        .await
        .unwrap_or(true)
}

/// The queued message, as the delivery holds it or from the store.
async fn message_of(node: &Node, p: &Pending) -> Result<Arc<StoredMessage>, String> {
    Ok(match &p.message {
        Some(m) => m.clone(),
        None => {
            let id = p.message_id.clone();
            let stored = node.query(move |c| state::message(c, &id)).await;
            Arc::new(
                stored
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("queued message {} is missing", p.message_id))?,
            )
        }
    })
}

/// One attempt: hands the message to its peer's courier and waits for the outcome.
async fn attempt(node: &Node, courier: &Courier, p: &Pending) -> Result<(), String> {
    let m = message_of(node, p).await?;
    let (reply, outcome) = oneshot::channel();
    courier
        .queue
        .send((m, reply))
        .map_err(|_| "the node is stopping".to_owned())?;
    outcome.await.unwrap_or_else(|_| Err("the node is stopping".into()))
}
