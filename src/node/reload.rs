//! What a running node takes up without a restart, on SIGHUP (`systemctl
//! reload`): a newer roster in its roster file, published as at start; new
//! request limits, in force from the next call; and its node certificate
//! renewed on disk, presented from the next connection, inbound and to
//! peers; and the `[alerts]` settings, from the next event (the server
//! moves the metrics, `server::Running::reload`). Calls in flight, open
//! streams and connections are left as they are. What cannot change while
//! the node runs (its party, addresses, store, keys, the TLS file paths,
//! the TAXII settings) is named, and the node keeps what it started with.

use crate::config::Config;
use crate::in_force::InForce;
use crate::tls::CertKey;

use super::{Node, NodeError};

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
        let fixed: [(&'static str, bool); 10] = [
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
        if self.set_alerts(new.alerts.clone()) {
            done.applied.push(match &new.alerts {
                Some((a, _)) => format!(
                    "alerts: {:?} for {} kind(s), {} a minute",
                    a.command,
                    a.kinds.len(),
                    a.per_minute
                ),
                None => "alerts: none".into(),
            });
        }
        match new.node_cert() {
            Ok(cert) if cert != self.tls.certificate() => match self.renew_certificate(cert, new).await {
                Ok(()) => done
                    .applied
                    .push("the node certificate renewed on disk, presented from the next connection".into()),
                Err(e) => tracing::warn!(error = %e, "reload: the renewed node certificate is not taken up"),
            },
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "reload: the node certificate cannot be read"),
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

impl Node {
    /// Presents `cert` from the next inbound connection, and dials every
    /// peer again with it: once it is checked against our CA and the
    /// endpoint the agreement publishes for us.
    async fn renew_certificate(&self, cert: CertKey, config: &Config) -> Result<(), NodeError> {
        let setup = |e: String| NodeError::Setup(e);
        // Not across an adoption: both rebuild the peers.
        let _one_at_a_time = self.adopting.write().await;
        let current = self.in_force();
        let agreement = current.agreement();
        let me = agreement
            .party(&self.party)
            .ok_or_else(|| setup("not a party of the agreement in force".into()))?;
        let own_ca = config.ca_pem().map_err(|e| setup(e.to_string()))?;
        crate::tls::check_node_certificate(&own_ca, &cert.cert, &me.endpoint).map_err(|e| setup(e.to_string()))?;
        let dialer = crate::peers::Dialer {
            cert: cert.clone(),
            source: self.dialer().source,
        };
        let peers = crate::peers::Peers::dial(agreement, &self.party, &dialer).map_err(|e| setup(e.to_string()))?;
        self.tls
            .set_certificate(cert, agreement)
            .map_err(|e| setup(e.to_string()))?;
        *self.dialer.write().unwrap_or_else(|e| e.into_inner()) = dialer;
        let signed =
            crate::agreement::SignedAgreement::parse(&current.signed.to_bytes()).map_err(|e| setup(e.to_string()))?;
        self.live.set(InForce {
            signed,
            text_sha256: current.text_sha256,
            keyring: current.keyring.clone(),
            peers,
        });
        Ok(())
    }

    /// How peers are dialled now.
    pub(super) fn dialer(&self) -> crate::peers::Dialer {
        self.dialer.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
