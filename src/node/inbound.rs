//! The inbound path: a peer delivers envelopes; each is checked in the
//! agreed order, logged durably with the state it changes in one
//! transaction, and answered with our signed receipt.

use std::sync::Arc;

use prost::Message as _;
use sha2::{Digest, Sha256};

use super::{Node, NodeError, join_in_order};
use crate::clock;
use crate::envelope::{self, RECEIPT_TYPE};
use crate::keys::{Keyring, VerifierKey};
use crate::log::tree::proof_to_wire;
use crate::log::{LogError, StateError, entry};
use crate::message::{self, Kind, Message};
use crate::norm_event;
use crate::proto::{
    Deadline, DeliverRequest, Envelope, LogEntry, NormEventKind, NoticeKind, Receipt, SignedCheckpoint, event,
};
use crate::state::{self, Direction, StoredMessage};

/// A delivered envelope that passed every check, ready to be logged.
struct Admitted {
    message: Message,
    env: Envelope,
    sha: Vec<u8>,
    key: VerifierKey,
    /// What the message adds besides itself (an amendment step, a roster).
    record: Option<state::Record>,
}

impl Node {
    /// Handles a delivery from `caller` (its TLS identity): checks in the
    /// agreed order, logs the message durably and returns our signed receipt.
    pub async fn deliver(self: &Arc<Self>, caller: &str, req: DeliverRequest) -> Result<Envelope, NodeError> {
        let env = req.envelope.ok_or(NodeError::MissingField("envelope"))?;
        let mut outcomes = self.deliver_batch(caller, vec![env], req.sender_checkpoint).await;
        outcomes.pop().unwrap_or(Err(NodeError::MissingField("envelope")))
    }

