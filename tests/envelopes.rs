//! DSSE envelopes: what verifies, and each tamper that must not.

mod common;

use hotline::clock;
use hotline::envelope::{self, EnvelopeError, NOTICE_TYPE, RESPONSE_TYPE};
use hotline::keys::{IdentityKey, Keyring, TrustedKey};
use time::Duration;

fn keyring(keys: &[(&str, &IdentityKey)]) -> Keyring {
    Keyring::new(keys.iter().map(|(party, k)| TrustedKey {
        party: party.to_string(),
        key: k.verifier().clone(),
        valid_from: None,
        valid_until: None,
    }))
}

fn setup() -> (IdentityKey, Keyring, hotline::proto::Envelope) {
    let key = IdentityKey::generate("hotline.example/PER").unwrap();
    let ring = keyring(&[("PER", &key)]);
    let env = envelope::sign(NOTICE_TYPE, b"notice bytes".to_vec(), &key);
    (key, ring, env)
}

fn flip(bytes: &mut [u8], bit: usize) {
    bytes[bit / 8] ^= 1 << (bit % 8);
}

#[test]
fn a_signed_envelope_verifies_and_names_its_party() {
    let (_, ring, env) = setup();
    let signer = envelope::verify(&env, NOTICE_TYPE, &ring, clock::now()).unwrap();
    assert_eq!(signer.party, "PER");
    assert_eq!(env.signatures[0].keyid, signer.key.key_id());
}

#[test]
fn one_flipped_payload_bit_is_a_bad_signature() {
    let (_, ring, mut env) = setup();
    flip(&mut env.payload, 3);
    let err = envelope::verify(&env, NOTICE_TYPE, &ring, clock::now()).unwrap_err();
    assert!(matches!(err, EnvelopeError::BadSignature(_)), "{err}");
}

#[test]
fn one_flipped_payload_type_bit_is_refused_as_a_wrong_type() {
    let (_, ring, mut env) = setup();
    let mut t = env.payload_type.into_bytes();
    flip(&mut t, 9);
    env.payload_type = String::from_utf8(t).unwrap();
    let err = envelope::verify(&env, NOTICE_TYPE, &ring, clock::now()).unwrap_err();
    assert!(matches!(err, EnvelopeError::PayloadType { .. }), "{err}");
}

#[test]
fn a_signature_over_another_payload_type_is_a_bad_signature() {
    let (key, ring, _) = setup();
    let mut env = envelope::sign(RESPONSE_TYPE, b"notice bytes".to_vec(), &key);
    env.payload_type = NOTICE_TYPE.to_owned();
    let err = envelope::verify(&env, NOTICE_TYPE, &ring, clock::now()).unwrap_err();
    assert!(matches!(err, EnvelopeError::BadSignature(_)), "{err}");
}

#[test]
fn one_flipped_signature_bit_is_a_bad_signature() {
    let (_, ring, mut env) = setup();
    flip(&mut env.signatures[0].sig, 100);
    let err = envelope::verify(&env, NOTICE_TYPE, &ring, clock::now()).unwrap_err();
    assert!(matches!(err, EnvelopeError::BadSignature(_)), "{err}");
}

#[test]
fn a_truncated_signature_is_a_bad_signature() {
    let (_, ring, mut env) = setup();
    env.signatures[0].sig.truncate(63);
    let err = envelope::verify(&env, NOTICE_TYPE, &ring, clock::now()).unwrap_err();
    assert!(matches!(err, EnvelopeError::BadSignature(_)), "{err}");
}

#[test]
fn one_flipped_key_id_bit_is_an_unknown_key() {
    let (_, ring, mut env) = setup();
    let mut id = env.signatures[0].keyid.clone().into_bytes();
    let last_bit = 8 * id.len() - 2;
    flip(&mut id, last_bit);
    env.signatures[0].keyid = String::from_utf8(id).unwrap();
    let err = envelope::verify(&env, NOTICE_TYPE, &ring, clock::now()).unwrap_err();
    assert!(matches!(err, EnvelopeError::UnknownKey(_)), "{err}");
}

#[test]
fn a_key_outside_the_agreement_is_an_unknown_key() {
    let (_, ring, _) = setup();
    let stranger = IdentityKey::generate("hotline.example/XXX").unwrap();
    let env = envelope::sign(NOTICE_TYPE, b"x".to_vec(), &stranger);
    let err = envelope::verify(&env, NOTICE_TYPE, &ring, clock::now()).unwrap_err();
    assert!(matches!(err, EnvelopeError::UnknownKey(_)), "{err}");
}

#[test]
fn a_signature_by_the_wrong_key_under_a_known_key_id_is_a_bad_signature() {
    let (_, ring, mut env) = setup();
    let impostor = IdentityKey::generate("hotline.example/PER").unwrap();
    let forged = envelope::sign(NOTICE_TYPE, env.payload.clone(), &impostor);
    env.signatures[0].sig = forged.signatures[0].sig.clone();
    let err = envelope::verify(&env, NOTICE_TYPE, &ring, clock::now()).unwrap_err();
    assert!(matches!(err, EnvelopeError::BadSignature(_)), "{err}");
}

#[test]
fn an_envelope_without_signatures_is_refused() {
    let (_, ring, mut env) = setup();
    env.signatures.clear();
    let err = envelope::verify(&env, NOTICE_TYPE, &ring, clock::now()).unwrap_err();
    assert!(matches!(err, EnvelopeError::Unsigned), "{err}");
}

