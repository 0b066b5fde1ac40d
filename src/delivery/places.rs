//! The node's places for `DeliverBatch` calls in flight, shared by every
//! peer's courier. Calls to reachable peers share a window that follows how
//! fast they are answered, as TCP's congestion window follows its acks:
//! each call answered in time widens it by one place over its width (one
//! place per window of calls), and a call that comes back late or not at
//! all narrows it by a quarter, once per window. On cores shared by many
//! nodes, calls that wait in the peers' queues past their time limit are
//! made again and the retries make the next calls wait longer (the
//! 193-party drill tipped so); a node that narrows its window when answers
//! slow keeps its calls inside their limit. Calls to peers the last call
//! did not reach have a few fixed places of their own, so peers that are
//! down never hold up the others.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::clock::Clock;

/// The widest the window of calls to reachable peers gets, and its width
/// at start. Without a bound a node owing a message to every peer (a
/// roster published to 192, a round of communication checks) opens a call
/// to each at once.
pub const CALLS_AT_ONCE: usize = 32;
/// The narrowest it gets: one peer's share of calls
/// ([`super::CALLS_PER_PEER`]).
pub const CALLS_AT_LEAST: usize = 4;
/// `DeliverBatch` calls in flight at once to all peers our last call did
/// not reach: their own smaller share, so peers that are down or silent
/// never hold up the others, and a peer slowed by load is not called harder.
pub const CALLS_AT_ONCE_UNREACHED: usize = 8;
/// An answer later than this (beyond the time its bytes take over the
/// slowest link) narrows the window: a third of a call's time limit
/// (`courier::CALL_TIMEOUT`), so that calls are slowed well before they
/// would be made again.
pub const SLOW_ANSWER: Duration = Duration::from_secs(5);

/// The node's places for calls in flight, shared by every peer's courier.
#[derive(Clone)]
pub struct Places {
    reached: Arc<Window>,
    unreached: Arc<Semaphore>,
}

/// The places of calls to reachable peers, as wide as answers allow.
struct Window {
    places: Arc<Semaphore>,
    state: Mutex<WindowState>,
    /// Where the width is shown (`hotline_delivery_call_window`).
    shown: prometheus_client::metrics::gauge::Gauge,
    /// What times the calls (the node's).
    clock: Clock,
}

struct WindowState {
    /// The width, fractional so that each call answered in time adds
    /// 1/width: the places in use are its whole part.
    width: f64,
    /// Places to take out of use as calls give them back (the window was
    /// narrowed while they were in flight).
    owed: usize,
    /// When the window was last narrowed (ms since the epoch): a late call
    /// made before then was made in the wider window and narrows it no further.
    narrowed_at: Option<i64>,
}

/// One call's place: given back when dropped, or kept out of use if the
/// window was narrowed meanwhile.
pub struct Place {
    permit: Option<OwnedSemaphorePermit>,
    /// The window it came from and when the call took it (ms since the
    /// epoch); none for a call to an unreached peer.
    window: Option<(Arc<Window>, i64)>,
}

impl Places {
    /// [`CALLS_AT_ONCE`] places for reachable peers, [`CALLS_AT_ONCE_UNREACHED`]
    /// for the others; the width is shown on `shown`, calls timed by `clock`.
    pub fn new(shown: prometheus_client::metrics::gauge::Gauge, clock: Clock) -> Self {
        shown.set(CALLS_AT_ONCE as i64);
        Self {
            reached: Arc::new(Window {
                places: Arc::new(Semaphore::new(CALLS_AT_ONCE)),
                state: Mutex::new(WindowState {
                    width: CALLS_AT_ONCE as f64,
                    owed: 0,
                    narrowed_at: None,
                }),
                shown,
                clock,
            }),
            unreached: Arc::new(Semaphore::new(CALLS_AT_ONCE_UNREACHED)),
        }
    }

