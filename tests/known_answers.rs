//! Known-answer tests: our code must reproduce public vectors byte for byte.

use hotline::envelope::pae;
use hotline::keys::{IdentityKey, VerifierKey};
use hotline::note::SignedNote;

fn field<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(str::trim)
        .unwrap_or_else(|| panic!("vector has no {name}"))
}

#[test]
fn dsse_pae_matches_the_spec_example() {
    let v = include_str!("vectors/dsse-pae.txt");
    let encoded = pae(field(v, "payload_type"), field(v, "payload").as_bytes());
    assert_eq!(String::from_utf8(encoded).unwrap(), field(v, "PAE"));
}

#[test]
fn ed25519_signing_matches_rfc8032_test_1() {
    let v = include_str!("vectors/rfc8032-ed25519.txt");
    let seed: [u8; 32] = hex::decode(field(v, "secret")).unwrap().try_into().unwrap();
    let key = IdentityKey::from_seed("rfc8032", seed).unwrap();
    assert_eq!(hex::encode(key.verifier().public_key().as_bytes()), field(v, "public"));
    let message = hex::decode(field(v, "message")).unwrap();
    assert_eq!(
        hex::encode(key.sign(&message).unwrap().to_bytes()),
        field(v, "signature")
    );
    let sig = hex::decode(field(v, "signature")).unwrap();
    assert!(key.verifier().verify_strict(&message, &sig));
}

struct NoteVector {
    skey: String,
    vkey: String,
    text: String,
    signature_line: String,
}

fn note_vector() -> NoteVector {
    let v = include_str!("vectors/signed-note.txt");
    let after = |marker: &str| v.split_once(marker).unwrap().1;
    let text: String = after("text:\n").lines().take(2).map(|l| format!("{l}\n")).collect();
    NoteVector {
        skey: field(v, "skey").to_owned(),
        vkey: field(v, "vkey").to_owned(),
        text,
        signature_line: after("signature line:\n").lines().next().unwrap().to_owned(),
    }
}

#[test]
fn signed_note_key_strings_round_trip_the_go_example() {
    let v = note_vector();
    let key = IdentityKey::parse_private(&v.skey).unwrap();
    assert_eq!(key.encode_private(), v.skey);
    assert_eq!(key.verifier().to_string(), v.vkey);
    let parsed: VerifierKey = v.vkey.parse().unwrap();
    assert_eq!(&parsed, key.verifier());
    assert_eq!(parsed.key_id(), "PeterNeumann+c74f20a3");
}

#[test]
fn signed_note_signature_is_byte_identical_to_the_go_example() {
    let v = note_vector();
    let key = IdentityKey::parse_private(&v.skey).unwrap();
    let mut note = SignedNote::new(&v.text).unwrap();
    note.sign(&key).unwrap();
    let expected = format!("{}\n{}\n", v.text, v.signature_line);
    assert_eq!(String::from_utf8(note.to_bytes()).unwrap(), expected);
}

#[test]
fn signed_note_from_the_go_example_verifies() {
    let v = note_vector();
    let note = SignedNote::parse(format!("{}\n{}\n", v.text, v.signature_line).as_bytes()).unwrap();
    let verified = note.verify(&[v.vkey.parse().unwrap()]).unwrap();
    assert_eq!(verified.len(), 1);
    assert_eq!(note.text(), v.text);
}
