//! A running node: its keys, agreement, log, peers and tasks, shared by the
//! Federation and Operator services and the background workers. The data
//! path of a message is split by direction: [`outbound`] signs, logs and
//! queues what we send; [`inbound`] checks, logs and receipts what peers
//! deliver. The sender's half of a delivery lives with the delivery worker
//! (`delivery`), missed deadlines with the norms worker (`norms`).

mod actor;
mod adoption;
mod alerting;
mod amendments;
mod error;
mod escalation;
mod held_rosters;
mod inbound;
mod links;
mod outbound;
mod peer_agreements;
mod reads;
mod receipts;
mod recording;
mod relaying;
pub mod reload;
mod rollback;
mod rosters;
mod sealing;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

pub use actor::{Actor, Answer, PendingAmendment, Sent};
pub use error::{NodeError, ReceiptError};
pub use held_rosters::{HeldRoster, Rosters};
pub use peer_agreements::PeerAgreements;

use crate::agreement::SignedAgreement;
use crate::clock::Clock;
use crate::config::Config;
use crate::events::Events;
use crate::in_force::{InForce, Live};
use crate::keys::IdentityKey;
use crate::log::{Log, LogError};
use crate::own_keys::{OwnKeys, TrustedKeyPair};
use crate::peers::Peers;
use crate::proto::Event;
use crate::tasks::Tasks;
use crate::tls::{CertKey, Identifier};
use crate::transport::ServerTls;
use crate::witness::Witness;

/// A node's shared state.
pub struct Node {
    /// Our party id.
    party: String,
    /// Our identity keys, as the agreement in force trusts them (two during a rotation).
    keys: OwnKeys,
    /// Where our identity keys are read from (files or a token): the key, and a rotation's next key.
    key_files: crate::own_keys::KeySource,
    /// What opens message bodies sealed to us (no key if the file is
    /// missing: then nothing above TLP:CLEAR can be sent or taken), and the file.
    sealing: (crate::opener::Opener, std::path::PathBuf),
    /// The agreement in force, its keys and peers; replaced on adoption.
    live: Arc<Live>,
    /// Our TLS as a server, whose client CAs follow the agreement.
    tls: Arc<ServerTls>,
    /// The audit log.
    log: Arc<Log>,
    /// Who is calling, from TLS certificates, within which request limits.
    gate: crate::gate::Gate,
    /// Repeated identical failures, logged once per minute with a count.
    repeats: crate::repeats::Repeats,
    /// The `[alerts]` settings in force (none: nothing is alerted); a reload replaces them.
    alerts: tokio::sync::watch::Sender<Option<(crate::alerts::AlertConfig, Duration)>>,
    /// Where signature checks run: off the async workers, a share per peer.
    cpu: crate::limits::CpuShare,
    /// Where the node reads the time.
    clock: Clock,
    /// The background tasks; `server` stops and awaits them.
    tasks: Tasks,
    /// The peers' checkpoints, verified and witnessed.
    witness: Arc<Witness>,
    /// First and longest retry delay.
    retry: (Duration, Duration),
    /// Which agreement each peer says it holds, against ours.
    agreements: PeerAgreements,
    /// The newest roster of each party: ours says who may act.
    rosters: Rosters,
    /// What operations teams scrape (`[metrics]`).
    metrics: Arc<crate::metrics::Metrics>,
    events: Events,
    /// How new peers are dialled: our node certificate and source address.
    dialer: std::sync::RwLock<crate::peers::Dialer>,
    /// Written while a version is adopted (one at a time), read while a
    /// message is checked or signed and then logged: so each is checked
    /// and logged under one version, and the log shows which.
    pub(crate) adopting: tokio::sync::RwLock<()>,
    /// Set while later versions are fetched from a peer: one catch-up at a time.
    catching_up: std::sync::atomic::AtomicBool,
    /// Set once `start_writing` is done (log compared with the peers' view,
    /// configured roster published): until then operators are told to come back.
    started: std::sync::atomic::AtomicBool,
    /// New deliveries for the delivery worker, and what wakes their retries.
    deliveries: crate::deliveries::DeliveryQueue,
    /// Each peer's link as our calls find it.
    links: crate::links::Links,
}

