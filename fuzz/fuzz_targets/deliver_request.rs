//! Federation `Deliver` and `DeliverBatch` request decoding: the request,
//! its envelopes' signatures, their notice or response
//! payloads with every field rule, and the checkpoint.
#![no_main]

use hotline::keys::IdentityKey;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(batch) = hotline::proto::DeliverBatchRequest::decode(data) {
        let key = IdentityKey::from_seed("hotline.example/PER", [9; 32]).unwrap();
        let ring = hotline::keys::Keyring::new([hotline::keys::TrustedKey {
            party: "PER".into(),
            key: key.verifier().clone(),
            valid_from: None,
            valid_until: None,
        }]);
        for e in &batch.envelopes {
            let _ = hotline::envelope::verify(e, &e.payload_type, &ring, hotline::clock::now());
        }
    }
    let Ok(req) = hotline::proto::DeliverRequest::decode(data) else { return };
    let norms = hotline::agreement::Agreement::parse(&format!(
        "version = 1\n{}\n[[party]]\nid = \"PER\"\nname = \"P\"\nendpoint = \"https://127.0.0.1:1\"\ntls_cert_sha256 = \"{}\"\n[[party.key]]\nvkey = \"{}\"\n",
        hotline::setup::DEFAULT_NORMS,
        "ab".repeat(32),
        IdentityKey::from_seed("hotline.example/PER", [9; 32]).unwrap().verifier()
    ))
    .unwrap()
    .norms;
    if let Some(env) = req.envelope {
        if let Ok(n) = hotline::message::decode_notice(&env.payload) {
            let _ = hotline::message::validate_notice(&n, &norms);
        }
        if let Ok(r) = hotline::message::decode_response(&env.payload) {
            let _ = hotline::message::validate_response(&r, &norms);
        }
    }
    if let Some(cp) = req.sender_checkpoint {
        let key = IdentityKey::from_seed("hotline.example/PER", [9; 32]).unwrap();
        let _ = hotline::log::checkpoint::verify(&cp.note, key.verifier());
    }
});
