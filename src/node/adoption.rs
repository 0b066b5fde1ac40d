//! Adopting a version of the agreement. At start a node runs on the newest
//! version it adopted: the configured file, or a later one its log holds.
//! While it runs, a version proposed over the hotline (or fetched from a
//! peer that holds it) is adopted the moment it meets the chain rule: one
//! log transaction records `agreement_adopted` and closes what concerned the
//! parties that left (their queued deliveries, their running clocks and ours
//! towards them, each with a norm event); then the version is put in force,
//! so new peers are dialled, new keys trusted, new norms applied, and a
//! removed party's calls are refused, all without a restart.

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::{Node, NodeError, setup};
use crate::agreement::SignedAgreement;
use crate::in_force::InForce;
use crate::log::entry;
use crate::norm_event;
use crate::peers::Peers;
use crate::proto::log_entry::Body;
use crate::proto::{AgreementAdopted, Deadline, NormEvent, NormEventKind, event};
use crate::state;

impl Node {
    /// Logs the agreement in force the first time this node runs on it;
    /// refuses one that does not follow the version the log adopted last.
    pub(super) async fn adopt_at_start(&self) -> Result<(), NodeError> {
        let in_force = self.in_force();
        let signed = &in_force.signed;
        let bytes = signed.to_bytes();
        if let Some(current) = self.read(state::adopted)? {
            if current.sha256 == Sha256::digest(&bytes).as_slice() {
                return Ok(());
            }
            let held = SignedAgreement::parse(&current.signed_note)
                .map_err(|e| setup(format!("the adopted agreement in the log: {e}")))?;
            check_follows(signed, &held, self.clock.now()).map_err(setup)?;
        }
        self.log_adoption(signed, Vec::new(), true).await
    }

    /// Adopts `next` while running if it follows the version in force by the
    /// chain rule; `Ok(false)` if it is the version in force already.
    pub async fn adopt(&self, next: SignedAgreement) -> Result<bool, NodeError> {
        let joined = self.adopt_version(next).await?;
        // Parties that joined get our roster (the lock is released: sending takes it to read).
        let adopted = joined.is_some();
        if let Some(joined) = joined.filter(|j| !j.is_empty()) {
            self.introduce_roster(joined).await;
        }
        Ok(adopted)
    }

    /// Adopts `next` under the adoption lock; the parties it adds, or
    /// `None` if it is the version in force already.
    async fn adopt_version(&self, next: SignedAgreement) -> Result<Option<Vec<String>>, NodeError> {
        // No message is checked or signed, then logged, across the change.
        let _one_at_a_time = self.adopting.write().await;
        let current = self.in_force();
        if next.text_sha256() == current.text_sha256 {
            return Ok(None);
        }
        check_follows(&next, &current.signed, self.clock.now()).map_err(NodeError::BadAmendment)?;
        let agreement = &next.agreement;
        let version = agreement.version;
        // What follows from it is built before anything is logged: an endpoint
        // or CA that cannot be used refuses the version.
        let peers = match agreement.party(&self.party) {
            Some(_) => current
                .peers
                .redial(agreement, &self.party, &self.dialer())
                .map_err(NodeError::BadAmendment)?,
            None => {
                tracing::warn!(
                    version,
                    "agreement version removes this party; it delivers to no one from now on"
                );
                Peers::default()
            }
        };
        let departed: Vec<String> = current
            .agreement()
            .parties
            .iter()
            .filter(|p| agreement.party(&p.id).is_none() && p.id != self.party)
            .map(|p| p.id.clone())
            .collect();
        let joined: Vec<String> = agreement
            .parties
            .iter()
            .filter(|p| current.agreement().party(&p.id).is_none() && p.id != self.party)
            .map(|p| p.id.clone())
            .collect();
        let events = self.departures(&departed, version)?;
        self.log_adoption(&next, events, false).await?;
        if let Err(e) = self.gate.identifier().set_agreement(agreement) {
            tracing::error!(version, error = %e, "cannot recognise the parties of the adopted agreement");
        }
        if let Err(e) = self.tls.set_agreement(agreement) {
            tracing::error!(version, error = %e, "cannot accept the client CAs of the adopted agreement");
        }
        if let Some(me) = agreement.party(&self.party) {
            self.follow_keys(me);
        }
        self.live.set(InForce {
            text_sha256: next.text_sha256(),
            keyring: agreement.keyring(),
            peers,
            signed: next,
        });
        self.events()
            .emit(crate::proto::event::Body::AgreementAdopted(AgreementAdopted {
                version,
                text_sha256: self.in_force().text_sha256.to_vec(),
                ..Default::default()
            }));
        tracing::info!(version, ?departed, ?joined, "adopted agreement version; in force now");
        Ok(Some(joined))
    }