fn setup(what: impl std::fmt::Display) -> NodeError {
    NodeError::Setup(what.to_string())
}

impl Node {
    /// Loads everything a node needs from its configuration, refusing an
    /// agreement not signed by its quorum, and opens the log; `cert` is the
    /// node certificate it dials peers with, `clock` where it reads the time.
    /// A node runs on the newest agreement it adopted: the configured file,
    /// or a later version its log holds (adopted while it ran). Its log's
    /// writer keeps `lock`, the data directory's, until it stops.
    pub async fn open(
        config: &Config,
        cert: &CertKey,
        clock: Clock,
        lock: crate::store::DirLock,
    ) -> Result<Arc<Self>, NodeError> {
        let key_files = config.keys.clone();
        let opener = crate::opener::Opener::load(&config.party, &config.encryption_key).map_err(setup)?;
        let sealing = (opener, config.encryption_key.clone());
        let held = key_files.load().map_err(setup)?;
        let configured = SignedAgreement::load(&config.agreement).map_err(setup)?;
        configured
            .verify(clock.now())
            .map_err(|e| setup(format!("{}: {e}", config.agreement.display())))?;
        let keys = OwnKeys::single(held[0].clone());
        crate::store::bind(&config.data, config.database.as_deref()).map_err(crate::log::LogError::from)?;
        // On PostgreSQL a standby waits in here for the writer lease, off the async workers.
        let (data, opening, recheck, writer_clock) =
            (config.data.clone(), keys.clone(), config.recheck_log, clock.clone());
        let log =
            crate::db::on_blocking_pool(move || Log::open_locked(&data, opening, recheck, writer_clock, Some(lock)))
                .await
                .map_err(|e| setup(format!("opening the log: {e}")))??;
        // If anything below refuses the start, the log closes before `open` returns, so
        // its writer has let go of the data directory's lock (a restart may follow at once).
        let mut closing = CloseUnlessKept(Some(Arc::new(log)));
        let log = closing.log();
        // Nothing is signed until the log is compared with its peers' view (start_writing).
        log.hold();
        let signed = crate::in_force::starting_agreement(&log, configured, &config.agreement).map_err(setup)?;
        let agreement = &signed.agreement;
        let me = agreement.party(&config.party).ok_or_else(|| {
            setup(format!(
                "agreement version {}: party {} is not in the agreement",
                agreement.version, config.party
            ))
        })?;
        let own = own_keys(&held, me);
        if own.is_empty() {
            return Err(setup(format!(
                "{}: key {} is not party {}'s key in agreement version {}",
                config.keys.describe(),
                held[0].verifier().key_id(),
                config.party,
                agreement.version
            )));
        }
        keys.set(own);
        let now = clock.now();
        if keys.signing(now).is_none() {
            let why = crate::log::no_valid_key(&keys, now);
            return Err(setup(format!("{}: {why}", config.keys.describe())));
        }
        let identifier =
            Arc::new(Identifier::new(agreement, config.local_fingerprints().map_err(setup)?).map_err(setup)?);
        let own_ca = config.ca_pem().map_err(setup)?;
        let tls = Arc::new(ServerTls::new(cert, &own_ca, agreement).map_err(setup)?);
        let dialer = crate::peers::Dialer {
            cert: cert.clone(),
            source: config.source_address,
        };
        let peers = Peers::dial(agreement, &config.party, &dialer).map_err(setup)?;
        let live = Arc::new(Live::new(InForce {
            text_sha256: signed.text_sha256(),
            keyring: agreement.keyring(),
            peers,
            signed,
        }));
        let metrics = Arc::new(crate::metrics::Metrics::new(
            log.commit_histogram(),
            log.checkpoint_failures(),
        ));
        let events = Events::new(clock.clone(), metrics.clone());
        let witness = Arc::new(Witness::new(log.clone(), live.clone(), events.clone(), clock.clone()));
        let rosters = Rosters::load(&log, &sealing.0)?;
        let node = Arc::new(Self {
            party: config.party.clone(),
            live,
            tls,
            dialer: std::sync::RwLock::new(dialer),
            adopting: tokio::sync::RwLock::new(()),
            catching_up: Default::default(),
            started: Default::default(),
            keys,
            key_files,
            sealing,
            log,
            gate: crate::gate::Gate::new(identifier, crate::limits::Limits::new(config.limits), &config.party),
            cpu: crate::limits::CpuShare::for_this_machine(),
            repeats: crate::repeats::Repeats::new(Duration::from_secs(60)),
            alerts: tokio::sync::watch::Sender::new(config.alerts.clone()),
            clock,
            tasks: Tasks::default(),
            witness,
            retry: (config.retry_base, config.retry_max),
            agreements: PeerAgreements::default(),
            rosters,
            metrics,
            events,
            deliveries: Default::default(),
            links: Default::default(),
        });
        closing.keep();
        Ok(node)
    }

