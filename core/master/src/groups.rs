//! Task groups in the master (Mesos LAUNCH_GROUP with the default executor).
//!
//! A group is validated as a whole inside ACCEPT, after the offers: its executor (type
//! DEFAULT, minimum resources, the caller's framework), every task (as for LAUNCH, plus: on
//! the offers' agent, ids unused by the framework), and its resources — the tasks', plus
//! the executor's when the executor is new on that agent — within what is left of the
//! offers. An executor id already running on the agent must come with the same
//! `ExecutorInfo`; its new tasks join it without paying for it again. Anything wrong ends
//! every task of the group TASK_ERROR with REASON_TASK_GROUP_INVALID and the reason, and
//! nothing of it is taken from the offers.
//!
//! A valid group reaches the agent as one `RunTaskGroup`. The executor ([`ExecutorEntry`])
//! holds its resources until its last task ends (as a Mesos executor does until it exits),
//! and is rebuilt from an agent's report when the agent re-registers.

use std::collections::{BTreeMap, BTreeSet};

use tessera_api::convert::{executor_to_pb, task_to_pb};
use tessera_api::pb;
use tessera_types::{
    AgentId, ExecutorId, ExecutorInfo, FrameworkId, Reason, Resources, Role, TaskGroup, TaskId,
    TaskInfo, TaskState, TaskStatus,
};

use crate::actor::Master;
use crate::model::{Event, ExecutorEntry, ExecutorView, OperatorEvent, TaskEntry};

/// The event for an update of a task run by `executor` (a task of a group), or by its own
/// command executor (`None`).
pub(crate) fn status_event(status: TaskStatus, executor: Option<ExecutorId>) -> Event {
    match executor {
        Some(executor_id) => Event::ExecutorUpdate {
            executor_id,
            status,
        },
        None => Event::Update(status),
    }
}

/// What a framework is told a group needs, for error messages.
const FIELD: &str = "launch_group";

impl Master {
    /// The executor of the framework's task `task`, when it is a task of a group.
    pub(crate) fn executor_of(&self, fw: &FrameworkId, task: &TaskId) -> Option<ExecutorId> {
        self.tasks
            .get(&(fw.clone(), task.clone()))
            .and_then(|t| t.info.executor_id.clone())
    }

    /// Checks a LAUNCH_GROUP against the master's state and what is left of the offers (see
    /// the module doc). On success takes what the group needs from `remaining` and returns
    /// the role it came from; on failure nothing is taken and the reason names the field.
    pub(crate) fn validate_group(
        &self,
        fw: &FrameworkId,
        agent: &AgentId,
        g: &TaskGroup,
        seen: &BTreeSet<TaskId>,
        remaining: &mut BTreeMap<Role, Resources>,
    ) -> std::result::Result<Role, String> {
        g.validate(FIELD).map_err(|e| e.to_string())?;
        if let Some(f) = &g.executor.framework_id
            && f != fw
        {
            return Err(format!(
                "{FIELD}.executor.framework_id: '{f}' is not the framework launching the group ('{fw}')"
            ));
        }
        for (i, t) in g.tasks.iter().enumerate() {
            let field = format!("{FIELD}.task_group.tasks[{i}]");
            if &t.agent_id != agent {
                return Err(format!(
                    "{field}.agent_id: '{}' is not the agent of the offers ('{agent}')",
                    t.agent_id
                ));
            }
            if seen.contains(&t.task_id)
                || self.tasks.contains_key(&(fw.clone(), t.task_id.clone()))
            {
                return Err(format!(
                    "{field}.task_id: '{}' is already in use by this framework",
                    t.task_id
                ));
            }
        }
        let key = (fw.clone(), agent.clone(), g.executor.executor_id.clone());
        let running = match self.executors.get(&key) {
            None => false,
            Some(e) => {
                if !same_executor(&e.info, &g.executor, fw) {
                    return Err(format!(
                        "{FIELD}.executor: executor '{}' already runs on agent '{agent}' with a different ExecutorInfo; a reused executor_id must carry the same ExecutorInfo",
                        g.executor.executor_id
                    ));
                }
                true
            }
        };
        let needed = if running {
            g.task_resources()
        } else {
            g.total_resources()
        }
        .map_err(|e| format!("{FIELD}: {e}"))?;
        let offered: BTreeSet<&str> = remaining.values().flat_map(|r| r.names()).collect();
        if let Some(unknown) = needed.names().into_iter().find(|n| !offered.contains(n)) {
            return Err(format!(
                "{FIELD}: '{unknown}' is not a resource the offers contain"
            ));
        }
        for (role, rest) in remaining.iter_mut() {
            if running && self.executors.get(&key).is_some_and(|e| &e.role != role) {
                continue;
            }
            if rest.contains(&needed) {
                rest.sub_assign(&needed).map_err(|e| e.to_string())?;
                return Ok(role.clone());
            }
        }
        let what = if running {
            "the tasks' resources"
        } else {
            "the executor's and the tasks' resources"
        };
        Err(format!(
            "{FIELD}: {what} ({needed}) are more than what is left of the offers"
        ))
    }

