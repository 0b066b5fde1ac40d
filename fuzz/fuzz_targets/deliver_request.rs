//! Federation `Deliver` request decoding: the request, its envelope's
//! notice or response payload with every field rule, and its checkpoint.
#![no_main]

use hotline::keys::IdentityKey;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
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
