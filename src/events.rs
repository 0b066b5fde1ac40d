//! The operator-visible event stream: notices, responses and receipts as they
//! arrive, and norm events as they are logged. `Operator.WatchEvents` and
//! `hotline inbox --follow` read it; the node and the witness write to it.
//! Norm events are counted in the node's metrics as they pass.

use tokio::sync::broadcast;

use std::sync::Arc;

use crate::clock::{self, Clock};
use crate::metrics::Metrics;
use crate::proto::{Event, event};

/// How many events a slow watcher may fall behind before it misses some.
const BACKLOG: usize = 1024;

/// Where events go: every watcher subscribed at the time gets each one.
#[derive(Clone)]
pub struct Events {
    tx: broadcast::Sender<Event>,
    clock: Clock,
    metrics: Arc<Metrics>,
}

impl Events {
    /// An event stream stamped by `clock`, counted in `metrics`.
    pub fn new(clock: Clock, metrics: Arc<Metrics>) -> Self {
        Self {
            tx: broadcast::channel(BACKLOG).0,
            clock,
            metrics,
        }
    }

    /// The node's metrics, which the writers of events also update.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// A receiver of every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// Tells every watcher; nobody watching is fine.
    pub fn emit(&self, body: event::Body) {
        if let event::Body::NormEvent(e) = &body {
            self.metrics.norm_event(e.kind(), e.deadline());
        }
        let _ = self.tx.send(Event {
            at: Some(clock::to_proto(self.clock.now())),
            body: Some(body),
        });
    }
}