    /// Ends every task of an invalid group TASK_ERROR (REASON_TASK_GROUP_INVALID) with `why`.
    pub(crate) fn reject_group(
        &mut self,
        fw: &FrameworkId,
        agent: Option<&AgentId>,
        task_ids: &[TaskId],
        why: &str,
    ) {
        tracing::info!(framework_id = %fw, reason = %why, tasks = task_ids.len(), "invalid task group");
        for tid in task_ids {
            self.metrics.tasks_invalid += 1;
            let status = self.master_status(
                fw,
                tid,
                agent,
                TaskState::TaskError,
                Reason::ReasonTaskGroupInvalid,
                why,
            );
            self.send_event(fw, Event::Update(status));
        }
    }

    /// Records a validated group (its tasks, and its executor unless it already runs) and
    /// sends it to the agent as one `RunTaskGroup`. If the agent cannot be reached, every
    /// task ends TASK_DROPPED (TASK_LOST) and the resources come back.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn launch_group(
        &mut self,
        fw: &FrameworkId,
        agent: &AgentId,
        group: TaskGroup,
        role: Role,
        framework_name: &str,
        user: &str,
        killing_state: bool,
    ) {
        let TaskGroup {
            mut executor,
            tasks,
        } = group;
        executor.framework_id = Some(fw.clone());
        let key = (fw.clone(), agent.clone(), executor.executor_id.clone());
        let ids: BTreeSet<TaskId> = tasks.iter().map(|t| t.task_id.clone()).collect();
        match self.executors.get_mut(&key) {
            Some(e) => e.tasks.extend(ids.iter().cloned()),
            None => {
                self.track(agent, &executor.resources, true, true);
                self.executors.insert(
                    key,
                    ExecutorEntry {
                        info: executor.clone(),
                        role: role.clone(),
                        tasks: ids.clone(),
                    },
                );
            }
        }
        for t in &tasks {
            self.metrics.tasks_launched += 1;
            let entry = std::sync::Arc::new(TaskEntry {
                info: t.clone(),
                framework_id: fw.clone(),
                role: role.clone(),
                state: TaskState::TaskStaging,
                last_status: None,
                recovered: false,
                counted: true,
            });
            self.tasks
                .insert((fw.clone(), t.task_id.clone()), entry.clone());
            self.track(agent, &t.resources, true, true);
            if self.has_operators() {
                self.emit(OperatorEvent::TaskAdded(Box::new(entry.as_ref().clone())));
            }
        }
        tracing::info!(framework_id = %fw, executor_id = %executor.executor_id, agent_id = %agent,
            tasks = tasks.len(), "launching task group");
        let sent = self.send_to_agent(
            agent,
            pb::master_message::Msg::RunTaskGroup(pb::RunTaskGroup {
                framework_id: fw.to_string(),
                framework_name: framework_name.to_string(),
                user: user.to_string(),
                executor: Some(executor_to_pb(&executor)),
                tasks: tasks.iter().map(task_to_pb).collect(),
                task_killing_state: killing_state,
            }),
        );
        if !sent {
            let state = self.lost_state(fw, TaskState::TaskDropped);
            for t in &tasks {
                self.metrics.tasks_dropped += 1;
                self.master_update(
                    fw,
                    &t.task_id,
                    state,
                    Reason::ReasonAgentDisconnected,
                    "the agent disconnected before the task group could be sent",
                    false,
                );
            }
        }
    }

    /// A task ended and is being forgotten: if a default executor ran it, the executor
    /// lets go of it, and once its last task is gone its resources leave the agent's usage
    /// (and go back to the allocator with `recover`).
    pub(crate) fn executor_task_ended(&mut self, fw: &FrameworkId, info: &TaskInfo, recover: bool) {
        let Some(exec) = &info.executor_id else {
            return;
        };
        let key = (fw.clone(), info.agent_id.clone(), exec.clone());
        let Some(e) = self.executors.get_mut(&key) else {
            return;
        };
        e.tasks.remove(&info.task_id);
        // A custom executor outlives its tasks: it is gone when the agent says it exited.
        if !e.tasks.is_empty() || e.info.is_custom() {
            return;
        }
        let Some(e) = self.executors.remove(&key) else {
            return;
        };
        let agent = &info.agent_id;
        self.track(agent, &e.info.resources, true, false);
        tracing::info!(framework_id = %fw, executor_id = %exec, agent_id = %agent,
            "the executor's last task ended; its resources are free");
        if recover {
            let now = self.now();
            if let Err(err) =
                self.allocator
                    .recover(fw, &e.role, agent, &e.info.resources, None, now)
            {
                tracing::debug!(framework_id = %fw, executor_id = %exec, error = %err,
                    "executor resources were not tracked by the allocator");
            }
        }
    }

    /// Re-registration: a live task the agent reports runs in `info`'s executor. Joins it,
    /// creating (and counting) the executor when the master does not know it (it restarted).
    pub(crate) fn adopt_executor(
        &mut self,
        fw: &FrameworkId,
        agent: &AgentId,
        mut info: ExecutorInfo,
        role: &Role,
        task: &TaskId,
    ) {
        info.framework_id = Some(fw.clone());
        let key = (fw.clone(), agent.clone(), info.executor_id.clone());
        if let Some(e) = self.executors.get_mut(&key) {
            e.tasks.insert(task.clone());
            return;
        }
        self.track(agent, &info.resources, true, true);
        self.executors.insert(
            key,
            ExecutorEntry {
                info,
                role: role.clone(),
                tasks: BTreeSet::from([task.clone()]),
            },
        );
    }

    /// What the default executors on `agent` hold, per (framework, role), for the allocator.
    pub(crate) fn executors_used_on(&self, agent: &AgentId) -> Vec<(FrameworkId, Role, Resources)> {
        self.executors
            .iter()
            .filter(|((_, a, _), _)| a == agent)
            .map(|((f, _, _), e)| (f.clone(), e.role.clone(), e.info.resources.clone()))
            .collect()
    }

    pub(crate) fn executor_views(&self) -> Vec<ExecutorView> {
        self.executors
            .iter()
            .map(|((f, a, _), e)| ExecutorView {
                framework_id: f.clone(),
                agent_id: a.clone(),
                info: e.info.clone(),
                role: e.role.clone(),
                tasks: e.tasks.iter().cloned().collect(),
            })
            .collect()
    }
}

/// Whether a group's `ExecutorInfo` is the one already running (a missing `framework_id`
/// means the caller's).
fn same_executor(running: &ExecutorInfo, new: &ExecutorInfo, fw: &FrameworkId) -> bool {
    let mut new = new.clone();
    new.framework_id.get_or_insert_with(|| fw.clone());
    running.same_as(&new)
}