    /// Waits for a place for a call to a peer that is `reachable` or not
    /// (its link decides); `None` once the node is stopping.
    pub async fn take(&self, reachable: bool) -> Option<Place> {
        let (places, window) = match reachable {
            true => (&self.reached.places, Some(self.reached.clone())),
            false => (&self.unreached, None),
        };
        let permit = places.clone().acquire_owned().await.ok()?;
        Some(Place {
            permit: Some(permit),
            window: window.map(|w| {
                let taken = w.clock.now_ms();
                (w, taken)
            }),
        })
    }
}

impl Window {
    fn lock(&self) -> std::sync::MutexGuard<'_, WindowState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Widens the window by 1/width after a call answered in time.
    fn widen(&self) {
        let mut s = self.lock();
        let before = s.width as usize;
        s.width = (s.width + 1.0 / s.width).min(CALLS_AT_ONCE as f64);
        if s.width as usize > before {
            match s.owed {
                0 => self.places.add_permits(1),
                _ => s.owed -= 1,
            }
            self.shown.set(s.width as i64);
        }
    }

    /// Narrows the window by a quarter after a late call taken at `taken`,
    /// unless it was narrowed since that call was made.
    fn narrow(&self, taken: i64) {
        let mut s = self.lock();
        if s.narrowed_at.is_some_and(|at| taken < at) {
            return;
        }
        let before = s.width as usize;
        s.width = (s.width * 0.75).max(CALLS_AT_LEAST as f64);
        s.narrowed_at = Some(self.clock.now_ms());
        s.owed += before - s.width as usize;
        while s.owed > 0 {
            match self.places.try_acquire() {
                Ok(idle) => idle.forget(),
                Err(_) => break,
            }
            s.owed -= 1;
        }
        self.shown.set(s.width as i64);
        tracing::info!(
            width = s.width as usize,
            "calls to peers answered late: fewer in flight at once"
        );
    }
}

