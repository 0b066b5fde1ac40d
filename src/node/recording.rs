//! Our side of a delivery once it passed every check: the message logged
//! durably with the clocks it starts and stops, in one transaction, and
//! answered with our signed receipt (the same receipt again for a message
//! delivered before). An automatic communication check is answered in the
//! same transaction: our signed answer is logged and queued with it.

use std::sync::Arc;

use prost::Message as _;

use super::{Actor, Node, NodeError};
use crate::clock;
use crate::envelope::{self, RECEIPT_TYPE};
use crate::keys::VerifierKey;
use crate::log::tree::proof_to_wire;
use crate::log::{LogError, StateError, entry};
use crate::message::{self, Message};
use crate::norm_event;
use crate::proto::{Deadline, Envelope, LogEntry, NormEventKind, NoticeKind, Receipt, SignedCheckpoint, event};
use crate::state::{self, Direction, StoredMessage};

/// A delivered envelope that passed every check, ready to be logged.
pub(super) struct Admitted {
    pub(super) message: Message,
    pub(super) env: Envelope,
    pub(super) sha: Vec<u8>,
    pub(super) key: VerifierKey,
    /// What the message adds besides itself (an amendment step, a roster).
    pub(super) record: Option<state::Record>,
}

impl Node {
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
        Ok(envelope::sign(RECEIPT_TYPE, receipt.encode_to_vec(), &self.key()?)
            .map_err(crate::log::LogError::signing)?)
    }

    /// Logs an admitted message from `from` with the clocks it starts and
    /// stops, and signs our receipt; an automatic communication check gets
    /// our answer logged and queued in the same transaction.
    pub(super) async fn record_received(
        self: &Arc<Self>,
        from: &str,
        via: Option<&str>,
        a: Admitted,
    ) -> Result<Envelope, NodeError> {
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
        // Our answer to an automatic communication check, logged with it.
        let mut answer = None;
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
                // An automatic check is answered in the transaction that logs it;
                // should signing fail, a task answers it once it is logged.
                if n.kind() == NoticeKind::CommCheck && !n.human {
                    answer = self
                        .response_to(&n.id, from, Some(n), super::outbound::CHECK_ANSWER, Actor::Node)
                        .and_then(|out| self.sign_outgoing(out, Actor::Node))
                        .inspect_err(|e| tracing::warn!(notice = %n.id, error = %e, "cannot sign the check's answer"))
                        .ok();
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
            via,
        );
        entries[0] = entry_bytes.clone();
        // The answer's entries come last: its first at `index + answer_at`.
        let answer_at = entries.len() as u64;
        let answer = answer.map(|(answer_entries, signed)| {
            entries.extend(answer_entries);
            Arc::new(signed)
        });
        let answered = answer.clone();
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
            if let Some(answer) = &answered {
                answer.apply(c, index + answer_at)?;
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
        tracing::info!(id = %row.id, from, index = done.first_index, answered = answer.is_some(), "received and logged");
        if let Some(answer) = &answer {
            self.queue(answer);
        }
        match a.message {
            Message::Notice(n) => {
                if n.kind() == NoticeKind::CommCheck && !n.human && answer.is_none() {
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
