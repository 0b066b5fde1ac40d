//! The one place where domain errors become gRPC statuses, and where a
//! caller's TLS identity is checked against what an RPC allows.

use tonic::{Code, Request, Status};

use crate::log::LogError;
use crate::node::NodeError;
use crate::tls::{Caller, Identifier, Role};

impl From<LogError> for Status {
    fn from(e: LogError) -> Self {
        let code = match &e {
            LogError::OutOfRange { .. } => Code::OutOfRange,
            LogError::Invalid { .. } => Code::InvalidArgument,
            LogError::Rejected(_) => Code::FailedPrecondition,
            LogError::Closed => Code::Unavailable,
            LogError::Store(_) | LogError::Corrupt { .. } => Code::Internal,
        };
        if code == Code::Internal {
            tracing::error!(error = %e, "log failure");
        }
        Status::new(code, e.to_string())
    }
}

impl From<NodeError> for Status {
    fn from(e: NodeError) -> Self {
        if let NodeError::Log(log) = e {
            return log.into();
        }
        let code = match &e {
            NodeError::Unauthenticated(_) => Code::Unauthenticated,
            NodeError::PermissionDenied(_) => Code::PermissionDenied,
            NodeError::InvalidArgument(_) => Code::InvalidArgument,
            NodeError::NotFound(_) => Code::NotFound,
            NodeError::AlreadyExists(_) => Code::AlreadyExists,
            NodeError::FailedPrecondition(_) => Code::FailedPrecondition,
            NodeError::ResourceExhausted(_) => Code::ResourceExhausted,
            NodeError::Setup(_) | NodeError::Log(_) => Code::Internal,
        };
        Status::new(code, e.to_string())
    }
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

/// Identifies the caller of `req` from its verified client certificate.
pub fn caller<T>(identifier: &Identifier, req: &Request<T>) -> Result<Caller, Status> {
    let chain = req
        .peer_certs()
        .ok_or_else(|| Status::unauthenticated("no TLS client certificate was presented"))?;
    identifier.identify(&chain).ok_or_else(|| {
        Status::unauthenticated(
            "the TLS client certificate belongs to no party of the agreement and to no configured operator or auditor",
        )
    })
}

/// Requires a local caller with one of `roles`; returns its name.
pub fn require_local<T>(identifier: &Identifier, req: &Request<T>, roles: &[Role]) -> Result<String, Status> {
    match caller(identifier, req)? {
        Caller::Local { name, role } if roles.contains(&role) => Ok(name),
        Caller::Local { name, role } => Err(Status::permission_denied(format!(
            "{name} has role {role:?}; this call needs one of {roles:?}"
        ))),
        Caller::Party(p) => Err(Status::permission_denied(format!(
            "party {p} is a peer; this call is for local {roles:?} certificates"
        ))),
    }
}
