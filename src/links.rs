//! Each peer's link as this node's deliveries find it: reachable or not,
//! since when, how many calls failed in a row, the last failure in words
//! and the next try. The couriers report each call's fate; `status`,
//! `notice show`, the event stream and the alert for a link down too long
//! read it. It lives in memory: after a restart it is learned again from
//! the first call to each peer.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// How often the node probes a peer it cannot reach (`node/links.rs`).
pub const PROBE_EVERY: Duration = Duration::from_secs(2);

/// One peer's link.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Link {
    /// Whether the peer answered our last call (a receipt or a refusal: it
    /// was reached either way).
    pub reachable: bool,
    /// Since when, in ms since the epoch.
    pub since_ms: i64,
    /// Calls that failed in a row since the peer last answered.
    pub failed_attempts: u32,
    /// The last failure, in words (empty before the first).
    pub last_failure: String,
    /// While unreachable, when the next try is due.
    pub next_try_ms: Option<i64>,
    /// Whether the alert for a link down longer than the agreed time was
    /// raised for this outage.
    pub alerted: bool,
}

impl Link {
    /// The link to `party` as operators see it; `down_too_long` on the
    /// event raised when it has been down longer than the agreed time.
    pub fn to_proto(&self, party: &str, down_too_long: bool) -> crate::proto::PeerLink {
        crate::proto::PeerLink {
            party: party.to_owned(),
            reachable: self.reachable,
            since: crate::clock::ms_to_proto(self.since_ms),
            failed_attempts: self.failed_attempts,
            last_failure: self.last_failure.clone(),
            next_try: self.next_try_ms.and_then(crate::clock::ms_to_proto),
            down_too_long,
        }
    }
}

/// What a call's outcome changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The link went up or down: tell the operators.
    Turned(Link),
    /// The link has been down longer than the agreed time: alert, once an outage.
    DownTooLong(Link),
}

/// Every peer's link, learned from the calls made to it.
#[derive(Default)]
pub struct Links {
    by_peer: Mutex<HashMap<String, Link>>,
}

impl Links {
    /// `party` answered a call at `now_ms`.
    pub fn answered(&self, party: &str, now_ms: i64) -> Option<Change> {
        let mut by_peer = self.by_peer.lock().unwrap_or_else(|e| e.into_inner());
        let link = by_peer.entry(party.to_owned()).or_default();
        let turned = !link.reachable;
        if turned {
            *link = Link {
                reachable: true,
                since_ms: now_ms,
                last_failure: std::mem::take(&mut link.last_failure),
                ..Link::default()
            };
        }
        turned.then(|| Change::Turned(link.clone()))
    }

    /// A call to `party` failed at `now_ms` for `why`; a link down longer
    /// than `alert_after` (if the agreement sets it) is to be alerted once.
    pub fn failed(&self, party: &str, why: &str, now_ms: i64, alert_after: Option<Duration>) -> Option<Change> {
        let mut by_peer = self.by_peer.lock().unwrap_or_else(|e| e.into_inner());
        let known = by_peer.contains_key(party);
        let link = by_peer.entry(party.to_owned()).or_default();
        let turned = link.reachable || !known;
        if turned {
            link.reachable = false;
            link.since_ms = now_ms;
            link.failed_attempts = 0;
            link.alerted = false;
        }
        link.failed_attempts += 1;
        link.last_failure = why.chars().take(MAX_FAILURE_CHARS).collect();
        if turned {
            return Some(Change::Turned(link.clone()));
        }
        let too_long = alert_after.is_some_and(|after| now_ms - link.since_ms >= after.as_millis() as i64);
        if too_long && !link.alerted {
            link.alerted = true;
            return Some(Change::DownTooLong(link.clone()));
        }
        None
    }

    /// The next try at `party` while it is unreachable is due at `at_ms`.
    pub fn next_try(&self, party: &str, at_ms: i64) {
        let mut by_peer = self.by_peer.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(link) = by_peer.get_mut(party).filter(|l| !l.reachable) {
            link.next_try_ms = Some(at_ms);
        }
    }

    /// Whether `party` is not known to be down: no call was made to it
    /// since the node started, or our last call reached it. Read without
    /// copying the link, on every delivery call.
    pub fn reachable(&self, party: &str) -> bool {
        self.by_peer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(party)
            .is_none_or(|l| l.reachable)
    }

    /// `party`'s link, if a call was made to it since the node started.
    pub fn get(&self, party: &str) -> Option<Link> {
        self.by_peer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(party)
            .cloned()
    }
}

/// The most characters of a failure kept: a peer's words are bounded here.
const MAX_FAILURE_CHARS: usize = 300;
