//! Bad networks made on loopback, for the tests and `hotline drill --link`:
//! what an impaired link does to bytes ([`Impairment`], in `impairment.rs`), the named link
//! profiles a drill runs over ([`LinkProfile`]), and the proxy that applies
//! them between nodes ([`proxy`]).

mod impairment;
pub mod proxy;

use std::time::Duration;

pub use impairment::Impairment;
pub use proxy::{Passage, Proxy};

/// The named links `hotline drill --link` runs over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LinkProfile {
    /// A perfect link: loopback as it is.
    Clean,
    /// A geostationary satellite hop: 600 ms round trip with 50 ms of
    /// jitter, and 5 % of connections reset within a minute.
    Satellite,
    /// A narrow link: 64 kbit/s each way, 100 ms round trip.
    Narrowband,
    /// A link that is cut for 20 s in every minute.
    Flapping,
    /// A set of parties (a tenth, at least one) cut off from every other
    /// party for two minutes, then joined again.
    Partition,
}

/// How often a flapping link is cut, and for how long.
pub const FLAP_EVERY: Duration = Duration::from_secs(60);
/// How long each cut of a flapping link lasts.
pub const FLAP_CUT: Duration = Duration::from_secs(20);
/// How long a partition lasts.
pub const PARTITION_CUT: Duration = Duration::from_secs(120);

impl LinkProfile {
    /// What the profile does to every connection while the link is up.
    pub fn impairment(self) -> Impairment {
        match self {
            LinkProfile::Clean | LinkProfile::Flapping | LinkProfile::Partition => Impairment::default(),
            LinkProfile::Satellite => Impairment {
                latency: Duration::from_millis(300),
                jitter: Duration::from_millis(50),
                reset_chance: 0.05,
                reset_within: Duration::from_secs(60),
                ..Impairment::default()
            },
            LinkProfile::Narrowband => Impairment {
                latency: Duration::from_millis(50),
                bytes_per_second: Some(64_000 / 8),
                ..Impairment::default()
            },
        }
    }
}
