//! Mechanism: the allocation run and the bookkeeping the master drives. See the crate doc
//! and README.md for the pipeline.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tessera_types::{AgentId, FrameworkId, Resources, Role, Scalar, Time};

use crate::AllocatorError;
use crate::batch::Batch;
use crate::filters::effective_refuse;
use crate::quota::{IndexedQuota, Quota};
use crate::reasons::{Unmet, UnmetReason};
use crate::sorter::{Sorter, SorterKind, Totals};
use crate::state::{AgentState, FrameworkState, Names, RoleState, add_qty, sub_qty};

mod convert;
mod queries;
mod run;

/// Mesos `--allocation_interval` default.
pub const DEFAULT_ALLOCATION_INTERVAL: Duration = Duration::from_secs(1);
/// How soon after an event (agent added, framework added/activated, revive, recovery) the
/// coalesced run happens.
pub const DEFAULT_EVENT_DELAY: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AllocatorConfig {
    pub interval: Duration,
    pub event_delay: Duration,
    /// Minimum offer size: an OR of ANDs (`cpus:0.01|mem:32`). Empty = any non-empty offer.
    pub min_allocatable: Vec<BTreeMap<String, Scalar>>,
    pub role_sorter: SorterKind,
    pub framework_sorter: SorterKind,
    /// Scalar names left out of share computation (e.g. `gpus`).
    pub fair_sharing_excluded: Vec<String>,
    /// Keep agents with GPUs for frameworks with the GPU_RESOURCES capability, so GPU
    /// machines are not filled with CPU-only work (Mesos `--filter_gpu_resources`, on by
    /// default).
    pub filter_gpu_resources: bool,
}

impl Default for AllocatorConfig {
    fn default() -> Self {
        AllocatorConfig {
            interval: DEFAULT_ALLOCATION_INTERVAL,
            event_delay: DEFAULT_EVENT_DELAY,
            min_allocatable: vec![
                BTreeMap::from([("cpus".to_string(), Scalar::from_milli(10))]),
                BTreeMap::from([("mem".to_string(), Scalar::from_units(32))]),
            ],
            role_sorter: SorterKind::Drf,
            framework_sorter: SorterKind::Drf,
            fair_sharing_excluded: Vec::new(),
            filter_gpu_resources: true,
        }
    }
}

/// One offer to make: everything `resources` on `agent` to `framework` in `role`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    pub framework: FrameworkId,
    pub role: Role,
    pub agent: AgentId,
    pub resources: Resources,
}

/// The result of one run: offers in the order they were made, and why roles with demand
/// got nothing (sorted by role, then framework).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationRun {
    pub offers: Vec<Allocation>,
    pub unmet: Vec<Unmet>,
}

/// Operator view of a role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoleInfo {
    pub role: Role,
    pub weight: f64,
    pub quota: Option<Quota>,
    pub frameworks: usize,
    /// Scalars offered or in use by the role itself.
    pub allocated: BTreeMap<String, Scalar>,
    /// Top-level roles: reservations + unreserved allocations of the subtree.
    pub consumed: BTreeMap<String, Scalar>,
    pub share: f64,
    pub last_unmet: Option<UnmetReason>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Only roles below their quota guarantees.
    Guarantees,
    All,
}

/// The allocator. See the crate documentation.
#[derive(Debug)]
pub struct Allocator {
    config: AllocatorConfig,
    names: Names,
    cluster_total: Vec<u64>,
    totals: Totals,
    /// Unreserved scalars not allocated, over all agents (headroom supply).
    unreserved_free: Vec<u64>,
    agents: Vec<Option<AgentState>>,
    agent_index: HashMap<AgentId, u32>,
    frameworks: Vec<Option<FrameworkState>>,
    framework_index: HashMap<FrameworkId, u32>,
    roles: Vec<RoleState>,
    role_index: HashMap<Role, u32>,
    role_sorter: Box<dyn Sorter>,
    batch: Batch,
    next_filter_expiry: Option<Time>,
    role_buf: Vec<u32>,
}

