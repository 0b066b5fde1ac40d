//! The agreement: the parties, their keys and TLS identities, and the norms
//! they accepted, as a TOML document stored as a signed note.
//!
//! A node runs only on an agreement signed by every party it lists (or by the
//! quorum it names). Validation names the exact field or party at fault.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use time::OffsetDateTime;

use crate::clock;
use crate::keys::{IdentityKey, Keyring, TrustedKey, VerifierKey};
use crate::note::{NoteError, SignedNote};
use crate::proto::Severity;

/// Why an agreement was refused.
#[derive(Debug, thiserror::Error)]
pub enum AgreementError {
    /// The agreement file could not be read or written.
    #[error("agreement file {}: {source}", path.display())]
    Io {
        /// The file at fault.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The text is not valid TOML for the schema (the message names line and field).
    #[error("agreement is not valid: {0}")]
    Toml(String),
    /// A field has a value the schema allows but hotline does not.
    #[error("agreement field {field}: {reason}")]
    Field {
        /// The field at fault.
        field: String,
        /// Why it is wrong.
        reason: String,
    },
    /// The signed-note wrapping is broken.
    #[error("agreement note: {0}")]
    Note(#[from] NoteError),
    /// A party's signature does not verify over this text.
    #[error(
        "signature of party {party} (key {key}) does not verify: the agreement text changed after signing, or the signature is corrupt"
    )]
    BadSignature {
        /// The party.
        party: String,
        /// The key, as written.
        key: String,
    },
    /// Fewer parties signed than the agreement requires.
    #[error("agreement is signed by {signed} of the {required} parties required; missing: {}", missing.join(", "))]
    NotSigned {
        /// How many parties of the agreement signed.
        signed: usize,
        /// How many signatures the quorum needs.
        required: usize,
        /// The parties whose signatures are missing.
        missing: Vec<String>,
    },
    /// The local key is not one the agreement lists.
    #[error("key {0} is not listed for any party of the agreement")]
    NotAParty(String),
}

