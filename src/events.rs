//! The operator-visible event stream: notices, responses and receipts as they
//! arrive, and norm events as they are logged. `Operator.WatchEvents` and
//! `hotline inbox --follow` read it; the node and the witness write to it.

use tokio::sync::broadcast;

use crate::clock::{self, Clock};
use crate::proto::{Event, event};

/// How many events a slow watcher may fall behind before it misses some.
const BACKLOG: usize = 1024;

/// Where events go: every watcher subscribed at the time gets each one.
#[derive(Clone, Debug)]
pub struct Events {
    tx: broadcast::Sender<Event>,
    clock: Clock,
}

impl Events {
    /// An event stream stamped by `clock`.
    pub fn new(clock: Clock) -> Self {
        Self {
            tx: broadcast::channel(BACKLOG).0,
            clock,
        }
    }

    /// A receiver of every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// Tells every watcher; nobody watching is fine.
    pub fn emit(&self, body: event::Body) {
        let _ = self.tx.send(Event {
            at: Some(clock::to_proto(self.clock.now())),
            body: Some(body),
        });
    }
}
