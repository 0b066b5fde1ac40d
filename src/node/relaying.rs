//! Relays: a party the agreement names in `[norms] relays` carries a
//! peer's envelopes to a recipient that peer cannot reach, and brings the
//! recipient's receipts back. The envelopes are end-to-end signed (and
//! sealed above CLEAR), so the relay can neither alter nor read them: the
//! recipient checks each as if its sender had delivered it. The relay logs
//! only that it carried each commitment (`Relayed` entries).

use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;

use super::{Node, NodeError};
use crate::log::entry;
use crate::proto::{DeliverBatchRequest, DeliverOutcome, Receipt, RelayRequest, deliver_outcome};

/// How long the recipient has to answer a relayed batch, besides the time
/// its bytes take over the slowest link.
const RELAY_TIMEOUT: Duration = Duration::from_secs(15);

impl Node {
    /// Carries `caller`'s envelopes to `req.to` and answers the recipient's
    /// outcomes as they came. Refused unless the agreement lets us relay,
    /// `to` is another peer, and every envelope is signed by `caller`'s keys.
    pub async fn relay(self: &Arc<Self>, caller: &str, req: RelayRequest) -> Result<Vec<DeliverOutcome>, NodeError> {
        let in_force = self.in_force();
        let agreement = in_force.agreement();
        if !agreement.relays(&self.party) {
            return Err(NodeError::NotARelay(self.party.clone()));
        }
        let to = req.to;
        if to == caller || to == self.party || !in_force.peers.contains(&to) {
            return Err(NodeError::NotAPeer(to));
        }
        let n = req.envelopes.len();
        // Only the caller's own envelopes: a relay carries for its caller, no one else.
        for env in &req.envelopes {
            self.check_signatures(caller, env, &in_force.keyring)?;
            if env.signatures.is_empty() {
                return Err(NodeError::Signatures("an envelope with no signature".into()));
            }
        }
        let Some(mut client) = in_force.peers.get(&to) else {
            return Err(NodeError::NotAPeer(to));
        };
        let batch = DeliverBatchRequest {
            envelopes: req.envelopes.clone(),
            sender_checkpoint: None,
            agreement: Some(in_force.reference()),
            sender: caller.to_owned(),
            ..Default::default()
        };
        let deadline = RELAY_TIMEOUT + crate::transport::transfer_time(batch.encoded_len());
        let unreachable = |why: String| NodeError::RecipientUnreachable { party: to.clone(), why };
        let reply = match tokio::time::timeout(deadline, client.deliver_batch(batch)).await {
            Err(_) => return Err(unreachable("no answer in time".into())),
            Ok(Err(s)) => return Err(unreachable(format!("{:?}: {}", s.code(), s.message()))),
            Ok(Ok(reply)) => reply.into_inner(),
        };
        self.link_outcome(&to, Ok(()));
        if reply.outcomes.len() != n {
            return Err(unreachable(format!(
                "it answered {} outcomes for {n} envelopes",
                reply.outcomes.len()
            )));
        }
        // What we carried, by commitment, where the recipient says it logged it.
        let now = self.clock.now();
        let carried: Vec<entry::Entry> = req
            .envelopes
            .iter()
            .zip(&reply.outcomes)
            .filter_map(|(env, o)| match &o.result {
                Some(deliver_outcome::Result::Receipt(r)) => {
                    let index = Receipt::decode(&r.payload[..]).map_or(0, |r| r.log_index);
                    Some(entry::relayed(now, env, caller, &to, index))
                }
                _ => None,
            })
            .collect();
        if !carried.is_empty() {
            let nothing = Box::new(|_: &crate::db::Connection, _| Ok(()));
            self.log.append_with(carried, nothing, false).await?;
        }
        tracing::info!(from = caller, to = %to, envelopes = n, "relayed");
        Ok(reply.outcomes)
    }
}
