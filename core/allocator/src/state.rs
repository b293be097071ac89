//! The allocator's internal records: interned scalar names, agents, frameworks, roles.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use tessera_types::{AgentId, FrameworkId, Resources, Role, Value};

use crate::filters::FilterTable;
use crate::quota::{IndexedQuota, Quota};
use crate::sorter::Sorter;

/// Scalar resource names interned to dense indices (quantity vectors are indexed by them).
#[derive(Debug, Clone, Default)]
pub(crate) struct Names {
    pub names: Vec<String>,
    index: HashMap<String, usize, crate::filters::FxBuild>,
}

impl Names {
    pub fn intern(&mut self, name: &str) -> usize {
        if let Some(i) = self.index.get(name) {
            return *i;
        }
        self.names.push(name.to_string());
        self.index.insert(name.to_string(), self.names.len() - 1);
        self.names.len() - 1
    }

    pub fn intern_all(&mut self, r: &Resources) {
        for (k, v) in r.iter() {
            if matches!(v, Value::Scalar(_)) {
                self.intern(&k.name);
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// (all scalars, unreserved scalars) of `r` as quantity vectors. Unknown names are
    /// skipped (every name is interned when an agent is added).
    pub fn split(&self, r: &Resources) -> (Vec<u64>, Vec<u64>) {
        let mut all = vec![0u64; self.names.len()];
        let mut unres = vec![0u64; self.names.len()];
        for (k, v) in r.iter() {
            if let (Value::Scalar(s), Some(i)) = (v, self.get(&k.name)) {
                all[i] = all[i].saturating_add(s.milli());
                if !k.is_reserved() {
                    unres[i] = unres[i].saturating_add(s.milli());
                }
            }
        }
        (all, unres)
    }

    /// Reserved scalars of `r` grouped by the top-level role they count against.
    pub fn reserved_by_top(&self, r: &Resources) -> BTreeMap<Role, Vec<u64>> {
        let mut out: BTreeMap<Role, Vec<u64>> = BTreeMap::new();
        for (k, v) in r.iter() {
            if let (Value::Scalar(s), Some(i), true) = (v, self.get(&k.name), k.is_reserved()) {
                let q = out
                    .entry(k.role().top_level())
                    .or_insert_with(|| vec![0; self.names.len()]);
                q[i] = q[i].saturating_add(s.milli());
            }
        }
        out
    }
}

pub(crate) fn add_qty(into: &mut Vec<u64>, q: &[u64]) {
    if into.len() < q.len() {
        into.resize(q.len(), 0);
    }
    for (a, b) in into.iter_mut().zip(q) {
        *a = a.saturating_add(*b);
    }
}

pub(crate) fn sub_qty(from: &mut [u64], q: &[u64]) {
    for (a, b) in from.iter_mut().zip(q) {
        *a = a.saturating_sub(*b);
    }
}

#[derive(Debug, Clone)]
pub(crate) struct AgentState {
    pub id: AgentId,
    pub total: Resources,
    /// `total` minus every allocation on the agent.
    pub available: Resources,
    /// (framework index, role index) → resources offered or in use.
    pub allocations: BTreeMap<(u32, u32), Resources>,
    pub active: bool,
    /// In a region other than the master's: offered only to REGION_AWARE frameworks.
    pub remote: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct FrameworkState {
    pub id: FrameworkId,
    /// Registered and connected. A framework only known from an agent's running tasks
    /// (re-registration before it re-subscribed) is inactive.
    pub active: bool,
    pub roles: BTreeSet<u32>,
    pub suppressed: BTreeSet<u32>,
    pub filters: FilterTable,
    /// Has the GPU_RESOURCES capability: may be offered agents that have GPUs.
    pub gpu_aware: bool,
    /// Has the REGION_AWARE capability: may be offered agents in other regions.
    pub region_aware: bool,
    /// role index → number of agents where this framework holds resources in that role.
    pub alloc_agents: BTreeMap<u32, u32>,
}

impl FrameworkState {
    pub fn new(id: FrameworkId) -> Self {
        FrameworkState {
            id,
            active: false,
            roles: BTreeSet::new(),
            suppressed: BTreeSet::new(),
            filters: FilterTable::default(),
            gpu_aware: false,
            region_aware: false,
            alloc_agents: BTreeMap::new(),
        }
    }

    /// Whether the framework should be visited for `role`.
    pub fn wants(&self, role: u32) -> bool {
        self.active && self.roles.contains(&role) && !self.suppressed.contains(&role)
    }
}

#[derive(Debug)]
pub(crate) struct RoleState {
    pub role: Role,
    /// Index of the top-level ancestor (itself when top-level); quota lives there.
    pub top: u32,
    pub weight: f64,
    pub quota: Option<(Quota, IndexedQuota)>,
    pub fw_sorter: Box<dyn Sorter>,
    /// Frameworks subscribed to the role.
    pub subscribers: BTreeSet<u32>,
    /// Clients of `fw_sorter` that are active.
    pub active_fws: u32,
    /// Top-level roles: reservations of the subtree on all agents.
    pub reserved: Vec<u64>,
    /// Top-level roles: unreserved scalars allocated to the subtree.
    pub unres_alloc: Vec<u64>,
    pub last_unmet: Option<crate::UnmetReason>,
}

impl RoleState {
    /// Quota consumption (reservations + unreserved allocations) for name `i`.
    pub fn consumed(&self) -> Vec<u64> {
        let n = self.reserved.len().max(self.unres_alloc.len());
        (0..n)
            .map(|i| {
                crate::quota::at(&self.reserved, i)
                    .saturating_add(crate::quota::at(&self.unres_alloc, i))
            })
            .collect()
    }
}
