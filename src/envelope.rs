//! DSSE v1 envelopes: how every notice, receipt and response is signed.
//!
//! The signature covers the pre-authentication encoding
//! `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`. Payloads are kept and
//! verified byte for byte as received; nothing is re-encoded before checking.
//! The export form is DSSE's standard JSON envelope.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE as B64URL};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::keys::{IdentityKey, Keyring, TrustedKey};
use crate::proto::{Envelope, Signature};

/// Payload type of a signed [`crate::proto::Notice`].
pub const NOTICE_TYPE: &str = "application/vnd.hotline.notice+proto";
/// Payload type of a signed [`crate::proto::Receipt`].
pub const RECEIPT_TYPE: &str = "application/vnd.hotline.receipt+proto";
/// Payload type of a signed [`crate::proto::Response`].
pub const RESPONSE_TYPE: &str = "application/vnd.hotline.response+proto";
/// Payload type of a signed [`crate::proto::Amendment`].
pub const AMENDMENT_TYPE: &str = "application/vnd.hotline.amendment+proto";
/// Payload type of a `hotline.v1.RosterUpdate`: a party's roster of points of contact.
pub const ROSTER_TYPE: &str = "application/vnd.hotline.roster+proto";
/// Payload type of a `hotline.v1.SealedMessage`: a notice or response sealed to its readers.
pub const SEALED_TYPE: &str = "application/vnd.hotline.sealed+proto";

/// Why an envelope was refused.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// The payload type is none of hotline's, or not the one expected here.
    #[error("payload type {got:?} is not accepted here (expected {expected})")]
    PayloadType {
        /// What was found.
        got: String,
        /// What was expected.
        expected: String,
    },
    /// The envelope carries no signature at all.
    #[error("envelope has no signatures")]
    Unsigned,
    /// No signature is by a key of the agreement.
    #[error("no signature by a key of the agreement (key ids: {0})")]
    UnknownKey(String),
    /// A signature by a known key does not verify: payload, type or signature was altered.
    #[error("signature by key {0} does not verify: the payload, its type or the signature was altered")]
    BadSignature(String),
    /// The only known keys that signed are outside their validity window.
    #[error("key {keyid} of party {party} is not valid at {at}")]
    KeyNotValid {
        /// The DSSE key id.
        keyid: String,
        /// The party.
        party: String,
        /// The instant checked, RFC 3339.
        at: String,
    },
    /// The DSSE JSON form could not be read.
    #[error("malformed DSSE JSON envelope: {0}")]
    Json(String),
}

/// DSSE v1 pre-authentication encoding of a payload and its type.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload_type.len() + payload.len() + 32);
    out.extend_from_slice(format!("DSSEv1 {} {} {} ", payload_type.len(), payload_type, payload.len()).as_bytes());
    out.extend_from_slice(payload);
    out
}

/// Signs `payload` as an envelope of `payload_type` with one signature; a
/// key on a token may refuse.
pub fn sign(payload_type: &str, payload: Vec<u8>, key: &IdentityKey) -> Result<Envelope, crate::keys::KeyError> {
    let sig = key.sign(&pae(payload_type, &payload))?;
    Ok(Envelope {
        payload_type: payload_type.to_owned(),
        payload,
        signatures: vec![Signature {
            keyid: key.verifier().key_id(),
            sig: sig.to_bytes().to_vec(),
        }],
    })
}

/// Verifies an envelope of the expected type against the agreement's keys at
/// instant `at`, and returns the key that signed it (and so its party).
///
/// Every signature by a known key must verify; signatures by unknown keys are
/// ignored, and at least one known key valid at `at` must have signed.
pub fn verify<'k>(
    envelope: &Envelope,
    expected_type: &str,
    keys: &'k Keyring,
    at: OffsetDateTime,
) -> Result<&'k TrustedKey, EnvelopeError> {
    if envelope.payload_type != expected_type {
        return Err(EnvelopeError::PayloadType {
            got: envelope.payload_type.clone(),
            expected: expected_type.to_owned(),
        });
    }
    if envelope.signatures.is_empty() {
        return Err(EnvelopeError::Unsigned);
    }
    let message = pae(&envelope.payload_type, &envelope.payload);
    let mut signer = None;
    let mut expired = None;
    for sig in &envelope.signatures {
        let Some(trusted) = keys.get(&sig.keyid) else { continue };
        if !trusted.key.verify_strict(&message, &sig.sig) {
            return Err(EnvelopeError::BadSignature(sig.keyid.clone()));
        }
        if trusted.valid_at(at) {
            signer.get_or_insert(trusted);
        } else {
            expired.get_or_insert(trusted);
        }
    }
    match (signer, expired) {
        (Some(key), _) => Ok(key),
        (None, Some(key)) => Err(EnvelopeError::KeyNotValid {
            keyid: key.key.key_id(),
            party: key.party.clone(),
            at: crate::clock::rfc3339(at),
        }),
        (None, None) => Err(EnvelopeError::UnknownKey(
            envelope
                .signatures
                .iter()
                .map(|s| s.keyid.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        )),
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct JsonEnvelope {
    payload: String,
    payload_type: String,
    signatures: Vec<JsonSignature>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonSignature {
    #[serde(default)]
    keyid: String,
    sig: String,
}

/// Encodes an envelope as DSSE's standard JSON form (standard base64).
pub fn to_json(envelope: &Envelope) -> String {
    let json = JsonEnvelope {
        payload: B64.encode(&envelope.payload),
        payload_type: envelope.payload_type.clone(),
        signatures: envelope
            .signatures
            .iter()
            .map(|s| JsonSignature {
                keyid: s.keyid.clone(),
                sig: B64.encode(&s.sig),
            })
            .collect(),
    };
    serde_json::to_string_pretty(&json).unwrap_or_default()
}

/// Reads DSSE's JSON form; base64 may be standard or URL-safe, as the spec allows.
pub fn from_json(text: &str) -> Result<Envelope, EnvelopeError> {
    let json: JsonEnvelope = serde_json::from_str(text).map_err(|e| EnvelopeError::Json(e.to_string()))?;
    let decode = |field: &str, s: &str| {
        B64.decode(s)
            .or_else(|_| B64URL.decode(s))
            .map_err(|_| EnvelopeError::Json(format!("field {field} is not base64")))
    };
    Ok(Envelope {
        payload: decode("payload", &json.payload)?,
        payload_type: json.payload_type,
        signatures: json
            .signatures
            .iter()
            .enumerate()
            .map(|(i, s)| {
                Ok(Signature {
                    keyid: s.keyid.clone(),
                    sig: decode(&format!("signatures[{i}].sig"), &s.sig)?,
                })
            })
            .collect::<Result<_, EnvelopeError>>()?,
    })
}
