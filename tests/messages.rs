//! Notice and response rules: each broken rule is its own typed error naming the field.

mod common;

use hotline::agreement::Agreement;
use hotline::message::{self, MessageError};
use hotline::proto::{Category, Indicator, Notice, NoticeKind, Response, ResponseStatus, Severity, Tlp};

fn norms() -> hotline::agreement::Norms {
    let p = common::parties(&["PER", "CHL"]);
    Agreement::parse(&common::agreement_text(&p, "")).unwrap().norms
}

fn notice() -> Notice {
    Notice {
        id: message::new_id(),
        from: "PER".into(),
        to: vec!["CHL".into(), "ARG".into()],
        created_at: Some(hotline::clock::to_proto(hotline::clock::now())),
        kind: NoticeKind::Notification as i32,
        severity: Severity::High as i32,
        category: Category::MaliciousCode as i32,
        tlp: Tlp::Amber as i32,
        title: "Ransomware at the grid operator".into(),
        summary: "Encrypted SCADA historians.".into(),
        author: "duty-officer-1".into(),
        indicators: vec![Indicator {
            r#type: "ipv4-addr".into(),
            value: "192.0.2.7".into(),
        }],
        ..Default::default()
    }
}

fn err(n: &Notice) -> MessageError {
    message::validate_notice(n, &norms()).unwrap_err()
}

#[test]
fn a_complete_notice_is_valid() {
    message::validate_notice(&notice(), &norms()).unwrap();
}

/// One way to break a notice.
type Breakage = fn(&mut Notice);

#[test]
fn each_broken_notice_rule_names_its_field() {
    let cases: [(Breakage, MessageError); 10] = [
        (|n| n.id.clear(), MessageError::Missing("id")),
        (|n| n.from.clear(), MessageError::Missing("from")),
        (|n| n.to.clear(), MessageError::Missing("to")),
        (|n| n.created_at = None, MessageError::Missing("created_at")),
        (|n| n.kind = 0, MessageError::Missing("kind")),
        (|n| n.severity = 0, MessageError::Missing("severity")),
        (|n| n.category = 0, MessageError::Missing("category")),
        (|n| n.tlp = 0, MessageError::Missing("tlp")),
        (|n| n.title = "  ".into(), MessageError::Missing("title")),
        (|n| n.author.clear(), MessageError::Missing("author")),
    ];
    for (breakit, expected) in cases {
        let mut n = notice();
        breakit(&mut n);
        assert_eq!(err(&n), expected);
    }
}

fn invalid_field(n: &Notice) -> &'static str {
    match err(n) {
        MessageError::Invalid { field, .. } => field,
        other => panic!("expected Invalid, got {other}"),
    }
}

#[test]
fn ids_must_be_canonical_uuid_v7() {
    let mut n = notice();
    n.id = "936da01f-9abd-4d9d-80c7-02af85c822a8".into(); // version 4
    assert_eq!(invalid_field(&n), "id");
    n.id = "not-a-uuid".into();
    assert_eq!(invalid_field(&n), "id");
    n.id = message::new_id().to_uppercase();
    assert_eq!(invalid_field(&n), "id");
}

#[test]
fn recipients_must_be_distinct_valid_parties_other_than_the_sender() {
    for to in [vec!["PER"], vec!["CHL", "CHL"], vec!["C HL"]] {
        let mut n = notice();
        n.to = to.into_iter().map(String::from).collect();
        assert_eq!(invalid_field(&n), "to");
    }
}

#[test]
fn unknown_enum_values_are_refused() {
    let mut n = notice();
    n.tlp = 42;
    assert_eq!(invalid_field(&n), "tlp");
    let mut n = notice();
    n.kind = 99;
    assert_eq!(invalid_field(&n), "kind");
}

#[test]
fn updates_and_closures_must_thread_onto_a_notice() {
    let mut n = notice();
    n.kind = NoticeKind::Closure as i32;
    assert_eq!(invalid_field(&n), "in_reply_to");
    n.in_reply_to = message::new_id();
    message::validate_notice(&n, &norms()).unwrap();
}

