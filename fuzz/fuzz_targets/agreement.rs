//! Agreement parsing (TOML schema and signed-note wrapping) and its quorum check.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(signed) = hotline::agreement::SignedAgreement::parse(data) {
        let _ = signed.verify(hotline::clock::now());
    }
});