impl Place {
    /// Tells the window how the call went: answered (`ok`) within
    /// [`SLOW_ANSWER`] beyond `transfer` (its bytes' time over the slowest
    /// link) widens it; later, answered or not, narrows it. A call that
    /// failed at once (refused, not reachable) says nothing of how loaded
    /// the peers are and is not counted.
    pub fn answered(&self, ok: bool, transfer: Duration) {
        let Some((window, taken)) = &self.window else {
            return;
        };
        let took = Duration::from_millis((window.clock.now_ms() - taken).max(0) as u64);
        if took > transfer + SLOW_ANSWER {
            window.narrow(*taken);
        } else if ok {
            window.widen();
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let (Some(permit), Some((window, _))) = (self.permit.take(), &self.window) else {
            return;
        };
        let mut s = window.lock();
        if s.owed > 0 {
            s.owed -= 1;
            permit.forget();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes `n` places for calls to reachable peers.
    async fn take(places: &Places, n: usize) -> Vec<Place> {
        let mut taken = Vec::new();
        for _ in 0..n {
            taken.push(places.take(true).await.expect("a place"));
        }
        taken
    }

    impl Places {
        /// How many calls to reachable peers may be in flight now.
        fn width(&self) -> usize {
            self.reached.lock().width as usize
        }
    }

    /// Places free now for calls to reachable peers.
    fn free(places: &Places) -> usize {
        places.reached.places.available_permits()
    }

    #[tokio::test]
    async fn reachable_peers_share_32_places_and_unreached_ones_8_of_their_own() {
        let clock = Clock::manual(crate::clock::now());
        let places = Places::new(Default::default(), clock.clone());
        let reached = take(&places, CALLS_AT_ONCE).await;
        assert_eq!(free(&places), 0, "the 33rd call waits");
        // Peers that are down still get their calls out, and take none of the others' places.
        let mut unreached = Vec::new();
        for _ in 0..CALLS_AT_ONCE_UNREACHED {
            unreached.push(places.take(false).await.expect("a place for an unreached peer"));
        }
        assert_eq!(
            places.unreached.available_permits(),
            0,
            "the 9th call to an unreached peer waits"
        );
        drop(reached);
        assert_eq!(free(&places), CALLS_AT_ONCE);
        drop(unreached);
        assert_eq!(places.unreached.available_permits(), CALLS_AT_ONCE_UNREACHED);
    }

    #[tokio::test]
    async fn a_late_answer_narrows_the_window_by_a_quarter_and_calls_in_flight_give_their_places_up() {
        let clock = Clock::manual(crate::clock::now());
        let shown = prometheus_client::metrics::gauge::Gauge::default();
        let places = Places::new(shown.clone(), clock.clone());
        assert_eq!(shown.get(), 32);
        let calls = take(&places, CALLS_AT_ONCE).await;
        clock.advance(SLOW_ANSWER + Duration::from_secs(1));
        calls[0].answered(true, Duration::ZERO);
        assert_eq!((places.width(), shown.get()), (24, 24));
        drop(calls);
        assert_eq!(free(&places), 24, "8 places went out of use as they came back");
    }

    #[tokio::test]
    async fn the_time_an_answer_s_bytes_take_over_the_slowest_link_is_not_late() {
        let clock = Clock::manual(crate::clock::now());
        let places = Places::new(Default::default(), clock.clone());
        let call = places.take(true).await.expect("a place");
        clock.advance(SLOW_ANSWER + Duration::from_secs(1));
        call.answered(true, Duration::from_secs(2));
        assert_eq!(places.width(), CALLS_AT_ONCE);
    }

    #[tokio::test]
    async fn late_calls_made_before_a_narrowing_narrow_the_window_once() {
        let clock = Clock::manual(crate::clock::now());
        let places = Places::new(Default::default(), clock.clone());
        let calls = take(&places, 8).await;
        clock.advance(SLOW_ANSWER * 4);
        for call in &calls {
            call.answered(false, Duration::ZERO); // each timed out
        }
        assert_eq!(places.width(), 24);
        assert_eq!(free(&places), 24 - 8, "idle places went out of use at once");
    }

    #[tokio::test]
    async fn the_window_never_narrows_below_one_peer_s_share() {
        let clock = Clock::manual(crate::clock::now());
        let places = Places::new(Default::default(), clock.clone());
        for _ in 0..20 {
            let call = places.take(true).await.expect("a place");
            clock.advance(SLOW_ANSWER * 2);
            call.answered(false, Duration::ZERO);
        }
        assert_eq!(places.width(), CALLS_AT_LEAST);
        assert_eq!(free(&places), CALLS_AT_LEAST);
    }

    #[tokio::test]
    async fn answers_in_time_widen_the_window_by_about_one_place_per_window_up_to_32() {
        let clock = Clock::manual(crate::clock::now());
        let places = Places::new(Default::default(), clock.clone());
        let call = places.take(true).await.expect("a place");
        clock.advance(SLOW_ANSWER * 2);
        call.answered(true, Duration::ZERO);
        drop(call);
        assert_eq!((places.width(), free(&places)), (24, 24));
        for _ in 0..25 {
            places.take(true).await.expect("a place").answered(true, Duration::ZERO);
        }
        assert_eq!(
            (places.width(), free(&places)),
            (25, 25),
            "25 answers of 1/24 to 1/25 each"
        );
        for _ in 0..1_000 {
            places.take(true).await.expect("a place").answered(true, Duration::ZERO);
        }
        assert_eq!((places.width(), free(&places)), (CALLS_AT_ONCE, CALLS_AT_ONCE));
    }

    #[tokio::test]
    async fn a_call_that_fails_at_once_leaves_the_window_as_it_is() {
        let clock = Clock::manual(crate::clock::now());
        let places = Places::new(Default::default(), clock.clone());
        let call = places.take(true).await.expect("a place");
        call.answered(false, Duration::ZERO);
        drop(call);
        assert_eq!((places.width(), free(&places)), (CALLS_AT_ONCE, CALLS_AT_ONCE));
    }
}
