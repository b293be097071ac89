//! Quota per top-level role: `guarantees` (held back as headroom for the role while it is
//! below them) and `limits` (offers are chopped so consumption never exceeds them).
//! Consumption = the role subtree's reservations + its unreserved allocations.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tessera_types::resources::{RANGES_NAMES, validate_name};
use tessera_types::{Role, Scalar};

use crate::AllocatorError;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    #[serde(default)]
    pub guarantees: BTreeMap<String, Scalar>,
    #[serde(default)]
    pub limits: BTreeMap<String, Scalar>,
}

impl Quota {
    pub fn is_empty(&self) -> bool {
        self.guarantees.is_empty() && self.limits.is_empty()
    }

    /// Top-level roles only, scalar names only, each guarantee at most its limit.
    pub fn validate(&self, role: &Role) -> Result<(), AllocatorError> {
        if role.is_any() {
            return Err(AllocatorError::quota(
                "role",
                "the default role '*' cannot have quota",
            ));
        }
        if role.parent().is_some() {
            return Err(AllocatorError::quota(
                "role",
                format!("'{role}' is not a top-level role; quota applies to top-level roles"),
            ));
        }
        for (field, map) in [("guarantees", &self.guarantees), ("limits", &self.limits)] {
            for name in map.keys() {
                validate_name(&format!("quota.{field}"), name)?;
                if RANGES_NAMES.contains(&name.as_str()) {
                    return Err(AllocatorError::quota(
                        format!("{field}.{name}"),
                        "quota applies to scalar resources only",
                    ));
                }
            }
        }
        for (name, g) in &self.guarantees {
            if let Some(l) = self.limits.get(name)
                && g > l
            {
                return Err(AllocatorError::quota(
                    format!("guarantees.{name}"),
                    format!("guarantee {g} is above the limit {l}"),
                ));
            }
        }
        Ok(())
    }
}

/// A quota with names resolved to the allocator's scalar indices.
#[derive(Debug, Clone, Default)]
pub(crate) struct IndexedQuota {
    pub guarantees: Vec<(usize, u64)>,
    pub limits: Vec<(usize, u64)>,
}

impl IndexedQuota {
    /// What the role still lacks of its guarantee for name `i` given its consumption.
    pub fn unsatisfied(&self, i: usize, consumed: &[u64]) -> u64 {
        self.guarantees
            .iter()
            .find(|(n, _)| *n == i)
            .map_or(0, |(_, g)| g.saturating_sub(at(consumed, i)))
    }

    pub fn any_unsatisfied(&self, consumed: &[u64]) -> bool {
        self.guarantees.iter().any(|(n, g)| at(consumed, *n) < *g)
    }

    pub fn limit(&self, i: usize) -> Option<u64> {
        self.limits.iter().find(|(n, _)| *n == i).map(|(_, l)| *l)
    }
}

pub(crate) fn at(v: &[u64], i: usize) -> u64 {
    v.get(i).copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(g: &[(&str, u64)], l: &[(&str, u64)]) -> Quota {
        let m = |v: &[(&str, u64)]| {
            v.iter()
                .map(|(n, x)| (n.to_string(), Scalar::from_units(*x)))
                .collect()
        };
        Quota {
            guarantees: m(g),
            limits: m(l),
        }
    }

    #[test]
    fn validation_names_the_field() {
        let top = Role::new("eng").unwrap();
        assert!(q(&[("cpus", 2)], &[("cpus", 4)]).validate(&top).is_ok());
        let e = q(&[("cpus", 5)], &[("cpus", 4)])
            .validate(&top)
            .unwrap_err();
        assert!(e.to_string().contains("quota.guarantees.cpus"), "{e}");
        let e = q(&[], &[("ports", 4)]).validate(&top).unwrap_err();
        assert!(e.to_string().contains("limits.ports"), "{e}");
        let sub = Role::new("eng/ml").unwrap();
        assert!(q(&[("cpus", 1)], &[]).validate(&sub).is_err());
        assert!(q(&[("cpus", 1)], &[]).validate(&Role::any()).is_err());
    }
}
