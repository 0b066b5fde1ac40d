//! Repeated identical failures are logged once and then summarised: a peer
//! that is down, or a full disk, gives one line per kind of failure per
//! interval, with how many were held back, not hundreds of lines a second.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many distinct kinds of failure are remembered; past that the memory starts afresh.
const KINDS: usize = 1024;

/// The kinds of failure seen lately, when each was last logged and how many
/// have been held back since.
#[derive(Debug)]
pub struct Repeats {
    every: Duration,
    seen: Mutex<HashMap<String, (Instant, u64)>>,
}

impl Repeats {
    /// Logs each kind of failure at most once per `every`.
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            seen: Mutex::default(),
        }
    }

    /// Whether a failure of kind `key` seen `at` is to be logged; if so, how
    /// many of that kind were held back since the last line.
    pub fn check(&self, key: &str, at: Instant) -> Option<u64> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= KINDS && !seen.contains_key(key) {
            seen.clear();
        }
        match seen.get_mut(key) {
            None => {
                seen.insert(key.to_owned(), (at, 0));
                Some(0)
            }
            Some((last, held)) if at.duration_since(*last) >= self.every => {
                let n = *held;
                (*last, *held) = (at, 0);
                Some(n)
            }
            Some((_, held)) => {
                *held += 1;
                None
            }
        }
    }
}
