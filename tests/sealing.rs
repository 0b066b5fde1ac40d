//! Sealing a message body to its readers (HPKE, RFC 9180) under a salted
//! commitment the sender's signature covers.

use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use hotline::seal::{SealError, SealKey, open, seal};
use hpke::{Deserializable as _, Serializable as _};
use sha2::{Digest, Sha256};

fn readers(keys: &[(&str, &SealKey)]) -> Vec<(String, hotline::seal::SealPublicKey)> {
    keys.iter().map(|(p, k)| (p.to_string(), k.public().clone())).collect()
}

#[test]
fn a_body_sealed_to_two_parties_opens_for_each_and_for_no_one_else() {
    let (per, chl, arg) = (SealKey::generate(), SealKey::generate(), SealKey::generate());
    let text = b"Wiper malware at a regional grid operator";
    let sealed = seal(text, &readers(&[("PER", &per), ("CHL", &chl)])).unwrap();
    assert_eq!(open(&sealed, "PER", std::slice::from_ref(&per)).unwrap(), text);
    assert_eq!(open(&sealed, "CHL", std::slice::from_ref(&chl)).unwrap(), text);
    assert!(
        !sealed.ciphertext.windows(8).any(|w| w == b"Wiper ma"),
        "the text is not in clear"
    );
    assert!(matches!(open(&sealed, "ARG", &[arg]), Err(SealError::NotForUs { .. })));
    // CHL's entry opened with another party's key: not for it either.
    assert!(matches!(open(&sealed, "CHL", &[per]), Err(SealError::NotForUs { .. })));
}

#[test]
fn two_seals_of_one_text_share_no_bytes_a_guesser_could_match() {
    let per = SealKey::generate();
    let r = readers(&[("PER", &per)]);
    let (a, b) = (seal(b"yes", &r).unwrap(), seal(b"yes", &r).unwrap());
    assert_ne!(a.commitment, b.commitment, "the commitment is salted");
    assert_ne!(a.ciphertext, b.ciphertext);
}

#[test]
fn a_body_that_decrypts_to_another_text_than_its_signed_commitment_is_refused() {
    // A sender commits to (and signs) one text but encrypts another, with every
    // key and tag consistent: what a ciphertext made to decrypt under two keys
    // would show one of its readers. The reader refuses it.
    let chl = SealKey::generate();
    let salt = [7u8; 32];
    let signed = [&salt[..], b"Our systems are fine"].concat();
    let shown = [&salt[..], b"Your systems attacked ours"].concat();
    let commitment = Sha256::digest(&signed).to_vec();
    let content_key = [9u8; 32];
    let ciphertext = chacha20poly1305::ChaCha20Poly1305::new(&content_key.into())
        .encrypt(
            &Default::default(),
            Payload {
                msg: &shown,
                aad: &commitment,
            },
        )
        .unwrap();
    let honest = seal(b"anything", &readers(&[("CHL", &chl)])).unwrap();
    // Seal the content key to CHL's public key exactly as `seal` does, under the lying commitment.
    let pk = <hpke::kem::X25519HkdfSha256 as hpke::Kem>::PublicKey::from_bytes(
        &base64::Engine::decode(&base64::engine::general_purpose::STANDARD, chl.public().encode()).unwrap(),
    )
    .unwrap();
    let (enc, sealed_key) =
        hpke::single_shot_seal::<hpke::aead::ChaCha20Poly1305, hpke::kdf::HkdfSha256, hpke::kem::X25519HkdfSha256, _>(
            &hpke::OpModeS::Base,
            &pk,
            b"hotline seal v1",
            &content_key,
            &commitment,
            &mut rand_core::OsRng,
        )
        .unwrap();
    let lying = hotline::proto::Sealed {
        commitment,
        ciphertext,
        keys: vec![hotline::proto::SealedKey {
            party: "CHL".into(),
            key_id: chl.public().key_id(),
            enc: enc.to_bytes().to_vec(),
            sealed_key,
        }],
    };
    assert!(matches!(
        open(&lying, "CHL", std::slice::from_ref(&chl)),
        Err(SealError::Commitment)
    ));
    assert!(
        open(&honest, "CHL", &[chl]).is_ok(),
        "the same key opens an honest seal"
    );
}

#[test]
fn an_encryption_key_file_is_written_private_and_a_readable_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("encryption.key");
    let key = SealKey::generate();
    key.save(&path).unwrap();
    assert_eq!(SealKey::load(&path).unwrap().public(), key.public());
    assert!(key.save(&path).is_err(), "never overwritten");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = SealKey::load(&path).unwrap_err().to_string();
    assert!(err.contains("chmod 600"), "{err}");
}