#[test]
fn an_oversize_notice_is_refused_with_its_size() {
    let mut n = notice();
    n.summary = "x".repeat(1_048_576);
    assert!(matches!(err(&n), MessageError::TooLarge { max: 1_048_576, .. }));
}

#[test]
fn tlp_amber_and_red_may_not_be_forwarded_but_clear_and_green_may() {
    let mut n = notice();
    assert!(
        message::check_forward(&n, "CHL").is_ok(),
        "a recipient is not a forward"
    );
    for (tlp, allowed) in [
        (Tlp::Clear, true),
        (Tlp::Green, true),
        (Tlp::Amber, false),
        (Tlp::AmberStrict, false),
        (Tlp::Red, false),
    ] {
        n.tlp = tlp as i32;
        let result = message::check_forward(&n, "BRA");
        assert_eq!(result.is_ok(), allowed, "{tlp:?}");
        if let Err(e) = result {
            assert!(matches!(e, MessageError::TlpForbidsForward { .. }));
        }
    }
}

#[test]
fn a_response_needs_a_status_and_a_notice() {
    let mut r = Response {
        id: message::new_id(),
        notice_id: message::new_id(),
        from: "CHL".into(),
        to: vec!["PER".into()],
        created_at: Some(hotline::clock::to_proto(hotline::clock::now())),
        status: ResponseStatus::Acknowledged as i32,
        text: "Seen, investigating.".into(),
        author: "duty-chl".into(),
        ..Default::default()
    };
    message::validate_response(&r, &norms()).unwrap();
    r.status = 0;
    assert_eq!(
        message::validate_response(&r, &norms()).unwrap_err(),
        MessageError::Missing("status")
    );
    r.status = 1;
    r.notice_id.clear();
    assert_eq!(
        message::validate_response(&r, &norms()).unwrap_err(),
        MessageError::Missing("notice_id")
    );
}

#[test]
fn garbage_payloads_decode_to_an_error_not_a_panic() {
    for bytes in [&b"\xff\xff\xff"[..], b"\x0a\x05ab", &[0x12; 40]] {
        let _ = message::decode_notice(bytes);
        let _ = message::decode_response(bytes);
    }
    assert!(message::decode_notice(b"\xff\xff\xff").is_err());
}

fn translation(language: &str, authoritative: bool) -> hotline::proto::Translation {
    hotline::proto::Translation {
        language: language.into(),
        title: format!("title in {language}"),
        summary: String::new(),
        authoritative,
    }
}

#[test]
fn a_notice_may_carry_its_language_and_translations_with_one_authoritative() {
    let mut n = notice();
    n.language = "en".into();
    n.translations = vec![translation("es", true), translation("pt-BR", false)];
    message::validate_notice(&n, &norms()).unwrap();
}

#[test]
fn languages_must_be_bcp47_tags_used_once_with_at_most_one_authoritative_translation() {
    let cases: [(Breakage, &str); 5] = [
        (|n| n.language = "english".into(), "language"),
        (|n| n.language = "en_US".into(), "language"),
        (
            |n| n.translations = vec![translation("es", false), translation("ES", false)],
            "translations",
        ),
        (
            |n| n.translations = vec![translation("es", true), translation("fr", true)],
            "translations",
        ),
        (
            |n| {
                n.translations = vec![hotline::proto::Translation {
                    title: String::new(),
                    ..translation("fr", false)
                }]
            },
            "translations",
        ),
    ];
    for (breakit, field) in cases {
        let mut n = notice();
        n.language = "en".into();
        breakit(&mut n);
        assert_eq!(invalid_field(&n), field, "{n:?}");
    }
}

#[test]
fn a_reply_to_an_exercise_is_the_same_exercise() {
    let mut original = notice();
    original.exercise = hotline::proto::Exercise::Tabletop as i32;
    let mut reply = notice();
    reply.in_reply_to = original.id.clone();
    let err = message::check_reply(&reply, &original).unwrap_err();
    assert!(err.to_string().contains("is NONE but continues notice"), "{err}");
    reply.exercise = original.exercise;
    message::check_reply(&reply, &original).unwrap();
    let mut n = notice();
    n.exercise = 9;
    assert_eq!(invalid_field(&n), "exercise");
}
