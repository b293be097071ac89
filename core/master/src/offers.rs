//! Offers: turning allocations into offers, and ACCEPT / DECLINE / rescind / expiry.
//!
//! An offer's resources stay allocated (in the allocator) from the moment it is made until
//! it is declined, rescinded, expired, or used by a task — then they come back exactly once.

use std::collections::{BTreeMap, BTreeSet};

use tessera_api::convert::task_to_pb;
use tessera_api::pb;
use tessera_types::{
    AgentId, Filters, FrameworkId, OfferId, Reason, Resources, Role, TaskGroup, TaskId, TaskInfo,
    TaskState, Time,
};

use crate::actor::Master;
use crate::error::{MasterError, Result};
use crate::model::{AgentState, Event, Offer, OfferEntry, Operation, TaskEntry};

impl Master {
    pub(crate) fn allocate(&mut self, now: Time) {
        let started = std::time::Instant::now();
        let run = self.allocator.allocate(now, &mut self.rng);
        let took = started.elapsed();
        self.metrics.allocation_runs += 1;
        self.metrics.last_allocation_ms = took.as_secs_f64() * 1e3;
        if let Some(obs) = &self.config.cycle_observer {
            let cycle = crate::model::AllocationCycle {
                at: now,
                duration: took,
                offers: run.offers.len(),
                shares: self.allocator.role_shares(),
            };
            if obs.send(cycle).is_err() {
                self.config.cycle_observer = None;
            }
        }
        self.unmet = run.unmet;
        let mut by_fw: BTreeMap<FrameworkId, Vec<Offer>> = BTreeMap::new();
        for a in run.offers {
            let Some((hostname, attributes, agent_ip, agent_port, domain, unavailability)) =
                self.agents.get(&a.agent).map(|ag| {
                    (
                        ag.record.hostname.clone(),
                        ag.record.attributes.clone(),
                        ag.ip,
                        ag.http_port,
                        ag.record.domain.clone(),
                        ag.unavailability(),
                    )
                })
            else {
                continue;
            };
            let Ok(id) = OfferId::new(self.fresh_id("O")) else {
                continue;
            };
            let offer = Offer {
                id: id.clone(),
                framework_id: a.framework.clone(),
                agent_id: a.agent.clone(),
                hostname,
                role: a.role,
                resources: a.resources,
                attributes,
                agent_ip,
                agent_port,
                domain,
                unavailability,
            };
            let expires = self.config.offer_timeout.map(|d| now.plus(d));
            self.track(&a.agent, &offer.resources, false, true);
            self.offers.insert(
                id,
                OfferEntry {
                    offer: offer.clone(),
                    expires,
                },
            );
            by_fw.entry(a.framework).or_default().push(offer);
        }
        for (fw, offers) in by_fw {
            self.metrics.offers_sent += offers.len() as u64;
            tracing::debug!(framework_id = %fw, count = offers.len(), "sending offers");
            self.send_event(&fw, Event::Offers(offers));
        }
    }

    /// Removes an outstanding offer and returns its resources to the allocator.
    fn return_offer(&mut self, id: &OfferId, refuse: Option<std::time::Duration>) -> Option<Offer> {
        let entry = self.offers.remove(id)?;
        self.track(&entry.offer.agent_id, &entry.offer.resources, false, false);
        let o = &entry.offer;
        let now = self.now();
        if let Err(e) = self.allocator.recover(
            &o.framework_id,
            &o.role,
            &o.agent_id,
            &o.resources,
            refuse,
            now,
        ) {
            tracing::debug!(offer_id = %id, error = %e, "offer resources were not tracked");
        }
        Some(entry.offer)
    }

    /// Rescinds an offer: resources back without a filter, the framework told.
    pub(crate) fn rescind(&mut self, id: &OfferId) {
        if let Some(o) = self.return_offer(id, None) {
            self.metrics.offers_rescinded += 1;
            self.send_event(&o.framework_id, Event::Rescind(id.clone()));
        }
    }

    pub(crate) fn rescind_agent_offers(&mut self, agent: &AgentId) {
        let ids: Vec<OfferId> = self
            .offers
            .values()
            .filter(|o| &o.offer.agent_id == agent)
            .map(|o| o.offer.id.clone())
            .collect();
        for id in ids {
            self.rescind(&id);
        }
    }

