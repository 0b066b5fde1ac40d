//! The agreement document: its TOML schema, parties, keys and TLS
//! identities, validated field by field.

use std::collections::{HashMap, HashSet};

use serde::Deserialize;

use super::error::{AgreementError, field};
use super::norms::{Norms, RawNorms, parse_norms};
use crate::clock;
use crate::keys::{Keyring, TrustedKey, VerifierKey};

/// The instant a key's window field gives, if any; `at` names the field.
fn instant(at: String, dt: &Option<toml::value::Datetime>) -> Result<Option<time::OffsetDateTime>, AgreementError> {
    dt.as_ref()
        .map(|dt| {
            clock::parse_rfc3339(&dt.to_string())
                .ok_or_else(|| field(at, "must be a date-time with an offset, such as 2027-01-01T00:00:00Z"))
        })
        .transpose()
}

/// Reports whether `id` is a valid party id: 1 to 32 letters, digits and `-`.
pub fn is_valid_party_id(id: &str) -> bool {
    (1..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgreement {
    version: u64,
    previous: Option<String>,
    #[serde(default)]
    title: String,
    quorum: Option<usize>,
    norms: RawNorms,
    party: Vec<RawParty>,
    #[serde(default)]
    observer: Vec<RawObserver>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawObserver {
    id: String,
    name: String,
    tls_ca: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParty {
    id: String,
    name: String,
    endpoint: RawEndpoints,
    tls_ca: Option<String>,
    tls_cert_sha256: Option<String>,
    #[serde(default)]
    encryption_key: Vec<RawEncryptionKey>,
    key: Vec<RawKey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEncryptionKey {
    key: String,
    valid_from: Option<toml::value::Datetime>,
    valid_until: Option<toml::value::Datetime>,
    revoked: Option<toml::value::Datetime>,
}

/// One endpoint, or a party's nodes that share its store (a lease holder
/// and its standbys): peers reach it through whichever answers.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawEndpoints {
    One(String),
    Several(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    vkey: String,
    valid_from: Option<toml::value::Datetime>,
    valid_until: Option<toml::value::Datetime>,
    revoked: Option<toml::value::Datetime>,
}

/// How a party's TLS certificates are recognised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsIdentity {
    /// Certificates issued by this CA (PEM) belong to the party.
    Ca(String),
    /// Exactly the certificate with this SHA-256 fingerprint (of its DER) belongs to the party.
    CertSha256([u8; 32]),
}

/// One party of the agreement.
#[derive(Clone, Debug)]
pub struct Party {
    /// Short id, such as `PER`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Federation endpoint, `https://host:port`: the first listed.
    pub endpoint: String,
    /// Every endpoint listed (`endpoint = ["https://a:7443", "https://b:7443"]`):
    /// the nodes of a party that share one PostgreSQL store, of which the
    /// writer-lease holder answers. Peers dial them all and call whichever is up.
    pub endpoints: Vec<String>,
    /// How its TLS client and server certificates are recognised.
    pub tls: TlsIdentity,
    /// Its signing keys with their validity windows (more than one during rotation).
    pub keys: Vec<TrustedKey>,
    /// Its encryption keys (X25519), to which message bodies are sealed,
    /// with validity windows that rotate and are revoked as signing keys do.
    pub encryption_keys: Vec<EncryptionKey>,
}

/// A party's public encryption key and the window in which messages may be sealed to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptionKey {
    /// The X25519 public key.
    pub key: crate::seal::SealPublicKey,
    /// Messages are sealed to it from this instant on, if set.
    pub valid_from: Option<time::OffsetDateTime>,
    /// ... until this instant, if set (rotation).
    pub valid_until: Option<time::OffsetDateTime>,
    /// Compromised: nothing is sealed to it from this instant on.
    pub revoked: Option<time::OffsetDateTime>,
}

impl EncryptionKey {
    /// Whether a message may be sealed to it at `at`.
    pub fn valid_at(&self, at: time::OffsetDateTime) -> bool {
        self.valid_from.is_none_or(|f| at >= f)
            && self.valid_until.is_none_or(|u| at < u)
            && self.revoked.is_none_or(|r| at < r)
    }
}

impl Party {
    /// The party's log origin: the name of its keys.
    pub fn origin(&self) -> &str {
        self.keys[0].key.name()
    }

    /// The encryption key to seal to at `at`: the last listed that is valid then.
    pub fn encryption_key_at(&self, at: time::OffsetDateTime) -> Option<&crate::seal::SealPublicKey> {
        self.encryption_keys
            .iter()
            .rev()
            .find(|k| k.valid_at(at))
            .map(|k| &k.key)
    }
}

/// A neutral body the parties name (an OSCE or UN secretariat, an
/// arbiter): every node lets it read the public tier of its log over the
/// Audit service, and nothing else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observer {
    /// Short id, such as `OSCE`, distinct from every party's.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Its own CA (PEM): the certificates it issues are the observer's.
    pub tls_ca: String,
}

/// A validated agreement.
#[derive(Clone, Debug)]
pub struct Agreement {
    /// Bumped on every change; every party signs each version.
    pub version: u64,
    /// The SHA-256 of the previous version's text: what chains version n+1
    /// to version n (none for version 1).
    pub previous: Option<[u8; 32]>,
    /// A human title.
    pub title: String,
    /// How many parties must sign; all of them unless the text says otherwise.
    pub quorum: usize,
    /// The agreed norms.
    pub norms: Norms,
    /// The parties, in the order listed.
    pub parties: Vec<Party>,
    /// The observers, in the order listed.
    pub observers: Vec<Observer>,
}

impl Agreement {
    /// Parses and validates agreement TOML text.
    pub fn parse(text: &str) -> Result<Self, AgreementError> {
        let raw: RawAgreement =
            toml::from_str(text).map_err(|e| AgreementError::Toml(e.to_string().trim_end().to_owned()))?;
        if raw.version == 0 {
            return Err(field("version", "must be 1 or more"));
        }
        let previous = match (raw.version, &raw.previous) {
            (1, None) => None,
            (1, Some(_)) => return Err(field("previous", "version 1 has no previous version")),
            (_, None) => {
                return Err(field(
                    "previous",
                    "required from version 2 on: the SHA-256 (hex) of the previous version's text",
                ));
            }
            (_, Some(hex_sha)) => Some(
                hex::decode(hex_sha)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| field("previous", "must be 64 hex digits (a SHA-256)"))?,
            ),
        };
        let norms = parse_norms(&raw.norms)?;
        if raw.party.is_empty() {
            return Err(field("party", "at least one party is required"));
        }
        let mut ids = HashSet::new();
        let mut origins = HashSet::new();
        let mut reached_at: HashMap<String, &str> = HashMap::new();
        let mut parties = Vec::with_capacity(raw.party.len());
        for (i, p) in raw.party.iter().enumerate() {
            let at = |name: &str| format!("party[{i}].{name}");
            if !is_valid_party_id(&p.id) {
                return Err(field(
                    at("id"),
                    format!("{:?} is not a party id (1 to 32 letters, digits and '-')", p.id),
                ));
            }
            if !ids.insert(p.id.clone()) {
                return Err(field(at("id"), format!("party {} is listed twice", p.id)));
            }
            let at = |name: &str| format!("party {} ({name})", p.id);
            if p.name.trim().is_empty() {
                return Err(field(at("name"), "must not be empty"));
            }
            let endpoints = match &p.endpoint {
                RawEndpoints::One(e) => vec![e.clone()],
                RawEndpoints::Several(e) => e.clone(),
            };
            if endpoints.is_empty() {
                return Err(field(at("endpoint"), "lists no endpoint"));
            }
            if let Some(bad) = endpoints
                .iter()
                .find(|e| !e.starts_with("https://") || e.len() <= "https://".len())
            {
                return Err(field(at("endpoint"), format!("{bad:?} must be an https:// URL")));
            }
            // Two parties at one address would each be dialled for the other.
            for e in &endpoints {
                if let Some(other) = reached_at.insert(e.clone(), &p.id)
                    && other != p.id
                {
                    return Err(field(
                        at("endpoint"),
                        format!(
                            "{e} is also {other}'s endpoint; each party's node needs an address of its own (hotline init --listen, --endpoint)"
                        ),
                    ));
                }
            }
            let tls = match (&p.tls_ca, &p.tls_cert_sha256) {
                (Some(pem), None) if pem.contains("-----BEGIN CERTIFICATE-----") => TlsIdentity::Ca(pem.clone()),
                (Some(_), None) => return Err(field(at("tls_ca"), "must be a PEM certificate")),
                (None, Some(hex_fp)) => {
                    let fp = hex::decode(hex_fp)
                        .ok()
                        .and_then(|b| <[u8; 32]>::try_from(b).ok())
                        .ok_or_else(|| field(at("tls_cert_sha256"), "must be 64 hex digits"))?;
                    TlsIdentity::CertSha256(fp)
                }
                _ => return Err(field(at("tls_ca"), "give exactly one of tls_ca and tls_cert_sha256")),
            };
            if p.key.is_empty() {
                return Err(field(at("key"), "at least one key is required"));
            }
            let mut keys = Vec::with_capacity(p.key.len());
            for (k, raw_key) in p.key.iter().enumerate() {
                let at = |name: &str| format!("party {} key[{k}].{name}", p.id);
                let key: VerifierKey = raw_key.vkey.parse().map_err(|e| field(at("vkey"), format!("{e}")))?;
                let valid_from = instant(at("valid_from"), &raw_key.valid_from)?;
                let valid_until = instant(at("valid_until"), &raw_key.valid_until)?;
                let revoked = instant(at("revoked"), &raw_key.revoked)?;
                if let (Some(from), Some(until)) = (valid_from, valid_until)
                    && from >= until
                {
                    return Err(field(at("valid_until"), "must be after valid_from"));
                }
                if k > 0 && key.name() != keys.first().map(|t: &TrustedKey| t.key.name()).unwrap_or_default() {
                    return Err(field(
                        at("vkey"),
                        "all keys of a party must share one name (its log origin)",
                    ));
                }
                keys.push(TrustedKey {
                    party: p.id.clone(),
                    key,
                    valid_from,
                    valid_until,
                    revoked,
                });
            }
            let mut encryption_keys = Vec::with_capacity(p.encryption_key.len());
            for (k, raw_key) in p.encryption_key.iter().enumerate() {
                let at = |name: &str| format!("party {} encryption_key[{k}].{name}", p.id);
                let key = crate::seal::SealPublicKey::parse(&raw_key.key).map_err(|e| field(at("key"), e))?;
                encryption_keys.push(EncryptionKey {
                    key,
                    valid_from: instant(at("valid_from"), &raw_key.valid_from)?,
                    valid_until: instant(at("valid_until"), &raw_key.valid_until)?,
                    revoked: instant(at("revoked"), &raw_key.revoked)?,
                });
            }
            if !origins.insert(keys[0].key.name().to_owned()) {
                return Err(field(
                    at("key[0].vkey"),
                    format!("key name {} is used by another party", keys[0].key.name()),
                ));
            }
            parties.push(Party {
                id: p.id.clone(),
                name: p.name.clone(),
                endpoint: endpoints[0].clone(),
                endpoints,
                tls,
                keys,
                encryption_keys,
            });
        }
        let mut observers = Vec::with_capacity(raw.observer.len());
        for (i, o) in raw.observer.iter().enumerate() {
            if !is_valid_party_id(&o.id) {
                return Err(field(
                    format!("observer[{i}].id"),
                    format!("{:?} is not an id (1 to 32 letters, digits and '-')", o.id),
                ));
            }
            if !ids.insert(o.id.clone()) {
                return Err(field(
                    format!("observer {} (id)", o.id),
                    "is listed twice, or is also a party's id",
                ));
            }
            if o.name.trim().is_empty() {
                return Err(field(format!("observer {} (name)", o.id), "must not be empty"));
            }
            if !o.tls_ca.contains("-----BEGIN CERTIFICATE-----") {
                return Err(field(
                    format!("observer {} (tls_ca)", o.id),
                    "must be a PEM certificate",
                ));
            }
            observers.push(Observer {
                id: o.id.clone(),
                name: o.name.clone(),
                tls_ca: o.tls_ca.clone(),
            });
        }
        if let Some(stranger) = norms.relays.iter().find(|r| !parties.iter().any(|p| &p.id == *r)) {
            return Err(field("norms.relays", format!("{stranger} is not a party")));
        }
        let quorum = raw.quorum.unwrap_or(parties.len());
        if quorum == 0 || quorum > parties.len() {
            return Err(field(
                "quorum",
                format!("must be between 1 and the number of parties ({})", parties.len()),
            ));
        }
        Ok(Self {
            version: raw.version,
            previous,
            title: raw.title,
            quorum,
            norms,
            parties,
            observers,
        })
    }

    /// The party with this id.
    pub fn party(&self, id: &str) -> Option<&Party> {
        self.parties.iter().find(|p| p.id == id)
    }

    /// Whether the agreement lets party `id` carry others' envelopes.
    pub fn relays(&self, id: &str) -> bool {
        self.norms.relays.iter().any(|r| r == id)
    }

    /// The party whose keys are named `origin`.
    pub fn party_by_origin(&self, origin: &str) -> Option<&Party> {
        self.parties.iter().find(|p| p.origin() == origin)
    }

    /// The most keys any one party has: how many signatures an envelope may carry.
    pub fn max_keys_per_party(&self) -> usize {
        self.parties.iter().map(|p| p.keys.len()).max().unwrap_or(1)
    }

    /// Every party's keys, looked up by key id.
    pub fn keyring(&self) -> Keyring {
        Keyring::new(self.parties.iter().flat_map(|p| p.keys.iter().cloned()))
    }
}
