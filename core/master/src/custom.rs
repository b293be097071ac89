//! Custom executors in the master (Mesos `ExecutorInfo` of type CUSTOM, named by
//! `TaskInfo.executor` in LAUNCH).
//!
//! The executor is tracked like a default executor ([`crate::model::ExecutorEntry`], keyed
//! by framework, agent and executor id): the first task that names it pays for the
//! executor's resources as well as its own, later ones join it, and a reused executor id
//! must carry the same `ExecutorInfo`. Unlike the default executor it outlives its tasks:
//! its resources stay in use until the agent reports that its process ended
//! (`ExecutorExited`), and the framework then gets a FAILURE event with the executor id and
//! its exit status, as from Mesos.
//!
//! Messages go both ways through the agent: scheduler MESSAGE → `framework_message` to the
//! agent → MESSAGE event on the executor's stream; executor MESSAGE → `executor_message`
//! from the agent → MESSAGE event to the scheduler. Scheduler SHUTDOWN asks the agent to
//! shut the executor down (SHUTDOWN event, then a kill after the grace period).

use tessera_api::pb;
use tessera_types::{AgentId, ExecutorId, ExecutorInfo, FrameworkId, Resources, TaskId};

use crate::actor::Master;
use crate::error::{MasterError, Result};
use crate::model::Event;

/// What a framework asks of its custom executor.
#[derive(Debug, Clone)]
pub enum ExecutorAction {
    /// Scheduler MESSAGE: deliver these bytes.
    Message(Vec<u8>),
    /// Scheduler SHUTDOWN: the executor is to end, and its tasks with it.
    Shutdown,
}

/// Custom executors not yet recorded but already promised within one ACCEPT (their first
/// task was validated, its launch comes after every operation is checked).
pub(crate) type PendingExecutors = std::collections::BTreeMap<ExecutorId, ExecutorInfo>;

impl Master {
    /// What a task of a custom executor needs from the offers: its own resources, plus the
    /// executor's when the executor is new on `agent` (neither running nor promised earlier
    /// in this ACCEPT). Checks that a reused executor id carries the same `ExecutorInfo`
    /// and that the executor belongs to the caller; errors name the field under `field`.
    pub(crate) fn custom_task_needs(
        &self,
        fw: &FrameworkId,
        agent: &AgentId,
        task: &tessera_types::TaskInfo,
        exec: &ExecutorInfo,
        pending: &PendingExecutors,
        field: &str,
    ) -> std::result::Result<(Resources, bool), String> {
        if let Some(f) = &exec.framework_id
            && f != fw
        {
            return Err(format!(
                "{field}.executor.framework_id: '{f}' is not the framework launching the task ('{fw}')"
            ));
        }
        let mut want = exec.clone();
        want.framework_id = Some(fw.clone());
        let key = (fw.clone(), agent.clone(), exec.executor_id.clone());
        let known = self
            .executors
            .get(&key)
            .map(|e| &e.info)
            .or_else(|| pending.get(&exec.executor_id));
        match known {
            Some(info) if *info != want => Err(format!(
                "{field}.executor: executor '{}' already runs on agent '{agent}' with a different ExecutorInfo; a reused executor_id must carry the same ExecutorInfo",
                exec.executor_id
            )),
            Some(_) => Ok((task.resources.clone(), false)),
            None => task
                .resources
                .checked_add(&exec.resources)
                .map(|r| (r, true))
                .map_err(|e| format!("{field}.executor.resources: {e}")),
        }
    }

    /// Records that a validated task of a custom executor is being launched: the executor
    /// is created (and its resources counted) by its first task.
    pub(crate) fn custom_task_launched(
        &mut self,
        fw: &FrameworkId,
        agent: &AgentId,
        exec: &ExecutorInfo,
        role: &tessera_types::Role,
        task: &TaskId,
    ) {
        let mut info = exec.clone();
        info.framework_id = Some(fw.clone());
        let key = (fw.clone(), agent.clone(), info.executor_id.clone());
        if let Some(e) = self.executors.get_mut(&key) {
            e.tasks.insert(task.clone());
            return;
        }
        tracing::info!(framework_id = %fw, executor_id = %info.executor_id, agent_id = %agent,
            "starting a custom executor");
        self.track(agent, &info.resources, true, true);
        self.executors.insert(
            key,
            crate::model::ExecutorEntry {
                info,
                role: role.clone(),
                tasks: std::collections::BTreeSet::from([task.clone()]),
            },
        );
    }

