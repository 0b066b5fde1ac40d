//! Why a message breaks the rules: one typed error per rule, naming its field.

/// Why a notice, response or amendment breaks the message rules; each names its field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// A required field is empty or absent.
    #[error("field {0} is required")]
    Missing(&'static str),
    /// A field holds a value outside its rules.
    #[error("field {field}: {reason}")]
    Invalid {
        /// The field at fault.
        field: &'static str,
        /// Why it is wrong.
        reason: String,
    },
    /// The encoded message is larger than the agreement allows.
    #[error("message is {size} bytes, over the agreed max_notice_bytes of {max}")]
    TooLarge {
        /// Its size in bytes.
        size: usize,
        /// The agreed `max_notice_bytes`.
        max: u64,
    },
    /// A reply would be less restricted than the notice it continues.
    #[error(
        "notice {id} is TLP:{tlp} but continues TLP:{original_tlp} notice {original}: a reply is at least as restricted as what it answers"
    )]
    TlpWeakened {
        /// The reply's id.
        id: String,
        /// Its TLP label.
        tlp: String,
        /// The notice it continues.
        original: String,
        /// That notice's TLP label.
        original_tlp: String,
    },
    /// TLP forbids sharing this notice with the named party.
    #[error(
        "TLP:{tlp} notice {id} may not be forwarded to {party}: only TLP:CLEAR and TLP:GREEN may go beyond their recipients"
    )]
    TlpForbidsForward {
        /// The notice id.
        id: String,
        /// Its TLP label.
        tlp: String,
        /// The party.
        party: String,
    },
}

pub(super) fn invalid(field: &'static str, reason: impl Into<String>) -> MessageError {
    MessageError::Invalid {
        field,
        reason: reason.into(),
    }
}
