//! The node's side of each peer's link: the couriers report the fate of
//! each call here (`crate::links` keeps the state), and a change goes to
//! the event stream: up, down, or down longer than the agreement's
//! `link_down_alert`, which is also alerted (`alerts::AlertKind::LinkDown`).
//! While a peer is unreachable a probe asks it for its checkpoint every
//! [`PROBE_EVERY`], so that the backlog goes as soon as the link is back
//! rather than at each delivery's next retry (up to `retry_max` later).

use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;

use super::Node;
use crate::links::{Change, Links, PROBE_EVERY};
use crate::proto::{GetCheckpointRequest, event};

/// How long a probe waits for the peer's answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

impl Node {
    /// Each peer's link as our calls find it.
    pub fn links(&self) -> &Links {
        &self.links
    }

    /// A call to `party` was answered (`Ok`: a receipt or a refusal), or
    /// reached no one (`Err`, in words).
    pub fn link_outcome(self: &Arc<Self>, party: &str, outcome: Result<(), &str>) {
        let now = self.clock.now_ms();
        let change = match outcome {
            Ok(()) => self.links.answered(party, now),
            Err(why) => {
                let alert_after = self.in_force().agreement().norms.link_down_alert;
                self.links.failed(party, why, now, alert_after)
            }
        };
        match change {
            None => {}
            Some(Change::Turned(link)) => {
                match link.reachable {
                    true => tracing::info!(peer = party, "the peer answers again"),
                    false => {
                        tracing::warn!(peer = party, failure = %link.last_failure, "the peer cannot be reached");
                        let span = tracing::info_span!("probe", peer = %party);
                        self.tasks()
                            .spawn(self.clone().probe_until_back(party.to_owned()).instrument(span));
                    }
                }
                self.events.emit(event::Body::Link(link.to_proto(party, false)));
            }
            Some(Change::DownTooLong(link)) => {
                tracing::error!(peer = party, failure = %link.last_failure, attempts = link.failed_attempts, "the peer has been unreachable longer than the agreed link_down_alert");
                self.events.emit(event::Body::Link(link.to_proto(party, true)));
            }
        }
    }

    /// Asks unreachable `party` for its checkpoint every [`PROBE_EVERY`]
    /// until it answers (then its deliveries go at once), our calls find
    /// it reachable, it is no peer any more, or the node stops.
    async fn probe_until_back(self: Arc<Self>, party: String) {
        loop {
            tokio::select! {
                _ = self.clock.sleep(PROBE_EVERY) => {}
                _ = self.tasks().stopping() => return,
            }
            if self.links.get(&party).is_none_or(|l| l.reachable) {
                return;
            }
            let Some(mut client) = self.in_force().peers.get(&party) else {
                return;
            };
            let asked = client.get_checkpoint(GetCheckpointRequest {});
            if let Ok(Ok(_)) = tokio::time::timeout(PROBE_TIMEOUT, asked).await {
                self.link_outcome(&party, Ok(()));
                self.deliveries.wake(&party);
                return;
            }
        }
    }
}
