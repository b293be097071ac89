//! The crate's one error type. Every variant is the caller's fault (unknown id, resources
//! not allocated where claimed, invalid weight or quota); retrying the same call cannot help.

use tessera_types::{AgentId, FrameworkId, Role};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AllocatorError {
    #[error("agent_id: unknown agent '{0}'")]
    UnknownAgent(AgentId),
    #[error("framework_id: unknown framework '{0}'")]
    UnknownFramework(FrameworkId),
    #[error(
        "resources: {resources} are not allocated to framework '{framework}' in role '{role}' on agent '{agent}'"
    )]
    NotAllocated {
        framework: FrameworkId,
        role: Role,
        agent: AgentId,
        resources: String,
    },
    #[error("resources: {resources} are not free on agent '{agent}' (offered or in use)")]
    NotAvailable { agent: AgentId, resources: String },
    #[error("weight: role '{role}': {reason} (got {weight})")]
    InvalidWeight {
        role: Role,
        weight: f64,
        reason: String,
    },
    #[error("quota.{field}: {reason}")]
    InvalidQuota { field: String, reason: String },
    #[error(transparent)]
    Resources(#[from] tessera_types::Error),
}

impl AllocatorError {
    /// Always the caller's fault; retrying the same call cannot succeed.
    pub fn is_retryable(&self) -> bool {
        false
    }

    pub(crate) fn quota(field: impl Into<String>, reason: impl Into<String>) -> Self {
        AllocatorError::InvalidQuota {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
