//! Sealing a message body to its readers (HPKE, RFC 9180) under a salted
//! commitment the sender's signature covers.

mod common;

use hotline::seal::{Contexts, SealError, SealKey, open, seal};

fn readers(keys: &[(&str, &SealKey)]) -> Vec<(String, hotline::seal::SealPublicKey)> {
    keys.iter().map(|(p, k)| (p.to_string(), k.public().clone())).collect()
}

#[test]
fn a_body_sealed_to_two_parties_opens_for_each_and_for_no_one_else() {
    let (per, chl, arg) = (SealKey::generate(), SealKey::generate(), SealKey::generate());
    let text = b"Wiper malware at a regional grid operator";
    let sealed = seal(text, &readers(&[("PER", &per), ("CHL", &chl)]), &Contexts::default()).unwrap();
    assert_eq!(
        open(&sealed, "PER", std::slice::from_ref(&per), &Contexts::default()).unwrap(),
        text
    );
    assert_eq!(
        open(&sealed, "CHL", std::slice::from_ref(&chl), &Contexts::default()).unwrap(),
        text
    );
    assert!(
        !sealed.ciphertext.windows(8).any(|w| w == b"Wiper ma"),
        "the text is not in clear"
    );
    assert!(matches!(
        open(&sealed, "ARG", &[arg], &Contexts::default()),
        Err(SealError::NotForUs { .. })
    ));
    // CHL's entry opened with another party's key: not for it either.
    assert!(matches!(
        open(&sealed, "CHL", &[per], &Contexts::default()),
        Err(SealError::NotForUs { .. })
    ));
}

#[test]
fn two_seals_of_one_text_share_no_bytes_a_guesser_could_match() {
    let per = SealKey::generate();
    let r = readers(&[("PER", &per)]);
    let (a, b) = (
        seal(b"yes", &r, &Contexts::default()).unwrap(),
        seal(b"yes", &r, &Contexts::default()).unwrap(),
    );
    assert_ne!(a.commitment, b.commitment, "the commitment is salted");
    assert_ne!(a.ciphertext, b.ciphertext);
}

#[test]
fn one_senders_seals_to_a_reader_share_an_epoch_and_each_opens_alone() {
    let (per, chl) = (SealKey::generate(), SealKey::generate());
    let r = readers(&[("PER", &per), ("CHL", &chl)]);
    let sending = Contexts::default();
    let (a, b) = (
        seal(b"first", &r, &sending).unwrap(),
        seal(b"second", &r, &sending).unwrap(),
    );
    assert_eq!(
        a.keys[1].enc, b.keys[1].enc,
        "one X25519 per reader and epoch, not per message"
    );
    assert_ne!(a.keys[0].enc, a.keys[1].enc, "each reader its own context");
    assert_ne!(a.keys[1].sealed_key, b.keys[1].sealed_key);
    // Opened in any order, by a reader that has seen none of the epoch, or all of it.
    let opening = Contexts::default();
    let chl = std::slice::from_ref(&chl);
    assert_eq!(open(&b, "CHL", chl, &opening).unwrap(), b"second");
    assert_eq!(open(&a, "CHL", chl, &opening).unwrap(), b"first");
    assert_eq!(open(&a, "CHL", chl, &Contexts::default()).unwrap(), b"first");
    // One message's wrapped key moved onto another's body does not open it.
    let mut swapped = b.clone();
    swapped.keys[1].sealed_key = a.keys[1].sealed_key.clone();
    assert!(matches!(
        open(&swapped, "CHL", chl, &opening),
        Err(SealError::Undecryptable(_))
    ));
}

#[test]
fn a_body_that_decrypts_to_another_text_than_its_signed_commitment_is_refused() {
    // A sender commits to (and signs) one text but encrypts another, with every
    // key and tag consistent. The reader refuses it.
    let chl = SealKey::generate();
    let lying = common::lying_seal(
        b"Our systems are fine",
        b"Your systems attacked ours",
        "CHL",
        chl.public(),
    );
    let chl = std::slice::from_ref(&chl);
    assert!(matches!(
        open(&lying, "CHL", chl, &Contexts::default()),
        Err(SealError::Commitment)
    ));
    let honest = seal(b"anything", &readers(&[("CHL", &chl[0])]), &Contexts::default()).unwrap();
    assert!(
        open(&honest, "CHL", chl, &Contexts::default()).is_ok(),
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
