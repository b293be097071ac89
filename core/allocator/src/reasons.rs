//! Why a role (or framework) with demand got no offer in a run: one machine-readable
//! reason plus a human detail, so operators see starvation instead of silence.

use serde::{Deserialize, Serialize};
use tessera_types::{FrameworkId, Role};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UnmetReason {
    /// The role's quota limit is reached: everything left would exceed it.
    QuotaLimit,
    /// Free resources are held back as headroom for other roles' quota guarantees.
    QuotaHeadroom,
    /// Every candidate offer was refused earlier and is still filtered.
    Filtered,
    /// The framework (or every framework of the role) suppressed offers for the role.
    Suppressed,
    /// Resources are free but no agent has enough for the minimum offer size.
    NoAgentFits,
    /// Nothing allocatable to the role is free on any active agent.
    NoResources,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unmet {
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framework: Option<FrameworkId>,
    pub reason: UnmetReason,
    pub detail: String,
}

/// What one run observed per role, indexed by role index.
#[derive(Debug, Clone, Default)]
pub(crate) struct RunTracker {
    pub offered: Vec<bool>,
    pub filtered: Vec<u32>,
    pub quota_limit: Vec<bool>,
    pub headroom: Vec<bool>,
    pub too_small: Vec<u32>,
    pub agents_visited: u32,
}

impl RunTracker {
    pub fn new(roles: usize) -> Self {
        RunTracker {
            offered: vec![false; roles],
            filtered: vec![0; roles],
            quota_limit: vec![false; roles],
            headroom: vec![false; roles],
            too_small: vec![0; roles],
            agents_visited: 0,
        }
    }

    /// The role-level reason for a role that got nothing, given its framework counts.
    pub fn reason(&self, r: usize, unsuppressed: usize, active: usize) -> (UnmetReason, String) {
        if unsuppressed == 0 {
            return (
                UnmetReason::Suppressed,
                format!("all {active} active framework(s) of the role suppressed offers"),
            );
        }
        if self.quota_limit[r] {
            return (
                UnmetReason::QuotaLimit,
                "the role's quota limit is reached; offers were chopped below the minimum size"
                    .to_string(),
            );
        }
        if self.filtered[r] > 0 {
            return (
                UnmetReason::Filtered,
                format!(
                    "{} candidate offer(s) matched filters from earlier declines; revive to clear",
                    self.filtered[r]
                ),
            );
        }
        if self.headroom[r] {
            return (
                UnmetReason::QuotaHeadroom,
                "free resources are held back for other roles' quota guarantees".to_string(),
            );
        }
        if self.too_small[r] > 0 {
            return (
                UnmetReason::NoAgentFits,
                format!(
                    "{} agent(s) had free resources for the role, all below the minimum allocatable size",
                    self.too_small[r]
                ),
            );
        }
        (
            UnmetReason::NoResources,
            format!(
                "nothing allocatable to the role is free on the {} active agent(s)",
                self.agents_visited
            ),
        )
    }
}