impl Allocator {
    pub fn new(config: AllocatorConfig) -> Self {
        Allocator {
            role_sorter: config.role_sorter.build(true),
            batch: Batch::new(config.interval, config.event_delay),
            config,
            names: Names::default(),
            cluster_total: Vec::new(),
            totals: Totals::default(),
            unreserved_free: Vec::new(),
            agents: Vec::new(),
            agent_index: HashMap::new(),
            frameworks: Vec::new(),
            framework_index: HashMap::new(),
            roles: Vec::new(),
            role_index: HashMap::new(),
            next_filter_expiry: None,
            role_buf: Vec::new(),
        }
    }

    pub fn config(&self) -> &AllocatorConfig {
        &self.config
    }

    // ---- interning -------------------------------------------------------------------

    fn role_idx(&mut self, role: &Role) -> u32 {
        if let Some(r) = self.role_index.get(role) {
            return *r;
        }
        let top_role = role.top_level();
        let idx = self.roles.len() as u32;
        let top = if &top_role == role {
            idx
        } else {
            self.role_idx(&top_role)
        };
        let idx = self.roles.len() as u32;
        self.roles.push(RoleState {
            role: role.clone(),
            top,
            weight: 1.0,
            quota: None,
            fw_sorter: self.config.framework_sorter.build(false),
            subscribers: Default::default(),
            active_fws: 0,
            reserved: Vec::new(),
            unres_alloc: Vec::new(),
            last_unmet: None,
        });
        self.role_index.insert(role.clone(), idx);
        idx
    }

    fn fw_idx(&mut self, id: &FrameworkId) -> u32 {
        if let Some(f) = self.framework_index.get(id) {
            return *f;
        }
        let f = self.frameworks.len() as u32;
        self.frameworks.push(Some(FrameworkState::new(id.clone())));
        self.framework_index.insert(id.clone(), f);
        f
    }

    fn agent_of(&self, id: &AgentId) -> Result<u32, AllocatorError> {
        self.agent_index
            .get(id)
            .copied()
            .ok_or_else(|| AllocatorError::UnknownAgent(id.clone()))
    }

    fn fw_of(&self, id: &FrameworkId) -> Result<u32, AllocatorError> {
        self.framework_index
            .get(id)
            .copied()
            .ok_or_else(|| AllocatorError::UnknownFramework(id.clone()))
    }

    fn fw(&self, f: u32) -> &FrameworkState {
        self.frameworks[f as usize]
            .as_ref()
            .expect("indexed framework exists")
    }

    fn fw_mut(&mut self, f: u32) -> &mut FrameworkState {
        self.frameworks[f as usize]
            .as_mut()
            .expect("indexed framework exists")
    }

    fn agent_mut(&mut self, a: u32) -> &mut AgentState {
        self.agents[a as usize]
            .as_mut()
            .expect("indexed agent exists")
    }

    fn refresh_totals(&mut self) {
        let mut qty = self.cluster_total.clone();
        qty.resize(self.names.names.len(), 0);
        for name in &self.config.fair_sharing_excluded {
            if let Some(i) = self.names.get(name) {
                qty[i] = 0;
            }
        }
        self.totals = Totals {
            version: self.totals.version + 1,
            qty,
        };
    }

    // ---- sorter membership -------------------------------------------------------------

