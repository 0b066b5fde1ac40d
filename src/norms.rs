//! The norms worker: watches the running clocks and logs each missed
//! deadline once, and sends communication checks on the agreed interval.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::Instrument;

use crate::clock;
use crate::node::Node;
use crate::state;

/// Runs until `stop` turns true.
pub async fn run(node: Arc<Node>, mut stop: watch::Receiver<bool>) {
    let every = node.agreement.norms.comm_check_every;
    let mut next_check = Instant::now() + every;
    let tick = (node.agreement.norms.receipt_within / 10).clamp(Duration::from_millis(50), Duration::from_secs(1));
    loop {
        match node.read(|c| state::running_deadlines(c, clock::now_ms())) {
            Ok(due) => {
                for d in due {
                    if let Err(e) = node.miss(&d).await {
                        tracing::error!(error = %e, "cannot log a missed deadline");
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read deadlines"),
        }
        if Instant::now() >= next_check {
            next_check = Instant::now() + every;
            let node = node.clone();
            tokio::spawn(
                async move {
                    if let Err(e) = node.comm_check(None, "hotline").await {
                        tracing::warn!(error = %e, "scheduled communication check failed");
                    }
                }
                .instrument(tracing::info_span!("comm_check")),
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = stop.changed() => return,
        }
    }
}
