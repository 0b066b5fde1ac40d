//! The norms worker: watches the running clocks and logs each missed
//! deadline once, escalates a missed acknowledgement or response of a
//! notice we sent (and again at the agreed intervals), and sends
//! communication checks on the agreed interval.
//! It reads the time from the node's clock, so tests move it by hand.

use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;

use crate::log::{LogError, StateError};
use crate::node::{Actor, Node, NodeError};
use crate::norm_event;
use crate::proto::{Deadline, DeliveryAttempts, NormEventKind};
use crate::state;

/// The most missed deadlines logged in one tick of the norms worker.
const MISSES_PER_TICK: u32 = 1_000;

/// Runs until the node's tasks are told to stop.
pub async fn run(node: Arc<Node>) {
    let mut next_check = node.clock().now_ms() + node.in_force().agreement().norms.comm_check_every.as_millis() as i64;
    loop {
        // The norms in force now: an adopted amendment may have changed them.
        let in_force = node.in_force();
        let norms = &in_force.agreement().norms;
        let every_ms = norms.comm_check_every.as_millis() as i64;
        let tick = (norms.receipt_within / 10).clamp(Duration::from_millis(50), Duration::from_secs(1));
        // At most this many a tick, so one tick's work stays bounded; the rest follow.
        let now = node.clock().now_ms();
        match node
            .query(move |c| state::running_deadlines(c, now, MISSES_PER_TICK))
            .await
        {
            Ok(due) => {
                for d in due {
                    if let Err(e) = miss(&node, &d).await {
                        tracing::error!(error = %e, "cannot log a missed deadline");
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read deadlines"),
        }
        let now = node.clock().now_ms();
        match node
            .query(move |c| state::escalations_due(c, now, MISSES_PER_TICK))
            .await
        {
            Ok(due) => {
                for e in due {
                    if let Err(err) = node.escalate(&e.missed, e.level + 1).await {
                        tracing::error!(error = %err, "cannot escalate a missed step");
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read escalations"),
        }
        if node.clock().now_ms() >= next_check {
            next_check = node.clock().now_ms() + every_ms;
            let checker = node.clone();
            node.tasks().spawn(
                async move {
                    if let Err(e) = checker.comm_check(None, false, Actor::Node).await {
                        tracing::warn!(error = %e, "scheduled communication check failed");
                    }
                }
                .instrument(tracing::info_span!("comm_check")),
            );
        }
        tokio::select! {
            _ = node.clock().sleep(tick) => {}
            _ = node.tasks().stopping() => return,
        }
    }
}

/// Logs a missed deadline exactly once and tells operators; a clock met or
/// missed meanwhile is left alone.
pub async fn miss(node: &Node, d: &state::Running) -> Result<(), NodeError> {
    let owed = match d.kind {
        Deadline::Receipt => "a receipt",
        Deadline::Acknowledge => "an acknowledgement",
        Deadline::Response => "a response",
        Deadline::Promise => "the answer it promised",
        Deadline::CommCheckAnswer => "an answer to a communication check",
        Deadline::Unspecified => "a step",
    };
    let mut event = norm_event::new(
        NormEventKind::DeadlineMissed,
        &d.party,
        &d.message_id,
        d.kind,
        Some(d.due_ms),
        node.clock().now(),
        format!("{} owed {owed} for {}", d.party, d.message_id),
    );
    if d.kind == Deadline::Receipt && d.party != node.party() {
        event.attempts = attempts(node, d).await?;
    }
    let running = d.clone();
    match norm_event::log(node.log(), node.events(), event, move |c| {
        state::miss_deadline(c, &running)
    })
    .await
    {
        Ok(()) => {
            tracing::warn!(party = %d.party, message_id = %d.message_id, deadline = ?d.kind, "deadline missed");
            // A peer's missed acknowledgement or response of our notice goes to its policy contact.
            if matches!(d.kind, Deadline::Acknowledge | Deadline::Response) && d.party != node.party() {
                node.escalate(d, 1).await?;
            }
            Ok(())
        }
        Err(LogError::Refused(StateError::NotRunning(_))) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Our record of the attempts to deliver the message whose receipt is
/// missed: how many calls failed, the last failure, and whether the
/// recipient was unreachable, so the report tells silence from a link down.
async fn attempts(node: &Node, d: &state::Running) -> Result<Option<DeliveryAttempts>, NodeError> {
    let (id, party) = (d.message_id.clone(), d.party.clone());
    let Some((failed, last_failure)) = node.query(move |c| state::delivery_attempts(c, &id, &party)).await? else {
        return Ok(None);
    };
    let down = node.links().get(&d.party).filter(|l| !l.reachable);
    Ok(Some(DeliveryAttempts {
        failed,
        unreachable: down.is_some(),
        unreachable_since: down.and_then(|l| crate::clock::ms_to_proto(l.since_ms)),
        last_failure,
    }))
}