    /// The agent says a custom executor's process ended: its resources are free and the
    /// framework gets FAILURE with the executor id and exit status.
    pub(crate) fn on_executor_exited(&mut self, agent: &AgentId, x: pb::ExecutorExited) {
        let (Ok(fw), Ok(exec)) = (
            FrameworkId::new(x.framework_id),
            ExecutorId::new(x.executor_id),
        ) else {
            return tracing::warn!(agent_id = %agent, "ignoring ExecutorExited with invalid ids");
        };
        let key = (fw.clone(), agent.clone(), exec.clone());
        if let Some(e) = self.executors.remove(&key) {
            self.track(agent, &e.info.resources, true, false);
            let now = self.now();
            if let Err(err) =
                self.allocator
                    .recover(&fw, &e.role, agent, &e.info.resources, None, now)
            {
                tracing::debug!(framework_id = %fw, executor_id = %exec, error = %err,
                    "executor resources were not tracked by the allocator");
            }
        }
        tracing::info!(framework_id = %fw, executor_id = %exec, agent_id = %agent,
            exit_code = ?x.exit_code, message = %x.message, "custom executor exited");
        self.send_event(
            &fw,
            Event::ExecutorFailure {
                agent_id: agent.clone(),
                executor_id: exec,
                status: x.exit_code,
            },
        );
    }

    /// An executor's message for its framework (dropped, as in Mesos, when the framework
    /// is not connected).
    pub(crate) fn on_executor_message(&mut self, agent: &AgentId, m: pb::ExecutorMessage) {
        let (Ok(fw), Ok(exec)) = (
            FrameworkId::new(m.framework_id),
            ExecutorId::new(m.executor_id),
        ) else {
            return tracing::warn!(agent_id = %agent, "ignoring ExecutorMessage with invalid ids");
        };
        tracing::debug!(framework_id = %fw, executor_id = %exec, agent_id = %agent,
            bytes = m.data.len(), "executor message for its framework");
        self.send_event(
            &fw,
            Event::Message {
                agent_id: agent.clone(),
                executor_id: exec,
                data: m.data,
            },
        );
    }

    /// Scheduler MESSAGE / SHUTDOWN for one of the framework's executors on `agent`. An
    /// agent the master does not know is an error (404 upstream); an agent that is known
    /// but not connected drops the message, as Mesos does (delivery is best effort).
    pub(crate) fn send_to_executor(
        &mut self,
        fw: &FrameworkId,
        agent: &AgentId,
        exec: &ExecutorId,
        action: ExecutorAction,
    ) -> Result<()> {
        self.framework_known(fw)?;
        if !self.agents.contains_key(agent) {
            return Err(MasterError::UnknownAgent(agent.clone()));
        }
        let msg = match action {
            ExecutorAction::Message(data) => {
                pb::master_message::Msg::FrameworkMessage(pb::ExecutorMessage {
                    framework_id: fw.to_string(),
                    executor_id: exec.to_string(),
                    data,
                })
            }
            ExecutorAction::Shutdown => {
                tracing::info!(framework_id = %fw, executor_id = %exec, agent_id = %agent,
                    "framework asked its executor to shut down");
                pb::master_message::Msg::ShutdownExecutor(pb::ShutdownExecutor {
                    framework_id: fw.to_string(),
                    executor_id: exec.to_string(),
                })
            }
        };
        if !self.send_to_agent(agent, msg) {
            tracing::info!(framework_id = %fw, executor_id = %exec, agent_id = %agent,
                "agent not connected; message to the executor dropped");
        }
        Ok(())
    }
}
