//! Hostile bytes never panic a parser: envelopes (protobuf and DSSE JSON),
//! signed notes, checkpoints, agreements and Federation requests, each fed
//! arbitrary input and slight mutations of valid input.

mod common;

use hotline::agreement::{Agreement, SignedAgreement};
use hotline::envelope::{self, NOTICE_TYPE};
use hotline::keys::{IdentityKey, Keyring, TrustedKey};
use hotline::log::checkpoint;
use hotline::note::SignedNote;
use hotline::proto::{DeliverBatchRequest, DeliverRequest, Envelope, LogEntry};
use hotline::{clock, message};
use proptest::prelude::*;
use prost::Message;

fn key() -> IdentityKey {
    IdentityKey::from_seed("hotline.example/PER", [9; 32]).unwrap()
}

fn keyring(k: &IdentityKey) -> Keyring {
    Keyring::new([TrustedKey {
        party: "PER".into(),
        key: k.verifier().clone(),
        valid_from: None,
        valid_until: None,
        revoked: None,
    }])
}

fn mutate(mut bytes: Vec<u8>, at: usize, with: u8, cut: usize) -> Vec<u8> {
    if !bytes.is_empty() {
        let i = at % bytes.len();
        bytes[i] ^= with | 1;
        bytes.truncate(bytes.len() - cut % bytes.len().max(1));
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn envelope_decoding_and_verification_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let k = key();
        if let Ok(env) = Envelope::decode(&bytes[..]) {
            let _ = envelope::verify(&env, NOTICE_TYPE, &keyring(&k), clock::now());
        }
        let _ = envelope::from_json(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn a_mutated_signed_envelope_never_verifies_as_something_else(at in any::<usize>(), with in any::<u8>(), cut in 0usize..4) {
        let k = key();
        let env = envelope::sign(NOTICE_TYPE, b"payload bytes".to_vec(), &k).unwrap();
        let bytes = mutate(env.encode_to_vec(), at, with, cut);
        if let Ok(m) = Envelope::decode(&bytes[..])
            && envelope::verify(&m, NOTICE_TYPE, &keyring(&k), clock::now()).is_ok() {
                prop_assert_eq!(m.payload, env.payload);
            }
    }

    #[test]
    fn signed_notes_and_checkpoints_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let k = key();
        if let Ok(note) = SignedNote::parse(&bytes) {
            let _ = note.verify(&[k.verifier().clone()]);
        }
        let _ = checkpoint::verify(&bytes, k.verifier());
    }

    #[test]
    fn a_mutated_checkpoint_is_refused_or_unchanged(at in any::<usize>(), with in any::<u8>(), cut in 0usize..3) {
        let k = key();
        let note = checkpoint::sign(std::slice::from_ref(&k), 42, tlog_tiles::Hash([3; 32])).unwrap();
        let bytes = mutate(note.clone(), at, with, cut);
        if let Ok(cp) = checkpoint::verify(&bytes, k.verifier()) {
            prop_assert_eq!(cp.size, 42);
            prop_assert_eq!(cp.root, tlog_tiles::Hash([3; 32]));
        }
    }

    #[test]
    fn agreements_never_panic(text in "\\PC{0,400}", at in any::<usize>(), with in any::<u8>()) {
        let _ = Agreement::parse(&text);
        let _ = SignedAgreement::parse(text.as_bytes());
        let p = common::parties(&["PER", "CHL"]);
        let good = common::agreement_text(&p, "").into_bytes();
        let _ = SignedAgreement::parse(&mutate(good, at, with, 0));
    }

    #[test]
    fn federation_requests_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        if let Ok(req) = DeliverRequest::decode(&bytes[..]) {
            if let Some(env) = req.envelope {
                if let Ok(n) = message::decode_notice(&env.payload) {
                    let p = common::parties(&["PER"]);
                    let norms = Agreement::parse(&common::agreement_text(&p, "")).unwrap().norms;
                    let _ = message::validate_notice(&n, &norms);
                }
                let _ = message::decode_response(&env.payload);
            }
            if let Some(cp) = req.sender_checkpoint {
                let _ = checkpoint::verify(&cp.note, key().verifier());
            }
        }
        if let Ok(batch) = DeliverBatchRequest::decode(&bytes[..]) {
            let ring = keyring(&key());
            for e in &batch.envelopes {
                let _ = envelope::verify(e, &e.payload_type, &ring, clock::now());
            }
        }
        let _ = LogEntry::decode(&bytes[..]);
    }
}