    pub(crate) fn rescind_framework_offers(&mut self, fw: &FrameworkId) {
        let ids: Vec<OfferId> = self
            .offers
            .values()
            .filter(|o| &o.offer.framework_id == fw)
            .map(|o| o.offer.id.clone())
            .collect();
        for id in ids {
            self.rescind(&id);
        }
    }

    pub(crate) fn expire_offers(&mut self, now: Time) {
        let ids: Vec<OfferId> = self
            .offers
            .values()
            .filter(|o| o.expires.is_some_and(|t| t <= now))
            .map(|o| o.offer.id.clone())
            .collect();
        for id in ids {
            tracing::info!(offer_id = %id, "offer expired; rescinding");
            self.rescind(&id);
        }
    }

    pub(crate) fn decline(
        &mut self,
        fw: &FrameworkId,
        offers: Vec<OfferId>,
        filters: Filters,
    ) -> Result<()> {
        self.framework_known(fw)?;
        // Validate all before changing anything.
        for id in &offers {
            match self.offers.get(id) {
                Some(o) if &o.offer.framework_id == fw => {}
                _ => return Err(MasterError::UnknownOffer(id.clone())),
            }
        }
        let refuse = filters.refuse_for();
        for id in offers {
            if self.return_offer(&id, refuse).is_some() {
                self.metrics.offers_declined += 1;
            }
        }
        Ok(())
    }

