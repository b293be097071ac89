//! Framework records: who subscribes, with which roles and capabilities, and offer filters.

use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::ids::FrameworkId;
use crate::role::Role;

/// Default offer refusal window when a framework declines without saying (Mesos: 5 s).
pub const DEFAULT_REFUSE: Duration = Duration::from_secs(5);
/// Longest refusal window honoured (Mesos: 365 days).
pub const MAX_REFUSE: Duration = Duration::from_secs(365 * 24 * 3600);

/// Mesos `FrameworkInfo.Capability.Type` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Capability {
    RevocableResources,
    TaskKillingState,
    GpuResources,
    SharedResources,
    PartitionAware,
    MultiRole,
    ReservationRefinement,
    RegionAware,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameworkInfo {
    #[serde(default)]
    pub id: Option<FrameworkId>,
    pub name: String,
    pub user: String,
    pub roles: Vec<Role>,
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    /// How long the master keeps the framework's tasks after it disconnects.
    #[serde(default)]
    pub failover_timeout_secs: f64,
    #[serde(default)]
    pub principal: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
}

impl FrameworkInfo {
    pub fn has(&self, c: Capability) -> bool {
        self.capabilities.contains(&c)
    }

    pub fn validate(&self) -> Result<()> {
        if self.name.is_empty() {
            return Err(Error::invalid("framework_info.name", "must not be empty"));
        }
        if self.roles.is_empty() {
            return Err(Error::invalid(
                "framework_info.roles",
                "must name at least one role",
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for r in &self.roles {
            if !seen.insert(r) {
                return Err(Error::invalid(
                    "framework_info.roles",
                    format!("role '{r}' is listed twice"),
                ));
            }
        }
        if self.roles.len() > 1 && !self.has(Capability::MultiRole) {
            return Err(Error::invalid(
                "framework_info.roles",
                "several roles need the MULTI_ROLE capability",
            ));
        }
        if !self.failover_timeout_secs.is_finite() || self.failover_timeout_secs < 0.0 {
            return Err(Error::invalid(
                "framework_info.failover_timeout",
                "must be a finite, non-negative number of seconds",
            ));
        }
        Ok(())
    }
}

/// Offer filters sent with DECLINE and ACCEPT.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Filters {
    pub refuse_seconds: f64,
}

impl Default for Filters {
    fn default() -> Self {
        Filters {
            refuse_seconds: DEFAULT_REFUSE.as_secs_f64(),
        }
    }
}

impl Filters {
    /// The refusal window as Mesos applies it: negative or invalid → 5 s; above a year → a
    /// year; zero → no filter (`None`).
    pub fn refuse_for(&self) -> Option<Duration> {
        let s = self.refuse_seconds;
        if !s.is_finite() || s < 0.0 {
            return Some(DEFAULT_REFUSE);
        }
        if s == 0.0 {
            return None;
        }
        Some(Duration::from_secs_f64(s).min(MAX_REFUSE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuse_seconds_like_mesos() {
        let f = |s| Filters { refuse_seconds: s }.refuse_for();
        assert_eq!(f(-1.0), Some(DEFAULT_REFUSE));
        assert_eq!(f(f64::NAN), Some(DEFAULT_REFUSE));
        assert_eq!(f(0.0), None);
        assert_eq!(f(1e12), Some(MAX_REFUSE));
        assert_eq!(f(2.5), Some(Duration::from_millis(2500)));
    }
}
