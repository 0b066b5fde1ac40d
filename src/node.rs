//! A running node: its keys, agreement, log and peers, and the data path of
//! every message — validate, one log transaction (entries and state
//! together), reply — shared by the Federation and Operator services and the
//! background workers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, broadcast};
use tonic::transport::Channel;

use crate::agreement::{Agreement, SignedAgreement, TlsIdentity};
use crate::clock;
use crate::config::Config;
use crate::envelope::{self, NOTICE_TYPE, RECEIPT_TYPE, RESPONSE_TYPE};
use crate::keys::{IdentityKey, Keyring};
use crate::log::entry;
use crate::log::tree::{proof_from_wire, proof_to_wire};
use crate::log::{Log, LogError, checkpoint};
use crate::message::{self, MessageError};
use crate::proto::federation_client::FederationClient;
use crate::proto::log_entry::Body;
use crate::proto::{
    AgreementAdopted, Deadline, DeliverBatchRequest, DeliverRequest, Envelope, EnvelopeReceived, EnvelopeSent, Event,
    LogEntry, NormEvent, NormEventKind, Notice, NoticeKind, Receipt, Response, ResponseStatus, SignedCheckpoint,
    deliver_outcome, event,
};
use crate::state::{self, StoredMessage};
use crate::tls::{CertKey, Identifier};

/// A delivered envelope that passed every check, ready to be logged.
struct Admitted {
    kind: &'static str,
    id: String,
    thread: String,
    env: Envelope,
    sha: Vec<u8>,
    parsed: Result<Notice, Response>,
    key: crate::keys::VerifierKey,
}

/// Why a node operation failed; each variant maps to one gRPC status code.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The caller's identity or signature could not be established.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller is known but may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// The request breaks a message rule; the text names the field.
    #[error("{0}")]
    InvalidArgument(String),
    /// The message, notice or party does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The id is taken by a different message.
    #[error("{0}")]
    AlreadyExists(String),
    /// The request is well-formed but not allowed in the current state.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A limit was hit.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The log failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// Startup failed: configuration, agreement, keys or certificates.
    #[error("{0}")]
    Setup(String),
}

impl From<MessageError> for NodeError {
    fn from(e: MessageError) -> Self {
        match e {
            MessageError::TooLarge { .. } => NodeError::ResourceExhausted(e.to_string()),
            MessageError::TlpForbidsForward { .. } => NodeError::FailedPrecondition(e.to_string()),
            _ => NodeError::InvalidArgument(e.to_string()),
        }
    }
}

impl From<rusqlite::Error> for NodeError {
    fn from(e: rusqlite::Error) -> Self {
        NodeError::Log(LogError::Rejected(format!("database: {e}")))
    }
}

fn setup(what: impl std::fmt::Display) -> NodeError {
    NodeError::Setup(what.to_string())
}

/// A message this node signed and is about to log and queue.
struct Outgoing {
    kind: &'static str,
    id: String,
    thread: String,
    envelope: Envelope,
    to: Vec<String>,
    deadlines: Vec<(String, Deadline, i64)>,
    meets: Vec<(String, String, Deadline)>,
}

/// A node's shared state.
pub struct Node {
    /// Our party id.
    pub party: String,
    /// Our identity key.
    pub key: IdentityKey,
    /// The agreement in force.
    pub agreement: Agreement,
    keyring: Keyring,
    /// The audit log.
    pub log: Arc<Log>,
    /// Who is calling, from TLS certificates.
    pub identifier: Arc<Identifier>,
    /// Per-caller request limits.
    pub limits: crate::limits::Limits,
    events: broadcast::Sender<Event>,
    peers: HashMap<String, FederationClient<Channel>>,
    /// New deliveries for the delivery worker.
    outbox: tokio::sync::mpsc::UnboundedSender<state::Pending>,
    outbox_queue: std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<state::Pending>>>,
    /// First and longest retry delay.
    pub retry: (Duration, Duration),
    /// The checkpoint notes verified last from each peer.
    pub(crate) last_notes:
        std::sync::Mutex<HashMap<String, std::collections::VecDeque<checkpoint::VerifiedCheckpoint>>>,
    /// Checkpoints of each peer set aside while another is being checked.
    pub(crate) pending: std::sync::Mutex<HashMap<String, crate::witness::SetAside>>,
    /// The last checkpoint witnessed from each peer, held while one is checked.
    pub(crate) witnessing: HashMap<String, Mutex<Option<checkpoint::VerifiedCheckpoint>>>,
}

