//! The newest roster of each party, held in memory: ours decides which
//! operator certificates may act and under what name, peers' put names and
//! roles on what they sign. Filled from the log at start and as rosters are
//! logged (`rosters.rs`).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use prost::Message as _;

use crate::log::{Log, LogError};
use crate::opener::Opener;
use crate::proto::RosterUpdate;
use crate::roster::SignedRoster;
use crate::state::{self, KeptRoster};

/// A roster in force, with the log entry that recorded it here.
pub struct HeldRoster {
    /// The roster as its party signed it.
    pub signed: SignedRoster,
    /// The log entry that recorded it.
    pub log_index: u64,
}

/// The newest roster of each party.
#[derive(Default)]
pub struct Rosters(RwLock<HashMap<String, Arc<HeldRoster>>>);

impl Rosters {
    /// Loads the newest logged roster of every party, each note read from
    /// the envelope that logged it, opened with our key (a row from before
    /// rosters were sealed keeps its note). One that no longer opens or
    /// parses (it was checked when logged) is skipped with a warning: the
    /// party's next roster replaces it.
    pub fn load(log: &Log, opener: &Opener) -> Result<Self, LogError> {
        let refused = |e: crate::db::Error| LogError::Refused(e.into());
        let (kept, messages) = log.reader().read(|c| {
            let kept = state::latest_rosters(c).map_err(LogError::Refused)?;
            let messages = kept
                .iter()
                .filter(|k| k.note.is_empty())
                .map(|k| state::message_at(c, k.log_index).map_err(refused))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((kept, messages))
        })?;
        let note = |m: Option<state::StoredMessage>| -> Option<Vec<u8>> {
            let env = opener.open(&m?.envelope).ok()?;
            Some(RosterUpdate::decode(&env.payload[..]).ok()?.signed_roster)
        };
        let mut notes = messages.into_iter().map(note);
        let held = Self::default();
        for k in kept {
            let k = match k.note.is_empty() {
                false => k,
                true => match notes.next().flatten() {
                    Some(note) => KeptRoster { note, ..k },
                    None => {
                        tracing::warn!(party = %k.party, version = k.version, index = k.log_index, "a logged roster does not open with our encryption key");
                        continue;
                    }
                },
            };
            held.keep(&k);
        }
        Ok(held)
    }

    /// The newest roster held for `party`.
    pub fn get(&self, party: &str) -> Option<Arc<HeldRoster>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).get(party).cloned()
    }

    /// The version held for `party` (0: none).
    pub fn version(&self, party: &str) -> u64 {
        self.get(party).map_or(0, |r| r.signed.roster.version)
    }

    /// Takes up a logged roster if it is newer than the one held.
    pub(super) fn keep(&self, k: &KeptRoster) {
        let signed = match SignedRoster::parse(&k.note) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(party = %k.party, version = k.version, error = %e, "a logged roster no longer parses");
                return;
            }
        };
        let mut held = self.0.write().unwrap_or_else(|e| e.into_inner());
        if held.get(&k.party).is_none_or(|h| h.signed.roster.version < k.version) {
            held.insert(
                k.party.clone(),
                Arc::new(HeldRoster {
                    signed,
                    log_index: k.log_index,
                }),
            );
        }
    }
}
