//! The allocation run: stage 1 (roles below their quota guarantees), stage 2 (everyone);
//! per agent, roles in role-sorter order, then the first unfiltered framework of the role
//! in framework-sorter order gets everything on the agent allocatable to the role.

use tessera_types::{Resource, ResourceKey, Resources, Role, Scalar, Time, Value};

use super::{Allocation, AllocationRun, Allocator, Stage};
use crate::AllocRng;
use crate::quota::at;
use crate::reasons::{RunTracker, Unmet, UnmetReason};
use crate::rng::shuffle;

impl Allocator {
    // ---- the run -------------------------------------------------------------------------

    /// One full allocation cycle over all active agents.
    pub fn allocate(&mut self, now: Time, rng: &mut dyn AllocRng) -> AllocationRun {
        self.expire_filters(now);
        let mut run = AllocationRun::default();
        let mut tracker = RunTracker::new(self.roles.len());
        let mut agents: Vec<u32> = (0..self.agents.len() as u32)
            .filter(|a| self.agents[*a as usize].as_ref().is_some_and(|s| s.active))
            .collect();
        tracker.agents_visited = agents.len() as u32;
        let has_quota = self.roles.iter().any(|r| r.quota.is_some());
        let mut required = if has_quota {
            self.required_headroom()
        } else {
            Vec::new()
        };
        if has_quota && required.iter().any(|x| *x > 0) {
            shuffle(&mut agents, rng);
            for &a in &agents {
                self.visit_agent(
                    a,
                    Stage::Guarantees,
                    now,
                    rng,
                    &mut run,
                    &mut tracker,
                    &mut required,
                );
            }
        }
        shuffle(&mut agents, rng);
        for &a in &agents {
            self.visit_agent(
                a,
                Stage::All,
                now,
                rng,
                &mut run,
                &mut tracker,
                &mut required,
            );
        }
        run.unmet = self.unmet(&tracker);
        self.batch.ran(now);
        run
    }

    fn expire_filters(&mut self, now: Time) {
        if self.next_filter_expiry.is_some_and(|t| t <= now) {
            let mut next: Option<Time> = None;
            for fw in self.frameworks.iter_mut().flatten() {
                if let Some(t) = fw.filters.expire(now) {
                    next = Some(next.map_or(t, |n| n.min(t)));
                }
            }
            self.next_filter_expiry = next;
        }
    }

    /// Σ over quota roles of what they still lack of their guarantees, per name.
    fn required_headroom(&self) -> Vec<u64> {
        let mut req = vec![0u64; self.names.names.len()];
        for role in &self.roles {
            if let Some((_, q)) = &role.quota {
                let consumed = role.consumed();
                for (i, _) in &q.guarantees {
                    req[*i] = req[*i].saturating_add(q.unsatisfied(*i, &consumed));
                }
            }
        }
        req
    }

    #[allow(clippy::too_many_arguments)]
    fn visit_agent(
        &mut self,
        a: u32,
        stage: Stage,
        now: Time,
        rng: &mut dyn AllocRng,
        run: &mut AllocationRun,
        tracker: &mut RunTracker,
        required: &mut Vec<u64>,
    ) {
        if self.agents[a as usize]
            .as_ref()
            .is_none_or(|s| s.available.is_empty())
        {
            return;
        }
        let mut order = std::mem::take(&mut self.role_buf);
        order.clear();
        self.role_sorter.sort_into(&self.totals, rng, &mut order);
        for &r in &order {
            let ri = r as usize;
            if self.roles[ri].active_fws == 0 {
                continue;
            }
            let top = self.roles[ri].top as usize;
            if stage == Stage::Guarantees
                && !self.roles[top]
                    .quota
                    .as_ref()
                    .is_some_and(|(_, q)| q.any_unsatisfied(&self.roles[top].consumed()))
            {
                continue;
            }
            let Some(agent) = self.agents[a as usize].as_ref() else {
                break;
            };
            if agent.available.is_empty() {
                break;
            }
            let role = &self.roles[ri].role;
            let needs_chop = !required.is_empty()
                || self.roles[top]
                    .quota
                    .as_ref()
                    .is_some_and(|(_, q)| !q.limits.is_empty());
            // Borrow the agent's pool when all of it is offerable; copy only on allocation.
            let mut owned = None;
            if needs_chop
                || !agent
                    .available
                    .iter()
                    .all(|(k, _)| allocatable_key(k, role))
            {
                owned = Some(allocatable_to(&agent.available, role));
            }
            let mut chopped = (false, false);
            if let (Some(o), true) = (owned.as_mut(), needs_chop) {
                chopped = self.chop(o, r, required);
            }
            let offer = owned.as_ref().unwrap_or(&agent.available);
            if offer.is_empty() && !chopped.0 && !chopped.1 {
                continue;
            }
            if !self.is_allocatable(offer) {
                if chopped.0 {
                    tracker.quota_limit[ri] = true;
                } else if chopped.1 {
                    tracker.headroom[ri] = true;
                } else {
                    tracker.too_small[ri] += 1;
                }
                continue;
            }
            let frameworks = &self.frameworks;
            let gpu_agent = self.config.filter_gpu_resources
                && self.agents[a as usize]
                    .as_ref()
                    .is_some_and(|s| !s.total.scalar("gpus").is_zero());
            let remote_agent = self.agents[a as usize].as_ref().is_some_and(|s| s.remote);
            let filtered = &mut tracker.filtered[ri];
            let chosen = self.roles[ri]
                .fw_sorter
                .find_first(&self.totals, rng, &mut |f| {
                    let fw = frameworks[f as usize].as_ref();
                    if gpu_agent && fw.is_some_and(|fw| !fw.gpu_aware) {
                        return false;
                    }
                    // Mesos: agents of other regions go to REGION_AWARE frameworks only.
                    if remote_agent && fw.is_some_and(|fw| !fw.region_aware) {
                        return false;
                    }
                    let hit = fw.is_some_and(|fw| fw.filters.is_filtered(r, a, offer, now));
                    if hit {
                        *filtered += 1;
                    }
                    !hit
                });
            let offer = match owned {
                Some(o) => o,
                None if chosen.is_some() => agent.available.clone(),
                None => continue,
            };
            let Some(f) = chosen else { continue };
            if self.book(f, r, a, &offer, true).is_err() {
                continue;
            }
            tracker.offered[ri] = true;
            if !required.is_empty() {
                *required = self.required_headroom();
            }
            run.offers.push(Allocation {
                framework: self.fw(f).id.clone(),
                role: self.roles[ri].role.clone(),
                agent: self.agents[a as usize]
                    .as_ref()
                    .map(|s| s.id.clone())
                    .expect("agent exists"),
                resources: offer,
            });
        }
        self.role_buf = order;
    }

