//! Each caller's request rate (a token bucket) and requests in flight.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tonic::Status;

/// The configured bounds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LimitConfig {
    /// Sustained requests per second per caller.
    pub requests_per_second: f64,
    /// Requests a caller may make at once above the sustained rate.
    pub burst: f64,
    /// Requests in flight at once per caller.
    pub in_flight: usize,
}

impl Default for LimitConfig {
    fn default() -> Self {
        Self {
            requests_per_second: 20_000.0,
            burst: 5_000.0,
            in_flight: 2_048,
        }
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
    in_flight: usize,
}

/// Tracks every caller's rate and requests in flight.
#[derive(Clone)]
pub struct Limits {
    state: Arc<Mutex<State>>,
}

/// The bounds in force and each caller's bucket, under one lock: a reload
/// changes the bounds between two calls, never within one.
struct State {
    config: LimitConfig,
    callers: HashMap<String, Bucket>,
}

/// Held while a request runs; frees its in-flight slot when dropped.
pub struct Admitted {
    n: usize,
    caller: String,
    state: Arc<Mutex<State>>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Some(b) = self
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .callers
            .get_mut(&self.caller)
        {
            b.in_flight = b.in_flight.saturating_sub(self.n);
        }
    }
}

impl State {
    fn refill(config: &LimitConfig, b: &mut Bucket, now: Instant) {
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * config.requests_per_second).min(config.burst);
        b.at = now;
    }

    fn over_rate(&self, caller: &str) -> Status {
        Status::resource_exhausted(format!(
            "{caller} is over the limit of {} requests per second (burst {}); retry later",
            self.config.requests_per_second, self.config.burst
        ))
    }
}

impl Limits {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The refusal for a call from `caller` whose rate is spent already, so
    /// that it can be refused before its body is read; none while it has a
    /// request left (the call is then counted in full once decoded).
    pub fn spent(&self, caller: &str) -> Option<Status> {
        let mut state = self.lock();
        let config = state.config;
        let b = state.callers.get_mut(caller)?;
        State::refill(&config, b, Instant::now());
        (b.tokens < 1.0).then(|| state.over_rate(caller))
    }

    /// Limits with the given bounds.
    pub fn new(config: LimitConfig) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                config,
                callers: HashMap::new(),
            })),
        }
    }

    /// Puts new bounds in force (a reload); calls in flight keep their
    /// slots. Whether they differ from those in force.
    pub fn set(&self, config: LimitConfig) -> bool {
        let mut state = self.lock();
        let changed = state.config != config;
        state.config = config;
        changed
    }

    /// Admits one request from `caller`, or says which limit it hit.
    pub fn admit(&self, caller: &str) -> Result<Admitted, Status> {
        self.admit_n(caller, 1)
    }

    /// Admits a call that carries `n` requests' worth of work (a batch).
    pub fn admit_n(&self, caller: &str, n: usize) -> Result<Admitted, Status> {
        let mut state = self.lock();
        let config = state.config;
        let now = Instant::now();
        let b = state.callers.entry(caller.to_owned()).or_insert(Bucket {
            tokens: config.burst,
            at: now,
            in_flight: 0,
        });
        State::refill(&config, b, now);
        // The refusal is logged once, by the server's call layer, at WARN.
        if b.in_flight + n > config.in_flight {
            return Err(Status::resource_exhausted(format!(
                "{caller} has {} requests in flight, the limit; retry when some complete",
                config.in_flight
            )));
        }
        if b.tokens < n as f64 {
            return Err(state.over_rate(caller));
        }
        b.tokens -= n as f64;
        b.in_flight += n;
        Ok(Admitted {
            n,
            caller: caller.to_owned(),
            state: self.state.clone(),
        })
    }
}
