//! A running node: its keys, agreement, log, peers and tasks, shared by the
//! Federation and Operator services and the background workers. The data
//! path of a message is split by direction: [`outbound`] signs, logs and
//! queues what we send; [`inbound`] checks, logs and receipts what peers
//! deliver. The sender's half of a delivery lives with the delivery worker
//! (`delivery`), missed deadlines with the norms worker (`norms`).

mod actor;
mod error;
mod inbound;
mod outbound;
mod peer_agreements;

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::{broadcast, mpsc};

pub use actor::{Actor, Sent};
pub use error::NodeError;
pub use peer_agreements::PeerAgreements;

use crate::agreement::{Agreement, SignedAgreement};
use crate::clock::Clock;
use crate::config::Config;
use crate::events::Events;
use crate::keys::{IdentityKey, Keyring};
use crate::log::{Log, LogError, entry};
use crate::peers::Peers;
use crate::proto::log_entry::Body;
use crate::proto::{AgreementAdopted, Event};
use crate::state;
use crate::tasks::Tasks;
use crate::tls::{CertKey, Identifier};
use crate::witness::Witness;

/// A node's shared state.
pub struct Node {
    /// Our party id.
    pub party: String,
    /// Our identity key.
    pub key: IdentityKey,
    /// The agreement in force.
    pub agreement: Agreement,
    /// The agreement's keys, by key id.
    pub keyring: Keyring,
    /// The audit log.
    pub log: Arc<Log>,
    /// Who is calling, from TLS certificates.
    pub identifier: Arc<Identifier>,
    /// Per-caller request limits.
    pub limits: crate::limits::Limits,
    /// Repeated identical failures, logged once per minute with a count.
    pub repeats: crate::repeats::Repeats,
    /// Where signature checks run: off the async workers, a share per peer.
    pub cpu: crate::limits::CpuShare,
    /// Where the node reads the time.
    pub clock: Clock,
    /// The background tasks; `server` stops and awaits them.
    pub tasks: Tasks,
    /// The peers' checkpoints, verified and witnessed.
    pub witness: Arc<Witness>,
    /// First and longest retry delay.
    pub retry: (Duration, Duration),
    /// Which agreement each peer says it holds, against ours.
    pub agreements: PeerAgreements,
    events: Events,
    peers: Peers,
    /// New deliveries for the delivery worker.
    outbox: mpsc::UnboundedSender<state::Pending>,
    outbox_queue: std::sync::Mutex<Option<mpsc::UnboundedReceiver<state::Pending>>>,
}

fn setup(what: impl std::fmt::Display) -> NodeError {
    NodeError::Setup(what.to_string())
}

impl Node {
    /// Loads everything a node needs from its configuration, refusing an
    /// agreement not signed by its quorum, and opens the log; `cert` is the
    /// node certificate it dials peers with, `clock` where it reads the time.
    pub async fn open(config: &Config, cert: &CertKey, clock: Clock) -> Result<Arc<Self>, NodeError> {
        let key = IdentityKey::load(&config.identity_key).map_err(setup)?;
        let signed = SignedAgreement::load(&config.agreement).map_err(setup)?;
        signed
            .verify(clock.now())
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
        let peers = Peers::dial(&agreement, &config.party, cert).map_err(setup)?;
        let log = Arc::new(Log::open_with(&config.data, key.clone(), config.recheck_log)?);
        let keyring = agreement.keyring();
        let events = Events::new(clock.clone());
        let witness = Arc::new(Witness::new(
            log.clone(),
            peers.clone(),
            keyring.clone(),
            events.clone(),
            clock.clone(),
        ));
        let (outbox, outbox_rx) = mpsc::unbounded_channel();
        let node = Arc::new(Self {
            party: config.party.clone(),
            keyring,
            agreement,
            key,
            log,
            identifier,
            limits: crate::limits::Limits::new(config.limits),
            cpu: crate::limits::CpuShare::for_this_machine(),
            repeats: crate::repeats::Repeats::new(Duration::from_secs(60)),
            clock,
            tasks: Tasks::default(),
            witness,
            retry: (config.retry_base, config.retry_max),
            agreements: PeerAgreements::new(signed.agreement.version, signed.text_sha256()),
            events,
            peers,
            outbox,
            outbox_queue: std::sync::Mutex::new(Some(outbox_rx)),
        });
        node.adopt(&signed).await?;
        Ok(node)
    }

