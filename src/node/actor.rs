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
