//! The node's background tasks, owned: every task is spawned into one set,
//! told to stop through one token, and awaited by `stop`. A task that panics
//! is not swallowed: the panic is logged at once and `stop` returns it.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use tokio::task::{JoinError, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// A background task panicked; the message is the panic's.
#[derive(Debug, thiserror::Error)]
#[error("a background task panicked: {0}")]
pub struct TaskPanicked(pub String);

/// The set of a node's background tasks.
#[derive(Debug, Default)]
pub struct Tasks {
    set: Mutex<JoinSet<()>>,
    panics: Mutex<Vec<String>>,
    stop: CancellationToken,
}

impl Tasks {
    /// Runs `task` in the background, in the current span, until it ends or
    /// the tasks are stopped. Finished tasks are reaped as new ones start.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut set = self.set.lock().unwrap_or_else(|e| e.into_inner());
        self.reap_finished(&mut set);
        set.spawn(task.in_current_span());
    }

    fn reap_finished(&self, set: &mut JoinSet<()>) {
        while let Some(done) = set.try_join_next() {
            self.reap(done);
        }
    }

    /// Resolves once the tasks are told to stop; every waiting task selects on it.
    pub async fn stopping(&self) {
        self.stop.cancelled().await
    }

    /// Whether the tasks were told to stop.
    pub fn is_stopping(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// The first panic of any task so far.
    pub fn panicked(&self) -> Option<String> {
        self.reap_finished(&mut self.set.lock().unwrap_or_else(|e| e.into_inner()));
        self.panics.lock().unwrap_or_else(|e| e.into_inner()).first().cloned()
    }

    /// Tells every task to stop, waits up to `grace` for them to end, aborts
    /// those still running (their work is durable or retried at the next
    /// start), and reports the first panic of any task.
    pub async fn stop(&self, grace: Duration) -> Result<(), TaskPanicked> {
        self.stop.cancel();
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let mut set = std::mem::take(&mut *self.set.lock().unwrap_or_else(|e| e.into_inner()));
            if set.is_empty() {
                break;
            }
            loop {
                match tokio::time::timeout_at(deadline, set.join_next()).await {
                    Ok(Some(done)) => self.reap(done),
                    Ok(None) => break,
                    Err(_) => {
                        set.abort_all();
                        while let Some(done) = set.join_next().await {
                            self.reap(done);
                        }
                    }
                }
            }
        }
        match self.panicked() {
            Some(p) => Err(TaskPanicked(p)),
            None => Ok(()),
        }
    }

    fn reap(&self, done: Result<(), JoinError>) {
        let Err(e) = done else { return };
        if !e.is_panic() {
            return; // aborted at stop
        }
        let payload = e.into_panic();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into());
        tracing::error!(panic = %message, "a background task panicked");
        self.panics.lock().unwrap_or_else(|e| e.into_inner()).push(message);
    }
}
