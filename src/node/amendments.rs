//! Amending the agreement over the hotline itself. An operator proposes the
//! next version; the node signs it and sends it, as an amendment message, to
//! every party of the version in force and of the one proposed. Each party's
//! operator approves (its node adds its signature and sends the note on to
//! all) or rejects. Every node merges the signatures it learns, checked one
//! by one, into the proposal it keeps, and adopts the version the moment
//! they meet the chain rule (`adoption`). A node that learns a peer holds a
//! later version fetches the versions it lacks from that peer and adopts
//! them in order.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prost::Message as _;

use super::actor::{Actor, PendingAmendment, Sent};
use super::outbound::Outgoing;
use super::{Node, NodeError};
use crate::agreement::{Agreement, SignedAgreement};
use crate::clock;
use crate::envelope::AMENDMENT_TYPE;
use crate::message::{self, Kind};
use crate::proto::{Amendment, AmendmentAction, GetAgreementRequest};
use crate::state::{self, AmendmentStep, MAX_PENDING_PER_PARTY, Proposal};

/// How many versions a node fetches from a peer in one catch-up, and how
/// far ahead of the version in force a proposal may be.
const MAX_CATCH_UP: u64 = 64;

impl Node {
    /// Proposes `note` (a signed note or plain TOML text) as the next
    /// version: checks it chains from the version in force, signs it and
    /// sends it to every other party of both versions.
    pub async fn propose(&self, note: &[u8], reason: &str, actor: Actor<'_>) -> Result<Sent, NodeError> {
        let bad = |e: crate::agreement::AgreementError| NodeError::BadAmendment(format!("the proposed version: {e}"));
        let mut proposed = SignedAgreement::parse(note).map_err(bad)?;
        let current = self.in_force();
        let (version, expected) = (proposed.agreement.version, current.version() + 1);
        if version != expected {
            return Err(NodeError::BadAmendment(format!(
                "the proposed version is {version}; the next version after the one in force is {expected}"
            )));
        }
        if proposed.agreement.previous != Some(current.text_sha256) {
            return Err(NodeError::BadAmendment(format!(
                "the proposed version does not name version {} (previous = \"{}\")",
                current.version(),
                hex::encode(current.text_sha256)
            )));
        }
        // Only signatures that verify travel on.
        let mut checked = SignedAgreement::parse(proposed.text().as_bytes()).map_err(bad)?;
        checked
            .merge(&proposed, current.agreement(), self.clock.now())
            .map_err(bad)?;
        proposed = checked;
        self.sign_and_send(proposed, AmendmentAction::Propose, reason, actor)
            .await
    }

    /// Approves the pending proposal of `version` (the one with text hash
    /// `sha256` if several): signs it, adds the signatures `extra` carries
    /// (a party joining signs offline and hands its signature over), and
    /// sends the note to every other party.
    pub async fn approve(
        &self,
        version: u64,
        sha256: &[u8],
        extra: Option<&[u8]>,
        actor: Actor<'_>,
    ) -> Result<Sent, NodeError> {
        let p = self.pending_proposal(version, sha256).await?;
        let mut proposed = parse_kept(&p)?;
        if let Some(extra) = extra {
            let extra = SignedAgreement::parse(extra)
                .map_err(|e| NodeError::BadAmendment(format!("the signatures to add: {e}")))?;
            proposed
                .merge(&extra, self.in_force().agreement(), self.clock.now())
                .map_err(|e| NodeError::BadAmendment(format!("the signatures to add: {e}")))?;
        }
        self.sign_and_send(proposed, AmendmentAction::Approve, "", actor).await
    }

    /// Rejects the pending proposal of `version`, saying why, to every other party.
    pub async fn reject(&self, version: u64, sha256: &[u8], reason: &str, actor: Actor<'_>) -> Result<Sent, NodeError> {
        if reason.trim().is_empty() {
            return Err(NodeError::MissingField("reason"));
        }
        let p = self.pending_proposal(version, sha256).await?;
        let proposed = parse_kept(&p)?;
        let to = self.amendment_recipients(&proposed.agreement);
        let amendment = self.amendment(&proposed, AmendmentAction::Reject, reason, actor, to, Vec::new());
        let step = AmendmentStep::Rejection {
            sha256: p.sha256,
            party: self.party.clone(),
            reason: reason.to_owned(),
        };
        self.send_amendment(amendment, step, actor).await
    }

    /// The proposals of versions after the one in force, with their approvals.
    pub async fn pending(&self) -> Result<Vec<PendingAmendment>, NodeError> {
        let current = self.in_force();
        let version = current.version();
        let kept = self.query(move |c| state::pending_with_rejections(c, version)).await?;
        let now = self.clock.now();
        let mut pending = Vec::with_capacity(kept.len());
        for (p, rejections) in kept {
            let (approved_by, needs) = match parse_kept(&p) {
                Ok(s) => {
                    let approved = s.approved_by(current.agreement(), now).unwrap_or_default();
                    let needs = match s.verify_successor(&current.signed, now) {
                        Ok(()) => "nothing: it is adopted next".to_owned(),
                        Err(e) => e.to_string(),
                    };
                    (approved, needs)
                }
                Err(e) => (Vec::new(), e.to_string()),
            };
            pending.push(PendingAmendment {
                proposal: p,
                approved_by,
                needs,
                rejections,
            });
        }
        Ok(pending)
    }

