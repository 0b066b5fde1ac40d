//! The outbound path: a notice, response or communication check is signed,
//! then one log transaction records it, queues it for every recipient and
//! starts its clocks; the delivery worker takes it from there.

use std::sync::Arc;

use prost::Message as _;
use sha2::{Digest, Sha256};

use super::actor::{Actor, Answer, Sent};
use super::{Node, NodeError};
use crate::clock;
use crate::envelope::{self, NOTICE_TYPE, RESPONSE_TYPE};
use crate::log::{LogError, StateError, entry};
use crate::message::{self, Kind};
use crate::proto::log_entry::Body;
use crate::proto::{Deadline, Notice, NoticeKind, OperatorAction, ReasonCode, Response, ResponseStatus};
use crate::state::{self, Direction, StoredMessage};

/// A clock a message starts: `party` owes `kind` by `due_ms`, for the
/// message itself or, if named, another (the notice a promise is about).
pub(super) struct Owed {
    pub message_id: Option<String>,
    pub party: String,
    pub kind: Deadline,
    pub due_ms: i64,
}

/// A clock a message stops: `party` owed `kind` for `message_id`.
pub(super) struct Met {
    pub message_id: String,
    pub party: String,
    pub kind: Deadline,
}

/// A message this node signed and is about to log and queue.
pub(super) struct Outgoing {
    pub kind: Kind,
    pub id: String,
    pub thread: String,
    /// The payload type and the payload, signed by `send` with our key then in force.
    pub payload: (&'static str, Vec<u8>),
    pub to: Vec<String>,
    pub owed: Vec<Owed>,
    pub meets: Vec<Met>,
    /// What the message adds besides itself (an amendment step, a roster).
    pub record: Option<state::Record>,
    /// Exercise traffic, left out of compliance figures.
    pub exercise: bool,
    /// Of a response: the TLP of the notice it answers, which its log
    /// entry carries (a response has no label of its own).
    pub answers_tlp: Option<crate::proto::Tlp>,
}

/// How often a node tries to answer a peer's automatic communication check
/// (about ten minutes on the default backoff).
const CHECK_ANSWER_ATTEMPTS: u32 = 24;

/// The node's own answer to a peer's automatic communication check.
pub(super) const CHECK_ANSWER: Answer<'static> = Answer {
    status: ResponseStatus::Acknowledged,
    reason: ReasonCode::Unspecified,
    text: "communication check answered",
    promised_by: None,
};

/// An outgoing message signed and ready to log: the rows its entries'
/// transaction writes and the deliveries that follow the commit. `send`
/// logs one alone; a received communication check logs its automatic answer
/// in its own transaction.
pub(super) struct Signed {
    stored: Arc<StoredMessage>,
    to: Vec<String>,
    /// The clocks it starts, the recipients' receipts first.
    owed: Vec<Owed>,
    meets: Vec<Met>,
    record: Option<state::Record>,
}

impl Signed {
    /// Writes its rows, its first entry at `index`: the message, queued for
    /// every recipient, and the clocks it starts and stops.
    pub(super) fn apply(&self, c: &crate::db::Connection, index: u64) -> Result<(), StateError> {
        let row = &self.stored;
        state::insert_message(c, row, index)?;
        for party in &self.to {
            state::enqueue(c, &row.id, party, row.created_ms)?;
        }
        if let Some(record) = &self.record {
            state::record(c, record, index)?;
        }
        for o in &self.owed {
            let message_id = o.message_id.as_deref().unwrap_or(&row.id);
            state::start_deadline(c, message_id, &o.party, o.kind, o.due_ms)?;
        }
        for m in &self.meets {
            state::meet_deadline(c, &m.message_id, &m.party, m.kind)?;
        }
        Ok(())
    }
}

impl Node {
    /// Logs a signed message, queues it for its recipients and starts its
    /// clocks, in one transaction: a receipt is due from every recipient that
    /// is a party of the agreement in force (a party an amendment would add
    /// gets its copy once it runs), plus the message's own clocks.
    pub(super) async fn send(&self, out: Outgoing, actor: Actor<'_>) -> Result<Sent, NodeError> {
        // Signed and logged under one version of the agreement: an adoption waits for us.
        let _version = self.adopting.read().await;
        let id = out.id.clone();
        let (entries, signed) = self.sign_outgoing(out, actor)?;
        let signed = Arc::new(signed);
        let rows = signed.clone();
        let change = Box::new(move |c: &crate::db::Connection, index: u64| rows.apply(c, index));
        let done = match self.log.append_with(entries, change, false).await {
            Err(crate::log::LogError::Refused(StateError::Duplicate(_))) => return Err(NodeError::IdTaken(id)),
            other => other?,
        };
        tracing::info!(%id, index = done.first_index, "signed, logged and queued");
        self.queue(&signed);
        Ok(Sent {
            id,
            log_index: done.first_index,
        })
    }

