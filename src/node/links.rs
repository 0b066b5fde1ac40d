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

    /// Makes `call` to `party` within `deadline` and records its fate in the
    /// peer's link state: answered, refused (the peer was reached), or no one
    /// and no answer. A failure comes back in words.
    pub async fn call_peer<T>(
        self: &Arc<Self>,
        party: &str,
        deadline: Duration,
        call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, String> {
        let failed = match tokio::time::timeout(deadline, call).await {
            Ok(Ok(reply)) => {
                self.link_outcome(party, Ok(()));
                return Ok(reply.into_inner());
            }
            Err(_) => {
                let waited = crate::clock::format_duration(Duration::from_secs(deadline.as_secs()));
                let why = format!("no answer within {waited}");
                self.link_outcome(party, Err(&why));
                why
            }
            Ok(Err(s)) => {
                let why = call_failure(&s);
                self.link_outcome(party, if reached(&s) { Ok(()) } else { Err(&why) });
                why
            }
        };
        Err(failed)
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
            if self.links.reachable(&party) {
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

/// Whether a failed call reached the peer: it refused (a limit, a check),
/// rather than the call finding no one or no answer.
fn reached(s: &tonic::Status) -> bool {
    use tonic::Code;
    !matches!(
        s.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
    )
}

/// A failed call in words: its code, its message and what caused it (the
/// connection's error, which names the address and the system's reason).
fn call_failure(s: &tonic::Status) -> String {
    let mut words = format!("{:?}: {}", s.code(), s.message());
    let mut cause = std::error::Error::source(s);
    while let Some(c) = cause {
        let text = c.to_string();
        if !words.contains(&text) {
            words.push_str(": ");
            words.push_str(&text);
        }
        cause = c.source();
    }
    words
}
