//! Agent lifecycle in the master: register, re-register (with task reconciliation),
//! heartbeats, disconnect, and unreachable after the timeout. Agents on a machine that is
//! DOWN for maintenance are refused, as are agents marked gone.

use std::collections::BTreeSet;

use tessera_api::convert::{executor_from_pb, resources_from_pb, status_from_pb, task_from_pb};
use tessera_api::pb;
use tessera_types::{
    AgentId, Capability, FrameworkId, Reason, Role, TaskId, TaskState, TaskStatus, Time,
};

use crate::actor::Master;
use crate::model::{AgentEntry, AgentState, FaultDomain, TaskEntry};
use crate::registry::AgentRecord;

/// A task an agent reports when it (re-)registers: its framework, what it runs, its state,
/// and the default executor running it (tasks of groups).
type Reported = (
    FrameworkId,
    tessera_types::TaskInfo,
    TaskState,
    Option<tessera_types::ExecutorInfo>,
);

fn reply(msg: pb::master_message::Msg) -> pb::MasterMessage {
    pb::MasterMessage { msg: Some(msg) }
}

impl Master {
    pub(crate) fn on_agent_message(&mut self, conn: u64, msg: pb::AgentMessage) {
        let now = self.now();
        let Some(msg) = msg.msg else {
            self.reject(conn, "message: empty AgentMessage");
            return;
        };
        match msg {
            pb::agent_message::Msg::Register(reg) => self.on_register(conn, reg, None, now),
            pb::agent_message::Msg::RegisterInDomain(r) => {
                let Some(reg) = r.register else {
                    self.reject(conn, "register_in_domain.register: is required");
                    return;
                };
                let domain = r
                    .domain
                    .ok_or_else(|| "register_in_domain.domain: is required".to_string())
                    .and_then(|d| {
                        FaultDomain::new("register_in_domain.domain", &d.region, &d.zone)
                            .map_err(|e| e.to_string())
                    });
                match domain {
                    Ok(d) => self.on_register(conn, reg, Some(d), now),
                    Err(why) => self.reject(conn, &why),
                }
            }
            pb::agent_message::Msg::Heartbeat(_) => {
                if let Some(id) = self.conns.get(&conn).cloned()
                    && let Some(a) = self.agents.get_mut(&id)
                {
                    a.last_seen = now;
                } else {
                    self.reject(conn, "heartbeat: the agent must register first");
                }
            }
            pb::agent_message::Msg::StatusUpdate(up) => {
                let Some(agent_id) = self.conns.get(&conn).cloned() else {
                    self.reject(conn, "status_update: the agent must register first");
                    return;
                };
                if let Some(a) = self.agents.get_mut(&agent_id) {
                    a.last_seen = now;
                }
                self.on_agent_status(&agent_id, up);
            }
            pb::agent_message::Msg::ExecutorExited(x) => {
                let Some(agent_id) = self.conns.get(&conn).cloned() else {
                    self.reject(conn, "executor_exited: the agent must register first");
                    return;
                };
                self.on_executor_exited(&agent_id, x);
            }
            pb::agent_message::Msg::ExecutorMessage(m) => {
                let Some(agent_id) = self.conns.get(&conn).cloned() else {
                    self.reject(conn, "executor_message: the agent must register first");
                    return;
                };
                self.on_executor_message(&agent_id, m);
            }
        }
    }

    /// Refuses a connection: tells the agent why and forgets the link (the gRPC stream
    /// ends when the link is dropped).
    fn reject(&mut self, conn: u64, reason: &str) {
        self.metrics.invalid_agent_messages += 1;
        tracing::warn!(conn, reason, "rejecting agent connection");
        let msg = reply(pb::master_message::Msg::Rejected(pb::Rejected {
            reason: reason.to_string(),
        }));
        if let Some(link) = self.pending.remove(&conn) {
            link.send(msg);
        } else if let Some(id) = self.conns.remove(&conn)
            && let Some(a) = self.agents.get_mut(&id)
            && let Some((_, link)) = a.link.take()
        {
            link.send(msg);
            a.state = AgentState::Disconnected;
            self.allocator.deactivate_agent(&id);
        }
    }

