//! Operator actions on the master: the operator event stream, dynamic reservations,
//! deactivating, draining (with inverse offers, see `inverse`) and removing agents, quota
//! updates. The operator HTTP API
//! (`/api/v1`) is a thin layer over these.

use std::time::Duration;

use tessera_allocator::Quota;
use tessera_api::pb;
use tessera_types::{AgentId, FrameworkId, Reason, Resources, Role, TaskState};
use tokio::sync::broadcast;

use crate::actor::Master;
use crate::error::{MasterError, Result};
use crate::model::{AgentState, AgentView, FrameworkView, MasterState, OperatorEvent};

/// Operator events buffered per subscriber before a slow one starts missing them (it is
/// told with a lag error and should re-subscribe).
pub const OPERATOR_EVENT_BUFFER: usize = 4096;

impl Master {
    pub(crate) fn has_operators(&self) -> bool {
        self.operator_tx.receiver_count() > 0
    }

    pub(crate) fn emit(&self, ev: OperatorEvent) {
        let _ = self.operator_tx.send(ev);
    }

    /// A consistent start: the state now, and every event after it.
    pub(crate) fn subscribe_operator(&self) -> (MasterState, broadcast::Receiver<OperatorEvent>) {
        (self.state(), self.operator_tx.subscribe())
    }

    /// One agent's view, computed from its own tasks and offers only.
    pub(crate) fn agent_view(&self, id: &AgentId) -> Option<AgentView> {
        self.agents.get(id).map(crate::model::AgentEntry::view)
    }

    pub(crate) fn framework_view(&self, id: &FrameworkId) -> Option<FrameworkView> {
        self.frameworks.get(id).map(|f| f.view(id))
    }

    /// Tells operators about a framework that was added or changed.
    pub(crate) fn emit_framework(&self, id: &FrameworkId, added: bool) {
        if self.has_operators()
            && let Some(v) = self.framework_view(id)
        {
            self.emit(if added {
                OperatorEvent::FrameworkAdded(v)
            } else {
                OperatorEvent::FrameworkUpdated(v)
            });
        }
    }

    pub(crate) fn known_agent(&self, id: &AgentId) -> Result<()> {
        match self.agents.get(id) {
            Some(a) if a.state != AgentState::Gone => Ok(()),
            _ => Err(MasterError::UnknownAgent(id.clone())),
        }
    }

    /// Operator RESERVE: `resources` in their reserved form (dynamic on top). They must be
    /// free on the agent; outstanding offers there are rescinded first so they can be.
    pub(crate) fn reserve(&mut self, agent: &AgentId, resources: Resources) -> Result<()> {
        self.known_agent(agent)?;
        resources.validate_dynamic("resources")?;
        let source = resources.pop_reservation()?;
        self.change_reservations(agent, None, &source, &resources, true)
    }

    /// Operator UNRESERVE: the reverse of [`Master::reserve`].
    pub(crate) fn unreserve(&mut self, agent: &AgentId, resources: Resources) -> Result<()> {
        self.known_agent(agent)?;
        resources.validate_dynamic("resources")?;
        let target = resources.pop_reservation()?;
        self.change_reservations(agent, None, &resources, &target, false)
    }

    /// Converts `from` into `to` on the agent (held by `holder` when inside an ACCEPT) and
    /// records the agent's dynamic reservations in the registry.
    pub(crate) fn change_reservations(
        &mut self,
        agent: &AgentId,
        holder: Option<(&FrameworkId, &Role)>,
        from: &Resources,
        to: &Resources,
        reserving: bool,
    ) -> Result<()> {
        let (removed, added) = if reserving {
            (&Resources::new(), to)
        } else {
            (from, &Resources::new())
        };
        self.convert_agent_resources(agent, holder, from, to, |record| {
            if !record.dynamic.contains(removed) {
                return Err(MasterError::Conflict(format!(
                    "resources: {removed} are not dynamically reserved on agent '{agent}'"
                )));
            }
            record.dynamic = record
                .dynamic
                .checked_sub(removed)
                .and_then(|d| d.checked_add(added))?;
            Ok(())
        })?;
        tracing::info!(agent_id = %agent, from = %from, to = %to, "reservations changed");
        Ok(())
    }

    /// Converts `from` into `to` on the agent (held by `holder` when inside an ACCEPT; else
    /// they must be free, and offers on the agent are rescinded first) after `update` made
    /// the agent's record say so, and stores the record. On any error nothing changed.
    pub(crate) fn convert_agent_resources(
        &mut self,
        agent: &AgentId,
        holder: Option<(&FrameworkId, &Role)>,
        from: &Resources,
        to: &Resources,
        update: impl FnOnce(&mut crate::registry::AgentRecord) -> Result<()>,
    ) -> Result<()> {
        let Some(entry) = self.agents.get(agent) else {
            return Err(MasterError::UnknownAgent(agent.clone()));
        };
        let mut record = entry.record.clone();
        update(&mut record)?;
        if holder.is_none() {
            self.rescind_agent_offers(agent);
        }
        let now = self.now();
        self.allocator
            .convert_resources(agent, holder, from, to, now)
            .map_err(|e| MasterError::Conflict(e.to_string()))?;
        if let Err(e) = self.registry.put_agent(&record) {
            // Undo, so the allocator and the registry agree.
            let _ = self
                .allocator
                .convert_resources(agent, holder, to, from, now);
            return Err(e);
        }
        if let Some(a) = self.agents.get_mut(agent) {
            a.record = record;
        }
        Ok(())
    }