    /// Checks a delivered amendment against what it claims: its note signs
    /// the version and text it names, and every signature in it by a key
    /// we know verifies (the sender's among them, unless it rejects). What
    /// it adds to the proposal is returned, with only checked signatures;
    /// nothing for a version already in force or past (it is only logged).
    pub(super) fn check_amendment(&self, a: &Amendment, caller: &str) -> Result<Option<AmendmentStep>, NodeError> {
        let current = self.in_force();
        let bad = |what: String| NodeError::BadAmendment(format!("amendment {}: {what}", a.id));
        if a.version <= current.version() {
            if a.version == current.version() && a.text_sha256.as_slice() != current.text_sha256 {
                // Another text under the version in force: a fork, flagged once it is
                // logged, if the note it carries is the text it names.
                let carried = SignedAgreement::parse(&a.signed_note).map_err(|e| bad(e.to_string()))?;
                if carried.agreement.version != a.version || carried.text_sha256().as_slice() != a.text_sha256 {
                    return Err(bad("its signed note is not the version and text it names".into()));
                }
            }
            return Ok(None);
        }
        if a.version > current.version() + MAX_CATCH_UP {
            return Err(NodeError::BadAmendment(format!(
                "amendment {} is about version {}, more than {MAX_CATCH_UP} versions after the one in force ({})",
                a.id,
                a.version,
                current.version()
            )));
        }
        let held = self.read(|c| state::proposal(c, &a.text_sha256))?.is_some();
        if a.action() == AmendmentAction::Reject {
            // Rejections are kept only for proposals held; the sender retries until ours arrives.
            if !held {
                return Err(NodeError::NoSuchProposal(format!(
                    "with text SHA-256 {} (yet)",
                    hex::encode(&a.text_sha256)
                )));
            }
            return Ok(Some(AmendmentStep::Rejection {
                sha256: a.text_sha256.clone(),
                party: caller.to_owned(),
                reason: a.reason.clone(),
            }));
        }
        if !held && self.read(|c| state::pending_count_by(c, current.version(), caller))? >= MAX_PENDING_PER_PARTY {
            return Err(NodeError::BadAmendment(format!(
                "{MAX_PENDING_PER_PARTY} proposals by {caller} are pending already; amendment {} is refused until some are adopted",
                a.id
            )));
        }
        let carried = SignedAgreement::parse(&a.signed_note).map_err(|e| bad(e.to_string()))?;
        if carried.agreement.version != a.version || carried.text_sha256().as_slice() != a.text_sha256 {
            return Err(bad("its signed note is not the version and text it names".into()));
        }
        if let Some(p) =
            a.to.iter()
                .find(|p| current.agreement().party(p).is_none() && carried.agreement.party(p).is_none())
        {
            return Err(NodeError::UnknownRecipient(p.clone()));
        }
        let mut checked = SignedAgreement::parse(carried.text().as_bytes()).map_err(|e| bad(e.to_string()))?;
        checked
            .merge(&carried, current.agreement(), self.clock.now())
            .map_err(|e| bad(e.to_string()))?;
        let signers = checked
            .approved_by(current.agreement(), self.clock.now())
            .map_err(|e| bad(e.to_string()))?;
        if !signers.iter().any(|p| p == caller) {
            return Err(bad(format!("{caller} did not sign the version it sends")));
        }
        Ok(Some(AmendmentStep::Signatures(Proposal {
            sha256: a.text_sha256.clone(),
            version: a.version,
            note: checked.to_bytes(),
            proposed_by: caller.to_owned(),
            proposed_ms: self.clock.now_ms(),
        })))
    }