    /// Shrinks the unreserved scalars of `offer` to the role's quota limit and to what
    /// other roles' unsatisfied guarantees leave. Returns (limit chopped, headroom chopped).
    fn chop(&self, offer: &mut Resources, r: u32, required: &[u64]) -> (bool, bool) {
        let top = &self.roles[self.roles[r as usize].top as usize];
        let consumed = top.consumed();
        let quota = top.quota.as_ref().map(|(_, q)| q);
        let (mut by_limit, mut by_headroom) = (false, false);
        let mut excess = Vec::new();
        for (k, v) in offer.iter() {
            let (Value::Scalar(s), false) = (v, k.is_reserved()) else {
                continue;
            };
            let Some(i) = self.names.get(&k.name) else {
                continue;
            };
            let amount = s.milli();
            let mut allowed = amount;
            if let Some(limit) = quota.and_then(|q| q.limit(i)) {
                let rem = limit.saturating_sub(at(&consumed, i));
                if rem < allowed {
                    allowed = rem;
                    by_limit = true;
                }
            }
            let req = at(required, i);
            if req > 0 {
                let own = quota.map_or(0, |q| q.unsatisfied(i, &consumed));
                let others = req.saturating_sub(own);
                let mine = at(&self.unreserved_free, i).saturating_sub(others);
                if mine < allowed {
                    allowed = mine;
                    by_headroom = true;
                }
            }
            if allowed < amount {
                excess.push(Resource {
                    key: ResourceKey::unreserved(k.name.clone()),
                    value: Value::Scalar(Scalar::from_milli(amount - allowed)),
                });
            }
        }
        if !excess.is_empty()
            && let Ok(ex) = Resources::from_resources("quota", excess)
        {
            let _ = offer.sub_assign(&ex);
        }
        (by_limit, by_headroom)
    }

    /// `min_allocatable`: some set whose every scalar the offer has at least of.
    fn is_allocatable(&self, offer: &Resources) -> bool {
        if offer.is_empty() {
            return false;
        }
        if self.config.min_allocatable.is_empty() {
            return true;
        }
        self.config
            .min_allocatable
            .iter()
            .any(|set| set.iter().all(|(n, min)| offer.scalar(n) >= *min))
    }

    fn unmet(&mut self, tracker: &RunTracker) -> Vec<Unmet> {
        let mut out = Vec::new();
        for ri in 0..self.roles.len() {
            let role = &self.roles[ri];
            let active: Vec<u32> = role
                .subscribers
                .iter()
                .copied()
                .filter(|f| self.fw(*f).active)
                .collect();
            if active.is_empty() || tracker.offered.get(ri).copied().unwrap_or(false) {
                self.roles[ri].last_unmet = None;
                continue;
            }
            let r = ri as u32;
            let unsuppressed = active
                .iter()
                .filter(|f| !self.fw(**f).suppressed.contains(&r))
                .count();
            let (reason, detail) = tracker.reason(ri, unsuppressed, active.len());
            out.push(Unmet {
                role: role.role.clone(),
                framework: None,
                reason,
                detail,
            });
            if reason != UnmetReason::Suppressed {
                for f in &active {
                    let fw = self.fw(*f);
                    if fw.suppressed.contains(&r) {
                        out.push(Unmet {
                            role: role.role.clone(),
                            framework: Some(fw.id.clone()),
                            reason: UnmetReason::Suppressed,
                            detail: "the framework suppressed offers for this role".to_string(),
                        });
                    }
                }
            }
            self.roles[ri].last_unmet = Some(reason);
        }
        out.sort_by(|a, b| (&a.role, &a.framework).cmp(&(&b.role, &b.framework)));
        out
    }
}

/// `Resources::allocatable_to` without cloning a role per resource: unreserved, or
/// reserved to `role` or an ancestor.
fn allocatable_to(available: &Resources, role: &Role) -> Resources {
    available.filter(|k, _| allocatable_key(k, role))
}

fn allocatable_key(k: &ResourceKey, role: &Role) -> bool {
    k.reservations
        .last()
        .is_none_or(|x| x.role.is_allocatable_to(role))
}