    /// Whether an agent in `domain` is in another region than the master (only then is it
    /// remote; without a master domain every agent is local).
    pub(crate) fn is_remote(&self, domain: Option<&FaultDomain>) -> bool {
        match (&self.config.domain, domain) {
            (Some(m), Some(a)) => m.region != a.region,
            _ => false,
        }
    }

    fn on_register(
        &mut self,
        conn: u64,
        reg: pb::Register,
        domain: Option<FaultDomain>,
        now: Time,
    ) {
        let Some(link) = self.pending.remove(&conn).or_else(|| {
            // Registering twice on one stream: treat the second as a re-registration.
            let id = self.conns.remove(&conn)?;
            self.agents.get_mut(&id)?.link.take().map(|(_, l)| l)
        }) else {
            return;
        };
        self.pending.insert(conn, link);
        let Some(info) = reg.info else {
            self.reject(conn, "register.info: is required");
            return;
        };
        if info.hostname.is_empty() || info.hostname.len() > 255 {
            self.reject(conn, "register.info.hostname: must be 1-255 bytes");
            return;
        }
        let peer = self.peers.get(&conn).copied();
        if let Some(m) = self.machine_down(&info.hostname, peer) {
            self.reject(
                conn,
                &format!("register.info.hostname: the agent's machine {m} is DOWN for maintenance, so the agent was removed; it may register again, as a new agent, once an operator brings the machine up (STOP_MAINTENANCE, or POST /master/machine/up)"),
            );
            return;
        }
        let resources = match resources_from_pb("register.info.resources", &info.resources) {
            Ok(r) if !r.is_empty() => r,
            Ok(_) => {
                self.reject(
                    conn,
                    "register.info.resources: an agent must offer something",
                );
                return;
            }
            Err(e) => {
                self.reject(conn, &e.to_string());
                return;
            }
        };
        let attributes: Vec<(String, String)> = info
            .attributes
            .iter()
            .map(|a| (a.name.clone(), a.value.clone()))
            .collect();
        // Validate every reported task before touching any state.
        let mut reported = Vec::new();
        for (i, t) in reg.tasks.iter().enumerate() {
            let field = format!("register.tasks[{i}]");
            let parsed = (|| {
                let fw = FrameworkId::new(t.framework_id.clone())
                    .map_err(|e| format!("{field}.framework_id: {e}"))?;
                let task = t
                    .task
                    .as_ref()
                    .ok_or_else(|| format!("{field}.task: is required"))?;
                let task =
                    task_from_pb(&format!("{field}.task"), task).map_err(|e| e.to_string())?;
                let state = TaskState::from_i32(t.state)
                    .ok_or_else(|| format!("{field}.state: {} is not a TaskState", t.state))?;
                let executor = t
                    .executor
                    .as_ref()
                    .map(|e| executor_from_pb(&format!("{field}.executor"), e))
                    .transpose()
                    .map_err(|e| e.to_string())?;
                if let Some(e) = &executor
                    && Some(&e.executor_id) != task.executor_id.as_ref()
                {
                    return Err(format!(
                        "{field}.executor.executor_id: is not the task's executor_id"
                    ));
                }
                Ok::<_, String>((fw, task, state, executor))
            })();
            match parsed {
                Ok(x) => reported.push(x),
                Err(e) => {
                    self.reject(conn, &e);
                    return;
                }
            }
        }

        let id = match reg.agent_id.as_deref() {
            Some(s) => {
                match AgentId::new(s) {
                    Ok(id) if self.agents.get(&id).is_some_and(|a| a.record.gone) => {
                        self.reject(
                            conn,
                            &format!("agent_id: '{id}' was marked gone by an operator and may not come back; wipe the agent's work directory to join as a new agent"),
                        );
                        return;
                    }
                    Ok(id) if self.agents.contains_key(&id) => Some(id),
                    Ok(id) => {
                        self.reject(
                        conn,
                        &format!("agent_id: '{id}' is not known to this master; register as a new agent"),
                    );
                        return;
                    }
                    Err(e) => {
                        self.reject(conn, &format!("register.{e}"));
                        return;
                    }
                }
            }
            None => None,
        };
        let Some(link) = self.pending.remove(&conn) else {
            return;
        };
        let reregister = id.is_some();
        let id = match id {
            Some(id) => id,
            None => match AgentId::new(self.fresh_id("S")) {
                Ok(id) => id,
                Err(_) => return,
            },
        };
        let (dynamic, volumes) = self
            .agents
            .get(&id)
            .map(|a| (a.record.dynamic.clone(), a.record.volumes.clone()))
            .unwrap_or_default();
        let mut record = AgentRecord {
            id: id.clone(),
            hostname: info.hostname.clone(),
            resources: resources.clone(),
            attributes,
            unreachable_since_ms: None,
            dynamic,
            gone: false,
            domain,
            volumes,
        };
        if !record.with_reservations().contains(&record.dynamic) {
            tracing::warn!(agent_id = %id, reservations = %record.dynamic,
                "dynamic reservations no longer fit the agent's resources; dropping them");
            record.dynamic = tessera_types::Resources::new();
        }
        if !record.effective_total().contains(&record.volumes) {
            tracing::warn!(agent_id = %id, volumes = %record.volumes,
                "persistent volumes no longer fit the agent's resources; dropping them");
            record.volumes = tessera_types::Resources::new();
        }
        let total = record.effective_total();
        if let Err(e) = self.registry.put_agent(&record) {
            tracing::error!(agent_id = %id, error = %e, "could not admit agent");
            link.send(reply(pb::master_message::Msg::Rejected(pb::Rejected {
                reason: format!("registry: {e}; retry later"),
            })));
            return;
        }
        if !reregister {
            self.persist_next_id();
        }
        let hb = u64::try_from(self.config.agent_heartbeat_interval.as_millis()).unwrap_or(5000);
        link.send(reply(pb::master_message::Msg::Registered(pb::Registered {
            agent_id: id.to_string(),
            heartbeat_interval_ms: hb,
            master_id: self.master_id.clone(),
        })));

        // A previous connection of the same agent is replaced.
        if let Some(old) = self.agents.get_mut(&id)
            && let Some((old_conn, _)) = old.link.take()
        {
            self.conns.remove(&old_conn);
        }
        let was = self.agents.get(&id).map(|a| a.state);
        let prior_flags = self
            .agents
            .get(&id)
            .map(|a| (a.deactivated, a.draining, a.drain_unavailability))
            .unwrap_or_default();
        let prior_unavailability = self.agents.get(&id).and_then(AgentEntry::unavailability);
        let scheduled = self.scheduled_unavailability(&info.hostname, peer);
        // Tasks stay counted across a re-registration; reconciliation adjusts them.
        let prior_used = self
            .agents
            .get(&id)
            .map(|a| a.used.clone())
            .unwrap_or_default();
        // Offers on the agent are stale once it re-registers.
        self.rescind_agent_offers(&id);
        if was.is_some() {
            self.allocator.remove_agent(&id);
        }
        self.agents.insert(
            id.clone(),
            AgentEntry {
                record,
                state: AgentState::Active,
                link: Some((conn, link)),
                ip: peer,
                http_port: info.http_port,
                deactivated: prior_flags.0,
                draining: prior_flags.1,
                drain_unavailability: prior_flags.2,
                scheduled,
                used: prior_used,
                offered: tessera_types::Resources::new(),
                last_seen: now,
                registered_wall: wall_seconds(),
            },
        );
        self.conns.insert(conn, id.clone());
        if self.agents.get(&id).and_then(AgentEntry::unavailability) != prior_unavailability {
            // Inverse offers and answers about what it was before no longer hold.
            self.unavailability_changed(&id);
        }
        let used = self.reconcile_agent_tasks(&id, reported, now);
        self.allocator.add_agent(id.clone(), total, &used, now);
        let remote = self.is_remote(self.agents.get(&id).and_then(|a| a.record.domain.as_ref()));
        self.allocator.set_agent_remote(&id, remote);
        if prior_flags.0 {
            self.allocator.deactivate_agent(&id);
        }
        if self.has_operators()
            && let Some(view) = self.agent_view(&id)
        {
            self.emit(crate::model::OperatorEvent::AgentAdded(view));
        }
        if reregister {
            self.metrics.agents_reregistered += 1;
            tracing::info!(agent_id = %id, hostname = %info.hostname, from = ?was, "agent re-registered");
        } else {
            self.metrics.agents_registered += 1;
            tracing::info!(agent_id = %id, hostname = %info.hostname, "agent registered");
        }
    }

