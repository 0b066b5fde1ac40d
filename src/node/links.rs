//! The node's side of each peer's link: the couriers report the fate of
//! each call here (`crate::links` keeps the state), and a change goes to
//! the event stream: up, down, or down longer than the agreement's
//! `link_down_alert`, which is also alerted (`alerts::AlertKind::LinkDown`).

use super::Node;
use crate::links::{Change, Links};
use crate::proto::event;

impl Node {
    /// Each peer's link as our calls find it.
    pub fn links(&self) -> &Links {
        &self.links
    }

    /// A call to `party` was answered (`Ok`: a receipt or a refusal), or
    /// reached no one (`Err`, in words).
    pub fn link_outcome(&self, party: &str, outcome: Result<(), &str>) {
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
                    false => tracing::warn!(peer = party, failure = %link.last_failure, "the peer cannot be reached"),
                }
                self.events.emit(event::Body::Link(link.to_proto(party, false)));
            }
            Some(Change::DownTooLong(link)) => {
                tracing::error!(peer = party, failure = %link.last_failure, attempts = link.failed_attempts, "the peer has been unreachable longer than the agreed link_down_alert");
                self.events.emit(event::Body::Link(link.to_proto(party, true)));
            }
        }
    }
}
