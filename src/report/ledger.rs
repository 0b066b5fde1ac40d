//! What the compliance report reads from a log, entry by entry: the
//! messages sent and received with their times, the receipts, the norm
//! events, the witnessed checkpoints and the agreements adopted. It reads
//! only the log (entries as `audit verify` checks them), never the node's
//! state tables, so an auditor can rebuild it from an export or a running
//! node's Audit service. A message whose envelope this reader was not given
//! (beyond its clearance) is read from what its entry says of it: who,
//! when, which kind, how severe, its status; its text is left out and counted.

use std::collections::BTreeMap;

use prost::Message as _;

use crate::envelope::{NOTICE_TYPE, RECEIPT_TYPE, RESPONSE_TYPE};
use crate::proto::log_entry::Body;
use crate::proto::{Envelope, LogEntry, MessageMeta, NormEvent, Notice, Receipt, Response};

/// A notice in the log, with what answered it.
#[derive(Clone, Debug)]
pub struct Thread {
    /// The notice.
    pub notice: Notice,
    /// When it was logged, ms since the epoch.
    pub logged_ms: i64,
    /// Whether this node sent it.
    pub ours: bool,
    /// Responses to it, with when each was logged.
    pub responses: Vec<(Response, i64)>,
    /// Receipts for it (party, when logged).
    pub receipts: Vec<(String, i64)>,
    /// The recipients whose receipt a relay brought back: (party, relay).
    pub relayed: Vec<(String, String)>,
    /// Norm events about it.
    pub events: Vec<(NormEvent, i64)>,
    /// Whether this reader read the notice itself, or only what its entry says of it.
    pub readable: bool,
}

/// Everything the report needs, gathered from the log in order.
#[derive(Default, Debug)]
pub struct Ledger {
    /// Notices by id, in log order of their ids' first appearance.
    pub threads: BTreeMap<String, Thread>,
    /// The order notices were logged in.
    pub order: Vec<String>,
    /// Every envelope we sent: (message id, recipients, logged ms).
    pub sent: Vec<(String, Vec<String>, i64)>,
    /// Receipts we received: message id -> (party, logged ms).
    pub receipts: BTreeMap<String, Vec<(String, i64)>>,
    /// Every norm event, with when it was logged.
    pub norm_events: Vec<(NormEvent, i64)>,
    /// Per peer: checkpoints witnessed, and the largest size.
    pub witnessed: BTreeMap<String, (u64, u64)>,
    /// The newest agreement adopted, as a signed note.
    pub agreement: Option<Vec<u8>>,
    /// Entries read.
    pub entries: u64,
    /// Messages whose envelopes this reader was not given, or could not
    /// open (sealed to others), by TLP label.
    pub withheld: BTreeMap<String, u64>,
    /// What opens the messages sealed to the log's party, for a reader who holds its key.
    pub opener: Option<crate::opener::Opener>,
}

fn ms(e: &LogEntry) -> i64 {
    e.logged_at
        .as_ref()
        .and_then(crate::clock::from_proto)
        .map_or(0, crate::clock::to_ms)
}

impl Ledger {
    /// Takes in one entry (`outside`: the envelope kept beside it, if any;
    /// `opened`: a sealed one's body and salt, as the Audit service gives a
    /// cleared auditor); an entry that does not decode is skipped.
    pub fn entry(&mut self, data: &[u8], outside: Option<&[u8]>, opened: Option<&crate::proto::OpenedBody>) {
        self.entries += 1;
        let Ok(e) = LogEntry::decode(data) else { return };
        let at = ms(&e);
        // A sealed envelope reads only if we hold the key it opens with; otherwise from its entry.
        let opener = self.opener.clone();
        let envelope = |held: Option<&Envelope>| -> Option<Envelope> {
            let env = held
                .cloned()
                .or_else(|| outside.and_then(|o| Envelope::decode(o).ok()))?;
            match (env.payload_type == crate::envelope::SEALED_TYPE, &opener, opened) {
                (false, _, _) => Some(env),
                (true, Some(opener), _) => opener.open(&env).ok(),
                (true, None, Some(o)) => crate::opener::reveal(&env, &o.salt, &o.body).ok(),
                (true, None, None) => None,
            }
        };
        match e.body {
            Some(Body::Sent(s)) => {
                let id = match envelope(s.envelope.as_ref()) {
                    Some(env) => self.message(&env, at, true),
                    None => s.meta.and_then(|m| self.unread(m, at, true)),
                };
                if let Some(id) = id {
                    self.sent.push((id, s.to, at));
                }
            }
            Some(Body::Received(r)) => {
                let Some(env) = envelope(r.envelope.as_ref()) else {
                    if let Some(m) = r.meta {
                        self.unread(m, at, false);
                    }
                    return;
                };
                if env.payload_type == RECEIPT_TYPE {
                    if let Ok(receipt) = Receipt::decode(&env.payload[..]) {
                        self.receipt(receipt, at, &r.via);
                    }
                } else {
                    self.message(&env, at, false);
                }
            }
            Some(Body::NormEvent(n)) => {
                if let Some(t) = self.threads.get_mut(&n.message_id) {
                    t.events.push((n.clone(), at));
                }
                self.norm_events.push((n, at));
            }
            Some(Body::WitnessedCheckpoint(w)) => {
                let size = w
                    .checkpoint
                    .as_ref()
                    .and_then(|c| crate::log::checkpoint::parse_size(&c.note))
                    .unwrap_or(0);
                let seen = self.witnessed.entry(w.party).or_default();
                *seen = (seen.0 + 1, seen.1.max(size));
            }
            Some(Body::AgreementAdopted(a)) => {
                if let Ok(note) = crate::log::entry::adopted_note(&a, outside) {
                    self.agreement = Some(note);
                }
            }
            _ => {}
        }
    }

