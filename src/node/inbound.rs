//! The inbound path: a peer delivers envelopes; each is checked in the
//! agreed order, then handed to `recording.rs`, which logs it durably with
//! the state it changes in one transaction and answers with our receipt.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::recording::Admitted;
use super::{Node, NodeError, join_in_order};
use crate::clock;
use crate::envelope;
use crate::keys::Keyring;
use crate::message::{Kind, Message};
use crate::proto::{ConsistencyProof, DeliverRequest, Envelope, SignedCheckpoint};
use crate::state;

impl Node {
    /// Handles a delivery from `caller` (its TLS identity): checks in the
    /// agreed order, logs the message durably and returns our signed receipt.
    pub async fn deliver(self: &Arc<Self>, caller: &str, req: DeliverRequest) -> Result<Envelope, NodeError> {
        let env = req.envelope.ok_or(NodeError::MissingField("envelope"))?;
        let mut outcomes = self.deliver_batch(caller, vec![env], req.sender_checkpoint, None).await;
        outcomes.pop().unwrap_or(Err(NodeError::MissingField("envelope")))
    }

    /// Handles several envelopes from `caller` at once, each exactly as
    /// [`Node::deliver`] would, with one outcome per envelope in order. The
    /// messages are logged together, so a busy peer costs less per message.
    /// `proof`, if the caller sent one, proves its checkpoint extends the one
    /// we witnessed last (see [`crate::witness::Witness::carried`]).
    pub async fn deliver_batch(
        self: &Arc<Self>,
        caller: &str,
        envelopes: Vec<Envelope>,
        sender_checkpoint: Option<SignedCheckpoint>,
        proof: Option<ConsistencyProof>,
    ) -> Vec<Result<Envelope, NodeError>> {
        self.deliver_from(caller, None, envelopes, sender_checkpoint, proof.as_ref())
            .await
    }

    /// Handles envelopes of `sender` that the relay `relay` (the TLS
    /// caller) carried, each checked exactly as if `sender` had delivered
    /// it, and logged with the relay that carried it. The relay must be one
    /// the agreement lets relay.
    pub async fn deliver_relayed(
        self: &Arc<Self>,
        relay: &str,
        sender: &str,
        envelopes: Vec<Envelope>,
    ) -> Result<Vec<Result<Envelope, NodeError>>, NodeError> {
        let relays = self.in_force().agreement().relays(relay);
        if !relays {
            return Err(NodeError::NotARelay(relay.to_owned()));
        }
        if sender == relay || sender == self.party || self.in_force().agreement().party(sender).is_none() {
            return Err(NodeError::BadRelaySender(sender.to_owned()));
        }
        Ok(self.deliver_from(sender, Some(relay), envelopes, None, None).await)
    }

    /// Checks and logs envelopes of `from`, delivered by it or carried by `via`.
    async fn deliver_from(
        self: &Arc<Self>,
        caller: &str,
        via: Option<&str>,
        envelopes: Vec<Envelope>,
        sender_checkpoint: Option<SignedCheckpoint>,
        proof: Option<&ConsistencyProof>,
    ) -> Vec<Result<Envelope, NodeError>> {
        // Checked and logged under one version of the agreement: an adoption waits for us.
        let _version = self.adopting.read().await;
        // The checks, signatures above all, run off the async workers within the caller's share
        // (a relay's, for what it carries).
        let n = envelopes.len();
        let (node, from) = (self.clone(), caller.to_owned());
        let checked = self
            .cpu
            .run(via.unwrap_or(caller), move || -> Vec<Result<Admitted, NodeError>> {
                // The reads of the checks run here, on this thread, on PostgreSQL too.
                crate::db::blocking(|| envelopes.into_iter().map(|env| node.admit(&from, env)).collect())
            })
            .await;
        let mut admitted = checked.unwrap_or_else(|e| {
            (0..n)
                .map(|_| Err(NodeError::Internal(format!("checking a delivery failed: {e}"))))
                .collect()
        });
        if let Some(note) = sender_checkpoint.map(|c| c.note) {
            let first_key = admitted.iter().find_map(|a| a.as_ref().ok()).map(|a| a.key.clone());
            if let Some(key) = first_key {
                match self.witness.verify(caller, &note, &key) {
                    Ok(cp) => {
                        if let Some(witnessing) = self.witness.carried(caller, cp, proof) {
                            self.tasks.spawn(witnessing);
                        }
                    }
                    Err(e) => {
                        for a in admitted.iter_mut().filter(|a| a.is_ok()) {
                            *a = Err(NodeError::SenderCheckpoint(e.to_string()));
                        }
                    }
                }
            }
        }
        // The admitted are recorded concurrently, so the log writer takes them in
        // one batch; a refusal is answered as it stands, without a task of its own.
        let mut outcomes: Vec<Option<Result<Envelope, NodeError>>> = Vec::with_capacity(n);
        let mut recording = Vec::new();
        for a in admitted {
            match a {
                Ok(a) => {
                    let (node, caller, via) = (self.clone(), caller.to_owned(), via.map(str::to_owned));
                    recording.push(Box::pin(async move {
                        node.record_received(&caller, via.as_deref(), a).await
                    }));
                    outcomes.push(None);
                }
                Err(e) => outcomes.push(Some(Err(e))),
            }
        }
        let mut recorded = join_in_order(recording, |e| {
            Err(NodeError::Internal(format!("delivery task failed: {e}")))
        })
        .await
        .into_iter();
        outcomes
            .into_iter()
            .map(|o| {
                o.or_else(|| recorded.next())
                    .unwrap_or_else(|| Err(NodeError::Internal("a delivery went unrecorded".into())))
            })
            .collect()
    }

