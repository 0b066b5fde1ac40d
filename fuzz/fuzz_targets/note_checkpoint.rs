//! Signed-note and checkpoint parsing and verification.
#![no_main]

use hotline::keys::IdentityKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = IdentityKey::from_seed("hotline.example/PER", [9; 32]).unwrap();
    if let Ok(note) = hotline::note::SignedNote::parse(data) {
        let _ = note.verify(&[key.verifier().clone()]);
    }
    let _ = hotline::log::checkpoint::verify(data, key.verifier());
});