    /// Brings (framework, role) membership in the sorters in line with the framework's
    /// state: present while subscribed or holding resources, active while it wants offers.
    fn sync(&mut self, f: u32, r: u32) {
        let fw = self.fw(f);
        let subscribed = fw.roles.contains(&r);
        let holds = fw.alloc_agents.get(&r).copied().unwrap_or(0) > 0;
        let wants = fw.wants(r);
        let path = fw.id.as_str().to_string();
        let role = &mut self.roles[r as usize];
        let sorter = &mut role.fw_sorter;
        let was_active = sorter.contains(f) && sorter.is_active(f);
        if subscribed {
            role.subscribers.insert(f);
        } else {
            role.subscribers.remove(&f);
        }
        if subscribed || holds {
            sorter.add_client(f, &path);
            if wants {
                sorter.activate(f);
            } else {
                sorter.deactivate(f);
            }
        } else {
            sorter.remove_client(f);
        }
        let now_active = sorter.contains(f) && sorter.is_active(f);
        if was_active && !now_active {
            role.active_fws -= 1;
        } else if !was_active && now_active {
            role.active_fws += 1;
        }
        let has_clients = !role.fw_sorter.is_empty();
        let active = role.active_fws > 0;
        let path = role.role.as_str().to_string();
        if has_clients {
            self.role_sorter.add_client(r, &path);
            if active {
                self.role_sorter.activate(r);
            } else {
                self.role_sorter.deactivate(r);
            }
        } else {
            self.role_sorter.remove_client(r);
        }
    }

    fn sync_all(&mut self, f: u32) {
        let fw = self.fw(f);
        let roles: Vec<u32> = fw
            .roles
            .iter()
            .chain(fw.alloc_agents.keys())
            .copied()
            .collect();
        for r in roles {
            self.sync(f, r);
        }
    }

    // ---- allocation bookkeeping ----------------------------------------------------------

