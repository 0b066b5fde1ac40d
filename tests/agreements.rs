//! The signed agreement: validation names the field at fault, and a node
//! accepts it only when the quorum signed the exact text.

mod common;

use common::{agreement_text, parties, party_toml, signed_agreement};
use hotline::agreement::{AgreementError, SignedAgreement};
use hotline::clock;

#[test]
fn an_agreement_signed_by_every_party_verifies() {
    let p = parties(&["PER", "CHL", "ARG"]);
    let a = signed_agreement(&p, "", &[&p[0], &p[1], &p[2]]);
    assert_eq!(a.verify(clock::now()).unwrap(), vec!["PER", "CHL", "ARG"]);
    let reparsed = SignedAgreement::parse(&a.to_bytes()).unwrap();
    assert_eq!(reparsed.verify(clock::now()).unwrap().len(), 3);
}

#[test]
fn an_agreement_missing_one_signature_is_refused_and_names_the_party() {
    let p = parties(&["PER", "CHL", "ARG"]);
    let a = signed_agreement(&p, "", &[&p[0], &p[2]]);
    let err = SignedAgreement::parse(&a.to_bytes())
        .unwrap()
        .verify(clock::now())
        .unwrap_err();
    match err {
        AgreementError::NotSigned {
            signed,
            required,
            missing,
        } => {
            assert_eq!((signed, required), (2, 3));
            assert_eq!(missing, vec!["CHL"]);
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn a_stated_quorum_is_enough() {
    let p = parties(&["PER", "CHL", "ARG"]);
    let a = signed_agreement(&p, "quorum = 2", &[&p[0], &p[2]]);
    assert_eq!(a.verify(clock::now()).unwrap(), vec!["PER", "ARG"]);
}

#[test]
fn text_changed_after_signing_is_refused_as_a_bad_signature() {
    let p = parties(&["PER", "CHL"]);
    let a = signed_agreement(&p, "", &[&p[0], &p[1]]);
    let tampered = String::from_utf8(a.to_bytes()).unwrap().replace("\"5m\"", "\"6m\"");
    let err = SignedAgreement::parse(tampered.as_bytes())
        .unwrap()
        .verify(clock::now())
        .unwrap_err();
    assert!(
        matches!(err, AgreementError::BadSignature { ref party, .. } if party == "PER"),
        "{err}"
    );
}

#[test]
fn a_signature_by_a_key_not_in_the_agreement_is_not_counted() {
    let p = parties(&["PER", "CHL"]);
    let outsider = parties(&["XXX"]);
    let mut a = signed_agreement(&p, "", &[&p[0]]);
    assert!(matches!(a.sign(&outsider[0].key), Err(AgreementError::NotAParty(_))));
    // A foreign signature line added by hand is tolerated but does not count.
    let mut note = hotline::note::SignedNote::parse(&a.to_bytes()).unwrap();
    note.sign(&outsider[0].key).unwrap();
    let err = SignedAgreement::parse(&note.to_bytes())
        .unwrap()
        .verify(clock::now())
        .unwrap_err();
    assert!(matches!(err, AgreementError::NotSigned { signed: 1, .. }), "{err}");
}

#[test]
fn a_signature_by_an_expired_key_is_not_counted() {
    let p = parties(&["PER", "CHL"]);
    let text = format!(
        "version = 1\n{}\n{}{}",
        common::NORMS,
        party_toml(&p[0], 7000, "valid_until = 2020-01-01T00:00:00Z"),
        party_toml(&p[1], 7001, "")
    );
    let mut a = SignedAgreement::parse(text.as_bytes()).unwrap();
    a.sign(&p[0].key).unwrap();
    a.sign(&p[1].key).unwrap();
    let err = a.verify(clock::now()).unwrap_err();
    assert!(
        matches!(err, AgreementError::NotSigned { ref missing, .. } if missing == &["PER"]),
        "{err}"
    );
}

fn field_error(text: &str) -> String {
    match SignedAgreement::parse(text.as_bytes()) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("accepted:\n{text}"),
    }
}

#[test]
fn validation_names_the_field_at_fault() {
    let p = parties(&["PER", "CHL"]);
    let good = agreement_text(&p, "");
    let cases = [
        (good.replace("id = \"CHL\"", "id = \"C H L\""), "party[1].id"),
        (good.replace("id = \"CHL\"", "id = \"PER\""), "listed twice"),
        (
            good.replace("https://127.0.0.1:7001", "http://127.0.0.1:7001"),
            "party CHL (endpoint)",
        ),
        (
            good.replace("receipt_within = \"5m\"", "receipt_within = \"5 minutes\""),
            "norms.receipt_within",
        ),
        (
            good.replace("critical = \"1h\"", "critical = \"0s\""),
            "norms.respond_within.critical",
        ),
        (
            good.replace("max_notice_bytes = 1048576", "max_notice_bytes = 1"),
            "norms.max_notice_bytes",
        ),
        (good.replace("version = 1", "version = 0"), "version"),
        (good.replace("title = \"Test hotline\"", "quorum = 3"), "quorum"),
        (
            good.replacen("vkey = \"hotline", "vkey = \"hot line", 1),
            "party PER key[0].vkey",
        ),
        (good.replace("endpoint = \"https://127.0.0.1:7000\"\n", ""), "endpoint"),
        (good.replace("clock_skew", "clock_skw"), "clock_skw"),
    ];
    for (text, expected) in cases {
        let err = field_error(&text);
        assert!(err.contains(expected), "expected {expected:?} in: {err}");
    }
}

#[test]
fn a_malformed_signature_block_is_refused() {
    let p = parties(&["PER"]);
    let a = signed_agreement(&p, "", &[&p[0]]);
    let broken = String::from_utf8(a.to_bytes()).unwrap().replace("— ", "- ");
    // Without a valid signature block the file reads as TOML, which it no longer is.
    assert!(SignedAgreement::parse(broken.as_bytes()).is_err());
}