    /// ACCEPT: validates the offers, then each task and task group; launches the valid ones
    /// and returns the rest of the offered resources with the framework's filter. Invalid
    /// tasks end as TASK_ERROR (bad task; every task of a bad group, see [`crate::groups`])
    /// or TASK_DROPPED/TASK_LOST (bad offers) — never a partial leak.
    pub(crate) fn accept(
        &mut self,
        fw: &FrameworkId,
        offer_ids: Vec<OfferId>,
        operations: Vec<Operation>,
        filters: Filters,
    ) -> Result<()> {
        self.framework_known(fw)?;
        // Each operation with its feedback id; invalid ones are answered right away.
        let mut ops: Vec<(Option<String>, Operation)> = Vec::new();
        let mut op_ids: BTreeSet<String> = BTreeSet::new();
        for op in operations {
            let (id, op) = feedback_id(op);
            match (id, op) {
                (id, Operation::Invalid { task_id, reason }) => {
                    self.metrics.tasks_invalid += 1;
                    tracing::info!(framework_id = %fw, reason = %reason, "invalid operation");
                    if let Some(tid) = task_id {
                        let status = self.master_status(
                            fw,
                            &tid,
                            None,
                            TaskState::TaskError,
                            Reason::ReasonTaskInvalid,
                            &reason,
                        );
                        self.send_event(fw, Event::Update(status));
                    } else if let Some(id) = id {
                        self.operation_error(fw, &id, &reason);
                    }
                }
                (_, Operation::InvalidGroup { task_ids, reason }) => {
                    self.reject_group(fw, None, &task_ids, &reason);
                }
                (Some(id), Operation::LaunchGroup(g)) => {
                    // As for LAUNCH: feedback is not supported; the group's tasks fail.
                    let ids: Vec<TaskId> = g.tasks.iter().map(|t| t.task_id.clone()).collect();
                    let agent = g.tasks.first().map(|t| t.agent_id.clone());
                    self.reject_group(
                        fw,
                        agent.as_ref(),
                        &ids,
                        &format!("operations.id: '{id}' cannot be set on LAUNCH_GROUP operations"),
                    );
                }
                (Some(id), Operation::Launch(ts)) => {
                    // Mesos: feedback is not supported for LAUNCH; its tasks fail.
                    for t in ts {
                        self.metrics.tasks_invalid += 1;
                        let status = self.master_status(
                            fw,
                            &t.task_id,
                            Some(&t.agent_id),
                            TaskState::TaskError,
                            Reason::ReasonTaskInvalid,
                            &format!("operations.id: '{id}' cannot be set on LAUNCH operations"),
                        );
                        self.send_event(fw, Event::Update(status));
                    }
                }
                (Some(id), _) if self.operation_in_use(fw, &id) || !op_ids.insert(id.clone()) => {
                    self.operation_error(
                        fw,
                        &id,
                        &format!("operations.id: '{id}' is already in use by another operation of this framework"),
                    );
                }
                (id, op) => ops.push((id, op)),
            }
        }
        let tasks: Vec<&TaskInfo> = ops
            .iter()
            .flat_map(|(_, op)| match op {
                Operation::Launch(ts) => ts.iter().collect(),
                Operation::LaunchGroup(g) => g.tasks.iter().collect(),
                _ => Vec::new(),
            })
            .collect();

        if let Err(why) = self.validate_offers(fw, &offer_ids) {
            // Valid offers among them go back without a filter; every task is dropped.
            for id in &offer_ids {
                if self
                    .offers
                    .get(id)
                    .is_some_and(|o| &o.offer.framework_id == fw)
                {
                    self.return_offer(id, None);
                }
            }
            let state = self.lost_state(fw, TaskState::TaskDropped);
            let dropped: Vec<(TaskId, AgentId)> = tasks
                .iter()
                .map(|t| (t.task_id.clone(), t.agent_id.clone()))
                .collect();
            for (task_id, agent_id) in dropped {
                self.metrics.tasks_dropped += 1;
                let status = self.master_status(
                    fw,
                    &task_id,
                    Some(&agent_id),
                    state,
                    Reason::ReasonInvalidOffers,
                    &why,
                );
                self.send_event(fw, Event::Update(status));
            }
            for (id, _) in &ops {
                if let Some(id) = id {
                    self.operation_error(
                        fw,
                        id,
                        &format!("Operation attempted with invalid offers: {why}"),
                    );
                }
            }
            return Ok(());
        }

        let offers: Vec<Offer> = offer_ids
            .iter()
            .filter_map(|id| self.offers.remove(id).map(|e| e.offer))
            .collect();
        for o in &offers {
            self.track(&o.agent_id, &o.resources, false, false);
        }
        let agent_id = offers[0].agent_id.clone();
        // Remaining offered resources per role (an accept may span offers of several roles).
        let mut remaining: BTreeMap<Role, Resources> = BTreeMap::new();
        for o in &offers {
            let e = remaining.entry(o.role.clone()).or_default();
            if let Err(err) = e.add_assign(&o.resources) {
                tracing::error!(error = %err, "offer resources do not add up");
            }
        }
        let mut seen_ids: BTreeSet<TaskId> = BTreeSet::new();
        let mut pending_execs = crate::custom::PendingExecutors::new();
        let mut launch: Vec<(TaskInfo, Role)> = Vec::new();
        let mut groups: Vec<(TaskGroup, Role)> = Vec::new();
        let mut i = 0usize;
        // Operations apply in order: a RESERVE before a CREATE or a LAUNCH makes the reserved
        // resources available to it, a CREATE before a LAUNCH the volume.
        for (op_id, op) in ops {
            if let Some((kind, res)) = op.on_resources() {
                let id = op_id.as_deref();
                self.apply_offer_operation(fw, &agent_id, &mut remaining, kind, res, id);
                continue;
            }
            let ts = match op {
                Operation::Launch(ts) => ts,
                Operation::LaunchGroup(g) => {
                    match self.validate_group(fw, &agent_id, &g, &seen_ids, &mut remaining) {
                        Ok(role) => {
                            seen_ids.extend(g.tasks.iter().map(|t| t.task_id.clone()));
                            groups.push((g, role));
                        }
                        Err(why) => {
                            let ids: Vec<TaskId> =
                                g.tasks.iter().map(|t| t.task_id.clone()).collect();
                            self.reject_group(fw, Some(&agent_id), &ids, &why);
                        }
                    }
                    continue;
                }
                Operation::Reserve(_)
                | Operation::Unreserve(_)
                | Operation::Create(_)
                | Operation::Destroy(_)
                | Operation::Invalid { .. }
                | Operation::InvalidGroup { .. }
                | Operation::WithId { .. } => continue,
            };
            for t in ts {
                let idx = i;
                i += 1;
                let checked = self.validate_task(
                    fw,
                    &agent_id,
                    &t,
                    idx,
                    &seen_ids,
                    &mut pending_execs,
                    &mut remaining,
                );
                match checked {
                    Ok(role) => {
                        seen_ids.insert(t.task_id.clone());
                        launch.push((t, role));
                    }
                    Err(why) => {
                        self.metrics.tasks_invalid += 1;
                        tracing::info!(framework_id = %fw, task_id = %t.task_id, reason = %why, "invalid task");
                        let status = self.master_status(
                            fw,
                            &t.task_id,
                            Some(&agent_id),
                            TaskState::TaskError,
                            Reason::ReasonTaskInvalid,
                            &why,
                        );
                        self.send_event(fw, Event::Update(status));
                    }
                }
            }
        }
        // Unused resources go back with the framework's filter.
        let refuse = filters.refuse_for();
        let now = self.now();
        for (role, rest) in remaining {
            if rest.is_empty() {
                continue;
            }
            if let Err(e) = self
                .allocator
                .recover(fw, &role, &agent_id, &rest, refuse, now)
            {
                tracing::error!(framework_id = %fw, error = %e, "could not return unused resources");
            }
        }
        let (name, user) = self
            .frameworks
            .get(fw)
            .map(|f| (f.info.name.clone(), f.info.user.clone()))
            .unwrap_or_default();
        let killing_state = self
            .frameworks
            .get(fw)
            .is_some_and(|f| f.info.has(tessera_types::Capability::TaskKillingState));
        for (g, role) in groups {
            self.launch_group(fw, &agent_id, g, role, &name, &user, killing_state);
        }
        for (t, role) in launch {
            self.metrics.tasks_launched += 1;
            let key = (fw.clone(), t.task_id.clone());
            self.tasks.insert(
                key,
                std::sync::Arc::new(TaskEntry {
                    info: t.clone(),
                    framework_id: fw.clone(),
                    role,
                    state: TaskState::TaskStaging,
                    last_status: None,
                    recovered: false,
                    counted: true,
                }),
            );
            self.track(&agent_id, &t.resources, true, true);
            if let Some(exec) = &t.executor {
                let role = self
                    .tasks
                    .get(&(fw.clone(), t.task_id.clone()))
                    .map(|e| e.role.clone());
                if let Some(role) = role {
                    self.custom_task_launched(fw, &agent_id, exec, &role, &t.task_id);
                }
            }
            tracing::info!(framework_id = %fw, task_id = %t.task_id, agent_id = %agent_id, "launching task");
            if self.has_operators()
                && let Some(entry) = self.tasks.get(&(fw.clone(), t.task_id.clone()))
            {
                self.emit(crate::model::OperatorEvent::TaskAdded(Box::new(
                    entry.as_ref().clone(),
                )));
            }
            let sent = self.send_to_agent(
                &agent_id,
                pb::master_message::Msg::RunTask(pb::RunTask {
                    framework_id: fw.to_string(),
                    framework_name: name.clone(),
                    user: user.clone(),
                    task: Some(task_to_pb(&t)),
                    task_killing_state: killing_state,
                }),
            );
            if !sent {
                let state = self.lost_state(fw, TaskState::TaskDropped);
                self.metrics.tasks_dropped += 1;
                self.master_update(
                    fw,
                    &t.task_id,
                    state,
                    Reason::ReasonAgentDisconnected,
                    "the agent disconnected before the task could be sent",
                    false,
                );
            }
        }
        Ok(())
    }