    /// The norm events of parties leaving at `version`: each of their
    /// running clocks (and ours towards them) closed, each queued delivery
    /// to them cancelled.
    fn departures(&self, departed: &[String], version: u64) -> Result<Vec<NormEvent>, NodeError> {
        let now = self.clock.now();
        let mut events = Vec::new();
        for party in departed {
            let (clocks, queued) = self.read(|c| {
                Ok((
                    state::running_deadlines_of(c, party, &self.party)?,
                    state::queued_for(c, party)?,
                ))
            })?;
            for d in clocks {
                let owed = d.kind.as_str_name().trim_start_matches("DEADLINE_").to_lowercase();
                events.push(norm_event::new(
                    NormEventKind::DeadlineClosed,
                    &d.party,
                    &d.message_id,
                    d.kind,
                    Some(d.due_ms),
                    now,
                    format!(
                        "{party} left the agreement at version {version}: the {owed} {} owed for {} is no longer due",
                        d.party, d.message_id
                    ),
                ));
            }
            for id in queued {
                events.push(norm_event::new(
                    NormEventKind::DeliveryCancelled,
                    party,
                    &id,
                    Deadline::Unspecified,
                    None,
                    now,
                    format!("{party} left the agreement at version {version}: delivery of {id} cancelled"),
                ));
            }
        }
        Ok(events)
    }

    /// Logs `agreement_adopted` for `signed` with `events` (the departures it
    /// causes) and the state they change, in one transaction; `at_start`,
    /// ahead of the deliveries waiting for the log to be released.
    async fn log_adoption(
        &self,
        signed: &SignedAgreement,
        events: Vec<NormEvent>,
        at_start: bool,
    ) -> Result<(), NodeError> {
        let bytes = signed.to_bytes();
        let sha = Sha256::digest(&bytes).to_vec();
        let version = signed.agreement.version;
        let mut entries = vec![entry::encode(
            self.clock.now(),
            Body::AgreementAdopted(AgreementAdopted {
                signed_note: bytes,
                version,
                text_sha256: signed.text_sha256().to_vec(),
                signed_note_sha256: Vec::new(),
            }),
        )];
        entries.extend(events.iter().map(norm_event::entry));
        let kept = events.clone();
        let change = Box::new(move |c: &crate::db::Connection, index: u64| {
            state::adopt(c, version, &sha, index)?;
            for (i, ev) in kept.iter().enumerate() {
                state::insert_norm_event(c, index + 1 + i as u64, ev)?;
                match ev.kind() {
                    NormEventKind::DeliveryCancelled => state::cancel_delivery(c, &ev.message_id, &ev.party)?,
                    _ => state::close_deadline(
                        c,
                        &state::Running {
                            message_id: ev.message_id.clone(),
                            party: ev.party.clone(),
                            kind: ev.deadline(),
                            due_ms: 0,
                        },
                    )?,
                }
            }
            Ok(())
        });
        match at_start {
            true => self.log.append_before_release(entries, change).await?,
            false => self.log.append_with(entries, change, false).await?,
        };
        for ev in events {
            self.events.emit(event::Body::NormEvent(ev));
        }
        tracing::info!(version, "adopted agreement");
        Ok(())
    }
}

/// Whether a node holding `held` may adopt `signed`: the same version with
/// more signatures, or the next version chained to it. An older version, a
/// gap, and another text under the held version number (a fork) are refused.
fn check_follows(signed: &SignedAgreement, held: &SignedAgreement, at: OffsetDateTime) -> Result<(), String> {
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