impl Node {
    /// Loads everything a node needs from its configuration, refusing an
    /// agreement not signed by its quorum, and opens the log.
    pub async fn open(config: &Config) -> Result<Arc<Self>, NodeError> {
        let key = IdentityKey::load(&config.identity_key).map_err(setup)?;
        let signed = SignedAgreement::load(&config.agreement).map_err(setup)?;
        signed
            .verify(clock::now())
            .map_err(|e| setup(format!("{}: {e}", config.agreement.display())))?;
        let agreement = signed.agreement.clone();
        let me = agreement.party(&config.party).ok_or_else(|| {
            setup(format!(
                "{}: party {} is not in the agreement",
                config.agreement.display(),
                config.party
            ))
        })?;
        if me.origin() != key.name() || !me.keys.iter().any(|k| &k.key == key.verifier()) {
            return Err(setup(format!(
                "{}: key {} is not party {}'s key in the agreement",
                config.identity_key.display(),
                key.verifier().key_id(),
                config.party
            )));
        }
        let identifier =
            Arc::new(Identifier::new(&agreement, config.local_fingerprints().map_err(setup)?).map_err(setup)?);
        let node_cert: CertKey = config.node_cert().map_err(setup)?;
        let mut peers = HashMap::new();
        for p in agreement.parties.iter().filter(|p| p.id != config.party) {
            let TlsIdentity::Ca(ca) = &p.tls else {
                return Err(setup(format!(
                    "party {}: hotline dials peers through their tls_ca; a pinned tls_cert_sha256 can only identify inbound calls",
                    p.id
                )));
            };
            let channel = crate::transport::channel(&p.endpoint, ca, &node_cert).map_err(setup)?;
            peers.insert(
                p.id.clone(),
                FederationClient::new(channel).max_decoding_message_size(64 << 20),
            );
        }
        let log = Arc::new(Log::open(&config.data, key.clone())?);
        let witnessing = peers.keys().map(|p| (p.clone(), Mutex::new(None))).collect();
        let (outbox_tx, outbox_rx) = tokio::sync::mpsc::unbounded_channel();
        let node = Arc::new(Self {
            party: config.party.clone(),
            keyring: agreement.keyring(),
            agreement,
            key,
            log,
            identifier,
            limits: crate::limits::Limits::new(config.limits),
            events: broadcast::channel(1024).0,
            peers,
            outbox: outbox_tx,
            outbox_queue: std::sync::Mutex::new(Some(outbox_rx)),
            retry: (config.retry_base, config.retry_max),
            witnessing,
            last_notes: Default::default(),
            pending: Default::default(),
        });
        node.adopt(&signed).await?;
        Ok(node)
    }

    /// Logs the agreement the first time this node runs on it.
    async fn adopt(&self, signed: &SignedAgreement) -> Result<(), NodeError> {
        let bytes = signed.to_bytes();
        let sha = Sha256::digest(&bytes).to_vec();
        let version = signed.agreement.version;
        let current = self.read(state::adopted)?;
        if current.as_ref().is_some_and(|(v, s)| *v == version && *s == sha) {
            return Ok(());
        }
        if let Some((v, _)) = current
            && v > version
        {
            return Err(setup(format!(
                "agreement version {version} is older than the adopted version {v}"
            )));
        }
        let e = entry::encode(Body::AgreementAdopted(AgreementAdopted {
            signed_note: bytes,
            version,
        }));
        self.log
            .append_with(
                vec![e],
                Box::new(move |c, i| state::adopt(c, version, &sha, i).map_err(|e| e.to_string())),
                false,
            )
            .await?;
        tracing::info!(version, "adopted agreement");
        Ok(())
    }

