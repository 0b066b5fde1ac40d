//! What a running node takes up without a restart, on SIGHUP (`systemctl
//! reload`): a newer roster in its roster file, published as at start, and
//! new request limits, in force from the next call. Calls in flight, open
//! streams and connections are left as they are. What cannot change while
//! the node runs (its party, addresses, store, keys and certificates, the
//! alerts, metrics and TAXII settings) is named, and the node keeps what it
//! started with.

use crate::config::Config;

use super::Node;

/// What a reload did.
#[derive(Debug, Default)]
pub struct Reloaded {
    /// What was taken up, in words.
    pub applied: Vec<String>,
    /// The settings that changed but need a restart, by their name in `hotline.toml`.
    pub needs_restart: Vec<&'static str>,
}

impl Node {
    /// Takes up what changed in `new` that a running node can take; names
    /// what changed against `started` (the configuration it started with)
    /// that it cannot.
    pub async fn reload(&self, started: &Config, new: &Config) -> Reloaded {
        let mut done = Reloaded::default();
        let fixed: [(&'static str, bool); 12] = [
            ("party", started.party != new.party),
            ("listen", started.listen != new.listen),
            ("data", started.data != new.data),
            ("database", started.database != new.database),
            ("identity key", started.keys != new.keys),
            ("encryption_key", started.encryption_key != new.encryption_key),
            (
                "tls_ca, tls_cert, tls_key",
                (&started.tls_ca, &started.tls_cert, &started.tls_key) != (&new.tls_ca, &new.tls_cert, &new.tls_key),
            ),
            ("taxii", started.taxii != new.taxii),
            ("metrics", started.metrics != new.metrics),
            ("alerts", format!("{:?}", started.alerts) != format!("{:?}", new.alerts)),
            (
                "delivery",
                (started.retry_base, started.retry_max, started.source_address)
                    != (new.retry_base, new.retry_max, new.source_address),
            ),
            ("agreement", started.agreement != new.agreement),
        ];
        done.needs_restart = fixed
            .iter()
            .filter(|(_, changed)| *changed)
            .map(|(name, _)| *name)
            .collect();
        if self.gate.limits().set(new.limits) {
            done.applied.push(format!(
                "limits: {} requests per second, burst {}, {} in flight per caller",
                new.limits.requests_per_second, new.limits.burst, new.limits.in_flight
            ));
        }
        let before = self.rosters.version(&self.party);
        match self.publish_configured_roster(new.roster.as_deref()).await {
            Ok(()) => {
                let now = self.rosters.version(&self.party);
                if now != before {
                    done.applied
                        .push(format!("roster version {now}, published to every peer"));
                }
            }
            Err(e) => tracing::warn!(error = %e, "reload: the roster file is not taken up"),
        }
        done
    }
}