    /// Brings the master's view of an agent's tasks in line with what the agent reports.
    /// Returns what the agent's running tasks use, per (framework, role), for the allocator.
    fn reconcile_agent_tasks(
        &mut self,
        agent: &AgentId,
        reported: Vec<Reported>,
        now: Time,
    ) -> Vec<(FrameworkId, Role, tessera_types::Resources)> {
        let _ = now;
        let mut seen: BTreeSet<(FrameworkId, TaskId)> = BTreeSet::new();
        let mut used = Vec::new();
        for (fw, task, state, executor) in reported {
            let key = (fw.clone(), task.task_id.clone());
            seen.insert(key.clone());
            let role = self
                .tasks
                .get(&key)
                .map(|t| t.role.clone())
                .or_else(|| {
                    self.frameworks
                        .get(&fw)
                        .and_then(|f| f.info.roles.first().cloned())
                })
                .unwrap_or_else(Role::any);
            if !state.is_terminal() {
                used.push((fw.clone(), role.clone(), task.resources.clone()));
                if let Some(e) = executor {
                    self.adopt_executor(&fw, agent, e, &role, &task.task_id);
                }
            }
            let entry = self.tasks.entry(key).or_insert_with(|| {
                std::sync::Arc::new(TaskEntry {
                    info: task.clone(),
                    framework_id: fw.clone(),
                    role,
                    state,
                    last_status: None,
                    recovered: false,
                    counted: false,
                })
            });
            // The agent is the source of truth for its tasks; its status updates follow.
            let entry = std::sync::Arc::make_mut(entry);
            entry.state = state;
            entry.recovered = state.is_terminal();
            let count = !state.is_terminal();
            let change = (entry.counted != count).then(|| (entry.info.resources.clone(), count));
            entry.counted = count;
            if let Some((res, add)) = change {
                self.track(agent, &res, true, add);
            }
        }
        // Tasks the master placed on this agent that the agent no longer has.
        let missing: Vec<(FrameworkId, TaskId)> = self
            .tasks
            .iter()
            .filter(|(k, t)| {
                &t.info.agent_id == agent && !seen.contains(*k) && !t.state.is_terminal()
            })
            .map(|(k, _)| k.clone())
            .collect();
        for (fw, task) in missing {
            let state = self.lost_state(&fw, TaskState::TaskGone);
            self.master_update(
                &fw,
                &task,
                state,
                Reason::ReasonReconciliation,
                "the agent re-registered without this task",
                false,
            );
        }
        // Default executors hold resources beside their tasks.
        used.extend(self.executors_used_on(agent));
        used
    }