    /// A receiver of every operator-visible event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    pub(crate) fn emit(&self, body: event::Body) {
        let _ = self.events.send(Event {
            at: Some(clock::to_proto(clock::now())),
            body: Some(body),
        });
    }

    /// Hands a delivery to the delivery worker.
    pub fn queue_delivery(&self, p: state::Pending) {
        let _ = self.outbox.send(p);
    }

    /// The delivery worker's end of the queue; taken once.
    pub fn take_outbox_queue(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<state::Pending>> {
        self.outbox_queue.lock().ok().and_then(|mut q| q.take())
    }

    /// The Federation client for `party`.
    pub fn peer(&self, party: &str) -> Option<FederationClient<Channel>> {
        self.peers.get(party).cloned()
    }

    /// Runs `f` on a read connection, mapping SQL errors.
    pub fn read<T>(&self, f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>) -> Result<T, NodeError> {
        Ok(self
            .log
            .reader()
            .read(|c| f(c).map_err(|e| LogError::Rejected(format!("database: {e}"))))?)
    }

    /// Logs a signed message, queues it for its recipients and starts its
    /// clocks, in one transaction: a receipt is due from every recipient, plus
    /// the message's own `deadlines`.
    async fn send(&self, out: Outgoing) -> Result<u64, NodeError> {
        let now = clock::now_ms();
        let receipt_due = now + self.agreement.norms.receipt_within.as_millis() as i64;
        let e = entry::encode(Body::Sent(EnvelopeSent {
            envelope: Some(out.envelope.clone()),
            to: out.to.clone(),
        }));
        let stored = StoredMessage {
            id: out.id.clone(),
            kind: out.kind.to_owned(),
            direction: "sent".into(),
            sender: self.party.clone(),
            thread: out.thread,
            payload_sha256: Sha256::digest(&out.envelope.payload).to_vec(),
            envelope: out.envelope,
            log_index: 0,
            created_ms: now,
        };
        let id = out.id.clone();
        let queued = Arc::new(stored.clone());
        let (to, deadlines, meets) = (out.to, out.deadlines, out.meets);
        let queued_to = to.clone();
        let change = Box::new(move |c: &rusqlite::Connection, index: u64| {
            let id = &stored.id;
            state::insert_message(c, &stored, index).map_err(|e| format!("message id {id} is already taken ({e})"))?;
            for party in &to {
                state::enqueue(c, id, party, now).map_err(|e| e.to_string())?;
                state::start_deadline(c, id, party, Deadline::Receipt, receipt_due).map_err(|e| e.to_string())?;
            }
            for (party, kind, due) in &deadlines {
                state::start_deadline(c, id, party, *kind, *due).map_err(|e| e.to_string())?;
            }
            for (message_id, party, kind) in &meets {
                state::meet_deadline(c, message_id, party, *kind).map_err(|e| e.to_string())?;
            }
            Ok(())
        });
        let done = match self.log.append_with(vec![e], change, false).await {
            Err(LogError::Rejected(reason)) => return Err(NodeError::AlreadyExists(reason)),
            other => other?,
        };
        tracing::info!(id = %id, index = done.first_index, "signed, logged and queued");
        for party in queued_to {
            self.queue_delivery(state::Pending {
                message_id: id.clone(),
                party,
                attempts: 0,
                next_attempt_ms: now,
                last_error: None,
                message: Some(queued.clone()),
            });
        }
        Ok(done.first_index)
    }

    /// Signs, logs and queues a notice written by `author`; fills id, from and created_at.
    pub async fn send_notice(&self, mut notice: Notice, author: &str) -> Result<(String, u64), NodeError> {
        if notice.id.is_empty() {
            notice.id = message::new_id();
        }
        notice.from = self.party.clone();
        notice.created_at = Some(clock::to_proto(clock::now()));
        if notice.author.is_empty() {
            notice.author = author.to_owned();
        }
        message::validate_notice(&notice, &self.agreement.norms)?;
        for p in &notice.to {
            if !self.peers.contains_key(p) {
                return Err(NodeError::InvalidArgument(format!(
                    "field to: {p} is not a peer party of the agreement"
                )));
            }
        }
        // A notice continuing one we received is a forward for anyone who was not on it: TLP decides.
        if !notice.in_reply_to.is_empty()
            && let Some(orig) = self.read(|c| state::message(c, &notice.in_reply_to))?
            && orig.direction == "received"
            && let Ok(original) = message::decode_notice(&orig.envelope.payload)
        {
            for p in &notice.to {
                message::check_forward(&original, p)?;
            }
        }
        let norms = &self.agreement.norms;
        let now = clock::now_ms();
        let kind = notice.kind();
        let mut deadlines = Vec::new();
        for p in &notice.to {
            match kind {
                NoticeKind::Notification | NoticeKind::RequestForAssistance => deadlines.push((
                    p.clone(),
                    Deadline::Response,
                    now + norms.respond_within(notice.severity()).as_millis() as i64,
                )),
                NoticeKind::CommCheck => deadlines.push((
                    p.clone(),
                    Deadline::CommCheckAnswer,
                    now + norms.comm_check_answer_within.as_millis() as i64,
                )),
                _ => {}
            }
        }
        let thread = message::thread_of(&notice).to_owned();
        let id = notice.id.clone();
        let envelope = envelope::sign(NOTICE_TYPE, notice.encode_to_vec(), &self.key);
        let index = self
            .send(Outgoing {
                kind: "notice",
                id: id.clone(),
                thread,
                envelope,
                to: notice.to,
                deadlines,
                meets: vec![],
            })
            .await?;
        Ok((id, index))
    }

    /// Signs, logs and queues a response to a notice we received.
    pub async fn respond(
        &self,
        notice_id: &str,
        status: ResponseStatus,
        text: &str,
        author: &str,
    ) -> Result<(String, u64), NodeError> {
        let orig = self
            .read(|c| state::message(c, notice_id))?
            .filter(|m| m.kind == "notice")
            .ok_or_else(|| NodeError::NotFound(format!("no notice with id {notice_id}")))?;
        if orig.direction != "received" {
            return Err(NodeError::FailedPrecondition(format!(
                "notice {notice_id} was sent by us; respond to notices you received"
            )));
        }
        let response = Response {
            id: message::new_id(),
            notice_id: notice_id.to_owned(),
            from: self.party.clone(),
            to: vec![orig.sender.clone()],
            created_at: Some(clock::to_proto(clock::now())),
            status: status as i32,
            text: text.to_owned(),
            author: author.to_owned(),
        };
        message::validate_response(&response, &self.agreement.norms)?;
        let id = response.id.clone();
        let envelope = envelope::sign(RESPONSE_TYPE, response.encode_to_vec(), &self.key);
        let index = self
            .send(Outgoing {
                kind: "response",
                id: id.clone(),
                thread: notice_id.to_owned(),
                envelope,
                to: response.to,
                deadlines: vec![],
                meets: vec![(notice_id.to_owned(), self.party.clone(), Deadline::Response)],
            })
            .await?;
        Ok((id, index))
    }

    /// Sends a communication check to one peer, or to every peer.
    pub async fn comm_check(&self, party: Option<&str>, author: &str) -> Result<Vec<String>, NodeError> {
        let targets: Vec<String> = match party {
            Some(p) if self.peers.contains_key(p) => vec![p.to_owned()],
            Some(p) => return Err(NodeError::NotFound(format!("{p} is not a peer party of the agreement"))),
            None => self.peers.keys().cloned().collect(),
        };
        let mut ids = Vec::new();
        for p in targets {
            let notice = Notice {
                to: vec![p.clone()],
                kind: NoticeKind::CommCheck as i32,
                severity: crate::proto::Severity::Low as i32,
                category: crate::proto::Category::Test as i32,
                tlp: crate::proto::Tlp::Clear as i32,
                title: format!("communication check {} -> {p}", self.party),
                ..Default::default()
            };
            ids.push(self.send_notice(notice, author).await?.0);
        }
        Ok(ids)
    }

    /// Handles a delivery from `caller` (its TLS identity): checks in the
    /// agreed order, logs the message durably and returns our signed receipt.
    pub async fn deliver(self: &Arc<Self>, caller: &str, req: DeliverRequest) -> Result<Envelope, NodeError> {
        let env = req
            .envelope
            .ok_or_else(|| NodeError::InvalidArgument("field envelope is required".into()))?;
        let mut outcomes = self.deliver_batch(caller, vec![env], req.sender_checkpoint).await;
        outcomes
            .pop()
            .unwrap_or_else(|| Err(NodeError::InvalidArgument("nothing was delivered".into())))
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
        let mut admitted: Vec<Result<Admitted, NodeError>> =
            envelopes.into_iter().map(|env| self.admit(caller, env)).collect();
        if let Some(note) = sender_checkpoint.map(|c| c.note) {
            let first_key = admitted.iter().find_map(|a| a.as_ref().ok()).map(|a| a.key.clone());
            if let Some(key) = first_key {
                match self.verify_peer_checkpoint(caller, &note, &key) {
                    Ok(cp) => {
                        let node = self.clone();
                        let party = caller.to_owned();
                        tokio::spawn(async move { node.witness(&party, cp).await });
                    }
                    Err(e) => {
                        let why = format!("field sender_checkpoint: {e}");
                        for a in admitted.iter_mut().filter(|a| a.is_ok()) {
                            *a = Err(NodeError::InvalidArgument(why.clone()));
                        }
                    }
                }
            }
        }
        // Recorded concurrently, so the log writer takes them in one batch.
        let recording: Vec<_> = admitted
            .into_iter()
            .map(|a| {
                let (node, caller) = (self.clone(), caller.to_owned());
                tokio::spawn(async move {
                    let a = a?;
                    node.record_received(a.kind, a.id, a.thread, &caller, a.env, a.sha, a.parsed)
                        .await
                })
            })
            .collect();
        join_in_order(recording, |e| {
            Err(NodeError::Log(LogError::Rejected(format!("delivery task failed: {e}"))))
        })
        .await
    }

    /// Checks one delivered envelope, in the agreed order; the sender's
    /// checkpoint is checked after.
    fn admit(&self, caller: &str, env: Envelope) -> Result<Admitted, NodeError> {
        let kind = match env.payload_type.as_str() {
            NOTICE_TYPE => "notice",
            RESPONSE_TYPE => "response",
            other => {
                return Err(NodeError::InvalidArgument(format!(
                    "payload type {other:?} cannot be delivered; expected {NOTICE_TYPE} or {RESPONSE_TYPE}"
                )));
            }
        };
        let signer = envelope::verify(&env, &env.payload_type, &self.keyring, clock::now())
            .map_err(|e| NodeError::Unauthenticated(format!("envelope from {caller}: {e}")))?;
        if signer.party != caller {
            return Err(NodeError::PermissionDenied(format!(
                "envelope is signed by party {} but was delivered by {caller}",
                signer.party
            )));
        }
        // Decoded once; the envelope keeps the bytes exactly as signed.
        let parsed = if kind == "notice" {
            Ok(message::decode_notice(&env.payload)?)
        } else {
            Err(message::decode_response(&env.payload)?)
        };
        let (id, from, to, created_at, thread) = match &parsed {
            Ok(n) => (&n.id, &n.from, &n.to, &n.created_at, message::thread_of(n)),
            Err(r) => (&r.id, &r.from, &r.to, &r.created_at, r.notice_id.as_str()),
        };
        let (id, thread) = (id.clone(), thread.to_owned());
        if from != caller {
            return Err(NodeError::PermissionDenied(format!(
                "field from is {from:?} but the sender is {caller}"
            )));
        }
        if !to.contains(&self.party) {
            return Err(NodeError::InvalidArgument(format!(
                "message {id} is addressed to {} and not to {}",
                to.join(", "),
                self.party
            )));
        }
        let created = created_at
            .as_ref()
            .and_then(clock::from_proto)
            .ok_or_else(|| NodeError::InvalidArgument("field created_at is missing or out of range".into()))?;
        let skew = self.agreement.norms.clock_skew;
        if created > clock::now() + skew {
            return Err(NodeError::InvalidArgument(format!(
                "field created_at {} is ahead of our clock by more than the agreed clock_skew of {}",
                clock::rfc3339(created),
                clock::format_duration(skew)
            )));
        }
        let max = self.agreement.norms.max_notice_bytes;
        if env.payload.len() as u64 > max {
            return Err(NodeError::ResourceExhausted(format!(
                "payload is {} bytes, over the agreed max_notice_bytes of {max}",
                env.payload.len()
            )));
        }
        let sha = Sha256::digest(&env.payload).to_vec();
        match &parsed {
            Ok(n) => message::validate_notice(n, &self.agreement.norms)?,
            Err(r) => message::validate_response(r, &self.agreement.norms)?,
        }
        Ok(Admitted {
            kind,
            id,
            thread,
            env,
            sha,
            parsed,
            key: signer.key.clone(),
        })
    }

    fn resend_receipt(&self, existing: &StoredMessage, caller: &str, sha: &[u8]) -> Result<Envelope, NodeError> {
        if existing.payload_sha256 != sha || existing.sender != caller {
            return Err(NodeError::AlreadyExists(format!(
                "message id {} was already used for a different message",
                existing.id
            )));
        }
        let head = self.log.head();
        let (_, _, proof) = self.log.reader().inclusion_proof(existing.log_index, head.size)?;
        let data = self
            .log
            .reader()
            .entries(existing.log_index, existing.log_index + 1, 1)?
            .pop()
            .map(|(_, d)| d)
            .unwrap_or_default();
        Ok(self.sign_receipt(existing, caller, &data, head.note.to_vec(), proof))
    }

    fn sign_receipt(
        &self,
        m: &StoredMessage,
        to: &str,
        entry_bytes: &[u8],
        note: Vec<u8>,
        proof: Vec<tlog_tiles::Hash>,
    ) -> Envelope {
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
        envelope::sign(RECEIPT_TYPE, receipt.encode_to_vec(), &self.key)
    }

    #[allow(clippy::too_many_arguments)]
    async fn record_received(
        self: &Arc<Self>,
        kind: &'static str,
        id: String,
        thread: String,
        from: &str,
        env: Envelope,
        sha: Vec<u8>,
        parsed: Result<Notice, Response>,
    ) -> Result<Envelope, NodeError> {
        let now = clock::now_ms();
        let norms = &self.agreement.norms;
        let entry_bytes = entry::encode(Body::Received(EnvelopeReceived {
            envelope: Some(env.clone()),
            from: from.to_owned(),
        }));
        let mut entries = vec![entry_bytes.clone()];
        let mut owed = Vec::new();
        let mut meets = Vec::new();
        let mut comm_check_ok = None;
        let mut auto_answer = false;
        match &parsed {
            Ok(n) => match n.kind() {
                NoticeKind::Notification | NoticeKind::RequestForAssistance => owed.push((
                    Deadline::Response,
                    now + norms.respond_within(n.severity()).as_millis() as i64,
                )),
                NoticeKind::CommCheck => auto_answer = true,
                _ => {}
            },
            Err(r) => {
                meets.push((r.notice_id.clone(), Deadline::Response));
                let ours = self.read(|c| state::message(c, &r.notice_id))?;
                let Some(ours) = ours else {
                    return Err(NodeError::NotFound(format!(
                        "response {} answers unknown notice {}",
                        r.id, r.notice_id
                    )));
                };
                let is_check = ours.direction == "sent"
                    && message::decode_notice(&ours.envelope.payload).is_ok_and(|n| n.kind() == NoticeKind::CommCheck);
                if is_check {
                    meets.push((r.notice_id.clone(), Deadline::CommCheckAnswer));
                    let event = NormEvent {
                        kind: NormEventKind::CommCheckOk as i32,
                        party: from.to_owned(),
                        message_id: r.notice_id.clone(),
                        deadline: Deadline::CommCheckAnswer as i32,
                        due_at: None,
                        observed_at: Some(clock::to_proto(clock::now())),
                        detail: format!("{from} answered the communication check"),
                    };
                    entries.push(entry::encode(Body::NormEvent(event.clone())));
                    comm_check_ok = Some(event);
                }
            }
        }
        let stored = StoredMessage {
            id: id.clone(),
            kind: kind.to_owned(),
            direction: "received".into(),
            sender: from.to_owned(),
            thread,
            payload_sha256: sha,
            envelope: env,
            log_index: 0,
            created_ms: now,
        };
        let me = self.party.clone();
        let sender = from.to_owned();
        let check_event = comm_check_ok.clone();
        let stored_for_tx = stored.clone();
        let change = Box::new(move |c: &rusqlite::Connection, index: u64| {
            let id = &stored_for_tx.id;
            state::insert_message(c, &stored_for_tx, index)
                .map_err(|e| format!("message {id} was recorded concurrently ({e})"))?;
            for (kind, due) in &owed {
                state::start_deadline(c, id, &me, *kind, *due).map_err(|e| e.to_string())?;
            }
            for (notice, kind) in &meets {
                state::meet_deadline(c, notice, &sender, *kind).map_err(|e| e.to_string())?;
            }
            if let Some(ev) = &check_event {
                state::insert_norm_event(c, index + 1, ev).map_err(|e| e.to_string())?;
                state::comm_check_ok(c, &sender, now).map_err(|e| e.to_string())?;
            }
            Ok(())
        });
        let done = match self.log.append_with(entries, change, true).await {
            Ok(done) => done,
            // The id is known: a resend of the same message gets its original receipt,
            // another message under the same id is refused.
            Err(LogError::Rejected(_)) => {
                let existing = self
                    .read(|c| state::message(c, &id))?
                    .ok_or_else(|| NodeError::FailedPrecondition(format!("message {id} could not be recorded")))?;
                return self.resend_receipt(&existing, from, &stored.payload_sha256);
            }
            Err(e) => return Err(e.into()),
        };
        let row = StoredMessage {
            log_index: done.first_index,
            ..stored
        };
        let receipt = self.sign_receipt(&row, from, &entry_bytes, done.checkpoint.to_vec(), done.proof);
        tracing::info!(id = %id, from, index = done.first_index, "received and logged");
        match parsed {
            Ok(n) => {
                if auto_answer {
                    let node = self.clone();
                    let nid = n.id.clone();
                    tokio::spawn(async move {
                        if let Err(e) = node
                            .respond(
                                &nid,
                                ResponseStatus::Acknowledged,
                                "communication check answered",
                                "hotline",
                            )
                            .await
                        {
                            tracing::warn!(notice = %nid, error = %e, "could not answer communication check");
                        }
                    });
                }
                self.emit(event::Body::NoticeReceived(n));
            }
            Err(r) => self.emit(event::Body::ResponseReceived(r)),
        }
        if let Some(ev) = comm_check_ok {
            self.emit(event::Body::NormEvent(ev));
        }
        Ok(receipt)
    }

    /// Checks a receipt for our message `m` delivered to `party`, then logs it.
    async fn accept_receipt(self: &Arc<Self>, m: &StoredMessage, party: &str, env: Envelope) -> Result<(), String> {
        let signer =
            envelope::verify(&env, RECEIPT_TYPE, &self.keyring, clock::now()).map_err(|e| format!("receipt: {e}"))?;
        if signer.party != party {
            return Err(format!("receipt signed by {} instead of {party}", signer.party));
        }
        let r = Receipt::decode(&env.payload[..]).map_err(|e| format!("receipt payload: {e}"))?;
        if r.message_id != m.id || r.from != party || r.to != self.party || r.payload_sha256 != m.payload_sha256 {
            return Err(format!("receipt from {party} does not match message {}", m.id));
        }
        let note = r.checkpoint.as_ref().map(|c| c.note.clone()).unwrap_or_default();
        let cp = self
            .verify_peer_checkpoint(party, &note, &signer.key)
            .map_err(|e| format!("receipt checkpoint: {e}"))?;
        let logged = LogEntry::decode(&r.log_entry[..]).map_err(|e| format!("receipt log entry: {e}"))?;
        let holds_ours =
            matches!(&logged.body, Some(Body::Received(rcv)) if rcv.envelope.as_ref() == Some(&m.envelope));
        if !holds_ours {
            return Err("receipt log entry does not hold our envelope verbatim".into());
        }
        let proof = proof_from_wire(&r.inclusion_proof).map_err(|e| format!("receipt inclusion proof has {e}"))?;
        if r.log_index >= cp.size {
            return Err(format!(
                "receipt log index {} is outside its checkpoint of size {}",
                r.log_index, cp.size
            ));
        }
        tlog_tiles::check_record(
            &proof,
            cp.size,
            cp.root,
            r.log_index,
            tlog_tiles::record_hash(&r.log_entry),
        )
        .map_err(|e| format!("receipt inclusion proof: {e}"))?;
        let e = entry::encode(Body::Received(EnvelopeReceived {
            envelope: Some(env),
            from: party.to_owned(),
        }));
        let (mid, p, idx) = (m.id.clone(), party.to_owned(), r.log_index);
        let change = Box::new(move |c: &rusqlite::Connection, index: u64| {
            if !state::record_receipt(c, &mid, &p, idx, index).map_err(|e| e.to_string())? {
                return Err("receipt already recorded".into());
            }
            state::meet_deadline(c, &mid, &p, Deadline::Receipt).map_err(|e| e.to_string())?;
            Ok(())
        });
        match self.log.append_with(vec![e], change, false).await {
            Ok(_) | Err(LogError::Rejected(_)) => {}
            Err(e) => return Err(e.to_string()),
        }
        self.emit(event::Body::ReceiptReceived(r));
        let node = self.clone();
        let party = party.to_owned();
        tokio::spawn(async move { node.witness(&party, cp).await });
        Ok(())
    }

    /// Logs a missed deadline exactly once and tells operators.
    pub async fn miss(&self, d: &state::Running) -> Result<(), NodeError> {
        let event = NormEvent {
            kind: NormEventKind::DeadlineMissed as i32,
            party: d.party.clone(),
            message_id: d.message_id.clone(),
            deadline: d.kind as i32,
            due_at: time::OffsetDateTime::from_unix_timestamp_nanos(d.due_ms as i128 * 1_000_000)
                .ok()
                .map(clock::to_proto),
            observed_at: Some(clock::to_proto(clock::now())),
            detail: format!(
                "{} owed a {} for {}",
                d.party,
                d.kind.as_str_name().trim_start_matches("DEADLINE_").to_lowercase(),
                d.message_id
            ),
        };
        let (ev, run) = (event.clone(), d.clone());
        let change = Box::new(move |c: &rusqlite::Connection, index: u64| {
            if !state::miss_deadline(c, &run.message_id, &run.party, run.kind).map_err(|e| e.to_string())? {
                return Err("deadline no longer running".into());
            }
            state::insert_norm_event(c, index, &ev).map_err(|e| e.to_string())
        });
        match self
            .log
            .append_with(vec![entry::encode(Body::NormEvent(event.clone()))], change, false)
            .await
        {
            Ok(_) => {
                tracing::warn!(party = %d.party, message_id = %d.message_id, deadline = ?d.kind, "deadline missed");
                self.emit(event::Body::NormEvent(event));
                Ok(())
            }
            Err(LogError::Rejected(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Closes the log after the writer finishes its batches.
    pub fn close(self) {
        if let Ok(log) = Arc::try_unwrap(self.log) {
            log.close();
        }
    }

    /// Delivers queued messages to one peer in one `DeliverBatch` call and
    /// handles the receipts; one outcome per message, in order.
    pub async fn deliver_batch_to(
        self: &Arc<Self>,
        party: &str,
        messages: Vec<StoredMessage>,
    ) -> Vec<Result<(), String>> {
        let fail_all = |why: String| messages.iter().map(|_| Err(why.clone())).collect();
        let Some(mut client) = self.peer(party) else {
            return fail_all(format!("{party} is not a peer"));
        };
        let req = DeliverBatchRequest {
            envelopes: messages.iter().map(|m| m.envelope.clone()).collect(),
            sender_checkpoint: Some(SignedCheckpoint {
                note: self.log.head().note.to_vec(),
            }),
        };
        let outcomes = match tokio::time::timeout(Duration::from_secs(15), client.deliver_batch(req)).await {
            Err(_) => return fail_all("timed out".into()),
            Ok(Err(s)) => return fail_all(format!("{:?}: {}", s.code(), s.message())),
            Ok(Ok(reply)) => reply.into_inner().outcomes,
        };
        if outcomes.len() != messages.len() {
            return fail_all(format!(
                "the peer answered {} outcomes for {} envelopes",
                outcomes.len(),
                messages.len()
            ));
        }
        let receipts: Vec<Result<Envelope, String>> = outcomes
            .into_iter()
            .map(|o| match o.result {
                Some(deliver_outcome::Result::Receipt(env)) => Ok(env),
                Some(deliver_outcome::Result::Error(e)) => {
                    Err(format!("{:?}: {}", tonic::Code::from(e.code), e.message))
                }
                None => Err("the peer's outcome is empty".into()),
            })
            .collect();
        // Accepted concurrently, so the log writer takes them in one batch.
        let accepting: Vec<_> = messages
            .into_iter()
            .zip(receipts)
            .map(|(m, receipt)| {
                let (node, party) = (self.clone(), party.to_owned());
                tokio::spawn(async move { node.accept_receipt(&m, &party, receipt?).await })
            })
            .collect();
        join_in_order(accepting, |e| Err(format!("receipt task failed: {e}"))).await
    }

    /// The parties this node delivers to.
    pub fn peer_ids(&self) -> impl Iterator<Item = &String> {
        self.peers.keys()
    }
}

/// Awaits tasks spawned so that their log appends land in one batch, keeping
/// their order; a task that panicked gives `failed`.
async fn join_in_order<T>(
    tasks: Vec<tokio::task::JoinHandle<T>>,
    failed: impl Fn(tokio::task::JoinError) -> T,
) -> Vec<T> {
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await.unwrap_or_else(&failed));
    }
    results
}
