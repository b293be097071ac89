//! Read-only views for the master, operators, metrics and tests.

use std::collections::BTreeMap;
use tessera_types::{AgentId, FrameworkId, Resources, Role, Scalar, Time};

use super::{Allocation, Allocator, RoleInfo};

impl Allocator {
    // ---- queries -------------------------------------------------------------------------

    /// When the master should call [`Allocator::allocate`] next.
    pub fn next_run(&self) -> Option<Time> {
        self.batch.next_run()
    }

    /// Everything allocated (offered or in use) on the agent, by (framework, role).
    pub fn allocated(&self, agent: &AgentId) -> Vec<Allocation> {
        let Ok(a) = self.agent_of(agent) else {
            return Vec::new();
        };
        let Some(s) = self.agents[a as usize].as_ref() else {
            return Vec::new();
        };
        s.allocations
            .iter()
            .map(|((f, r), res)| Allocation {
                framework: self.fw(*f).id.clone(),
                role: self.roles[*r as usize].role.clone(),
                agent: agent.clone(),
                resources: res.clone(),
            })
            .collect()
    }

    /// The agent's resources not allocated to anyone (empty for unknown agents).
    pub fn available(&self, agent: &AgentId) -> Resources {
        self.agent_of(agent)
            .ok()
            .and_then(|a| self.agents[a as usize].as_ref())
            .map(|s| s.available.clone())
            .unwrap_or_default()
    }

    /// The agent's total (empty for unknown agents).
    pub fn total(&self, agent: &AgentId) -> Resources {
        self.agent_of(agent)
            .ok()
            .and_then(|a| self.agents[a as usize].as_ref())
            .map(|s| s.total.clone())
            .unwrap_or_default()
    }

    /// Ids of all known agents, in insertion order.
    pub fn agent_ids(&self) -> Vec<AgentId> {
        self.agents.iter().flatten().map(|s| s.id.clone()).collect()
    }

    /// Weighted dominant share of a role (of its subtree, for an internal role).
    pub fn role_share(&self, role: &Role) -> Option<f64> {
        self.role_sorter.subtree_share(role.as_str(), &self.totals)
    }

    /// Every role with its weight and weighted dominant share, cheaper than [`Self::roles`]
    /// (for observers that sample every allocation run).
    pub fn role_shares(&self) -> Vec<(Role, f64, f64)> {
        self.roles
            .iter()
            .map(|r| {
                let share = self
                    .role_sorter
                    .subtree_share(r.role.as_str(), &self.totals)
                    .unwrap_or(0.0);
                (r.role.clone(), r.weight, share)
            })
            .collect()
    }

    /// Dominant share of a framework within a role (weight 1).
    pub fn framework_share(&self, framework: &FrameworkId, role: &Role) -> Option<f64> {
        let f = self.fw_of(framework).ok()?;
        let r = *self.role_index.get(role)?;
        let s = &self.roles[r as usize].fw_sorter;
        s.contains(f).then(|| s.share(f, &self.totals))
    }

    /// Number of active offer filters the framework holds (all roles).
    pub fn filter_count(&self, framework: &FrameworkId) -> usize {
        self.fw_of(framework)
            .map_or(0, |f| self.fw(f).filters.count(None))
    }

    fn qty_map(&self, q: &[u64]) -> BTreeMap<String, Scalar> {
        q.iter()
            .enumerate()
            .filter(|(_, x)| **x > 0)
            .map(|(i, x)| (self.names.names[i].clone(), Scalar::from_milli(*x)))
            .collect()
    }

    /// Quota consumption of a top-level role: subtree reservations + unreserved allocations.
    pub fn quota_consumed(&self, role: &Role) -> BTreeMap<String, Scalar> {
        match self.role_index.get(role) {
            Some(r) => self.qty_map(&self.roles[*r as usize].consumed()),
            None => BTreeMap::new(),
        }
    }

    /// Operator snapshot of every known role, sorted by name.
    pub fn roles(&self) -> Vec<RoleInfo> {
        let mut out: Vec<RoleInfo> = self
            .roles
            .iter()
            .enumerate()
            .map(|(i, r)| RoleInfo {
                role: r.role.clone(),
                weight: r.weight,
                quota: r.quota.as_ref().map(|(q, _)| q.clone()),
                frameworks: r.subscribers.len(),
                allocated: self.qty_map(self.role_sorter.allocation(i as u32)),
                consumed: if r.top as usize == i {
                    self.qty_map(&r.consumed())
                } else {
                    BTreeMap::new()
                },
                share: self
                    .role_sorter
                    .subtree_share(r.role.as_str(), &self.totals)
                    .unwrap_or(0.0),
                last_unmet: r.last_unmet,
            })
            .collect();
        out.sort_by(|a, b| a.role.cmp(&b.role));
        out
    }
}
