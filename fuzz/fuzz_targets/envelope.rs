//! Envelope decoding (protobuf and DSSE JSON) and strict verification.
#![no_main]

use hotline::envelope::{self, NOTICE_TYPE};
use hotline::keys::{IdentityKey, Keyring, TrustedKey};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let key = IdentityKey::from_seed("hotline.example/PER", [9; 32]).unwrap();
    let ring = Keyring::new([TrustedKey { party: "PER".into(), key: key.verifier().clone(), valid_from: None, valid_until: None }]);
    if let Ok(env) = hotline::proto::Envelope::decode(data) {
        let _ = envelope::verify(&env, NOTICE_TYPE, &ring, hotline::clock::now());
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(env) = envelope::from_json(text) {
            let _ = envelope::verify(&env, NOTICE_TYPE, &ring, hotline::clock::now());
        }
    }
});