    /// The state a task the master lost track of is reported in: `aware` (TASK_DROPPED,
    /// TASK_GONE, TASK_UNREACHABLE, TASK_UNKNOWN) for PARTITION_AWARE frameworks, TASK_LOST for
    /// the others, as Mesos does.
    pub(crate) fn lost_state(&self, fw: &FrameworkId, aware: TaskState) -> TaskState {
        let pa = self
            .frameworks
            .get(fw)
            .is_some_and(|f| f.info.has(Capability::PartitionAware));
        if pa { aware } else { TaskState::TaskLost }
    }

    /// The framework and task ids of the agent's tasks that are not terminal.
    pub(crate) fn live_tasks_on(&self, agent: &AgentId) -> Vec<(FrameworkId, TaskId)> {
        self.tasks
            .iter()
            .filter(|(_, t)| &t.info.agent_id == agent && !t.state.is_terminal())
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn on_agent_status(&mut self, agent: &AgentId, up: pb::StatusUpdate) {
        let fw = match FrameworkId::new(up.framework_id.clone()) {
            Ok(f) => f,
            Err(e) => {
                self.metrics.invalid_agent_messages += 1;
                tracing::warn!(agent_id = %agent, error = %e, "dropping status update");
                return;
            }
        };
        let Some(status) = up.status else {
            self.metrics.invalid_agent_messages += 1;
            tracing::warn!(agent_id = %agent, "dropping status update without status");
            return;
        };
        match status_from_pb("status_update.status", &status, agent, &fw) {
            Ok(s) => self.on_task_status(&fw, s),
            Err(e) => {
                self.metrics.invalid_agent_messages += 1;
                tracing::warn!(agent_id = %agent, error = %e, "dropping status update");
            }
        }
    }

    pub(crate) fn on_agent_detached(&mut self, conn: u64) {
        self.pending.remove(&conn);
        self.peers.remove(&conn);
        let Some(id) = self.conns.remove(&conn) else {
            return;
        };
        if let Some(a) = self.agents.get_mut(&id) {
            a.link = None;
            if a.state == AgentState::Active {
                a.state = AgentState::Disconnected;
                tracing::warn!(agent_id = %id, "agent disconnected; waiting for it to come back");
            }
        }
        self.allocator.deactivate_agent(&id);
        self.rescind_agent_offers(&id);
    }

    /// Marks agents silent past the timeout unreachable.
    pub(crate) fn check_agents(&mut self, now: Time) {
        let timeout = self.config.agent_timeout;
        let lost: Vec<AgentId> = self
            .agents
            .values()
            .filter(|a| {
                matches!(
                    a.state,
                    AgentState::Active | AgentState::Disconnected | AgentState::Recovered
                ) && now.since(a.last_seen) > timeout
            })
            .map(|a| a.record.id.clone())
            .collect();
        for id in lost {
            self.mark_unreachable(&id);
        }
    }

    fn mark_unreachable(&mut self, id: &AgentId) {
        let Some(a) = self.agents.get_mut(id) else {
            return;
        };
        let was = a.state;
        a.state = AgentState::Unreachable;
        if let Some((conn, _)) = a.link.take() {
            self.conns.remove(&conn);
        }
        let since_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        a.record.unreachable_since_ms = Some(since_ms);
        let record = a.record.clone();
        if let Err(e) = self.registry.put_agent(&record) {
            tracing::error!(agent_id = %id, error = %e, "could not record agent as unreachable");
        }
        self.metrics.agents_unreachable += 1;
        if self.has_operators() {
            self.emit(crate::model::OperatorEvent::AgentRemoved(id.clone()));
        }
        tracing::warn!(agent_id = %id, from = ?was, "agent unreachable: silent past the timeout");
        self.rescind_agent_offers(id);
        self.allocator.remove_agent(id);
        let on_agent = self.live_tasks_on(id);
        let mut told: BTreeSet<FrameworkId> = BTreeSet::new();
        for (fw, task) in on_agent {
            let state = self.lost_state(&fw, TaskState::TaskUnreachable);
            self.master_update(
                &fw,
                &task,
                state,
                Reason::ReasonAgentRemoved,
                "the agent is unreachable",
                true,
            );
            told.insert(fw);
        }
        for fw in told {
            self.send_event(
                &fw,
                crate::model::Event::Failure {
                    agent_id: id.clone(),
                },
            );
        }
    }

    /// Sends a message to an agent if it is connected.
    pub(crate) fn send_to_agent(&mut self, id: &AgentId, msg: pb::master_message::Msg) -> bool {
        let Some(a) = self.agents.get(id) else {
            return false;
        };
        let Some((conn, link)) = &a.link else {
            return false;
        };
        if link.send(reply(msg)) {
            return true;
        }
        let conn = *conn;
        self.on_agent_detached(conn);
        false
    }

    /// Builds a master-generated status update (no uuid: nothing to acknowledge).
    pub(crate) fn master_status(
        &self,
        fw: &FrameworkId,
        task: &TaskId,
        agent: Option<&AgentId>,
        state: TaskState,
        reason: Reason,
        message: &str,
    ) -> TaskStatus {
        TaskStatus {
            task_id: task.clone(),
            state,
            reason: Some(reason),
            message: Some(message.to_string()),
            source: tessera_types::UpdateSource::SourceMaster,
            agent_id: agent.cloned(),
            framework_id: Some(fw.clone()),
            uuid: None,
            timestamp: wall_seconds(),
            exit_code: None,
            healthy: None,
        }
    }
}

pub(crate) fn wall_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