    /// Once the node answers its peers: compares its log with what they
    /// witnessed of it (see `rollback.rs`, each peer given `timeout`), then
    /// lets the log take entries and logs what a start logs: the agreement's
    /// adoption and the configured roster.
    pub async fn start_writing(&self, roster: Option<&std::path::Path>, timeout: Duration) -> Result<(), NodeError> {
        self.check_against_peers(timeout).await?;
        // The agreement first: a verifier learns its keys before the first checkpoint.
        self.adopt_at_start().await?;
        self.log.release();
        self.publish_configured_roster(roster).await?;
        self.started.store(true, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// A peer spoke to us (a delivery, or its answer to ours): deliveries
    /// to it waiting for a retry go now, and a later version of the
    /// agreement it says it holds is fetched from it and adopted if it
    /// chains from ours. What it claims is flagged only once its delivery is
    /// accepted ([`Node::peer_holds`]).
    pub fn heard_from(self: &Arc<Self>, party: &str, theirs: Option<&crate::proto::AgreementRef>) {
        self.deliveries.wake(party);
        if let Some(theirs) = theirs {
            self.catch_up(party, theirs.version);
        }
    }

    /// What `party`, whose delivery or answer we accepted, says it holds,
    /// compared with ours: another text under our version number is logged
    /// as an AGREEMENT_FORK norm event, once per peer and text.
    pub async fn peer_holds(&self, party: &str, theirs: Option<&crate::proto::AgreementRef>) {
        let Some(detail) = self.agreements.note(party, theirs, &self.in_force().reference()) else {
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

    /// The delivery worker's queue and wake-ups.
    pub fn deliveries(&self) -> &crate::deliveries::DeliveryQueue {
        &self.deliveries
    }

    /// Our party id.
    pub fn party(&self) -> &str {
        &self.party
    }

    /// The audit log.
    pub fn log(&self) -> &Arc<Log> {
        &self.log
    }

    /// Who is calling, from TLS certificates, within which request limits:
    /// what each service checks its callers against.
    pub fn gate(&self) -> &crate::gate::Gate {
        &self.gate
    }

    /// Repeated identical failures, logged once a minute with a count.
    pub fn repeats(&self) -> &crate::repeats::Repeats {
        &self.repeats
    }

    /// Where the node reads the time.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The node's background tasks.
    pub fn tasks(&self) -> &Tasks {
        &self.tasks
    }

    /// The peers' checkpoints, verified and witnessed.
    pub fn witness(&self) -> &Arc<Witness> {
        &self.witness
    }

    /// Which agreement each peer says it holds.
    pub fn agreements(&self) -> &PeerAgreements {
        &self.agreements
    }

    /// The newest roster of each party.
    pub fn rosters(&self) -> &Rosters {
        &self.rosters
    }

    /// What operations teams scrape.
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.metrics
    }

    /// Our TLS as a server.
    pub fn tls(&self) -> &Arc<ServerTls> {
        &self.tls
    }

    /// The key that signs what we send now: of our keys valid now, the
    /// newest. None valid is refused: an envelope signed outside its key's
    /// window would be refused by every peer and fail our own audit.
    pub fn key(&self) -> Result<IdentityKey, LogError> {
        let now = self.clock.now();
        self.keys
            .signing(now)
            .ok_or_else(|| crate::log::no_valid_key(&self.keys, now))
    }

    /// Takes up our keys as `me` (our party in a newly adopted version)
    /// lists them, reading a rotation's new key file if it lists one we do
    /// not hold yet.
    fn follow_keys(&self, me: &crate::agreement::Party) {
        let mut held: Vec<IdentityKey> = self.keys.all().into_iter().map(|k| k.key).collect();
        if me.keys.iter().any(|k| !held.iter().any(|h| h.verifier() == &k.key)) {
            match self.key_files.load() {
                Ok(loaded) => held = loaded,
                Err(e) => tracing::warn!(error = %e, "cannot read our identity keys"),
            }
        }
        let own = own_keys(&held, me);
        if own.is_empty() {
            tracing::error!(party = %self.party, "the agreement in force lists none of the keys this node holds");
        }
        self.keys.set(own);
    }

    /// A snapshot of the agreement in force, its keys and peers.
    pub fn in_force(&self) -> Arc<InForce> {
        self.live.get()
    }

    /// The delay before retry number `attempts` (1 for the first retry) of
    /// a delivery or an automatic answer: doubling from `retry_base` up to
    /// `retry_max`, then scaled by a random factor in [0.5, 1.0).
    pub fn retry_delay(&self, attempts: u32) -> Duration {
        let (base, max) = self.retry;
        let exp = base.saturating_mul(1u32 << attempts.saturating_sub(1).min(20)).min(max);
        let jitter = 0.5 + (rand_core::RngCore::next_u32(&mut rand_core::OsRng) as f64 / u32::MAX as f64) * 0.5;
        exp.mul_f64(jitter)
    }

    /// Refused while the node starts: until its log is compared with its
    /// peers' view and its configured roster published, it has no roster in
    /// force to say who may act, so operators are told to come back.
    pub fn started(&self) -> Result<(), LogError> {
        match self.started.load(std::sync::atomic::Ordering::Acquire) {
            false => Err(LogError::Held),
            true => Ok(()),
        }
    }
}

/// Closes the log it holds when dropped, unless kept: so a start refused
/// half-way never leaves the log's writer running behind it.
struct CloseUnlessKept(Option<Arc<Log>>);

impl CloseUnlessKept {
    /// Another handle on the log (dropped before this guard, being declared after it).
    fn log(&self) -> Arc<Log> {
        self.0
            .clone()
            .unwrap_or_else(|| unreachable!("the guard holds the log until kept"))
    }

    /// The start went through: the node owns the log now.
    fn keep(&mut self) {
        self.0 = None;
    }
}

impl Drop for CloseUnlessKept {
    fn drop(&mut self) {
        if let Some(log) = self.0.take().and_then(|l| Arc::try_unwrap(l).ok()) {
            log.close();
        }
    }
}

/// The keys of `held` that `me` lists, with the windows it gives them.
fn own_keys(held: &[IdentityKey], me: &crate::agreement::Party) -> Vec<TrustedKeyPair> {
    me.keys
        .iter()
        .filter_map(|t| {
            held.iter().find(|h| h.verifier() == &t.key).map(|h| TrustedKeyPair {
                key: h.clone(),
                valid_from: t.valid_from,
                // A revoked key signs nothing from its revocation on.
                valid_until: match (t.valid_until, t.revoked) {
                    (Some(u), Some(r)) => Some(u.min(r)),
                    (u, r) => u.or(r),
                },
            })
        })
        .collect()
}

/// Runs `tasks` concurrently, so that their log appends land in one batch,
/// and returns their results in the order given; a task that panicked gives
/// `failed`. Dropping the future leaves the tasks to finish: a caller that
/// hangs up after its delivery was logged must not cut off what follows the
/// commit (its automatic answer, its events), and a resend finds it logged.
/// Each task comes boxed: a recording's future runs to kilobytes, and tokio
/// would copy an unboxed one whole into its task and again as it finishes.
pub(crate) async fn join_in_order<T: Send + 'static>(
    tasks: Vec<std::pin::Pin<Box<impl std::future::Future<Output = T> + Send + 'static>>>,
    failed: impl Fn(tokio::task::JoinError) -> T,
) -> Vec<T> {
    let handles: Vec<_> = tasks.into_iter().map(tokio::spawn).collect();
    let mut results = Vec::with_capacity(handles.len());
    for handle in handles {
        results.push(handle.await.unwrap_or_else(&failed));
    }
    results
}
