//! Who acts on the node, and what a sender gets back: the vocabulary the
//! outbound path and the services share.

/// Who acts: a local operator, known by its certificate, or the node itself
/// (scheduled communication checks and their automatic answers).
#[derive(Clone, Copy, Debug)]
pub enum Actor<'a> {
    /// The operator a configured certificate names.
    Operator(&'a str),
    /// The node on its own.
    Node,
}

impl Actor<'_> {
    /// The author written into what the actor sends.
    pub fn name(&self) -> &str {
        match self {
            Actor::Operator(name) => name,
            Actor::Node => "hotline",
        }
    }
}

/// What was sent: the message id and its index in our log.
pub struct Sent {
    /// The message id.
    pub id: String,
    /// The log entry that records it.
    pub log_index: u64,
}

/// What a response says.
#[derive(Clone, Copy, Debug)]
pub struct Answer<'a> {
    /// ACKNOWLEDGED (read), or an answer.
    pub status: crate::proto::ResponseStatus,
    /// Why, from the fixed list (UNSPECIFIED for none).
    pub reason: crate::proto::ReasonCode,
    /// The answer in words.
    pub text: &'a str,
    /// With INVESTIGATING: when a further answer is promised.
    pub promised_by: Option<time::OffsetDateTime>,
}

/// A proposal as operators see it: who signed, what it still needs.
#[derive(Clone, Debug)]
pub struct PendingAmendment {
    /// The proposal as kept, with every signature gathered.
    pub proposal: crate::state::Proposal,
    /// The parties (of the version in force or the one proposed) that signed it.
    pub approved_by: Vec<String>,
    /// Who must still sign before it can be adopted, in words.
    pub needs: String,
    /// Who rejected it, and why.
    pub rejections: Vec<(String, String)>,
}
