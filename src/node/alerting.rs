//! Running the `[alerts]` command for the events `alerts` says to alert:
//! each run is a task of the node's own, a few at a time, killed past its
//! timeout; a failure is logged, never holding up the node.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::Node;
use crate::alerts::{self, AlertConfig, RateLimit, kind_of};

/// How many alert commands run at once; more wait their turn.
const AT_ONCE: usize = 4;

impl Node {
    /// Runs the alerts of the `[alerts]` settings in force until the node
    /// stops; settings a reload puts in force apply from the next event.
    pub async fn run_alerts(self: Arc<Self>) {
        let node = self;
        let mut events = node.subscribe();
        let mut settings = node.alerts.subscribe();
        let mut limit = RateLimit::new(0);
        let mut per_minute = None;
        let running = Arc::new(tokio::sync::Semaphore::new(AT_ONCE));
        loop {
            if settings.borrow_and_update().is_none() {
                // Nothing alerts: no event is taken (each would wake this
                // task and be cloned for it) until a reload puts `[alerts]`
                // in force, and alerting starts from then.
                tokio::select! {
                    changed = settings.changed() => if changed.is_err() { return },
                    _ = node.tasks.stopping() => return,
                }
                events = events.resubscribe();
                continue;
            }
            let e = tokio::select! {
                e = events.recv() => e,
                _ = node.tasks.stopping() => return,
            };
            let e = match e {
                Ok(e) => e,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(
                        missed = n,
                        "alerts fell behind the event stream; some events were not alerted"
                    );
                    continue;
                }
                Err(_) => return,
            };
            let Some((config, timeout)) = settings.borrow_and_update().clone() else {
                continue;
            };
            if per_minute != Some(config.per_minute) {
                per_minute = Some(config.per_minute);
                limit = RateLimit::new(config.per_minute);
            }
            let Some(kind) = kind_of(&e).filter(|k| config.kinds.contains(k)) else {
                continue;
            };
            let Some(held_back) = limit.admit(kind, node.clock.now_ms()) else {
                continue;
            };
            let (text, command, running) = (
                alerts::line(&node.party, kind, &e, held_back),
                config.command.clone(),
                running.clone(),
            );
            let repeats = node.clone();
            node.tasks.spawn(async move {
                let Ok(_turn) = running.acquire().await else { return };
                if let Err(why) = alert(&command, &text, timeout).await
                    && let Some(held_back) = repeats
                        .repeats
                        .check(&format!("alert: {why}"), std::time::Instant::now())
                {
                    tracing::warn!(kind = kind.name(), error = %why, held_back, "alert command failed");
                }
            });
        }
    }
}

/// Runs `command` with `text` on its standard input, within `timeout`.
async fn alert(command: &[String], text: &str, timeout: Duration) -> Result<(), String> {
    let (program, args) = command.split_first().ok_or("the alert command is empty")?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("{program}: {e}"))?;
    let run = async {
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(text.as_bytes())
                .await
                .map_err(|e| format!("{program}: writing the event: {e}"))?;
        }
        child.wait().await.map_err(|e| format!("{program}: {e}"))
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(format!("{program} exited with {status}")),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!("{program} still running after {timeout:?}; killed")),
    }
}

impl Node {
    /// Puts `alerts` in force from the next event; whether they differ from those in force.
    pub(super) fn set_alerts(&self, alerts: Option<(AlertConfig, Duration)>) -> bool {
        let changed = format!("{:?}", *self.alerts.borrow()) != format!("{alerts:?}");
        self.alerts.send_replace(alerts);
        changed
    }
}
