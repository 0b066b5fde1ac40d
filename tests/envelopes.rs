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
        revoked: None,
    }))
}

fn setup() -> (IdentityKey, Keyring, hotline::proto::Envelope) {
    let key = IdentityKey::generate("hotline.example/PER").unwrap();
    let ring = keyring(&[("PER", &key)]);
    let env = envelope::sign(NOTICE_TYPE, b"notice bytes".to_vec(), &key).unwrap();
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
    let mut env = envelope::sign(RESPONSE_TYPE, b"notice bytes".to_vec(), &key).unwrap();
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
    let env = envelope::sign(NOTICE_TYPE, b"x".to_vec(), &stranger).unwrap();
    let err = envelope::verify(&env, NOTICE_TYPE, &ring, clock::now()).unwrap_err();
    assert!(matches!(err, EnvelopeError::UnknownKey(_)), "{err}");
}

#[test]
fn a_signature_by_the_wrong_key_under_a_known_key_id_is_a_bad_signature() {
    let (_, ring, mut env) = setup();
    let impostor = IdentityKey::generate("hotline.example/PER").unwrap();
    let forged = envelope::sign(NOTICE_TYPE, env.payload.clone(), &impostor).unwrap();
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
        revoked: None,
    }]);
    let env = envelope::sign(NOTICE_TYPE, b"x".to_vec(), &key).unwrap();
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

/// A notice signed with a nonce point `R = nonce·B + T`, `T` the small-order
/// point `EIGHT_TORSION[torsion]`, and `s` computed for that `R`: only the
/// key holder can make it. With `torsion` 0 (the identity) and a nonzero
/// nonce it is an honest signature; with nonce 0, `R` itself has small order.
fn signed_with_torsion(seed: [u8; 32], nonce: u8, torsion: usize) -> hotline::proto::Envelope {
    use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
    use curve25519_dalek::scalar::Scalar;
    use sha2::{Digest, Sha512};
    let key = IdentityKey::from_seed("hotline.example/PER", seed).unwrap();
    let a = ed25519_dalek::SigningKey::from_bytes(&seed).to_scalar();
    let payload = format!("notice {nonce} {torsion}").into_bytes();
    let message = envelope::pae(NOTICE_TYPE, &payload);
    let nonce = Scalar::from(nonce);
    let r = (nonce * ED25519_BASEPOINT_POINT + EIGHT_TORSION[torsion])
        .compress()
        .to_bytes();
    let k = Scalar::from_bytes_mod_order_wide(
        &Sha512::new()
            .chain_update(r)
            .chain_update(key.verifier().public_key().as_bytes())
            .chain_update(&message)
            .finalize()
            .into(),
    );
    let sig = ed25519_dalek::Signature::from_components(r, (nonce + k * a).to_bytes());
    hotline::proto::Envelope {
        payload_type: NOTICE_TYPE.into(),
        payload,
        signatures: vec![hotline::proto::Signature {
            keyid: key.verifier().key_id(),
            sig: sig.to_bytes().to_vec(),
        }],
    }
}

#[test]
fn a_small_order_r_that_the_unstrict_check_accepts_is_refused() {
    let seed = [7u8; 32];
    let ring = keyring(&[("PER", &IdentityKey::from_seed("hotline.example/PER", seed).unwrap())]);
    let honest = signed_with_torsion(seed, 5, 0);
    assert!(envelope::verify(&honest, NOTICE_TYPE, &ring, clock::now()).is_ok());
    // R is the identity: s·B = R + k·A holds, and the unstrict check passes it.
    let forged = signed_with_torsion(seed, 0, 0);
    let public = ring.get(&forged.signatures[0].keyid).unwrap().key.public_key();
    let sig = ed25519_dalek::Signature::from_slice(&forged.signatures[0].sig).unwrap();
    let message = envelope::pae(NOTICE_TYPE, &forged.payload);
    assert!(ed25519_dalek::Verifier::verify(public, &message, &sig).is_ok());
    assert!(matches!(
        envelope::verify(&forged, NOTICE_TYPE, &ring, clock::now()),
        Err(EnvelopeError::BadSignature(_))
    ));
}

#[test]
fn an_r_with_a_small_order_component_is_refused_for_every_such_component() {
    // A batch equation lets about half of these through (tried: 18 of 40 with
    // ed25519-dalek's verify_batch), which is why the nodes check one by one.
    let seed = [9u8; 32];
    let ring = keyring(&[("PER", &IdentityKey::from_seed("hotline.example/PER", seed).unwrap())]);
    for nonce in 1..=5 {
        assert!(envelope::verify(&signed_with_torsion(seed, nonce, 0), NOTICE_TYPE, &ring, clock::now()).is_ok());
        for torsion in 1..8 {
            let env = signed_with_torsion(seed, nonce, torsion);
            assert!(
                matches!(
                    envelope::verify(&env, NOTICE_TYPE, &ring, clock::now()),
                    Err(EnvelopeError::BadSignature(_))
                ),
                "nonce {nonce}, torsion point {torsion}"
            );
        }
    }
}