#[test]
fn a_key_is_refused_outside_its_validity_window() {
    let key = IdentityKey::generate("hotline.example/PER").unwrap();
    let now = clock::now();
    let ring = Keyring::new([TrustedKey {
        party: "PER".into(),
        key: key.verifier().clone(),
        valid_from: Some(now - Duration::days(30)),
        valid_until: Some(now - Duration::days(1)),
    }]);
    let env = envelope::sign(NOTICE_TYPE, b"x".to_vec(), &key);
    let err = envelope::verify(&env, NOTICE_TYPE, &ring, now).unwrap_err();
    assert!(
        matches!(err, EnvelopeError::KeyNotValid { ref party, .. } if party == "PER"),
        "{err}"
    );
    assert!(envelope::verify(&env, NOTICE_TYPE, &ring, now - Duration::days(2)).is_ok());
    let err = envelope::verify(&env, NOTICE_TYPE, &ring, now - Duration::days(31)).unwrap_err();
    assert!(matches!(err, EnvelopeError::KeyNotValid { .. }), "{err}");
}

#[test]
fn dsse_json_round_trips_byte_for_byte() {
    let (_, ring, env) = setup();
    let json = envelope::to_json(&env);
    let back = envelope::from_json(&json).unwrap();
    assert_eq!(back, env);
    envelope::verify(&back, NOTICE_TYPE, &ring, clock::now()).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["payloadType"], NOTICE_TYPE);
    assert_eq!(v["payload"], "bm90aWNlIGJ5dGVz");
}

#[test]
fn dsse_json_accepts_url_safe_base64() {
    let (_, ring, env) = setup();
    let mut v: serde_json::Value = serde_json::from_str(&envelope::to_json(&env)).unwrap();
    let url_safe = |s: &serde_json::Value| s.as_str().unwrap().replace('+', "-").replace('/', "_");
    v["signatures"][0]["sig"] = url_safe(&v["signatures"][0]["sig"]).into();
    v["payload"] = url_safe(&v["payload"]).into();
    let back = envelope::from_json(&v.to_string()).unwrap();
    envelope::verify(&back, NOTICE_TYPE, &ring, clock::now()).unwrap();
}

#[test]
fn malformed_dsse_json_names_the_field() {
    let err = envelope::from_json(r#"{"payload":"!!","payloadType":"t","signatures":[]}"#).unwrap_err();
    assert!(err.to_string().contains("payload"), "{err}");
    let err = envelope::from_json("not json").unwrap_err();
    assert!(matches!(err, EnvelopeError::Json(_)));
}

#[test]
fn a_batch_of_good_envelopes_verifies_each_with_its_signer() {
    let (key, ring, _) = setup();
    let envs: Vec<_> = (0..8u8)
        .map(|i| envelope::sign(NOTICE_TYPE, vec![i; 40], &key))
        .collect();
    let batch: Vec<_> = envs.iter().map(|e| (e, NOTICE_TYPE)).collect();
    for result in envelope::verify_batch(&batch, &ring, clock::now()) {
        assert_eq!(result.unwrap().party, "PER");
    }
}

#[test]
fn one_bad_envelope_in_a_batch_fails_alone_with_the_error_of_a_single_check() {
    let (key, ring, _) = setup();
    let mut envs: Vec<_> = (0..8u8)
        .map(|i| envelope::sign(NOTICE_TYPE, vec![i; 40], &key))
        .collect();
    flip(&mut envs[3].payload, 5);
    let batch: Vec<_> = envs.iter().map(|e| (e, NOTICE_TYPE)).collect();
    let results = envelope::verify_batch(&batch, &ring, clock::now());
    for (i, result) in results.into_iter().enumerate() {
        match i {
            3 => assert!(matches!(result, Err(EnvelopeError::BadSignature(_)))),
            _ => assert!(result.is_ok(), "envelope {i}: {:?}", result.err()),
        }
    }
}

#[test]
fn a_batch_refuses_a_small_order_r_that_the_unstrict_equation_accepts() {
    use curve25519_dalek::scalar::Scalar;
    use sha2::{Digest, Sha512};
    let seed = [7u8; 32];
    let key = IdentityKey::from_seed("hotline.example/PER", seed).unwrap();
    let a = ed25519_dalek::SigningKey::from_bytes(&seed).to_scalar();
    let public = key.verifier().public_key();
    // R = the identity point; s = k·a makes s·B = R + k·A hold exactly.
    let mut r = [0u8; 32];
    r[0] = 1;
    let message = b"forged under a small-order R";
    let k = Scalar::from_bytes_mod_order_wide(
        &Sha512::new()
            .chain_update(r)
            .chain_update(public.as_bytes())
            .chain_update(message)
            .finalize()
            .into(),
    );
    let sig = ed25519_dalek::Signature::from_components(r, (k * a).to_bytes());
    assert!(
        ed25519_dalek::Verifier::verify(public, message, &sig).is_ok(),
        "the unstrict check accepts it"
    );
    assert!(!key.verifier().verify_strict(message, &sig.to_bytes()));
    let good = key.sign(b"an honest message").to_bytes();
    let forged = sig.to_bytes();
    let batch = [
        (key.verifier(), &b"an honest message"[..], &good[..]),
        (key.verifier(), &message[..], &forged[..]),
    ];
    assert!(!hotline::keys::verify_strict_batch(&batch));
    assert!(hotline::keys::verify_strict_batch(&[batch[0], batch[0]]));
}
