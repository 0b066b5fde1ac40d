//! Rosters over the hotline. Whoever holds our identity key signs our
//! roster; the node checks that signature, logs the roster and sends it to
//! every peer as a `RosterUpdate`, which each peer checks against our keys
//! in its agreement before it keeps it. The newest roster of each party is
//! held in memory: ours decides which operator certificates may act and
//! under what name, peers' put names and roles on what they sign.

use std::path::Path;

use prost::Message as _;

use super::actor::{Actor, Sent};
use super::outbound::Outgoing;
use super::{Node, NodeError};
use crate::envelope::ROSTER_TYPE;
use crate::message::Kind;
use crate::proto::{Person, RosterUpdate};
use crate::roster::SignedRoster;
use crate::state::{self, KeptRoster};

impl Node {
    /// The name our roster gives the operator certificate `fingerprint`
    /// (`name` in hotline.toml): who acts. A certificate no contact uses cannot.
    pub fn acting_contact(&self, name: &str, fingerprint: &[u8; 32]) -> Result<String, NodeError> {
        let ours = self.rosters.get(&self.party);
        match ours.as_ref().and_then(|r| r.signed.roster.contact_for(fingerprint)) {
            Some(contact) => Ok(contact.name.clone()),
            None => Err(NodeError::NotInRoster {
                name: name.to_owned(),
                fingerprint: hex::encode(fingerprint),
                party: self.party.clone(),
                version: ours.map_or(0, |r| r.signed.roster.version),
            }),
        }
    }

    /// Publishes `note`, our roster signed by our identity key: logs it and
    /// sends it to every peer. The new version must be above the one in force.
    pub async fn publish_roster(&self, note: &[u8], actor: Actor<'_>) -> Result<(Sent, u64), NodeError> {
        let signed = SignedRoster::parse(note)?;
        let kept = self.check_roster(&signed, &self.party, "publish")?;
        let to: Vec<String> = self
            .in_force()
            .agreement()
            .parties
            .iter()
            .filter(|p| p.id != self.party)
            .map(|p| p.id.clone())
            .collect();
        let version = kept.version;
        let sent = self.send_roster(kept.clone(), to, actor).await?;
        self.rosters.keep(&KeptRoster {
            log_index: sent.log_index,
            ..kept
        });
        tracing::info!(version, "published our roster");
        Ok((sent, version))
    }

    /// Sends our roster in force to parties that just joined, who never had it.
    pub(super) async fn introduce_roster(&self, joined: Vec<String>) {
        let Some(ours) = self.rosters.get(&self.party) else {
            return;
        };
        let kept = KeptRoster {
            party: self.party.clone(),
            version: ours.signed.roster.version,
            note: ours.signed.to_bytes(),
            log_index: ours.log_index,
        };
        if let Err(e) = self.send_roster(kept, joined.clone(), Actor::Node).await {
            tracing::warn!(?joined, error = %e, "could not send our roster to parties that joined");
        }
    }

    /// Signs, logs and queues a roster update carrying `kept` to `to`.
    async fn send_roster(&self, kept: KeptRoster, to: Vec<String>, actor: Actor<'_>) -> Result<Sent, NodeError> {
        let id = crate::message::new_id();
        let update = RosterUpdate {
            id: id.clone(),
            from: self.party.clone(),
            to: to.clone(),
            created_at: Some(crate::clock::to_proto(self.clock.now())),
            signed_roster: kept.note.clone(),
            version: kept.version,
            author: actor.name().to_owned(),
        };
        self.send(
            Outgoing {
                kind: Kind::Roster,
                id: id.clone(),
                thread: id,
                payload: (ROSTER_TYPE, update.encode_to_vec()),
                to,
                owed: Vec::new(),
                meets: Vec::new(),
                record: Some(state::Record::Roster(kept)),
                exercise: false,
                answers_tlp: None,
            },
            actor,
        )
        .await
    }

    /// Publishes the roster file the configuration names, if its version is
    /// above the one in force: how `hotline init`'s first roster is logged.
    pub(super) async fn publish_configured_roster(&self, file: Option<&Path>) -> Result<(), NodeError> {
        let Some(file) = file else { return Ok(()) };
        let bad = |e: String| NodeError::Setup(format!("roster {}: {e}", file.display()));
        let note = std::fs::read(file).map_err(|e| bad(e.to_string()))?;
        let signed = SignedRoster::parse(&note).map_err(|e| bad(e.to_string()))?;
        if signed.roster.version <= self.rosters.version(&self.party) {
            return Ok(());
        }
        self.publish_roster(&note, Actor::Node)
            .await
            .map(|_| ())
            .map_err(|e| bad(e.to_string()))
    }

    /// Checks a delivered roster update from `caller`: the roster it carries
    /// is `caller`'s, of the version it names, signed by a key `caller`
    /// holds in the agreement, and above the version we hold.
    pub(super) fn check_roster_update(&self, r: &RosterUpdate, caller: &str) -> Result<KeptRoster, NodeError> {
        let signed = SignedRoster::parse(&r.signed_roster)?;
        if signed.roster.version != r.version {
            return Err(NodeError::RosterMismatch {
                id: r.id.clone(),
                reason: format!(
                    "it names version {} but carries version {}",
                    r.version, signed.roster.version
                ),
            });
        }
        self.check_roster(&signed, caller, &r.id)
    }

    /// Checks that `signed` is `party`'s roster, signed by one of its keys
    /// valid now, and newer than the one held.
    fn check_roster(&self, signed: &SignedRoster, party: &str, id: &str) -> Result<KeptRoster, NodeError> {
        let roster = &signed.roster;
        if roster.party != party {
            return Err(NodeError::RosterMismatch {
                id: id.to_owned(),
                reason: format!("the roster is {}'s, not {party}'s", roster.party),
            });
        }
        signed.verify(&self.in_force().keyring, self.clock.now())?;
        let held = self.rosters.version(party);
        if roster.version <= held {
            return Err(NodeError::RosterNotNewer {
                party: party.to_owned(),
                version: roster.version,
                held,
            });
        }
        Ok(KeptRoster {
            party: party.to_owned(),
            version: roster.version,
            note: signed.to_bytes(),
            log_index: 0,
        })
    }

    /// Takes up a roster a peer delivered, once logged.
    pub(super) fn took_roster(&self, kept: &KeptRoster, log_index: u64) {
        self.rosters.keep(&KeptRoster {
            log_index,
            ..kept.clone()
        });
    }

    /// Who each (party, name) is, as the party's roster held has it.
    pub fn people<'a>(&self, names: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<Person> {
        let mut people: Vec<Person> = Vec::new();
        for (party, name) in names {
            if people.iter().any(|p| p.party == party && p.name == name) {
                continue;
            }
            let roster = self.rosters.get(party);
            let contact = roster.as_ref().and_then(|r| r.signed.roster.contact(name));
            people.push(Person {
                party: party.to_owned(),
                name: name.to_owned(),
                roles: contact
                    .map(|c| c.roles.iter().map(|r| r.as_str().to_owned()).collect())
                    .unwrap_or_default(),
                roster_version: match contact {
                    Some(_) => roster.map_or(0, |r| r.signed.roster.version),
                    None => 0,
                },
            });
        }
        people
    }
}
