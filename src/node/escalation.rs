//! Escalation: a missed acknowledgement or response does not end at a norm
//! event. The node sends the party that missed it a fresh signed notice,
//! continuing the notice it concerns, addressed to the party's policy
//! contact (by name, as the party's roster has it) and naming the missed
//! step (level 1); then again after each of
//! the agreement's `escalate_after` intervals while the step stays undone.
//! Each level is logged on both sides: the notice itself, and an ESCALATED
//! norm event.

use prost::Message as _;

use super::actor::Actor;
use super::{Node, NodeError};
use crate::clock;
use crate::message::Kind;
use crate::norm_event;
use crate::proto::{Deadline, NormEventKind, Notice, NoticeKind, Response, ResponseStatus};
use crate::state;

/// Whom at the party an escalation is for.
const POLICY: &str = "policy";

impl Node {
    /// Escalates the missed clock `d` of one of our notices to `level`,
    /// unless the party has done the step since.
    pub async fn escalate(&self, d: &state::Running, level: u32) -> Result<(), NodeError> {
        let id = d.message_id.clone();
        let thread = self.query(move |c| state::thread(c, &id)).await?;
        let done = thread
            .iter()
            .filter(|m| m.kind == Kind::Response && m.sender == d.party)
            .filter_map(|m| self.opened(&m.envelope).ok())
            .filter_map(|env| Response::decode(&env.payload[..]).ok())
            .any(|r| d.kind == Deadline::Acknowledge || r.status() != ResponseStatus::Acknowledged);
        let after = self
            .in_force()
            .agreement()
            .norms
            .escalate_after
            .get(level as usize - 1)
            .copied();
        let next_ms = after
            .filter(|_| !done)
            .map(|a| self.clock.now_ms() + a.as_millis() as i64);
        let Some(original) = self.held_notice(&d.message_id).await?.filter(|_| !done) else {
            let missed = d.clone();
            let change = Box::new(move |c: &crate::db::Connection, _| state::escalated(c, &missed, level - 1, None));
            self.log.append_with(vec![], change, false).await?;
            return Ok(());
        };
        let step = match d.kind {
            Deadline::Acknowledge => "acknowledgement",
            _ => "response",
        };
        let contact = policy_contact(self, &d.party);
        let notice = Notice {
            to: vec![d.party.clone()],
            kind: NoticeKind::Update as i32,
            severity: original.severity,
            category: original.category,
            tlp: original.tlp,
            exercise: original.exercise,
            title: format!("ESCALATION level {level}: no {step} to notice {}", original.id),
            summary: format!(
                "For the attention of {contact}. {} has had no {step} from {} to notice {} (\"{}\"), due at {}. Please see that it is answered.",
                self.party,
                d.party,
                original.id,
                original.title,
                clock::ms_to_proto(d.due_ms)
                    .as_ref()
                    .and_then(clock::from_proto)
                    .map(clock::rfc3339)
                    .unwrap_or_default()
            ),
            in_reply_to: original.id.clone(),
            escalation_level: level,
            attention: POLICY.into(),
            ..Default::default()
        };
        let sent = self.send_notice(notice, Actor::Node).await?;
        let event = norm_event::new(
            NormEventKind::Escalated,
            &d.party,
            &d.message_id,
            d.kind,
            Some(d.due_ms),
            self.clock.now(),
            format!(
                "{} missed the {step} for {}: escalated to {contact} (level {level}, notice {})",
                d.party, d.message_id, sent.id
            ),
        );
        let missed = d.clone();
        norm_event::log(&self.log, &self.events, event, move |c| {
            state::escalated(c, &missed, level, next_ms)
        })
        .await?;
        tracing::warn!(party = %d.party, message_id = %d.message_id, level, "escalated a missed {step}");
        Ok(())
    }
}

/// The policy contact of `party` in words: "CHL's policy contact Diego
/// Soto" as its roster names them, or "CHL's policy contact" if we hold none.
pub(super) fn policy_contact(node: &Node, party: &str) -> String {
    let names = node
        .rosters
        .get(party)
        .map(|r| {
            r.signed
                .roster
                .names_with(crate::roster::ContactRole::Policy)
                .join(", ")
        })
        .unwrap_or_default();
    match names.is_empty() {
        true => format!("{party}'s {POLICY} contact"),
        false => format!("{party}'s {POLICY} contact {names}"),
    }
}