    /// RESERVE / UNRESERVE inside an ACCEPT: converts part of what is left of the offers
    /// (`resources` in reserved form) and keeps it allocated to the framework. Returns the
    /// role the resources were offered to and what they became.
    pub(crate) fn offer_reservation(
        &mut self,
        fw: &FrameworkId,
        agent: &AgentId,
        remaining: &mut BTreeMap<Role, Resources>,
        resources: &Resources,
        reserving: bool,
    ) -> Result<(Role, Resources)> {
        let field = if reserving {
            "reserve.resources"
        } else {
            "unreserve.resources"
        };
        resources.validate_dynamic(field)?;
        let popped = resources.pop_reservation()?;
        let (from, to) = if reserving {
            (popped, resources.clone())
        } else {
            (resources.clone(), popped)
        };
        let role = remaining
            .iter()
            .find(|(_, r)| r.contains(&from))
            .map(|(r, _)| r.clone())
            .ok_or_else(|| {
                tessera_types::Error::invalid(
                    field,
                    format!("{from} are not in what is left of the offers"),
                )
            })?;
        if reserving && let Some((k, _)) = resources.iter().find(|(k, _)| k.role() != role) {
            return Err(tessera_types::Error::invalid(
                field,
                format!(
                    "'{}' is reserved to '{}' but was offered to role '{role}'",
                    k.name,
                    k.role()
                ),
            )
            .into());
        }
        self.change_reservations(agent, Some((fw, &role)), &from, &to, reserving)?;
        if let Some(rest) = remaining.get_mut(&role) {
            *rest = rest.checked_sub(&from).and_then(|r| r.checked_add(&to))?;
        }
        Ok((role, to))
    }