fn field(field: impl Into<String>, reason: impl Into<String>) -> AgreementError {
    AgreementError::Field {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Reports whether `id` is a valid party id: 1 to 32 letters, digits and `-`.
pub fn is_valid_party_id(id: &str) -> bool {
    (1..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgreement {
    version: u64,
    #[serde(default)]
    title: String,
    quorum: Option<usize>,
    norms: RawNorms,
    party: Vec<RawParty>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNorms {
    receipt_within: String,
    respond_within: RawRespondWithin,
    comm_check_every: String,
    comm_check_answer_within: String,
    max_notice_bytes: u64,
    clock_skew: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRespondWithin {
    critical: String,
    high: String,
    medium: String,
    low: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParty {
    id: String,
    name: String,
    endpoint: String,
    tls_ca: Option<String>,
    tls_cert_sha256: Option<String>,
    key: Vec<RawKey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    vkey: String,
    valid_from: Option<toml::value::Datetime>,
    valid_until: Option<toml::value::Datetime>,
}

/// The deadlines and limits every party agreed to keep (brief section 5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Norms {
    /// A machine receipt is expected within this time of sending.
    pub receipt_within: Duration,
    /// A human response is expected within this time, by severity.
    pub respond_within_critical: Duration,
    /// See [`Norms::respond_within_critical`].
    pub respond_within_high: Duration,
    /// See [`Norms::respond_within_critical`].
    pub respond_within_medium: Duration,
    /// See [`Norms::respond_within_critical`].
    pub respond_within_low: Duration,
    /// Each node checks each peer this often.
    pub comm_check_every: Duration,
    /// A communication check must be answered within this time.
    pub comm_check_answer_within: Duration,
    /// The largest notice payload accepted.
    pub max_notice_bytes: u64,
    /// How far a message's `created_at` may be from the receiver's clock.
    pub clock_skew: Duration,
}

impl Norms {
    /// The response deadline for a notice of `severity`.
    pub fn respond_within(&self, severity: Severity) -> Duration {
        match severity {
            Severity::Critical => self.respond_within_critical,
            Severity::High => self.respond_within_high,
            Severity::Medium => self.respond_within_medium,
            Severity::Low | Severity::Unspecified => self.respond_within_low,
        }
    }
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
    /// Federation endpoint, `https://host:port`.
    pub endpoint: String,
    /// How its TLS client and server certificates are recognised.
    pub tls: TlsIdentity,
    /// Its signing keys with their validity windows (more than one during rotation).
    pub keys: Vec<TrustedKey>,
}

impl Party {
    /// The party's log origin: the name of its keys.
    pub fn origin(&self) -> &str {
        self.keys[0].key.name()
    }
}

/// A validated agreement.
#[derive(Clone, Debug)]
pub struct Agreement {
    /// Bumped on every change; every party signs each version.
    pub version: u64,
    /// A human title.
    pub title: String,
    /// How many parties must sign; all of them unless the text says otherwise.
    pub quorum: usize,
    /// The agreed norms.
    pub norms: Norms,
    /// The parties, in the order listed.
    pub parties: Vec<Party>,
}

impl Agreement {
    /// Parses and validates agreement TOML text.
    pub fn parse(text: &str) -> Result<Self, AgreementError> {
        let raw: RawAgreement =
            toml::from_str(text).map_err(|e| AgreementError::Toml(e.to_string().trim_end().to_owned()))?;
        if raw.version == 0 {
            return Err(field("version", "must be 1 or more"));
        }
        let norms = parse_norms(&raw.norms)?;
        if raw.party.is_empty() {
            return Err(field("party", "at least one party is required"));
        }
        let mut ids = HashSet::new();
        let mut origins = HashSet::new();
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
            if !p.endpoint.starts_with("https://") || p.endpoint.len() <= "https://".len() {
                return Err(field(
                    at("endpoint"),
                    format!("{:?} must be an https:// URL", p.endpoint),
                ));
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
                let instant = |name: &str, dt: &Option<toml::value::Datetime>| {
                    dt.as_ref()
                        .map(|dt| {
                            clock::parse_rfc3339(&dt.to_string()).ok_or_else(|| {
                                field(
                                    at(name),
                                    "must be a date-time with an offset, such as 2027-01-01T00:00:00Z",
                                )
                            })
                        })
                        .transpose()
                };
                let valid_from = instant("valid_from", &raw_key.valid_from)?;
                let valid_until = instant("valid_until", &raw_key.valid_until)?;
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
                endpoint: p.endpoint.clone(),
                tls,
                keys,
            });
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
            title: raw.title,
            quorum,
            norms,
            parties,
        })
    }

    /// The party with this id.
    pub fn party(&self, id: &str) -> Option<&Party> {
        self.parties.iter().find(|p| p.id == id)
    }

    /// The party whose keys are named `origin`.
    pub fn party_by_origin(&self, origin: &str) -> Option<&Party> {
        self.parties.iter().find(|p| p.origin() == origin)
    }

    /// Every party's keys, for verifying envelopes.
    pub fn keyring(&self) -> Keyring {
        Keyring::new(self.parties.iter().flat_map(|p| p.keys.iter().cloned()))
    }
}

fn parse_norms(raw: &RawNorms) -> Result<Norms, AgreementError> {
    let d = |name: &str, s: &str| {
        clock::parse_duration(s).filter(|d| !d.is_zero()).ok_or_else(|| {
            field(
                format!("norms.{name}"),
                format!("{s:?} is not a positive duration such as \"90s\", \"5m\", \"24h\""),
            )
        })
    };
    let norms = Norms {
        receipt_within: d("receipt_within", &raw.receipt_within)?,
        respond_within_critical: d("respond_within.critical", &raw.respond_within.critical)?,
        respond_within_high: d("respond_within.high", &raw.respond_within.high)?,
        respond_within_medium: d("respond_within.medium", &raw.respond_within.medium)?,
        respond_within_low: d("respond_within.low", &raw.respond_within.low)?,
        comm_check_every: d("comm_check_every", &raw.comm_check_every)?,
        comm_check_answer_within: d("comm_check_answer_within", &raw.comm_check_answer_within)?,
        max_notice_bytes: raw.max_notice_bytes,
        clock_skew: d("clock_skew", &raw.clock_skew)?,
    };
    if !(1024..=MAX_NOTICE_BYTES_LIMIT).contains(&norms.max_notice_bytes) {
        return Err(field(
            "norms.max_notice_bytes",
            format!("must be between 1024 and {MAX_NOTICE_BYTES_LIMIT}"),
        ));
    }
    Ok(norms)
}

/// The largest `max_notice_bytes` an agreement may set (gRPC frames stay bounded).
pub const MAX_NOTICE_BYTES_LIMIT: u64 = 16 * 1024 * 1024;

/// An agreement with its signed-note signatures, as stored on disk.
#[derive(Debug)]
pub struct SignedAgreement {
    /// The validated agreement.
    pub agreement: Agreement,
    note: SignedNote,
}

impl SignedAgreement {
    /// Parses a signed agreement, or a plain TOML agreement not yet signed.
    pub fn parse(bytes: &[u8]) -> Result<Self, AgreementError> {
        let note = match SignedNote::parse(bytes) {
            Ok(note) => note,
            Err(_) => {
                let text =
                    std::str::from_utf8(bytes).map_err(|_| AgreementError::Toml("agreement is not UTF-8".into()))?;
                SignedNote::new(text)?
            }
        };
        let agreement = Agreement::parse(note.text())?;
        Ok(Self { agreement, note })
    }

    /// Reads an agreement file.
    pub fn load(path: &Path) -> Result<Self, AgreementError> {
        let bytes = std::fs::read(path).map_err(|source| AgreementError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&bytes)
    }

    /// The exact text the parties sign.
    pub fn text(&self) -> &str {
        self.note.text()
    }

    /// The signed note: text, blank line, one signature line per signer.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.note.to_bytes()
    }

    /// Adds the signature of `key`, which must be a key of one of the parties.
    pub fn sign(&mut self, key: &IdentityKey) -> Result<(), AgreementError> {
        let listed = self.agreement.keyring().get(&key.verifier().key_id()).is_some();
        if !listed {
            return Err(AgreementError::NotAParty(key.verifier().key_id()));
        }
        Ok(self.note.sign(key)?)
    }

    /// The parties whose signature, by a key valid at `at`, verifies over the exact text.
    pub fn signers(&self, at: OffsetDateTime) -> Result<Vec<String>, AgreementError> {
        let valid: Vec<&TrustedKey> = self
            .agreement
            .parties
            .iter()
            .flat_map(|p| &p.keys)
            .filter(|k| k.valid_at(at))
            .collect();
        let keys: Vec<VerifierKey> = valid.iter().map(|k| k.key.clone()).collect();
        let party_of = |key: &str| {
            valid
                .iter()
                .find(|k| k.key.key_id() == key)
                .map(|k| k.party.clone())
                .unwrap_or_default()
        };
        let verified = match self.note.verify(&keys) {
            Ok(verified) => verified,
            Err(NoteError::NotSigned(_)) => Vec::new(),
            Err(NoteError::InvalidSignature(key)) => {
                return Err(AgreementError::BadSignature {
                    party: party_of(&key),
                    key,
                });
            }
            Err(e) => return Err(e.into()),
        };
        let signed: Vec<String> = verified.iter().map(|k| party_of(&k.key_id())).collect();
        Ok(self
            .agreement
            .parties
            .iter()
            .filter(|p| signed.contains(&p.id))
            .map(|p| p.id.clone())
            .collect())
    }

    /// Checks that the quorum of parties signed the exact text; what a node
    /// requires before it runs.
    pub fn verify(&self, at: OffsetDateTime) -> Result<Vec<String>, AgreementError> {
        let signed = self.signers(at)?;
        if signed.len() < self.agreement.quorum {
            return Err(AgreementError::NotSigned {
                signed: signed.len(),
                required: self.agreement.quorum,
                missing: self
                    .agreement
                    .parties
                    .iter()
                    .filter(|p| !signed.contains(&p.id))
                    .map(|p| p.id.clone())
                    .collect(),
            });
        }
        Ok(signed)
    }
}
