//! The other parties' nodes as this node dials them: one `Federation` client
//! per peer, over mutual TLS with our node certificate.

use std::collections::HashMap;
use std::sync::Arc;

use tonic::transport::Channel;

use crate::agreement::{Agreement, TlsIdentity};
use crate::proto::federation_client::FederationClient;
use crate::tls::CertKey;

/// The largest reply a node reads from a peer.
const MAX_REPLY_BYTES: usize = 64 << 20;

/// A peer's client, with the endpoint and CA it was dialled with.
#[derive(Clone, Debug)]
struct Dialled {
    endpoints: Vec<String>,
    ca: String,
    client: FederationClient<Channel>,
}

/// How this node dials its peers: its node certificate, and the local
/// address connections leave from (`source_address`, if set).
#[derive(Clone, Debug)]
pub struct Dialer {
    /// Our node certificate, presented to every peer.
    pub cert: CertKey,
    /// The local address connections leave from.
    pub source: Option<std::net::IpAddr>,
}

/// Every peer of the agreement, by party id.
#[derive(Clone, Debug, Default)]
pub struct Peers(Arc<HashMap<String, Dialled>>);

impl Peers {
    /// Channels to every party of `agreement` but `me`, dialled lazily by
    /// `dialer`. A peer that publishes no `tls_ca` cannot be dialled.
    pub fn dial(agreement: &Agreement, me: &str, dialer: &Dialer) -> Result<Self, String> {
        Self::default().redial(agreement, me, dialer)
    }

    /// The peers of a new agreement: a peer whose endpoint and CA did not
    /// change keeps its channel (and its connection), the others are dialled
    /// afresh, and a party no longer listed is gone.
    pub fn redial(&self, agreement: &Agreement, me: &str, dialer: &Dialer) -> Result<Self, String> {
        let mut peers = HashMap::new();
        for p in agreement.parties.iter().filter(|p| p.id != me) {
            let TlsIdentity::Ca(ca) = &p.tls else {
                return Err(format!(
                    "party {}: hotline dials peers through their tls_ca; a pinned tls_cert_sha256 can only identify inbound calls",
                    p.id
                ));
            };
            let dialled = match self.0.get(&p.id) {
                Some(d) if d.endpoints == p.endpoints && &d.ca == ca => d.clone(),
                _ => {
                    let channel = crate::transport::channel_any(&p.endpoints, ca, &dialer.cert, dialer.source)
                        .map_err(|e| e.to_string())?;
                    Dialled {
                        endpoints: p.endpoints.clone(),
                        ca: ca.clone(),
                        client: FederationClient::new(channel).max_decoding_message_size(MAX_REPLY_BYTES),
                    }
                }
            };
            peers.insert(p.id.clone(), dialled);
        }
        Ok(Self(Arc::new(peers)))
    }

    /// The client for `party`, if it is a peer.
    pub fn get(&self, party: &str) -> Option<FederationClient<Channel>> {
        self.0.get(party).map(|d| d.client.clone())
    }

    /// Whether `party` is a peer.
    pub fn contains(&self, party: &str) -> bool {
        self.0.contains_key(party)
    }

    /// The peers' party ids.
    pub fn ids(&self) -> impl Iterator<Item = &String> {
        self.0.keys()
    }
}
