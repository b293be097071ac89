//! The master's error type: whose fault it is decides the HTTP/gRPC status it maps to.

use tessera_types::{AgentId, FrameworkId, OfferId, TaskId};

#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    /// The caller sent something invalid; the message names the field.
    #[error(transparent)]
    Invalid(#[from] tessera_types::Error),
    #[error("framework_id: framework '{0}' is not subscribed")]
    UnknownFramework(FrameworkId),
    #[error("agent_id: agent '{0}' is unknown")]
    UnknownAgent(AgentId),
    #[error("offer_ids: offer '{0}' is not outstanding (declined, used, rescinded or expired)")]
    UnknownOffer(OfferId),
    #[error("task_id: task '{0}' is unknown")]
    UnknownTask(TaskId),
    #[error(
        "operation_id: operation '{0}' is unknown (never given, or its status was acknowledged)"
    )]
    UnknownOperation(String),
    #[error(
        "inverse_offer_ids: inverse offer '{0}' is not outstanding (answered, rescinded or expired)"
    )]
    UnknownInverseOffer(OfferId),
    /// The registry (SQLite) failed; a retry may help.
    #[error("registry: {0} (check the work directory is writable and the disk not full)")]
    Registry(String),
    /// The master actor is gone (shutting down); retry against the new leader.
    #[error("the master is shutting down")]
    Stopped,
    /// The request is valid but conflicts with the current state (HTTP 409).
    #[error("{0}")]
    Conflict(String),
    #[error("{field}: {reason}")]
    Config { field: String, reason: String },
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl MasterError {
    /// Whether retrying the same request later can succeed.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            MasterError::Registry(_) | MasterError::Stopped | MasterError::Io(_)
        )
    }
}

impl From<rusqlite::Error> for MasterError {
    fn from(e: rusqlite::Error) -> Self {
        MasterError::Registry(e.to_string())
    }
}

pub type Result<T, E = MasterError> = std::result::Result<T, E>;