    /// Moves `res` from the agent's available pool to (f, r) (`give`) or back (`!give`).
    /// Errors (and changes nothing) if the resources are not there.
    fn book(
        &mut self,
        f: u32,
        r: u32,
        a: u32,
        res: &Resources,
        give: bool,
    ) -> Result<(), AllocatorError> {
        let agent = self.agents[a as usize]
            .as_mut()
            .expect("indexed agent exists");
        let mut created = false;
        let mut emptied = false;
        if give {
            if !agent.available.contains(res) {
                return Err(tessera_types::Error::Arithmetic("not available".into()).into());
            }
            match agent.allocations.get_mut(&(f, r)) {
                Some(held) => {
                    held.add_assign(res)?;
                    agent.available.sub_assign(res)?;
                }
                None => {
                    created = true;
                    // Whole-agent offers (the common case) move the pool instead of copying.
                    let held = if &agent.available == res {
                        std::mem::take(&mut agent.available)
                    } else {
                        agent.available.sub_assign(res)?;
                        res.clone()
                    };
                    agent.allocations.insert((f, r), held);
                }
            }
        } else {
            let Some(held) = agent.allocations.get_mut(&(f, r)) else {
                return Err(tessera_types::Error::Arithmetic("nothing allocated".into()).into());
            };
            let rest = held.checked_sub(res)?;
            agent.available.add_assign(res)?;
            if rest.is_empty() {
                agent.allocations.remove(&(f, r));
                emptied = true;
            } else {
                *held = rest;
            }
        }
        if created {
            *self.fw_mut(f).alloc_agents.entry(r).or_insert(0) += 1;
            self.sync(f, r);
        }
        let (all, unres) = self.names.split(res);
        let top = self.roles[r as usize].top as usize;
        if give {
            self.role_sorter.allocated(r, &all, &self.totals);
            self.roles[r as usize]
                .fw_sorter
                .allocated(f, &all, &self.totals);
            add_qty(&mut self.roles[top].unres_alloc, &unres);
            sub_qty(&mut self.unreserved_free, &unres);
        } else {
            self.role_sorter.unallocated(r, &all, &self.totals);
            self.roles[r as usize]
                .fw_sorter
                .unallocated(f, &all, &self.totals);
            sub_qty(&mut self.roles[top].unres_alloc, &unres);
            add_qty(&mut self.unreserved_free, &unres);
        }
        if emptied {
            let fw = self.fw_mut(f);
            if let Some(n) = fw.alloc_agents.get_mut(&r) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    fw.alloc_agents.remove(&r);
                }
            }
            self.sync(f, r);
        }
        Ok(())
    }

    // ---- agents ------------------------------------------------------------------------

    /// Adds an agent (or replaces one with the same id). `used` are resources of tasks
    /// already running there; entries that do not fit in `total` are ignored.
    pub fn add_agent(
        &mut self,
        id: AgentId,
        total: Resources,
        used: &[(FrameworkId, Role, Resources)],
        now: Time,
    ) {
        if self.agent_index.contains_key(&id) {
            self.remove_agent(&id);
        }
        self.names.intern_all(&total);
        let a = self.agents.len() as u32;
        let (all, unres) = self.names.split(&total);
        add_qty(&mut self.cluster_total, &all);
        add_qty(&mut self.unreserved_free, &unres);
        for (role, q) in self.names.reserved_by_top(&total) {
            let r = self.role_idx(&role) as usize;
            add_qty(&mut self.roles[r].reserved, &q);
        }
        self.agents.push(Some(AgentState {
            id: id.clone(),
            available: total.clone(),
            total,
            allocations: BTreeMap::new(),
            active: true,
            remote: false,
        }));
        self.agent_index.insert(id, a);
        self.refresh_totals();
        for (fid, role, res) in used {
            let f = self.fw_idx(fid);
            let r = self.role_idx(role);
            self.sync(f, r);
            let _ = self.book(f, r, a, res, true);
            self.sync(f, r);
        }
        self.batch.event(now);
    }

    /// Removes an agent; its allocations disappear from shares and quota consumption.
    pub fn remove_agent(&mut self, id: &AgentId) {
        let Ok(a) = self.agent_of(id) else { return };
        let held: Vec<((u32, u32), Resources)> = self.agents[a as usize]
            .as_ref()
            .map(|s| s.allocations.iter().map(|(k, v)| (*k, v.clone())).collect())
            .unwrap_or_default();
        for ((f, r), res) in held {
            let _ = self.book(f, r, a, &res, false);
        }
        let Some(agent) = self.agents[a as usize].take() else {
            return;
        };
        self.agent_index.remove(id);
        let (all, unres) = self.names.split(&agent.total);
        sub_qty(&mut self.cluster_total, &all);
        sub_qty(&mut self.unreserved_free, &unres);
        for (role, q) in self.names.reserved_by_top(&agent.total) {
            let r = self.role_idx(&role) as usize;
            sub_qty(&mut self.roles[r].reserved, &q);
        }
        for fw in self.frameworks.iter_mut().flatten() {
            fw.filters.clear_agent(a);
        }
        self.refresh_totals();
    }

    /// Unreachable or draining: no offers from it; its allocations still count.
    pub fn deactivate_agent(&mut self, id: &AgentId) {
        if let Ok(a) = self.agent_of(id) {
            self.agent_mut(a).active = false;
        }
    }

    /// Whether the agent is in a region other than the master's (then only REGION_AWARE
    /// frameworks are offered its resources). Agents start local; unknown ids are ignored.
    pub fn set_agent_remote(&mut self, id: &AgentId, remote: bool) {
        if let Ok(a) = self.agent_of(id) {
            self.agent_mut(a).remote = remote;
        }
    }

    pub fn activate_agent(&mut self, id: &AgentId, now: Time) {
        if let Ok(a) = self.agent_of(id) {
            self.agent_mut(a).active = true;
            self.batch.event(now);
        }
    }

    // ---- frameworks ----------------------------------------------------------------------

    /// Adds (or re-adds) an active framework subscribed to `roles`, with `suppressed` roles.
    /// Whether the framework may be offered agents that have GPUs (its GPU_RESOURCES
    /// capability). Unknown frameworks are ignored.
    pub fn set_gpu_aware(&mut self, id: &FrameworkId, gpu_aware: bool) {
        if let Ok(f) = self.fw_of(id) {
            self.fw_mut(f).gpu_aware = gpu_aware;
        }
    }

    /// Whether the framework may be offered agents in other regions than the master's (its
    /// REGION_AWARE capability). Unknown frameworks are ignored.
    pub fn set_region_aware(&mut self, id: &FrameworkId, region_aware: bool) {
        if let Ok(f) = self.fw_of(id) {
            self.fw_mut(f).region_aware = region_aware;
        }
    }

    pub fn add_framework(
        &mut self,
        id: FrameworkId,
        roles: &[Role],
        suppressed: &[Role],
        now: Time,
    ) {
        let f = self.fw_idx(&id);
        self.fw_mut(f).active = true;
        self.update_framework_roles(&id, roles, suppressed, now);
    }

    /// Everything the framework held becomes free; its filters go.
    pub fn remove_framework(&mut self, id: &FrameworkId) {
        let Ok(f) = self.fw_of(id) else { return };
        for a in 0..self.agents.len() as u32 {
            let held: Vec<((u32, u32), Resources)> = match &self.agents[a as usize] {
                Some(s) => s
                    .allocations
                    .range((f, 0)..=(f, u32::MAX))
                    .map(|(k, v)| (*k, v.clone()))
                    .collect(),
                None => continue,
            };
            for ((_, r), res) in held {
                let _ = self.book(f, r, a, &res, false);
            }
        }
        {
            let fw = self.fw_mut(f);
            fw.active = false;
            fw.roles.clear();
            fw.suppressed.clear();
        }
        for r in 0..self.roles.len() as u32 {
            if self.roles[r as usize].fw_sorter.contains(f)
                || self.roles[r as usize].subscribers.contains(&f)
            {
                self.sync(f, r);
            }
        }
        self.frameworks[f as usize] = None;
        self.framework_index.remove(id);
    }

    /// Disconnected: no offers; allocations kept.
    pub fn deactivate_framework(&mut self, id: &FrameworkId) {
        if let Ok(f) = self.fw_of(id) {
            self.fw_mut(f).active = false;
            self.sync_all(f);
        }
    }

    pub fn activate_framework(&mut self, id: &FrameworkId, now: Time) {
        if let Ok(f) = self.fw_of(id) {
            self.fw_mut(f).active = true;
            self.sync_all(f);
            self.batch.event(now);
        }
    }

    /// Replaces the framework's roles and suppressed roles (UPDATE_FRAMEWORK). Roles it
    /// leaves keep counting its allocations there until they are recovered.
    pub fn update_framework_roles(
        &mut self,
        id: &FrameworkId,
        roles: &[Role],
        suppressed: &[Role],
        now: Time,
    ) {
        let Ok(f) = self.fw_of(id) else { return };
        let new_roles: Vec<u32> = roles.iter().map(|r| self.role_idx(r)).collect();
        let new_supp: Vec<u32> = suppressed.iter().map(|r| self.role_idx(r)).collect();
        let old: Vec<u32> = self.fw(f).roles.iter().copied().collect();
        {
            let fw = self.fw_mut(f);
            fw.roles = new_roles.iter().copied().collect();
            fw.suppressed = new_supp.iter().copied().collect();
        }
        let mut touched: Vec<u32> = old.into_iter().chain(new_roles).chain(new_supp).collect();
        touched.sort_unstable();
        touched.dedup();
        for r in touched {
            self.sync(f, r);
        }
        self.batch.event(now);
    }

    fn role_list(&mut self, f: u32, roles: Option<&[Role]>) -> Vec<u32> {
        match roles {
            None => self.fw(f).roles.iter().copied().collect(),
            Some(rs) => rs.iter().map(|r| self.role_idx(r)).collect(),
        }
    }

    /// Stops offers to the framework for `roles` (all its roles when `None`).
    pub fn suppress(&mut self, framework: &FrameworkId, roles: Option<&[Role]>) {
        let Ok(f) = self.fw_of(framework) else { return };
        for r in self.role_list(f, roles) {
            self.fw_mut(f).suppressed.insert(r);
            self.sync(f, r);
        }
    }

    /// Clears the framework's filters for `roles` (all when `None`), unsuppresses them and
    /// asks for a run soon.
    pub fn revive(&mut self, framework: &FrameworkId, roles: Option<&[Role]>, now: Time) {
        let Ok(f) = self.fw_of(framework) else { return };
        let rs = self.role_list(f, roles);
        let fw = self.fw_mut(f);
        match roles {
            None => fw.filters.clear_roles(|_| true),
            Some(_) => fw.filters.clear_roles(|r| rs.contains(&r)),
        }
        for r in rs {
            self.fw_mut(f).suppressed.remove(&r);
            self.sync(f, r);
        }
        self.batch.event(now);
    }

    /// Resources allocated to (framework, role) on `agent` come back (decline, unused part
    /// of an accept, rescind, finished task). `refuse` installs an offer filter over exactly
    /// these resources for `max(refuse, interval)`; `Some(0)` and `None` install none.
    pub fn recover(
        &mut self,
        framework: &FrameworkId,
        role: &Role,
        agent: &AgentId,
        resources: &Resources,
        refuse: Option<Duration>,
        now: Time,
    ) -> Result<(), AllocatorError> {
        let a = self.agent_of(agent)?;
        let f = self.fw_of(framework)?;
        let not_allocated = || AllocatorError::NotAllocated {
            framework: framework.clone(),
            role: role.clone(),
            agent: agent.clone(),
            resources: resources.to_string(),
        };
        let r = *self.role_index.get(role).ok_or_else(not_allocated)?;
        let held = self.agents[a as usize]
            .as_ref()
            .and_then(|s| s.allocations.get(&(f, r)));
        if !held.is_some_and(|h| h.contains(resources)) {
            return Err(not_allocated());
        }
        if resources.is_empty() {
            return Ok(());
        }
        self.book(f, r, a, resources, false)
            .map_err(|_| not_allocated())?;
        if let Some(d) = refuse.filter(|d| !d.is_zero()) {
            let expires = now.plus(effective_refuse(d, self.config.interval));
            self.fw_mut(f).filters.add(r, a, resources.clone(), expires);
            self.next_filter_expiry =
                Some(self.next_filter_expiry.map_or(expires, |t| t.min(expires)));
        }
        self.batch.event(now);
        Ok(())
    }

    // ---- weights and quota ---------------------------------------------------------------

    pub fn set_weight(&mut self, role: Role, weight: f64) -> Result<(), AllocatorError> {
        if !weight.is_finite() || weight <= 0.0 {
            return Err(AllocatorError::InvalidWeight {
                role,
                weight,
                reason: "must be a finite number above zero".to_string(),
            });
        }
        let r = self.role_idx(&role) as usize;
        self.roles[r].weight = weight;
        self.role_sorter.set_weight(role.as_str(), weight);
        Ok(())
    }

    /// Sets (or, with an empty quota, removes) a top-level role's quota.
    pub fn set_quota(&mut self, role: Role, quota: Quota) -> Result<(), AllocatorError> {
        quota.validate(&role)?;
        let r = self.role_idx(&role) as usize;
        if quota.is_empty() {
            self.roles[r].quota = None;
            return Ok(());
        }
        let mut idx = |m: &BTreeMap<String, Scalar>| -> Vec<(usize, u64)> {
            m.iter()
                .map(|(n, s)| (self.names.intern(n), s.milli()))
                .collect()
        };
        let iq = IndexedQuota {
            guarantees: idx(&quota.guarantees),
            limits: idx(&quota.limits),
        };
        self.roles[r].quota = Some((quota, iq));
        self.refresh_totals();
        Ok(())
    }
}