    /// Records a notice or response; returns the message id of anything we may have sent.
    fn message(&mut self, env: &Envelope, at: i64, ours: bool) -> Option<String> {
        match env.payload_type.as_str() {
            NOTICE_TYPE => {
                let n = Notice::decode(&env.payload[..]).ok()?;
                let id = n.id.clone();
                self.thread(n, at, ours, true);
                Some(id)
            }
            RESPONSE_TYPE => {
                let r = Response::decode(&env.payload[..]).ok()?;
                let id = r.id.clone();
                if let Some(t) = self.threads.get_mut(&r.notice_id) {
                    t.responses.push((r, at));
                }
                Some(id)
            }
            // Amendments and rosters: receipted like the rest, not threads.
            _ => crate::message::Kind::of_payload_type(&env.payload_type).and_then(|kind| {
                crate::message::Message::decode(kind, &env.payload)
                    .ok()
                    .map(|m| m.id().to_owned())
            }),
        }
    }

    /// Opens the thread of notice `n`, logged at `at`, with the receipts already seen for it.
    fn thread(&mut self, n: Notice, at: i64, ours: bool, readable: bool) {
        self.order.push(n.id.clone());
        let receipts = self.receipts.get(&n.id).cloned().unwrap_or_default();
        self.threads.insert(
            n.id.clone(),
            Thread {
                notice: n,
                logged_ms: at,
                ours,
                responses: Vec::new(),
                receipts,
                relayed: Vec::new(),
                events: Vec::new(),
                readable,
            },
        );
    }

    /// Records a message from what its entry says of it, its envelope
    /// withheld from this reader; returns its id as [`Ledger::message`] does.
    fn unread(&mut self, m: MessageMeta, at: i64, ours: bool) -> Option<String> {
        if m.kind == "receipt" {
            // A receipt holds no text (CLEAR): every reader gets it; this is for completeness.
            let receipt = Receipt {
                message_id: m.id,
                from: m.from,
                ..Default::default()
            };
            self.receipt(receipt, at, "");
            return None;
        }
        let label = crate::message::tlp_label(m.tlp()).to_owned();
        *self.withheld.entry(label).or_default() += 1;
        match m.kind.as_str() {
            "notice" => {
                let notice = Notice {
                    in_reply_to: if m.thread != m.id {
                        m.thread.clone()
                    } else {
                        String::new()
                    },
                    id: m.id.clone(),
                    from: m.from,
                    to: m.to,
                    created_at: m.created_at,
                    kind: m.notice_kind,
                    severity: m.severity,
                    tlp: m.tlp,
                    exercise: m.exercise,
                    ..Default::default()
                };
                self.thread(notice, at, ours, false);
            }
            "response" => {
                let response = Response {
                    id: m.id.clone(),
                    notice_id: m.thread.clone(),
                    from: m.from,
                    to: m.to,
                    created_at: m.created_at,
                    status: m.status,
                    exercise: m.exercise,
                    ..Default::default()
                };
                if let Some(t) = self.threads.get_mut(&m.thread) {
                    t.responses.push((response, at));
                }
            }
            _ => {}
        }
        (!m.id.is_empty()).then_some(m.id)
    }

    /// Reads every entry of the log in a node's data directory.
    /// Sealed messages open with `opener`, if given.
    pub fn from_data_dir(
        dir: &std::path::Path,
        opener: Option<crate::opener::Opener>,
    ) -> Result<Self, crate::log::LogError> {
        let reader = crate::log::LogReader::open(dir)?;
        let mut ledger = Self {
            opener,
            ..Self::default()
        };
        reader.each_entry(|_, e| ledger.entry(&e.data, e.envelope.as_deref(), None))?;
        Ok(ledger)
    }

    fn receipt(&mut self, r: Receipt, at: i64, via: &str) {
        if let Some(t) = self.threads.get_mut(&r.message_id) {
            t.receipts.push((r.from.clone(), at));
            if !via.is_empty() {
                t.relayed.push((r.from.clone(), via.to_owned()));
            }
        }
        self.receipts.entry(r.message_id).or_default().push((r.from, at));
    }
}
