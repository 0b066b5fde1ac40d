//! Who may call, and how often: every service's handlers start here. A
//! caller is known by its verified TLS client certificate (a peer's node,
//! a local operator or auditor) and each call is counted against that
//! caller's request limits. Each gRPC service holds a [`Gate`] and only the
//! other handles it serves from, so none reaches into the node for them.

use std::sync::Arc;

use tonic::{Request, Status};

use crate::limits::{Admitted, Limits};
use crate::tls::{Caller, Identifier, Role};

/// What an observer is told when it calls anything but the Audit service.
fn observer_only(observer: &str) -> String {
    format!("observer {observer} may read the public tier of the log over the Audit service, and nothing else")
}

/// Who reads: a local certificate's name, and the most restricted TLP it
/// may read (messages above it reach this reader as commitments only).
#[derive(Clone, Debug)]
pub struct Reader {
    /// The certificate's name in hotline.toml.
    pub name: String,
    /// Its clearance: RED for an operator, an auditor's `max_tlp`.
    pub clearance: crate::proto::Tlp,
}

impl Reader {
    /// Whether this reader may read what is labelled `label`.
    pub fn may_read(&self, label: crate::proto::Tlp) -> bool {
        crate::message::cleared_for(label, self.clearance)
    }

    /// Refuses (`PERMISSION_DENIED`) `what`, labelled `label`, to a reader not cleared for it.
    pub fn require(&self, label: crate::proto::Tlp, what: &str) -> Result<(), Status> {
        match self.may_read(label) {
            true => Ok(()),
            false => Err(Status::permission_denied(format!(
                "{what} is TLP:{}; {} is cleared up to TLP:{} (its max_tlp in hotline.toml)",
                crate::message::tlp_label(label),
                self.name,
                crate::message::tlp_label(self.clearance)
            ))),
        }
    }
}

/// The identities and request limits a node's services check callers against.
#[derive(Clone)]
pub struct Gate {
    identifier: Arc<Identifier>,
    limits: Limits,
    /// Our own party: a node never takes a peer's call from itself.
    party: String,
}

impl Gate {
    /// Checks callers of `party`'s node against `identifier`, counting their calls in `limits`.
    pub fn new(identifier: Arc<Identifier>, limits: Limits, party: &str) -> Self {
        Self {
            identifier,
            limits,
            party: party.to_owned(),
        }
    }

    /// Who holds which certificate: the agreement's parties and the configured local ones.
    pub fn identifier(&self) -> &Arc<Identifier> {
        &self.identifier
    }

    /// The per-caller request limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Identifies the caller of `req` from its verified client certificate, or
    /// takes the identity the call-limit layer found for it already.
    pub fn caller<T>(&self, req: &Request<T>) -> Result<Caller, Status> {
        if let Some(known) = req.extensions().get::<Caller>() {
            return Ok(known.clone());
        }
        let chain = req
            .peer_certs()
            .ok_or_else(|| Status::unauthenticated("no TLS client certificate was presented"))?;
        self.identifier.identify(&chain).ok_or_else(|| {
            Status::unauthenticated(
                "the TLS client certificate belongs to no party of the agreement and to no configured operator or auditor",
            )
        })
    }

    /// Requires another party's node certificate (what the Federation
    /// service takes); returns the party.
    pub fn peer<T>(&self, req: &Request<T>) -> Result<String, Status> {
        match self.caller(req)? {
            Caller::Party(p) if p != self.party => Ok(p),
            Caller::Party(_) => Err(Status::permission_denied("a node does not deliver to itself")),
            Caller::PartyNonNode(p) => Err(Status::permission_denied(format!(
                "this certificate of party {p} is not its node's: Federation takes node certificates, valid for server authentication at {p}'s endpoint"
            ))),
            Caller::Local { name, .. } => Err(Status::permission_denied(format!(
                "{name} is a local certificate; Federation is for the parties' nodes"
            ))),
            Caller::Observer(o) => Err(Status::permission_denied(observer_only(&o))),
        }
    }

    /// Requires a local caller with one of `roles`; returns its name in the
    /// configuration and its certificate's SHA-256.
    pub fn local<T>(&self, req: &Request<T>, roles: &[Role]) -> Result<(String, [u8; 32]), Status> {
        let (reader, fingerprint) = self.local_with_clearance(req, roles)?;
        Ok((reader.name, fingerprint))
    }

    /// Like [`Gate::local`], with the caller's clearance.
    fn local_with_clearance<T>(&self, req: &Request<T>, roles: &[Role]) -> Result<(Reader, [u8; 32]), Status> {
        match self.caller(req)? {
            Caller::Local {
                name,
                role,
                fingerprint,
                clearance,
            } if roles.contains(&role) => Ok((Reader { name, clearance }, fingerprint)),
            Caller::Local { name, role, .. } => Err(Status::permission_denied(format!(
                "{name} holds {} certificate, which cannot do this; it takes {} certificate of this node ([[local]] in hotline.toml names each with its role)",
                role_words(&[role]),
                role_words(roles)
            ))),
            Caller::Party(p) | Caller::PartyNonNode(p) => Err(Status::permission_denied(format!(
                "party {p} is a peer; this takes {} certificate of this node, not a party's",
                role_words(roles)
            ))),
            Caller::Observer(o) => Err(Status::permission_denied(observer_only(&o))),
        }
    }

    /// Counts `n` calls by peer `party` against its limits.
    pub fn admit_peer(&self, party: &str, n: usize) -> Result<Admitted, Status> {
        self.limits.admit_n(party, n)
    }

    /// Counts one call by local caller `who` (the certificate's name in
    /// hotline.toml) against its limits: every local caller, on every
    /// service, is counted under one name.
    pub fn admit_local(&self, who: &str) -> Result<Admitted, Status> {
        self.limits.admit(&format!("operator {who}"))
    }

    /// An Audit service caller: a local operator or auditor, or an observer
    /// the agreement names, which reads the public tier (TLP:CLEAR) only.
    pub fn audit_reader<T>(&self, req: &Request<T>) -> Result<(Reader, Admitted), Status> {
        if let Caller::Observer(o) = self.caller(req)? {
            let name = format!("observer {o}");
            let admitted = self.limits.admit(&name)?;
            let clearance = crate::proto::Tlp::Clear;
            return Ok((Reader { name, clearance }, admitted));
        }
        self.local_reader(req)
    }

    /// A read-only call's caller: a local operator or auditor certificate,
    /// counted against its limits (the Operator service's reads and the
    /// Audit service alike), with what it may read.
    pub fn local_reader<T>(&self, req: &Request<T>) -> Result<(Reader, Admitted), Status> {
        let (reader, _) = self.local_with_clearance(req, &[Role::Operator, Role::Auditor])?;
        let admitted = self.admit_local(&reader.name)?;
        Ok((reader, admitted))
    }
}

/// Roles in words: "an operator", "an operator or an auditor".
fn role_words(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| match r {
            Role::Operator => "an operator",
            Role::Auditor => "an auditor",
        })
        .collect::<Vec<_>>()
        .join(" or ")
}