    /// Logs the agreement the first time this node runs on it.
    async fn adopt(&self, signed: &SignedAgreement) -> Result<(), NodeError> {
        let bytes = signed.to_bytes();
        let sha = Sha256::digest(&bytes).to_vec();
        let version = signed.agreement.version;
        if let Some(current) = self.read(state::adopted)? {
            if current.sha256 == sha {
                return Ok(());
            }
            let held = SignedAgreement::parse(&current.signed_note)
                .map_err(|e| setup(format!("the adopted agreement in the log: {e}")))?;
            check_follows(signed, &held, self.clock.now()).map_err(setup)?;
        }
        let e = entry::encode(
            self.clock.now(),
            Body::AgreementAdopted(AgreementAdopted {
                signed_note: bytes,
                version,
            }),
        );
        self.log
            .append_with(vec![e], Box::new(move |c, i| state::adopt(c, version, &sha, i)), false)
            .await?;
        tracing::info!(version, "adopted agreement");
        Ok(())
    }

    /// Records the agreement `party` says it holds; another text under our
    /// version number is logged as an AGREEMENT_FORK norm event, once.
    pub async fn compare_agreement(&self, party: &str, theirs: Option<&crate::proto::AgreementRef>) {
        let Some(detail) = self.agreements.note(party, theirs) else {
            return;
        };
        tracing::error!(party, %detail, "agreement fork");
        let event = crate::norm_event::new(
            crate::proto::NormEventKind::AgreementFork,
            party,
            "",
            crate::proto::Deadline::Unspecified,
            None,
            self.clock.now(),
            detail,
        );
        if let Err(e) = crate::norm_event::log(&self.log, &self.events, event, |_| Ok(())).await {
            tracing::warn!(party, error = %e, "could not log the agreement fork");
        }
    }

    /// A receiver of every operator-visible event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Where operator-visible events go.
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// Hands a delivery to the delivery worker.
    pub fn queue_delivery(&self, p: state::Pending) {
        let _ = self.outbox.send(p);
    }

    /// The delivery worker's end of the queue; taken once.
    pub fn take_outbox_queue(&self) -> Option<mpsc::UnboundedReceiver<state::Pending>> {
        self.outbox_queue.lock().ok().and_then(|mut q| q.take())
    }

    /// The peers this node delivers to.
    pub fn peers(&self) -> &Peers {
        &self.peers
    }

    /// Runs `f` on a read connection; a database error is an internal one.
    pub fn read<T>(&self, f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>) -> Result<T, NodeError> {
        Ok(self
            .log
            .reader()
            .read(|c| f(c).map_err(|e| LogError::Refused(e.into())))?)
    }

    /// The notice with this id, sent or received, if we hold it.
    pub(crate) fn held_notice(&self, id: &str) -> Result<Option<crate::proto::Notice>, NodeError> {
        if id.is_empty() {
            return Ok(None);
        }
        Ok(self.read(|c| state::message(c, id))?.and_then(|m| m.notice()))
    }

    /// Closes the log after the writer finishes its batches.
    pub fn close(self) {
        let Self { log, witness, .. } = self;
        drop(witness); // it shares the log
        if let Ok(log) = Arc::try_unwrap(log) {
            log.close();
        }
    }
}

/// Whether a node holding `held` may adopt `signed`: the same version with
/// more signatures, or the next version chained to it. An older version, a
/// gap, and another text under the held version number (a fork) are refused.
fn check_follows(signed: &SignedAgreement, held: &SignedAgreement, at: time::OffsetDateTime) -> Result<(), String> {
    let (version, v) = (signed.agreement.version, held.agreement.version);
    if version < v {
        return Err(format!(
            "agreement version {version} is older than the adopted version {v}"
        ));
    }
    if version == v {
        return match signed.text() == held.text() {
            true => Ok(()),
            false => Err(format!(
                "agreement version {version} differs from the adopted version {v} with the same number: a fork"
            )),
        };
    }
    // A gap (version v+2 before v+1) is refused there too: only v+1 follows v.
    signed.verify_successor(held, at).map_err(|e| e.to_string())
}

/// Runs `tasks` concurrently, so that their log appends land in one batch,
/// and returns their results in the order given; a task that panicked gives
/// `failed`. Dropping the future aborts the tasks.
pub(crate) async fn join_in_order<T: Send + 'static>(
    tasks: Vec<impl std::future::Future<Output = T> + Send + 'static>,
    failed: impl Fn(tokio::task::JoinError) -> T,
) -> Vec<T> {
    let handles: Vec<_> = tasks
        .into_iter()
        .map(|t| tokio_util::task::AbortOnDropHandle::new(tokio::spawn(t)))
        .collect();
    let mut results = Vec::with_capacity(handles.len());
    for handle in handles {
        results.push(handle.await.unwrap_or_else(&failed));
    }
    results
}
