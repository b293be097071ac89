//! The one error type of this crate.

use crate::place::Unplaceable;
use crate::queue::GangId;
use crate::stdin::StdinRefusal;

/// What can go wrong when talking to the gang scheduler. Every variant is the caller's
/// input at fault: retrying the same call cannot help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A [`GangSpec`](crate::GangSpec) field is out of range; `field` is its dotted path.
    #[error("{field}: {reason}")]
    InvalidSpec { field: String, reason: String },
    /// The gang is larger than the cluster can ever hold (refused at submit).
    #[error("the gang can never fit this cluster: {0}")]
    NeverFits(Unplaceable),
    /// No such gang in the queue (never submitted, or already finished or cancelled).
    #[error("unknown gang {0}")]
    UnknownGang(GangId),
    /// The job has already ended; there is nothing to cancel.
    #[error("job {0} has already ended")]
    AlreadyEnded(GangId),
    /// A stream for the job's stdin was refused.
    #[error("job {0} refuses this stdin stream: {1}")]
    Stdin(GangId, StdinRefusal),
}

impl Error {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidSpec {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The field (dotted path) the error is about, when there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Error::InvalidSpec { field, .. } => Some(field),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