    /// Seals (above TLP:CLEAR) and signs `out` with our key in force, and
    /// makes its log entries; the caller holds `adopting` until it is logged.
    pub(super) fn sign_outgoing(
        &self,
        out: Outgoing,
        actor: Actor<'_>,
    ) -> Result<(Vec<entry::Entry>, Signed), NodeError> {
        // What its log entries say of it, read from the body before it is sealed.
        let meta = message::meta::of_payload(out.payload.0, &out.payload.1, out.answers_tlp);
        let (payload_type, payload) = match out.kind {
            Kind::Notice | Kind::Response | Kind::Roster => {
                self.sealed_payload(out.payload.0, out.payload.1, meta.clone(), &out.to)?
            }
            // The agreement is what every verifier checks keys against: it stays readable.
            Kind::Amendment => out.payload,
        };
        let envelope = envelope::sign(payload_type, payload, &self.key()?).map_err(LogError::signing)?;
        let now = self.clock.now_ms();
        let in_force = self.in_force();
        let receipt_due = now + in_force.agreement().norms.receipt_within.as_millis() as i64;
        let receipts = out
            .to
            .iter()
            .filter(|p| in_force.agreement().party(p).is_some())
            .map(|p| Owed {
                message_id: None,
                party: p.clone(),
                kind: Deadline::Receipt,
                due_ms: receipt_due,
            });
        let owed = receipts.chain(out.owed).collect();
        let mut entries = vec![entry::sent(self.clock.now(), &envelope, meta, out.to.clone())];
        // What an operator does is logged under the name its certificate maps to.
        if let Actor::Operator(operator) = actor {
            entries.push(entry::encode(
                self.clock.now(),
                Body::OperatorAction(OperatorAction {
                    operator: operator.to_owned(),
                    action: format!("send {}", out.kind.as_str()),
                    detail: format!("{} to {}", out.id, out.to.join(", ")),
                }),
            ));
        }
        let stored = Arc::new(StoredMessage {
            id: out.id,
            kind: out.kind,
            direction: Direction::Sent,
            sender: self.party.clone(),
            thread: out.thread,
            payload_sha256: Sha256::digest(&envelope.payload).to_vec(),
            envelope,
            log_index: 0,
            created_ms: now,
            exercise: out.exercise,
        });
        let signed = Signed {
            stored,
            to: out.to,
            owed,
            meets: out.meets,
            record: out.record,
        };
        Ok((entries, signed))
    }

    /// Hands a logged message to the delivery worker, once per recipient.
    pub(super) fn queue(&self, signed: &Signed) {
        for party in &signed.to {
            self.deliveries.push(state::Pending {
                message_id: signed.stored.id.clone(),
                party: party.clone(),
                attempts: 0,
                next_attempt_ms: signed.stored.created_ms,
                last_error: None,
                message: Some(signed.stored.clone()),
            });
        }
    }

    /// The peer an operator named, as the agreement spells it: `chl` is CHL
    /// where no other peer differs from it only in case. A party that left
    /// is named with the version that removed it; any other, with the peers.
    fn peer_named(&self, in_force: &crate::in_force::InForce, name: &str) -> Result<String, NodeError> {
        if in_force.peers.contains(name) {
            return Ok(name.to_owned());
        }
        let mut same = in_force.peers.ids().filter(|p| p.eq_ignore_ascii_case(name));
        if let (Some(p), None) = (same.next(), same.next()) {
            return Ok(p.clone());
        }
        let mut peers: Vec<&str> = in_force.peers.ids().map(String::as_str).collect();
        peers.sort_unstable();
        let (party, peers) = (name.to_owned(), peers.join(", "));
        // The newest version adopted here that still names the party: the one after removed it.
        let removed_by = self.read(|c| {
            for version in (1..in_force.version()).rev() {
                let Some(adopted) = state::adopted_version(c, version)? else {
                    break;
                };
                let named = crate::agreement::SignedAgreement::parse(&adopted.signed_note)
                    .is_ok_and(|a| a.agreement.parties.iter().any(|p| p.id == name));
                if named {
                    return Ok(Some(version + 1));
                }
            }
            Ok(None)
        })?;
        Err(match removed_by {
            Some(version) => NodeError::RemovedRecipient { party, version, peers },
            None => NodeError::NoSuchRecipient { party, peers },
        })
    }

