//! The rules that hold along a thread: TLP (a reply is at least as
//! restricted as what it answers and reaches nobody it may not) and
//! exercises (a reply to an exercise is the same exercise).

use super::error::{MessageError, invalid};
use crate::proto::{Exercise, Notice, Tlp};

/// Checks the TLP rule before a received notice goes to `party`: a party that
/// was not among its recipients may get it only if it is TLP:CLEAR or TLP:GREEN.
pub fn check_forward(n: &Notice, party: &str) -> Result<(), MessageError> {
    if n.to.iter().any(|p| p == party) || n.from == party {
        return Ok(());
    }
    match Tlp::try_from(n.tlp).unwrap_or_default() {
        Tlp::Clear | Tlp::Green => Ok(()),
        other => Err(MessageError::TlpForbidsForward {
            id: n.id.clone(),
            tlp: tlp_label(other).to_owned(),
            party: party.to_owned(),
        }),
    }
}

/// How far a TLP label lets information go: CLEAR the furthest, RED the least.
fn restriction(tlp: Tlp) -> u8 {
    match tlp {
        Tlp::Clear => 0,
        Tlp::Green => 1,
        Tlp::Amber => 2,
        Tlp::AmberStrict => 3,
        Tlp::Red | Tlp::Unspecified => 4,
    }
}

/// Whether a reader cleared up to `clearance` may read what is labelled
/// `label` (an unlabelled message counts as RED).
pub fn cleared_for(label: Tlp, clearance: Tlp) -> bool {
    restriction(label) <= restriction(clearance)
}

/// Checks that a reply or response is the same exercise (or none) as the
/// notice it continues: practice never turns real, nor real into practice.
pub fn check_exercise(id: &str, exercise: i32, original: &Notice) -> Result<(), MessageError> {
    if exercise == original.exercise {
        return Ok(());
    }
    let name = |e: i32| {
        Exercise::try_from(e)
            .unwrap_or_default()
            .as_str_name()
            .trim_start_matches("EXERCISE_")
            .to_owned()
    };
    Err(invalid(
        "exercise",
        format!(
            "{id} is {} but continues notice {}, which is {}",
            name(exercise),
            original.id,
            name(original.exercise)
        ),
    ))
}

/// Checks the TLP rule along a thread: `reply` continues `original` (its
/// `in_reply_to`), so it is at least as restricted, and goes to nobody the
/// original may not reach. Checked hop by hop, by the sender and by every
/// receiver that holds the original, this holds along the whole thread. A
/// reply to an exercise is the same exercise.
pub fn check_reply(reply: &Notice, original: &Notice) -> Result<(), MessageError> {
    check_exercise(&reply.id, reply.exercise, original)?;
    let (tlp, original_tlp) = (reply.tlp(), original.tlp());
    if restriction(tlp) < restriction(original_tlp) {
        return Err(MessageError::TlpWeakened {
            id: reply.id.clone(),
            tlp: tlp_label(tlp).to_owned(),
            original: original.id.clone(),
            original_tlp: tlp_label(original_tlp).to_owned(),
        });
    }
    reply.to.iter().try_for_each(|p| check_forward(original, p))
}

/// The TLP 2.0 label, as people write it.
pub fn tlp_label(tlp: Tlp) -> &'static str {
    match tlp {
        Tlp::Unspecified => "UNSPECIFIED",
        Tlp::Clear => "CLEAR",
        Tlp::Green => "GREEN",
        Tlp::Amber => "AMBER",
        Tlp::AmberStrict => "AMBER+STRICT",
        Tlp::Red => "RED",
    }
}

/// The TLP a person writes, as configuration files take it: `clear`,
/// `green`, `amber`, `amber+strict` (or `amber-strict`) or `red`, in any case.
pub fn parse_tlp(text: &str) -> Option<Tlp> {
    match text.to_ascii_lowercase().replace('-', "+").as_str() {
        "clear" => Some(Tlp::Clear),
        "green" => Some(Tlp::Green),
        "amber" => Some(Tlp::Amber),
        "amber+strict" => Some(Tlp::AmberStrict),
        "red" => Some(Tlp::Red),
        _ => None,
    }
}

/// The notice a notice belongs to: the one it continues, or itself.
pub fn thread_of(n: &Notice) -> &str {
    if n.in_reply_to.is_empty() {
        &n.id
    } else {
        &n.in_reply_to
    }
}
