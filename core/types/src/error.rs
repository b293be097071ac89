//! The one error type of this crate. Every variant names the field that was wrong.

/// Validation and arithmetic errors. Always the caller's input at fault; retrying the same
/// input cannot help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("resources: {0}")]
    Arithmetic(String),
}

impl Error {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The field (dotted path) the error is about, when there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Error::Invalid { field, .. } => Some(field),
            Error::Arithmetic(_) => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
