//! How domain errors reach a caller: each as its own status code, and an
//! internal failure only as a reference, never with its SQL, path or text.

use hotline::log::{LogError, StateError};
use hotline::node::NodeError;
use tonic::{Code, Status};

#[test]
fn an_internal_failure_reaches_the_caller_as_a_reference_only() {
    let leaks = [
        NodeError::Log(LogError::Corrupt {
            path: "/srv/hotline/secret-data".into(),
            what: "stored tree: SELECT hash FROM hashes failed".into(),
        }),
        NodeError::Log(LogError::Refused(StateError::Storage(
            rusqlite::Error::InvalidQuery.into(),
        ))),
        NodeError::Internal("delivery task failed: panicked at src/node/inbound.rs".into()),
    ];
    for e in leaks {
        let status = Status::from(e);
        assert_eq!(status.code(), Code::Internal);
        let message = status.message();
        assert!(message.starts_with("internal error "), "{message}");
        for secret in ["/srv", "SELECT", "src/", "Query", "panicked"] {
            assert!(!message.contains(secret), "{secret:?} leaked: {message}");
        }
    }
}

#[test]
fn a_stopping_node_answers_unavailable() {
    let status = Status::from(NodeError::Log(LogError::Closed));
    assert_eq!(status.code(), Code::Unavailable);
}

#[test]
fn each_domain_error_has_its_own_code_and_names_what_is_at_fault() {
    let cases = [
        (NodeError::IdReused("0190".into()), Code::AlreadyExists, "0190"),
        (
            NodeError::NotAPeer("XXX".into()),
            Code::InvalidArgument,
            "field to: XXX",
        ),
        (NodeError::NoSuchNotice("n1".into()), Code::NotFound, "n1"),
        (NodeError::OwnNotice("n2".into()), Code::FailedPrecondition, "n2"),
        (
            NodeError::SignerIsNotCaller {
                signer: "ARG".into(),
                caller: "CHL".into(),
            },
            Code::PermissionDenied,
            "ARG",
        ),
        (
            NodeError::PayloadTooLarge { size: 9, max: 8 },
            Code::ResourceExhausted,
            "max_notice_bytes",
        ),
    ];
    for (e, code, names) in cases {
        let status = Status::from(e);
        assert_eq!(status.code(), code, "{status:?}");
        assert!(status.message().contains(names), "{status:?}");
    }
}