    /// Signs, logs and queues a notice by `actor`, its author; fills id,
    /// from and created_at. A notice sent again under its id with the same
    /// content gets the first outcome.
    pub async fn send_notice(&self, mut notice: Notice, actor: Actor<'_>) -> Result<Sent, NodeError> {
        notice.from = self.party.clone();
        notice.author = actor.name().to_owned();
        if notice.id.is_empty() {
            notice.id = message::new_id();
        } else if let Some(first) = self.message(&notice.id).await? {
            return self.resent(notice, first);
        }
        notice.created_at = Some(clock::to_proto(self.clock.now()));
        let in_force = self.in_force();
        let norms = &in_force.agreement().norms;
        message::validate_notice(&notice, norms)?;
        notice.to = notice
            .to
            .iter()
            .map(|p| self.peer_named(&in_force, p))
            .collect::<Result<_, _>>()?;
        // A notice continuing one we hold keeps its TLP: no weaker, and to nobody it may not reach.
        if let Some(original) = self.held_notice(&notice.in_reply_to).await? {
            message::check_reply(&notice, &original)?;
        }
        let now = self.clock.now_ms();
        // The clocks each recipient owes: an acknowledgement (if the agreement
        // sets one) and a response to a notification or request, an answer to a
        // communication check.
        let severity = notice.severity();
        let clocks: Vec<(Deadline, std::time::Duration)> = match notice.kind() {
            NoticeKind::Notification | NoticeKind::RequestForAssistance => norms
                .acknowledge_within(severity)
                .map(|within| (Deadline::Acknowledge, within))
                .into_iter()
                .chain([(Deadline::Response, norms.respond_within(severity))])
                .collect(),
            NoticeKind::CommCheck => vec![(Deadline::CommCheckAnswer, norms.comm_check_answer_within)],
            _ => vec![],
        };
        let owed = notice
            .to
            .iter()
            .flat_map(|p| {
                clocks.iter().map(move |(kind, within)| Owed {
                    message_id: None,
                    party: p.clone(),
                    kind: *kind,
                    due_ms: now + within.as_millis() as i64,
                })
            })
            .collect();
        let thread = message::thread_of(&notice).to_owned();
        let id = notice.id.clone();
        let exercise = notice.exercise != 0;
        let payload = (NOTICE_TYPE, notice.encode_to_vec());
        self.send(
            Outgoing {
                kind: Kind::Notice,
                id,
                thread,
                payload,
                to: notice.to,
                owed,
                meets: vec![],
                record: None,
                exercise,
                answers_tlp: None,
            },
            actor,
        )
        .await
    }

    /// The outcome of a notice sent again under an id we hold: the first
    /// outcome if it is the same notice, ALREADY_EXISTS if it is another.
    fn resent(&self, notice: Notice, first: StoredMessage) -> Result<Sent, NodeError> {
        let held = (first.direction == Direction::Sent)
            .then(|| first.notice(self.opener()))
            .flatten();
        match held {
            Some(held)
                if Notice {
                    created_at: held.created_at,
                    ..notice
                } == held =>
            {
                Ok(Sent {
                    id: first.id,
                    log_index: first.log_index,
                })
            }
            _ => Err(NodeError::IdTaken(first.id)),
        }
    }

    /// Signs, logs and queues a response to a notice we received; it is the
    /// same exercise as the notice, if that is one. It stops the clocks its
    /// status stops (an acknowledgement only the acknowledgement clock), and
    /// a promise starts one of its own.
    pub async fn respond(&self, notice_id: &str, answer: Answer<'_>, actor: Actor<'_>) -> Result<Sent, NodeError> {
        let orig = self
            .message(notice_id)
            .await?
            .filter(|m| m.kind == Kind::Notice)
            .ok_or_else(|| NodeError::NoSuchNotice(notice_id.to_owned()))?;
        if orig.direction != Direction::Received {
            return Err(NodeError::OwnNotice(notice_id.to_owned()));
        }
        let original = orig.notice(self.opener());
        let out = self.response_to(notice_id, &orig.sender, original.as_ref(), answer, actor)?;
        self.send(out, actor).await
    }

