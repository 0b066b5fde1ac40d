//! The agreement in force and what follows from it: the keys trusted and the
//! peers dialled. Adopting a new version replaces it whole while the node
//! runs; a reader takes a snapshot, so one call or one delivery sees one
//! version throughout, and tasks that keep per-peer work (the couriers, the
//! witness) are told when it changes.

use std::path::Path;
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use crate::agreement::{Agreement, SignedAgreement};
use crate::keys::Keyring;
use crate::log::Log;
use crate::peers::Peers;
use crate::state;

/// One adopted version of the agreement, ready to use.
pub struct InForce {
    /// The signed agreement, as adopted.
    pub signed: SignedAgreement,
    /// The SHA-256 of its text: what deliveries announce and version n+1 names.
    pub text_sha256: [u8; 32],
    /// Every key it trusts, with validity windows.
    pub keyring: Keyring,
    /// Every other party's node, dialled lazily.
    pub peers: Peers,
}

impl InForce {
    /// The agreement.
    pub fn agreement(&self) -> &Agreement {
        &self.signed.agreement
    }

    /// Its version number.
    pub fn version(&self) -> u64 {
        self.signed.agreement.version
    }

    /// How deliveries announce it.
    pub fn reference(&self) -> crate::proto::AgreementRef {
        crate::proto::AgreementRef {
            version: self.version(),
            text_sha256: self.text_sha256.to_vec(),
        }
    }
}

/// The version in force, replaceable while readers hold older snapshots.
pub struct Live {
    current: RwLock<Arc<InForce>>,
    changed: watch::Sender<u64>,
}

impl Live {
    /// Starts with `first` in force.
    pub fn new(first: InForce) -> Self {
        let (changed, _) = watch::channel(first.version());
        Self {
            current: RwLock::new(Arc::new(first)),
            changed,
        }
    }

    /// A snapshot of the version in force.
    pub fn get(&self) -> Arc<InForce> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Puts `next` in force and tells every watcher.
    pub fn set(&self, next: InForce) {
        let version = next.version();
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
        self.changed.send_replace(version);
    }

    /// A receiver that wakes whenever a new version is put in force.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

/// The version a node starts on: `configured` (read from `file`), unless the
/// log holds a later version adopted while the node ran, in which case the
/// configured one must be the very text the log adopted under its number.
pub fn starting_agreement(log: &Log, configured: SignedAgreement, file: &Path) -> Result<SignedAgreement, String> {
    let read = |what: &str, e: crate::log::LogError| format!("reading the {what} agreement from the log: {e}");
    let held = log
        .reader()
        .read(|c| state::adopted(c).map_err(|e| crate::log::LogError::Refused(e.into())))
        .map_err(|e| read("adopted", e))?;
    let Some(held) = held.filter(|h| h.version > configured.agreement.version) else {
        return Ok(configured);
    };
    let version = configured.agreement.version;
    let same = log
        .reader()
        .read(|c| state::adopted_version(c, version).map_err(|e| crate::log::LogError::Refused(e.into())))
        .map_err(|e| read("configured", e))?
        .and_then(|a| SignedAgreement::parse(&a.signed_note).ok())
        .is_some_and(|a| a.text() == configured.text());
    if !same {
        return Err(format!(
            "{}: agreement version {version} is not the version {version} this node's log adopted: a fork",
            file.display()
        ));
    }
    // It was adopted by the chain rule, which audit verify checks again.
    let newest =
        SignedAgreement::parse(&held.signed_note).map_err(|e| format!("the adopted agreement in the log: {e}"))?;
    tracing::info!(
        configured = version,
        adopted = held.version,
        "starting on the agreement version adopted while running"
    );
    Ok(newest)
}
