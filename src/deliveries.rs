//! The delivery worker's own handle: the queue new deliveries reach it
//! through, and the wake-ups that end a retry's wait when its peer speaks to
//! us. Those who send (the node's outbound side) and those who hear from
//! peers hold it; only the worker (`delivery`) reads the queue. It imports
//! neither the node nor the worker, so each may hold it without a cycle.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, mpsc};

use crate::state::Pending;

/// The queue into the delivery worker, and per peer what wakes its retries.
pub struct DeliveryQueue {
    sender: mpsc::UnboundedSender<Pending>,
    receiver: Mutex<Option<mpsc::UnboundedReceiver<Pending>>>,
    heard: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Default for DeliveryQueue {
    fn default() -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        Self {
            sender,
            receiver: Mutex::new(Some(receiver)),
            heard: Mutex::default(),
        }
    }
}

impl DeliveryQueue {
    /// Hands a delivery to the worker.
    pub fn push(&self, p: Pending) {
        let _ = self.sender.send(p);
    }

    /// The worker's end of the queue; taken once.
    pub fn take_receiver(&self) -> Option<mpsc::UnboundedReceiver<Pending>> {
        self.receiver.lock().ok().and_then(|mut r| r.take())
    }

    /// What wakes the deliveries to `party` waiting for a retry; asked for
    /// on each attempt, so a known party's costs no allocation.
    pub fn heard(&self, party: &str) -> Arc<Notify> {
        let mut heard = self.heard.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(waiting) = heard.get(party) {
            return waiting.clone();
        }
        heard.entry(party.to_owned()).or_default().clone()
    }

    /// `party` spoke to us: its deliveries waiting for a retry go now.
    pub fn wake(&self, party: &str) {
        if let Some(waiting) = self.heard.lock().unwrap_or_else(|e| e.into_inner()).get(party) {
            waiting.notify_waiters();
        }
    }
}