    /// The response `answer` to notice `notice_id` that `sender` sent us
    /// (`original`, if we can read it), ready to be signed.
    pub(super) fn response_to(
        &self,
        notice_id: &str,
        sender: &str,
        original: Option<&Notice>,
        answer: Answer<'_>,
        actor: Actor<'_>,
    ) -> Result<Outgoing, NodeError> {
        // Answering a human communication check is what its clock waits for.
        let human_check = original.is_some_and(|n| n.human && n.kind() == NoticeKind::CommCheck);
        let response = Response {
            id: message::new_id(),
            notice_id: notice_id.to_owned(),
            from: self.party.clone(),
            to: vec![sender.to_owned()],
            created_at: Some(clock::to_proto(self.clock.now())),
            status: answer.status as i32,
            text: answer.text.to_owned(),
            author: actor.name().to_owned(),
            exercise: original.map(|n| n.exercise).unwrap_or_default(),
            reason: answer.reason as i32,
            promised_by: answer.promised_by.map(clock::to_proto),
        };
        message::validate_response(&response, &self.in_force().agreement().norms)?;
        let payload = (RESPONSE_TYPE, response.encode_to_vec());
        Ok(Outgoing {
            kind: Kind::Response,
            id: response.id,
            thread: notice_id.to_owned(),
            payload,
            to: response.to,
            owed: answer
                .promised_by
                .map(|by| Owed {
                    message_id: Some(notice_id.to_owned()),
                    party: self.party.clone(),
                    kind: Deadline::Promise,
                    due_ms: clock::to_ms(by),
                })
                .into_iter()
                .collect(),
            meets: message::clocks_met(answer.status)
                .iter()
                .chain(human_check.then_some(&Deadline::CommCheckAnswer))
                .map(|kind| Met {
                    message_id: notice_id.to_owned(),
                    party: self.party.clone(),
                    kind: *kind,
                })
                .collect(),
            record: None,
            exercise: response.exercise != 0,
            answers_tlp: original.map(Notice::tlp),
        })
    }

    /// Answers a peer's automatic communication check that could not be
    /// answered in the transaction that logged it. A failure (a busy
    /// store on a loaded machine) is retried on the delivery backoff, up to
    /// `CHECK_ANSWER_ATTEMPTS` times or until the node stops: an unanswered
    /// check is a missed deadline for this party, and nothing else would answer it.
    pub(super) async fn answer_check(&self, id: &str) {
        for attempt in 0..CHECK_ANSWER_ATTEMPTS {
            match self.respond(id, CHECK_ANSWER, Actor::Node).await {
                Ok(_) => return,
                Err(NodeError::Log(LogError::Closed)) => return,
                Err(e) => {
                    tracing::warn!(notice = %id, attempt, error = %e, "could not answer communication check; retrying")
                }
            }
            let delay = self.retry_delay(attempt);
            tokio::select! {
                _ = self.tasks.stopping() => return,
                _ = self.clock.sleep(delay) => {}
            }
        }
        tracing::error!(notice = %id, "gave up answering a communication check");
    }

    /// Sends a communication check to one peer, or to every peer.
    /// A human check must be acknowledged by a person; the peer's node does not answer it.
    pub async fn comm_check(
        &self,
        party: Option<&str>,
        human: bool,
        actor: Actor<'_>,
    ) -> Result<Vec<String>, NodeError> {
        let in_force = self.in_force();
        let targets: Vec<String> = match party {
            Some(p) => vec![self.peer_named(&in_force, p)?],
            None => in_force.peers.ids().cloned().collect(),
        };
        // All at once, so the log commits them in one batch: a node with many
        // peers checks them all in about the time of one.
        let checks = targets.into_iter().map(|p| {
            let notice = Notice {
                to: vec![p.clone()],
                kind: NoticeKind::CommCheck as i32,
                severity: crate::proto::Severity::Low as i32,
                category: crate::proto::Category::Test as i32,
                tlp: crate::proto::Tlp::Clear as i32,
                title: match human {
                    true => format!("human communication check {} -> {p}: please acknowledge", self.party),
                    false => format!("communication check {} -> {p}", self.party),
                },
                human,
                ..Default::default()
            };
            self.send_notice(notice, actor)
        });
        futures_util::future::join_all(checks)
            .await
            .into_iter()
            .map(|sent| sent.map(|s| s.id))
            .collect()
    }
}