    /// Handles several envelopes from `caller` at once, each exactly as
    /// [`Node::deliver`] would, with one outcome per envelope in order. The
    /// messages are logged together, so a busy peer costs less per message.
    pub async fn deliver_batch(
        self: &Arc<Self>,
        caller: &str,
        envelopes: Vec<Envelope>,
        sender_checkpoint: Option<SignedCheckpoint>,
    ) -> Vec<Result<Envelope, NodeError>> {
        // Checked and logged under one version of the agreement: an adoption waits for us.
        let _version = self.adopting.read().await;
        // The checks, signatures above all, run off the async workers within the caller's share.
        let n = envelopes.len();
        let (node, from) = (self.clone(), caller.to_owned());
        let checked = self
            .cpu
            .run(caller, move || -> Vec<Result<Admitted, NodeError>> {
                envelopes.into_iter().map(|env| node.admit(&from, env)).collect()
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
                        let (witness, party) = (self.witness.clone(), caller.to_owned());
                        self.tasks.spawn(async move { witness.witness(&party, cp).await });
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
                    let (node, caller) = (self.clone(), caller.to_owned());
                    recording.push(async move { node.record_received(&caller, a).await });
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

    /// The receipt we gave for a message delivered before: the same message
    /// again gets it, another message under the same id is refused.
    fn resend_receipt(&self, existing: &StoredMessage, caller: &str, sha: &[u8]) -> Result<Envelope, NodeError> {
        if existing.payload_sha256 != sha || existing.sender != caller {
            return Err(NodeError::IdReused(existing.id.clone()));
        }
        let head = self.log.head();
        let (_, _, proof) = self.log.reader().inclusion_proof(existing.log_index, head.size)?;
        let data = self
            .log
            .reader()
            .entries(existing.log_index, existing.log_index + 1, 1)?
            .pop()
            .map(|(_, e)| e.data)
            .unwrap_or_default();
        self.sign_receipt(existing, caller, &data, head.note.to_vec(), proof)
    }

    fn sign_receipt(
        &self,
        m: &StoredMessage,
        to: &str,
        entry_bytes: &[u8],
        note: Vec<u8>,
        proof: Vec<tlog_tiles::Hash>,
    ) -> Result<Envelope, NodeError> {
        let received_at = LogEntry::decode(entry_bytes).ok().and_then(|e| e.logged_at);
        let receipt = Receipt {
            message_id: m.id.clone(),
            payload_sha256: m.payload_sha256.clone(),
            from: self.party.clone(),
            to: to.to_owned(),
            received_at,
            log_index: m.log_index,
            checkpoint: Some(SignedCheckpoint { note }),
            inclusion_proof: proof_to_wire(&proof),
            log_entry: entry_bytes.to_vec(),
        };
        Ok(envelope::sign(RECEIPT_TYPE, receipt.encode_to_vec(), &self.key()?))
    }

    /// Logs an admitted message from `from` with the clocks it starts and
    /// stops, and signs our receipt; a communication check is answered.
    async fn record_received(self: &Arc<Self>, from: &str, a: Admitted) -> Result<Envelope, NodeError> {
        let now = self.clock.now_ms();
        let in_force = self.in_force();
        let norms = &in_force.agreement().norms;
        // The message's own entry comes first; it is made once the TLP its
        // metadata carries is known (a response's is its notice's).
        let mut entries = vec![entry::Entry::default()];
        let mut answers_tlp = None;
        // Clocks this message starts: (message, who owes, what, due ms).
        let mut owed: Vec<(String, String, Deadline, i64)> = Vec::new();
        let mut meets = Vec::new();
        let mut comm_check_ok = None;
        // An escalation of a step we missed, logged as a norm event on our side too.
        let mut escalation = None;
        // The round trip of an answer to our human check, ms.
        let mut human_answer = None;
        match &a.message {
            Message::Notice(n) => {
                // The receiver checks TLP along the thread too, where it holds the notice continued.
                if let Some(original) = self.held_notice(&n.in_reply_to).await? {
                    message::check_reply(n, &original)?;
                }
                if n.escalation_level > 0 {
                    let event = norm_event::new(
                        NormEventKind::Escalated,
                        &self.party,
                        &n.in_reply_to,
                        Deadline::Unspecified,
                        None,
                        self.clock.now(),
                        format!(
                            "{from} escalated notice {} to {} (level {})",
                            n.in_reply_to,
                            match n.attention.as_str() {
                                "policy" => super::escalation::policy_contact(self, &self.party),
                                "" => "our duty contact".to_owned(),
                                other => format!("our {} contact", other.escape_debug()),
                            },
                            n.escalation_level
                        ),
                    );
                    entries.push(norm_event::entry(&event));
                    escalation = Some(event);
                }
                let due = |within: std::time::Duration| now + within.as_millis() as i64;
                // A human check is ours to answer, by a person, within the agreed time.
                if n.kind() == NoticeKind::CommCheck && n.human {
                    let due = due(norms.comm_check_answer_within);
                    owed.push((n.id.clone(), self.party.clone(), Deadline::CommCheckAnswer, due));
                }
                if matches!(n.kind(), NoticeKind::Notification | NoticeKind::RequestForAssistance) {
                    let me = self.party.clone();
                    owed.push((
                        n.id.clone(),
                        me.clone(),
                        Deadline::Response,
                        due(norms.respond_within(n.severity())),
                    ));
                    if let Some(within) = norms.acknowledge_within(n.severity()) {
                        owed.push((n.id.clone(), me, Deadline::Acknowledge, due(within)));
                    }
                }
            }
            Message::Response(r) => {
                meets.extend_from_slice(message::clocks_met(r.status()));
                if let Some(by) = r.promised_by.as_ref().and_then(clock::from_proto) {
                    let due = clock::to_ms(by);
                    owed.push((r.notice_id.clone(), from.to_owned(), Deadline::Promise, due));
                }
                let ours_row = self
                    .message(&r.notice_id)
                    .await?
                    .filter(|m| m.direction == Direction::Sent);
                let sent_ms = ours_row.as_ref().map_or(now, |m| m.created_ms);
                let ours = ours_row
                    .and_then(|m| m.notice(self.opener()))
                    .ok_or_else(|| NodeError::UnknownNotice {
                        response: r.id.clone(),
                        notice: r.notice_id.clone(),
                    })?;
                message::check_exercise(&r.id, r.exercise, &ours)?;
                answers_tlp = Some(ours.tlp());
                // Only a party the notice went to may answer it (a communication check: only the party checked).
                if !ours.to.iter().any(|p| p == from) {
                    return Err(NodeError::NotARecipient {
                        party: from.to_owned(),
                        notice: r.notice_id.clone(),
                    });
                }
                if ours.kind() == NoticeKind::CommCheck {
                    meets.push(Deadline::CommCheckAnswer);
                    let round_trip = now - sent_ms;
                    let took = std::time::Duration::from_millis(round_trip.max(0) as u64);
                    self.metrics.comm_check_answered(from, ours.human, took);
                    let detail = match ours.human {
                        true => {
                            human_answer = Some(round_trip);
                            format!(
                                "{from} answered the human communication check in {}, by {}",
                                clock::format_duration(took),
                                r.author
                            )
                        }
                        false => format!("{from} answered the communication check"),
                    };
                    let event = norm_event::new(
                        NormEventKind::CommCheckOk,
                        from,
                        &r.notice_id,
                        Deadline::CommCheckAnswer,
                        None,
                        self.clock.now(),
                        detail,
                    );
                    entries.push(norm_event::entry(&event));
                    comm_check_ok = Some(event);
                }
            }
            Message::Amendment(_) | Message::Roster(_) => {}
        }
        let entry_bytes = entry::received(
            self.clock.now(),
            &a.env,
            message::meta::of_envelope(&a.env, answers_tlp),
            from,
        );
        entries[0] = entry_bytes.clone();
        let stored = StoredMessage {
            id: a.message.id().to_owned(),
            kind: a.message.kind(),
            direction: Direction::Received,
            sender: from.to_owned(),
            thread: a.message.thread(),
            payload_sha256: a.sha,
            envelope: a.env,
            log_index: 0,
            created_ms: now,
            exercise: a.message.exercise(),
        };
        let (sender, thread) = (from.to_owned(), stored.thread.clone());
        let check_event = comm_check_ok.clone();
        let escalation_event = escalation.clone();
        let record = a.record;
        let kept_roster = match &record {
            Some(state::Record::Roster(k)) => Some(k.clone()),
            _ => None,
        };
        let row = stored.clone();
        let change = Box::new(move |c: &crate::db::Connection, index: u64| {
            state::insert_message(c, &row, index)?;
            for (message_id, party, kind, due) in &owed {
                state::start_deadline(c, message_id, party, *kind, *due)?;
            }
            for kind in &meets {
                state::meet_deadline(c, &thread, &sender, *kind)?;
            }
            if let Some(ev) = &check_event {
                state::insert_norm_event(c, index + 1, ev)?;
                state::comm_check_ok(c, &sender, now)?;
                if let Some(round_trip) = human_answer {
                    state::human_check_answered(c, &thread, &sender, round_trip, now)?;
                }
            }
            if let Some(ev) = &escalation_event {
                state::insert_norm_event(c, index + 1, ev)?;
            }
            if let Some(record) = &record {
                state::record(c, record, index)?;
            }
            Ok(())
        });
        let done = match self.log.append_with(entries, change, true).await {
            Ok(done) => done,
            // The id is known: a resend of the same message gets its original receipt,
            // another message under the same id is refused.
            Err(LogError::Refused(StateError::Duplicate(_))) => {
                let existing = self
                    .message(&stored.id)
                    .await?
                    .ok_or_else(|| NodeError::IdReused(stored.id.clone()))?;
                return self.resend_receipt(&existing, from, &stored.payload_sha256);
            }
            Err(e) => return Err(e.into()),
        };
        let row = StoredMessage {
            log_index: done.first_index,
            ..stored
        };
        let receipt = self.sign_receipt(&row, from, &entry_bytes.data, done.checkpoint.to_vec(), done.proof)?;
        tracing::info!(id = %row.id, from, index = done.first_index, "received and logged");
        match a.message {
            Message::Notice(n) => {
                if n.kind() == NoticeKind::CommCheck && !n.human {
                    let (node, id) = (self.clone(), n.id.clone());
                    self.tasks.spawn(async move { node.answer_check(&id).await });
                }
                self.events.emit(event::Body::NoticeReceived(n));
            }
            Message::Response(r) => self.events.emit(event::Body::ResponseReceived(r)),
            Message::Roster(_) => {
                if let Some(kept) = &kept_roster {
                    self.took_roster(kept, done.first_index);
                }
            }
            Message::Amendment(a) => {
                // Another text under the version in force (checked in `check_amendment`).
                let claim = crate::proto::AgreementRef {
                    version: a.version,
                    text_sha256: a.text_sha256,
                };
                self.peer_holds(from, Some(&claim)).await;
                // Adopting logs more; the receipt does not wait for it.
                let node = self.clone();
                self.tasks.spawn(async move { node.adopt_ready().await });
            }
        }
        for ev in comm_check_ok.into_iter().chain(escalation) {
            self.events.emit(event::Body::NormEvent(ev));
        }
        Ok(receipt)
    }
}