    fn validate_offers(
        &self,
        fw: &FrameworkId,
        ids: &[OfferId],
    ) -> std::result::Result<(), String> {
        if ids.is_empty() {
            return Err("offer_ids: at least one offer is required".into());
        }
        let mut uniq = BTreeSet::new();
        let mut agent: Option<&AgentId> = None;
        for id in ids {
            if !uniq.insert(id) {
                return Err(format!("offer_ids: offer '{id}' is listed twice"));
            }
            let Some(o) = self.offers.get(id) else {
                return Err(format!(
                    "offer_ids: offer '{id}' is no longer valid (used, declined, rescinded or expired)"
                ));
            };
            if &o.offer.framework_id != fw {
                return Err(format!(
                    "offer_ids: offer '{id}' belongs to another framework"
                ));
            }
            match agent {
                None => agent = Some(&o.offer.agent_id),
                Some(a) if a != &o.offer.agent_id => {
                    return Err("offer_ids: offers from several agents cannot be combined".into());
                }
                _ => {}
            }
        }
        if let Some(a) = agent
            && self
                .agents
                .get(a)
                .is_none_or(|e| e.state != AgentState::Active)
        {
            return Err(format!("agent_id: agent '{a}' is not active"));
        }
        Ok(())
    }

    /// Checks one task against what is left of the offers; on success takes its resources
    /// (and its custom executor's, when that is new: see [`crate::custom`]) from
    /// `remaining` and returns the role they came from.
    #[allow(clippy::too_many_arguments)]
    fn validate_task(
        &self,
        fw: &FrameworkId,
        agent: &AgentId,
        t: &TaskInfo,
        i: usize,
        seen: &BTreeSet<TaskId>,
        pending_execs: &mut crate::custom::PendingExecutors,
        remaining: &mut BTreeMap<Role, Resources>,
    ) -> std::result::Result<Role, String> {
        let field = format!("operations.launch.task_infos[{i}]");
        t.validate(&field).map_err(|e| e.to_string())?;
        if &t.agent_id != agent {
            return Err(format!(
                "{field}.agent_id: '{}' is not the agent of the offers ('{agent}')",
                t.agent_id
            ));
        }
        if seen.contains(&t.task_id) || self.tasks.contains_key(&(fw.clone(), t.task_id.clone())) {
            return Err(format!(
                "{field}.task_id: '{}' is already in use by this framework",
                t.task_id
            ));
        }
        let (needed, new_exec) = match &t.executor {
            None => (t.resources.clone(), false),
            Some(e) => self.custom_task_needs(fw, agent, t, e, pending_execs, &field)?,
        };
        let offered: BTreeSet<String> = remaining
            .values()
            .flat_map(|r| {
                r.names()
                    .into_iter()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect();
        if let Some(unknown) = needed.names().into_iter().find(|n| !offered.contains(*n)) {
            return Err(format!(
                "{field}.resources: '{unknown}' is not a resource the offers contain"
            ));
        }
        let running = t.executor.as_ref().and_then(|e| {
            self.executors
                .get(&(fw.clone(), agent.clone(), e.executor_id.clone()))
                .map(|x| &x.role)
        });
        for (role, rest) in remaining.iter_mut() {
            if running.is_some_and(|r| r != role) {
                continue;
            }
            if rest.contains(&needed) {
                rest.sub_assign(&needed).map_err(|e| e.to_string())?;
                if new_exec && let Some(e) = &t.executor {
                    let mut info = e.clone();
                    info.framework_id = Some(fw.clone());
                    pending_execs.insert(e.executor_id.clone(), info);
                }
                return Ok(role.clone());
            }
        }
        let what = if new_exec {
            "the task's and its new executor's resources"
        } else {
            "the task's resources"
        };
        Err(format!(
            "{field}.resources: {what} ({needed}) are more than what is left of the offers"
        ))
    }
}

/// Splits off the feedback id of an operation (the innermost, if wrapped twice).
fn feedback_id(op: Operation) -> (Option<String>, Operation) {
    let mut id = None;
    let mut op = op;
    while let Operation::WithId { id: inner, op: o } = op {
        id = Some(inner);
        op = *o;
    }
    (id, op)
}