    pub(crate) fn deactivate_agent(&mut self, id: &AgentId) -> Result<()> {
        self.known_agent(id)?;
        if let Some(a) = self.agents.get_mut(id) {
            a.deactivated = true;
        }
        self.allocator.deactivate_agent(id);
        self.rescind_agent_offers(id);
        tracing::info!(agent_id = %id, "agent deactivated by an operator");
        Ok(())
    }

    pub(crate) fn reactivate_agent(&mut self, id: &AgentId) -> Result<()> {
        self.known_agent(id)?;
        let now = self.now();
        if let Some(a) = self.agents.get_mut(id) {
            a.deactivated = false;
            a.draining = false;
            if a.state == AgentState::Active {
                self.allocator.activate_agent(id, now);
            }
        }
        self.make_available(id);
        tracing::info!(agent_id = %id, "agent reactivated by an operator");
        Ok(())
    }

    /// DRAIN_AGENT: no more offers, every task on the agent killed (with `grace` when
    /// given), and each framework with tasks there gets an inverse offer for the agent
    /// until it is drained or reactivated; with `mark_gone`, the agent is instead removed
    /// for good.
    pub(crate) fn drain_agent(
        &mut self,
        id: &AgentId,
        grace: Option<Duration>,
        mark_gone: bool,
    ) -> Result<()> {
        self.deactivate_agent(id)?;
        if let Some(a) = self.agents.get_mut(id) {
            a.draining = true;
        }
        let grace_ms = grace.map(|g| u64::try_from(g.as_millis()).unwrap_or(u64::MAX));
        let tasks = self.live_tasks_on(id);
        for (fw, task) in tasks {
            self.send_to_agent(
                id,
                pb::master_message::Msg::KillTask(pb::KillTask {
                    framework_id: fw.to_string(),
                    task_id: task.to_string(),
                    grace_ms,
                }),
            );
        }
        if mark_gone {
            self.mark_agent_gone(id)?;
        } else {
            // Frameworks with tasks there are asked to give them up (inverse offers).
            self.make_unavailable(id);
        }
        Ok(())
    }

    /// MARK_AGENT_GONE: its tasks are TASK_GONE_BY_OPERATOR, it is told to stop them, and it
    /// may never register again.
    pub(crate) fn mark_agent_gone(&mut self, id: &AgentId) -> Result<()> {
        self.known_agent(id)?;
        let mut record = self
            .agents
            .get(id)
            .map(|a| a.record.clone())
            .ok_or_else(|| MasterError::UnknownAgent(id.clone()))?;
        record.gone = true;
        self.registry.put_agent(&record)?;
        let frameworks: std::collections::BTreeSet<FrameworkId> = self
            .tasks
            .values()
            .filter(|t| &t.info.agent_id == id)
            .map(|t| t.framework_id.clone())
            .collect();
        for fw in &frameworks {
            self.send_to_agent(
                id,
                pb::master_message::Msg::ShutdownFramework(pb::ShutdownFramework {
                    framework_id: fw.to_string(),
                }),
            );
        }
        self.rescind_agent_offers(id);
        self.allocator.remove_agent(id);
        let tasks = self.live_tasks_on(id);
        for (fw, task) in tasks {
            self.master_update(
                &fw,
                &task,
                TaskState::TaskGoneByOperator,
                Reason::ReasonAgentRemovedByOperator,
                "the agent was marked gone by an operator",
                true,
            );
        }
        if let Some(a) = self.agents.get_mut(id) {
            a.record = record;
            a.state = AgentState::Gone;
            if let Some((conn, _)) = a.link.take() {
                self.conns.remove(&conn);
            }
        }
        if self.has_operators() {
            self.emit(OperatorEvent::AgentRemoved(id.clone()));
        }
        tracing::warn!(agent_id = %id, "agent marked gone by an operator");
        Ok(())
    }

    /// UPDATE_QUOTA for one role: refused when the role already consumes more than a new
    /// limit, unless `force`.
    pub(crate) fn update_quota(&mut self, role: Role, quota: Quota, force: bool) -> Result<()> {
        if !force {
            let consumed = self.allocator.quota_consumed(&role);
            for (name, limit) in &quota.limits {
                let used = consumed.get(name).copied().unwrap_or_default();
                if used > *limit {
                    return Err(MasterError::Conflict(format!(
                        "quota.limits.{name}: role '{role}' already consumes {used}, more than the new limit {limit}; use force to set it anyway"
                    )));
                }
            }
        }
        self.set_quota(role, quota)
    }
}
