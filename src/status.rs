//! The one place where domain errors become gRPC statuses.

use tonic::{Code, Status};

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::log::{LogError, StateError};
use crate::message::MessageError;
use crate::node::NodeError;
use crate::repeats::Repeats;

impl From<LogError> for Status {
    fn from(e: LogError) -> Self {
        match &e {
            LogError::OutOfRange { .. } => Status::out_of_range(e.to_string()),
            LogError::Invalid { .. } => Status::invalid_argument(e.to_string()),
            LogError::Refused(StateError::Duplicate(_)) => Status::already_exists(e.to_string()),
            LogError::Refused(StateError::NotRunning(_)) | LogError::NoValidKey { .. } => {
                Status::failed_precondition(e.to_string())
            }
            LogError::Closed => Status::unavailable("the node is stopping; try again once it is back"),
            LogError::Held => Status::unavailable(
                "the node is starting: it compares its log with the checkpoints its peers witnessed, then publishes its roster; try again shortly",
            ),
            LogError::Refused(StateError::Storage(_) | StateError::Invalid(_))
            | LogError::Store(_)
            | LogError::Corrupt { .. }
            | LogError::Signing(_)
            | LogError::TooLarge { .. } => internal(&e),
        }
    }
}

impl From<NodeError> for Status {
    fn from(e: NodeError) -> Self {
        use NodeError::*;
        if let Log(log) = e {
            return log.into();
        }
        let code = match &e {
            Log(_) | Internal(_) | Setup(_) | RolledBack(_) => return internal(&e),
            Message(MessageError::TooLarge { .. }) | PayloadTooLarge { .. } => Code::ResourceExhausted,
            Message(MessageError::TlpForbidsForward { .. } | MessageError::TlpWeakened { .. }) | OwnNotice(_) => {
                Code::FailedPrecondition
            }
            BadRoster(crate::roster::RosterError::NotByParty { .. }) | NotInRoster { .. } => Code::PermissionDenied,
            RosterNotNewer { .. } | NoEncryptionKey(_) | NoOwnEncryptionKey(_) => Code::FailedPrecondition,
            Message(_)
            | MissingField(_)
            | NotDeliverable(_)
            | NotForUs { .. }
            | NoCreatedAt
            | FromTheFuture { .. }
            | SenderCheckpoint(_)
            | NotAPeer(_)
            | NoSuchRecipient { .. }
            | RemovedRecipient { .. }
            | AmbiguousId { .. }
            | BadRelaySender(_)
            | UnknownRecipient(_)
            | BadAmendment(_)
            | BadAgreementRef(_)
            | RosterMismatch { .. }
            | Sealed(_)
            | BadRoster(_)
            | Signatures(_) => Code::InvalidArgument,
            BadSignature { .. } => Code::Unauthenticated,
            SignerIsNotCaller { .. } | FromIsNotCaller { .. } | NotARecipient { .. } | NotARelay(_) => {
                Code::PermissionDenied
            }
            IdReused(_) | IdTaken(_) => Code::AlreadyExists,
            RecipientUnreachable { .. } => Code::Unavailable,
            NoSuchNotice(_) | UnknownNotice { .. } | NoSuchAgreement { .. } | NoSuchProposal(_) | NoRoster(_) => {
                Code::NotFound
            }
        };
        Status::new(code, e.to_string())
    }
}

/// An internal failure: logged in full under a short reference, answered
/// with fixed text naming only that reference, so no SQL, path or internal
/// message reaches a peer or operator.
/// Internal failures already logged, so that a repeated one (a full disk
/// refusing every call) gives one line a minute with a count, not one per call.
static INTERNAL: std::sync::LazyLock<Repeats> = std::sync::LazyLock::new(|| Repeats::new(Duration::from_secs(60)));

/// An internal failure: logged in full under a reference, answered with the
/// reference only. The reference is drawn from the failure's text, so every
/// call that failed the same way points at the same logged line.
pub(crate) fn internal(e: &dyn std::fmt::Display) -> Status {
    let error = e.to_string();
    let reference = hex::encode(&Sha256::digest(error.as_bytes())[..4]);
    if let Some(held_back) = INTERNAL.check(&error, std::time::Instant::now()) {
        tracing::error!(reference, error, held_back, "internal error");
    }
    Status::internal(format!(
        "internal error {reference}: the node could not complete this call; its operators can find the cause under this reference in its log"
    ))
}

/// One refused item of a batch or stream, as the single-item call would
/// have answered it.
impl From<Status> for crate::proto::Refusal {
    fn from(s: Status) -> Self {
        Self {
            code: s.code() as i32,
            message: s.message().to_owned(),
        }
    }
}
