//! The sender's side of a relay: when the agreement sets `relay_after` and
//! our calls have not reached a recipient for that long, a delivery goes
//! through a party the agreement names in `relays` and our calls do reach;
//! the recipient's receipt comes back through it and is checked as any
//! other. The direct path is probed meanwhile (`node/links.rs`), and a
//! message that arrives both ways is logged once: the recipient answers a
//! resend with its first receipt.

use std::sync::Arc;

use prost::Message as _;

use super::courier::CALL_TIMEOUT;
use crate::node::Node;
use crate::proto::{RelayRequest, deliver_outcome};
use crate::state::StoredMessage;

/// The relay a delivery to `party` goes through now, if any.
pub fn relay_for(node: &Node, party: &str) -> Option<String> {
    let in_force = node.in_force();
    let agreement = in_force.agreement();
    let after = agreement.norms.relay_after?;
    let down = node.links().get(party).filter(|l| !l.reachable)?;
    if node.clock().now_ms() - down.since_ms < after.as_millis() as i64 {
        return None;
    }
    agreement
        .norms
        .relays
        .iter()
        .filter(|r| *r != node.party() && *r != party)
        .find(|r| node.links().reachable(r))
        .cloned()
}

/// One attempt to deliver `m` to `party` through `relay`.
pub async fn through(node: &Arc<Node>, relay: &str, party: &str, m: &StoredMessage) -> Result<(), String> {
    let Some(mut client) = node.in_force().peers.get(relay) else {
        return Err(format!("{relay} is not a peer"));
    };
    let req = RelayRequest {
        to: party.to_owned(),
        envelopes: vec![m.envelope.clone()],
        agreement: Some(node.in_force().reference()),
    };
    let deadline = CALL_TIMEOUT + crate::transport::transfer_time(req.encoded_len());
    let reply = node
        .call_peer(relay, deadline, client.relay(req))
        .await
        .map_err(|why| format!("relay {relay}: {why}"))?;
    match reply.outcomes.into_iter().next().and_then(|o| o.result) {
        Some(deliver_outcome::Result::Receipt(env)) => node
            .accept_receipt(m, party, env, Some(relay), None)
            .await
            .map_err(|e| format!("the receipt {relay} brought back: {e}")),
        Some(deliver_outcome::Result::Error(e)) => Err(format!(
            "{party}, through relay {relay}: {:?}: {}",
            tonic::Code::from(e.code),
            e.message
        )),
        None => Err(format!("relay {relay} answered no outcome")),
    }
}
