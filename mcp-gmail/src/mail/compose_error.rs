//! Why an outgoing message could not be composed (its addresses, its
//! headers), shared by `compose` and `address`.

/// Why a message could not be composed. The text names the field at fault and
/// never repeats its content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComposeError {
    #[error("{field} has no address; give at least one")]
    NoAddress { field: &'static str },
    #[error("{field} must be exactly one address")]
    NotOneAddress { field: &'static str },
    #[error(
        "{field}: address {index} is not ASCII; only display names may contain other characters"
    )]
    NonAsciiAddress { field: &'static str, index: usize },
    #[error("{field}: address {index} is not valid: {reason}")]
    InvalidAddress {
        field: &'static str,
        index: usize,
        reason: &'static str,
    },
    #[error("{field} must not contain line breaks")]
    LineBreak { field: &'static str },
    #[error("{field} must be Message-IDs shaped like <id@host>, separated by spaces")]
    InvalidMessageId { field: &'static str },
    #[error("could not make a Message-ID: the system's random source failed")]
    Random,
}