    /// Checks one delivered envelope, in the agreed order; the sender's
    /// checkpoint is checked after.
    fn admit(&self, caller: &str, env: Envelope) -> Result<Admitted, NodeError> {
        let sealed = env.payload_type == crate::envelope::SEALED_TYPE;
        if !sealed && Kind::of_payload_type(&env.payload_type).is_none() {
            return Err(NodeError::NotDeliverable(env.payload_type.clone()));
        }
        let in_force = self.in_force();
        let (agreement, keyring) = (in_force.agreement(), &in_force.keyring);
        self.check_signatures(caller, &env, keyring)?;
        let now = self.clock.now();
        let started = std::time::Instant::now();
        let verified = envelope::verify(&env, &env.payload_type, keyring, now);
        self.metrics.signature_verify.observe(started.elapsed().as_secs_f64());
        let signer = verified.map_err(|source| NodeError::BadSignature {
            caller: caller.to_owned(),
            source,
        })?;
        if signer.party != caller {
            return Err(NodeError::SignerIsNotCaller {
                signer: signer.party.clone(),
                caller: caller.to_owned(),
            });
        }
        // Opened (if sealed) and decoded once; the envelope keeps the bytes exactly as signed.
        let opened = self.opened(&env)?;
        let kind = Kind::of_payload_type(&opened.payload_type)
            .filter(|k| !sealed || matches!(k, Kind::Notice | Kind::Response | Kind::Roster))
            .ok_or_else(|| NodeError::NotDeliverable(opened.payload_type.clone()))?;
        let message = Message::decode(kind, &opened.payload)?;
        if message.from() != caller {
            return Err(NodeError::FromIsNotCaller {
                from: message.from().to_owned(),
                caller: caller.to_owned(),
            });
        }
        // An amendment may also go to the parties of the version it proposes; that is checked with it.
        let record = match &message {
            Message::Amendment(a) => self.check_amendment(a, caller)?.map(state::Record::Amendment),
            // A resend of a roster already logged (its receipt was lost on the way) gets the
            // original receipt below; its version was checked when it first came.
            Message::Roster(r) if self.read(|c| state::message(c, &r.id))?.is_some() => None,
            Message::Roster(r) => Some(state::Record::Roster(self.check_roster_update(r, caller)?)),
            _ => None,
        };
        let amendment = matches!(message, Message::Amendment(_));
        if let Some(p) = message.to().iter().find(|p| !amendment && agreement.party(p).is_none()) {
            return Err(NodeError::UnknownRecipient(p.clone()));
        }
        if !message.to().contains(&self.party) {
            return Err(NodeError::NotForUs {
                id: message.id().to_owned(),
                to: message.to().to_vec(),
                us: self.party.clone(),
            });
        }
        let created = message
            .created_at()
            .and_then(clock::from_proto)
            .ok_or(NodeError::NoCreatedAt)?;
        let skew = agreement.norms.clock_skew;
        if created > now + skew {
            return Err(NodeError::FromTheFuture {
                at: clock::rfc3339(created),
                skew: clock::format_duration(skew),
            });
        }
        let max = agreement.norms.max_notice_bytes;
        if env.payload.len() as u64 > max {
            return Err(NodeError::PayloadTooLarge {
                size: env.payload.len(),
                max,
            });
        }
        let sha = Sha256::digest(&env.payload).to_vec();
        message.validate(&agreement.norms)?;
        Ok(Admitted {
            message,
            env,
            sha,
            key: signer.key.clone(),
            record,
        })
    }

    /// Bounds what a delivered envelope's signatures may cost before any is
    /// verified: at most one per key the caller has in the agreement, each by
    /// one of those keys and 64 bytes long. A lone signature by an unknown
    /// key is left to the verification, which names it.
    pub(crate) fn check_signatures(&self, caller: &str, env: &Envelope, keyring: &Keyring) -> Result<(), NodeError> {
        let own = keyring.keys().filter(|k| k.party == caller).count().max(1);
        let sigs = &env.signatures;
        if sigs.len() > own {
            return Err(NodeError::Signatures(format!(
                "{} signatures, but {caller} has {own} key(s) in the agreement and each signs at most once",
                sigs.len()
            )));
        }
        for (i, s) in sigs.iter().enumerate() {
            if sigs[..i].iter().any(|other| other.keyid == s.keyid) {
                return Err(NodeError::Signatures(format!("key {} signs twice", s.keyid)));
            }
            if s.sig.len() != 64 {
                return Err(NodeError::Signatures(format!(
                    "the signature by key {} is {} bytes, not 64",
                    s.keyid,
                    s.sig.len()
                )));
            }
            match keyring.get(&s.keyid) {
                Some(k) if k.party == caller => {}
                Some(k) => {
                    return Err(NodeError::SignerIsNotCaller {
                        signer: k.party.clone(),
                        caller: caller.to_owned(),
                    });
                }
                None if sigs.len() > 1 => {
                    return Err(NodeError::Signatures(format!(
                        "key {} is not a key of the agreement; signatures by other keys are refused, not logged",
                        s.keyid
                    )));
                }
                None => {}
            }
        }
        Ok(())
    }
}
