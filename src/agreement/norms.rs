//! The norms every party agreed to keep: deadlines by kind and severity,
//! communication checks, size and clock limits.

use std::time::Duration;

use serde::Deserialize;

use super::error::{AgreementError, field};
use crate::clock;
use crate::proto::Severity;

/// The largest `max_notice_bytes` an agreement may set (gRPC frames stay bounded).
pub const MAX_NOTICE_BYTES_LIMIT: u64 = 16 * 1024 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNorms {
    receipt_within: String,
    #[serde(default)]
    acknowledge_within: Option<RawRespondWithin>,
    respond_within: RawRespondWithin,
    comm_check_every: String,
    comm_check_answer_within: String,
    max_notice_bytes: u64,
    clock_skew: String,
    #[serde(default)]
    escalate_after: Vec<String>,
    #[serde(default)]
    link_down_alert: Option<String>,
    #[serde(default)]
    relay_after: Option<String>,
    #[serde(default)]
    relays: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRespondWithin {
    critical: String,
    high: String,
    medium: String,
    low: String,
}

/// The deadlines and limits every party agreed to keep (brief section 5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Norms {
    /// A machine receipt is expected within this time of sending.
    pub receipt_within: Duration,
    /// A point of contact acknowledges having read a notice within this
    /// time, by severity (critical, high, medium, low); no such clock if the
    /// agreement sets none.
    pub acknowledge_within: Option<[Duration; 4]>,
    /// A human response is expected within this time, by severity.
    pub respond_within_critical: Duration,
    /// See [`Norms::respond_within_critical`].
    pub respond_within_high: Duration,
    /// See [`Norms::respond_within_critical`].
    pub respond_within_medium: Duration,
    /// See [`Norms::respond_within_critical`].
    pub respond_within_low: Duration,
    /// Each node checks each peer this often.
    pub comm_check_every: Duration,
    /// A communication check must be answered within this time.
    pub comm_check_answer_within: Duration,
    /// The largest notice payload accepted.
    pub max_notice_bytes: u64,
    /// How far a message's `created_at` may be from the receiver's clock.
    pub clock_skew: Duration,
    /// A missed acknowledgement or response is escalated at once (level 1),
    /// then again after each of these intervals (levels 2, 3, …) while the
    /// step stays undone.
    pub escalate_after: Vec<Duration>,
    /// A peer that our deliveries cannot reach for this long raises an
    /// event and an alert (none if the agreement sets no such time).
    pub link_down_alert: Option<Duration>,
    /// A delivery whose recipient our calls have not reached for this long
    /// goes through a party that relays (none if the agreement sets no time).
    pub relay_after: Option<Duration>,
    /// The parties that carry others' envelopes when their direct path has
    /// failed for `relay_after` (each a party of the agreement).
    pub relays: Vec<String>,
}

/// Room in an envelope besides its payload: the payload type and framing.
const ENVELOPE_FRAMING_BYTES: usize = 512;
/// Room per signature: a key id (`name+hash`, bounded by the agreement's key names) and 64 bytes.
const SIGNATURE_BYTES: usize = 512;
/// The least a `DeliverBatch` may carry in bytes, so that batches of small notices stay batches.
const MIN_BATCH_BYTES: usize = 4 << 20;

impl Norms {
    /// The largest envelope a party with `keys` keys can deliver: the
    /// agreed payload limit, the framing, and one signature per key.
    pub fn max_envelope_bytes(&self, keys: usize) -> usize {
        self.max_notice_bytes as usize + ENVELOPE_FRAMING_BYTES + keys.max(1) * SIGNATURE_BYTES
    }

    /// The most envelope bytes one `DeliverBatch` carries: two of the
    /// largest envelopes, and never less than 4 MiB.
    pub fn max_batch_bytes(&self, keys: usize) -> usize {
        (2 * self.max_envelope_bytes(keys)).max(MIN_BATCH_BYTES)
    }

    /// The acknowledgement deadline for a notice of `severity`, if the agreement sets one.
    pub fn acknowledge_within(&self, severity: Severity) -> Option<Duration> {
        self.acknowledge_within.map(|by| by[severity_index(severity)])
    }

    /// The response deadline for a notice of `severity`.
    pub fn respond_within(&self, severity: Severity) -> Duration {
        match severity {
            Severity::Critical => self.respond_within_critical,
            Severity::High => self.respond_within_high,
            Severity::Medium => self.respond_within_medium,
            Severity::Low | Severity::Unspecified => self.respond_within_low,
        }
    }
}

fn severity_index(severity: Severity) -> usize {
    match severity {
        Severity::Critical => 0,
        Severity::High => 1,
        Severity::Medium => 2,
        Severity::Low | Severity::Unspecified => 3,
    }
}

pub(crate) fn parse_norms(raw: &RawNorms) -> Result<Norms, AgreementError> {
    let d = |name: &str, s: &str| {
        clock::parse_duration(s).filter(|d| !d.is_zero()).ok_or_else(|| {
            field(
                format!("norms.{name}"),
                format!("{s:?} is not a positive duration such as \"90s\", \"5m\", \"24h\""),
            )
        })
    };
    let norms = Norms {
        receipt_within: d("receipt_within", &raw.receipt_within)?,
        acknowledge_within: match &raw.acknowledge_within {
            None => None,
            Some(a) => Some([
                d("acknowledge_within.critical", &a.critical)?,
                d("acknowledge_within.high", &a.high)?,
                d("acknowledge_within.medium", &a.medium)?,
                d("acknowledge_within.low", &a.low)?,
            ]),
        },
        respond_within_critical: d("respond_within.critical", &raw.respond_within.critical)?,
        respond_within_high: d("respond_within.high", &raw.respond_within.high)?,
        respond_within_medium: d("respond_within.medium", &raw.respond_within.medium)?,
        respond_within_low: d("respond_within.low", &raw.respond_within.low)?,
        comm_check_every: d("comm_check_every", &raw.comm_check_every)?,
        comm_check_answer_within: d("comm_check_answer_within", &raw.comm_check_answer_within)?,
        max_notice_bytes: raw.max_notice_bytes,
        clock_skew: d("clock_skew", &raw.clock_skew)?,
        escalate_after: raw
            .escalate_after
            .iter()
            .enumerate()
            .map(|(i, s)| d(&format!("escalate_after[{i}]"), s))
            .collect::<Result<_, _>>()?,
        link_down_alert: match &raw.link_down_alert {
            None => None,
            Some(s) => Some(d("link_down_alert", s)?),
        },
        relay_after: match &raw.relay_after {
            None => None,
            Some(s) => Some(d("relay_after", s)?),
        },
        relays: raw.relays.clone(),
    };
    if !(1024..=MAX_NOTICE_BYTES_LIMIT).contains(&norms.max_notice_bytes) {
        return Err(field(
            "norms.max_notice_bytes",
            format!("must be between 1024 and {MAX_NOTICE_BYTES_LIMIT}"),
        ));
    }
    Ok(norms)
}