    /// Adopts every kept proposal that now meets the chain rule, in order;
    /// failures are logged, since a proposal short of signatures waits.
    pub(super) async fn adopt_ready(&self) {
        loop {
            let current = self.in_force();
            let version = current.version();
            let next = match self.query(move |c| state::proposals_after(c, version)).await {
                Ok(kept) => kept
                    .into_iter()
                    .filter(|p| p.version == current.version() + 1)
                    .find_map(|p| {
                        let s = parse_kept(&p).ok()?;
                        s.verify_successor(&current.signed, self.clock.now()).ok().map(|()| s)
                    }),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the proposals");
                    return;
                }
            };
            let Some(next) = next else { return };
            if let Err(e) = self.adopt(next).await {
                tracing::warn!(error = %e, "could not adopt a proposal that meets the chain rule");
                return;
            }
        }
    }

    /// Fetches from `party` the versions between ours and `theirs`, which
    /// it says it holds, and adopts each that follows by the chain rule.
    /// One catch-up runs at a time; a version the peer cannot give, or that
    /// does not chain, ends it.
    pub(super) fn catch_up(self: &Arc<Self>, party: &str, theirs: u64) {
        if theirs <= self.in_force().version() || self.catching_up.swap(true, Ordering::AcqRel) {
            return;
        }
        let (node, party) = (self.clone(), party.to_owned());
        self.tasks.spawn(async move {
            let first = node.in_force().version() + 1;
            for version in first..=theirs.min(first + MAX_CATCH_UP - 1) {
                let Some(mut client) = node.in_force().peers.get(&party) else {
                    break;
                };
                let note = match client.get_agreement(GetAgreementRequest { version }).await {
                    Ok(r) => r.into_inner().signed_note,
                    Err(status) => {
                        tracing::warn!(%party, version, %status, "cannot fetch a later agreement version");
                        break;
                    }
                };
                let adopted = match SignedAgreement::parse(&note) {
                    Ok(signed) => node.adopt(signed).await,
                    Err(e) => Err(NodeError::BadAmendment(e.to_string())),
                };
                if let Err(e) = adopted {
                    tracing::warn!(%party, version, error = %e, "refused a later agreement version from a peer");
                    break;
                }
            }
            node.catching_up.store(false, Ordering::Release);
        });
    }

    /// The proposal of `version` still pending (the one whose text hash
    /// starts with `sha256`, when several are).
    async fn pending_proposal(&self, version: u64, sha256: &[u8]) -> Result<Proposal, NodeError> {
        let current = self.in_force().version();
        let mut kept: Vec<Proposal> = self
            .query(move |c| state::proposals_after(c, current))
            .await?
            .into_iter()
            .filter(|p| p.version == version && p.sha256.starts_with(sha256))
            .collect();
        match kept.len() {
            1 => Ok(kept.remove(0)),
            0 => Err(NodeError::NoSuchProposal(format!("of version {version}"))),
            n => Err(NodeError::BadAmendment(format!(
                "{n} different texts are proposed as version {version}; name one by its SHA-256"
            ))),
        }
    }

    /// Every other party of the version in force and of `proposed`.
    fn amendment_recipients(&self, proposed: &Agreement) -> Vec<String> {
        let current = self.in_force();
        let mut to: Vec<String> = Vec::new();
        for p in current.agreement().parties.iter().chain(&proposed.parties) {
            if p.id != self.party && !to.contains(&p.id) {
                to.push(p.id.clone());
            }
        }
        to
    }

    /// The amendment message for a step on `proposed`.
    fn amendment(
        &self,
        proposed: &SignedAgreement,
        action: AmendmentAction,
        reason: &str,
        actor: Actor<'_>,
        to: Vec<String>,
        signed_note: Vec<u8>,
    ) -> Amendment {
        Amendment {
            id: message::new_id(),
            from: self.party.clone(),
            to,
            created_at: Some(clock::to_proto(self.clock.now())),
            action: action as i32,
            version: proposed.agreement.version,
            text_sha256: proposed.text_sha256().to_vec(),
            signed_note,
            reason: reason.to_owned(),
            author: actor.name().to_owned(),
        }
    }

    /// Adds our signature to `proposed` and sends it as a step of `action`.
    async fn sign_and_send(
        &self,
        mut proposed: SignedAgreement,
        action: AmendmentAction,
        reason: &str,
        actor: Actor<'_>,
    ) -> Result<Sent, NodeError> {
        proposed
            .sign_following(&self.key()?, self.in_force().agreement())
            .map_err(|e| NodeError::BadAmendment(e.to_string()))?;
        let to = self.amendment_recipients(&proposed.agreement);
        let amendment = self.amendment(&proposed, action, reason, actor, to, proposed.to_bytes());
        let step = AmendmentStep::Signatures(Proposal {
            sha256: amendment.text_sha256.clone(),
            version: amendment.version,
            note: amendment.signed_note.clone(),
            proposed_by: self.party.clone(),
            proposed_ms: self.clock.now_ms(),
        });
        self.send_amendment(amendment, step, actor).await
    }

    /// Signs, logs and queues an amendment with the step it records, then
    /// adopts the proposal if our step completed it.
    async fn send_amendment(&self, a: Amendment, step: AmendmentStep, actor: Actor<'_>) -> Result<Sent, NodeError> {
        message::validate_amendment(&a, &self.in_force().agreement().norms)?;
        let sent = self
            .send(
                Outgoing {
                    kind: Kind::Amendment,
                    id: a.id.clone(),
                    thread: hex::encode(&a.text_sha256),
                    payload: (AMENDMENT_TYPE, a.encode_to_vec()),
                    to: a.to,
                    owed: vec![],
                    meets: vec![],
                    record: Some(state::Record::Amendment(step)),
                    exercise: false,
                    answers_tlp: None,
                },
                actor,
            )
            .await?;
        self.adopt_ready().await;
        Ok(sent)
    }
}

/// A kept proposal, parsed.
fn parse_kept(p: &Proposal) -> Result<SignedAgreement, NodeError> {
    SignedAgreement::parse(&p.note).map_err(|e| NodeError::Internal(format!("a kept proposal: {e}")))
}
