//! What an impaired link does to the bytes that cross it: a leaf, read by
//! the proxy and the named profiles alike.

use std::time::Duration;

use rand_core::RngCore;

/// What a link does to the bytes that cross it, each way.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Impairment {
    /// Added to every chunk of bytes, one way (half the round trip).
    pub latency: Duration,
    /// Up to this much more, at random, for each chunk (order is kept).
    pub jitter: Duration,
    /// The most bytes a second crossing each way; `None`: as fast as loopback.
    pub bytes_per_second: Option<u64>,
    /// The share of connections (0 to 1) the link resets, each at a random
    /// instant within [`Impairment::reset_within`] of its opening.
    pub reset_chance: f64,
    /// How long a connection chosen for a reset lives at most.
    pub reset_within: Duration,
    /// The most bytes written at once: a stream sliced into small segments.
    pub slice: Option<usize>,
}

impl Impairment {
    /// How long the next chunk waits: the latency and a random share of the jitter.
    pub fn delay(&self) -> Duration {
        self.latency + self.jitter.mul_f64(random_fraction())
    }

    /// When a new connection is to be reset, if it is one of those chosen.
    pub fn reset_after(&self) -> Option<Duration> {
        (self.reset_chance > 0.0 && random_fraction() < self.reset_chance)
            .then(|| self.reset_within.mul_f64(random_fraction()))
    }
}

/// A uniformly random fraction in [0, 1).
fn random_fraction() -> f64 {
    (rand_core::OsRng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}
