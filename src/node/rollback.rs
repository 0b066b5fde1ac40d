//! Rollback protection at start. Before its log takes an entry, a node asks
//! every peer for the newest checkpoint of its own log that the peer
//! witnessed. A log shorter than one of them, or whose tree at that size has
//! another root, was restored from an old copy or lost data: the node refuses
//! to serve, naming the missing entries and the peers that saw them, rather
//! than sign a checkpoint that forks its log.

use std::time::Duration;

use super::{Node, NodeError};
use crate::log::checkpoint;
use crate::proto::GetWitnessedCheckpointRequest;

impl Node {
    /// Compares the log with what each peer witnessed of it, waiting at most
    /// `timeout` for each; a peer that does not answer is passed over (a
    /// hotline starting all at once, or a peer that is down).
    pub(super) async fn check_against_peers(&self, timeout: Duration) -> Result<(), NodeError> {
        let in_force = self.in_force();
        let asks = in_force.peers.ids().map(|party| {
            let client = in_force.peers.get(party);
            async move {
                let Some(mut client) = client else {
                    return (party, Err("no channel to it".to_owned()));
                };
                let call = tokio::time::timeout(
                    timeout,
                    client.get_witnessed_checkpoint(GetWitnessedCheckpointRequest {}),
                );
                let answer = match call.await {
                    Err(_) => Err(format!("no answer within {timeout:?}")),
                    Ok(Err(status)) => Err(status.message().to_owned()),
                    Ok(Ok(r)) => Ok(r.into_inner().checkpoint.map(|c| c.note)),
                };
                (party, answer)
            }
        });
        let answers = futures_util::future::join_all(asks).await;
        let held = self.log.head().size;
        let keys = self.keys.all();
        let (mut ahead, mut other, mut silent) = (Vec::new(), Vec::new(), Vec::new());
        for (party, answer) in answers {
            let note = match answer {
                Ok(Some(note)) => note,
                Ok(None) => continue,
                Err(why) => {
                    silent.push(format!("{party} ({why})"));
                    continue;
                }
            };
            // Only a checkpoint we signed counts: a peer cannot stop us by inventing one.
            let Some(seen) = keys
                .iter()
                .find_map(|k| checkpoint::verify(&note, k.key.verifier()).ok())
            else {
                tracing::warn!(%party, "start: the checkpoint this peer says it witnessed is not signed by our key; ignored");
                continue;
            };
            if seen.size > held {
                ahead.push((party.clone(), seen.size));
            } else if self.log.reader().root_at(seen.size)? != seen.root {
                other.push((party.clone(), seen.size));
            }
        }
        if !silent.is_empty() {
            // One line, not one per peer: a hotline starting at once has many peers not up yet.
            let shown: Vec<&str> = silent.iter().take(5).map(String::as_str).collect();
            tracing::warn!(
                peers = silent.len(),
                "start: the log was compared without the view of peers that did not answer: {}{}",
                shown.join(", "),
                if silent.len() > shown.len() { ", ..." } else { "" }
            );
        }
        if ahead.is_empty() && other.is_empty() {
            return Ok(());
        }
        let named = |seen: &[(String, u64)]| {
            seen.iter()
                .map(|(p, n)| format!("{p} saw {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut why = Vec::new();
        if let Some(most) = ahead.iter().map(|(_, n)| *n).max() {
            why.push(format!(
                "this node's log holds {held} entries but its peers witnessed more: entries {held}..{most} ({} entries) are missing ({})",
                most - held,
                named(&ahead)
            ));
        }
        if !other.is_empty() {
            why.push(format!(
                "this node's log differs from checkpoints its peers witnessed ({})",
                named(&other)
            ));
        }
        Err(NodeError::RolledBack(format!(
            "{}; the store was restored from an old copy or lost data. Refusing to serve rather than sign a fork: \
             start from the newest backup (hotline restore) or the store that holds them",
            why.join("; ")
        )))
    }
}
