//! Task lifecycle in the master: status updates from agents (forwarded to frameworks,
//! at-least-once; the agent retries until acknowledged), master-generated updates,
//! acknowledgements, kills and reconciliation. Updates of a task of a group name its
//! default executor ([`Event::ExecutorUpdate`]); a kill of one is sent like any other, and
//! the agent's default executor kills the whole group.

use tessera_api::pb;
use tessera_types::{AgentId, FrameworkId, Reason, TaskId, TaskState, TaskStatus};

use crate::actor::Master;
use crate::error::{MasterError, Result};
use crate::groups::status_event;
use crate::model::Event;

impl Master {
    /// An update from an agent. Forwarded every time it arrives (the agent resends until
    /// acknowledged); the task's resources go back to the allocator on its first terminal
    /// update.
    pub(crate) fn on_task_status(&mut self, fw: &FrameworkId, status: TaskStatus) {
        self.metrics.status_updates += 1;
        let key = (fw.clone(), status.task_id.clone());
        let executor = self.executor_of(fw, &status.task_id);
        if let Some(t) = self.tasks.get_mut(&key) {
            let t = std::sync::Arc::make_mut(t);
            let from = t.state;
            t.state = status.state;
            t.last_status = Some(status.clone());
            if from != status.state {
                tracing::info!(framework_id = %fw, task_id = %status.task_id,
                    from = from.name(), to = status.state.name(), "task state changed");
            }
            if status.state.is_terminal() {
                self.finish_task(fw, &status.task_id, true);
            }
            if self.has_operators() {
                self.emit(crate::model::OperatorEvent::TaskUpdated {
                    framework_id: fw.clone(),
                    status: status.clone(),
                    state: status.state,
                });
            }
        } else {
            tracing::debug!(framework_id = %fw, task_id = %status.task_id,
                "update for a task the master does not track; forwarding");
        }
        self.send_event(fw, status_event(status, executor));
    }

    /// Records a master-generated update and tells the framework. `agent_gone` means the
    /// allocator no longer tracks the agent, so nothing is recovered there.
    pub(crate) fn master_update(
        &mut self,
        fw: &FrameworkId,
        task: &TaskId,
        state: TaskState,
        reason: Reason,
        message: &str,
        agent_gone: bool,
    ) {
        let key = (fw.clone(), task.clone());
        let agent = self.tasks.get(&key).map(|t| t.info.agent_id.clone());
        let executor = self.executor_of(fw, task);
        let status = self.master_status(fw, task, agent.as_ref(), state, reason, message);
        if let Some(t) = self.tasks.get_mut(&key) {
            let t = std::sync::Arc::make_mut(t);
            t.state = state;
            t.last_status = Some(status.clone());
            if agent_gone {
                t.recovered = true;
            }
            if state.is_terminal() {
                self.finish_task(fw, task, !agent_gone);
            }
            if self.has_operators() {
                self.emit(crate::model::OperatorEvent::TaskUpdated {
                    framework_id: fw.clone(),
                    status: status.clone(),
                    state,
                });
            }
        }
        self.send_event(fw, status_event(status, executor));
    }

    /// A task reached a terminal state: give its resources back (once) and move it to the
    /// completed list.
    fn finish_task(&mut self, fw: &FrameworkId, task: &TaskId, recover: bool) {
        let key = (fw.clone(), task.clone());
        let Some(mut t) = self.tasks.remove(&key) else {
            return;
        };
        if t.counted {
            let (agent, res) = (t.info.agent_id.clone(), t.info.resources.clone());
            self.track(&agent, &res, true, false);
            std::sync::Arc::make_mut(&mut t).counted = false;
        }
        self.executor_task_ended(fw, &t.info, recover && !t.recovered);
        if recover && !t.recovered {
            let now = self.now();
            if let Err(e) =
                self.allocator
                    .recover(fw, &t.role, &t.info.agent_id, &t.info.resources, None, now)
            {
                tracing::debug!(framework_id = %fw, task_id = %task, error = %e,
                    "task resources were not tracked by the allocator");
            }
        }
        std::sync::Arc::make_mut(&mut t).recovered = true;
        self.completed.push_back(t);
        while self.completed.len() > self.config.max_completed_tasks {
            self.completed.pop_front();
        }
    }

    /// The framework handled an update: tell the agent so it sends the next one.
    pub(crate) fn acknowledge(
        &mut self,
        fw: &FrameworkId,
        agent: &AgentId,
        task: &TaskId,
        uuid: String,
    ) -> Result<()> {
        self.framework_known(fw)?;
        if !self.agents.contains_key(agent) {
            return Err(MasterError::UnknownAgent(agent.clone()));
        }
        if uuid.is_empty() || uuid.len() > 128 {
            return Err(tessera_types::Error::invalid("uuid", "must be 1-128 bytes").into());
        }
        self.send_to_agent(
            agent,
            pb::master_message::Msg::Acknowledge(pb::Acknowledge {
                framework_id: fw.to_string(),
                task_id: task.to_string(),
                uuid,
            }),
        );
        Ok(())
    }

    pub(crate) fn kill(
        &mut self,
        fw: &FrameworkId,
        task: &TaskId,
        grace: Option<std::time::Duration>,
    ) -> Result<()> {
        self.framework_known(fw)?;
        let key = (fw.clone(), task.clone());
        let Some(t) = self.tasks.get(&key) else {
            // Unknown to the master: say so, as Mesos does.
            let state = self.lost_state(fw, TaskState::TaskUnknown);
            let status = self.master_status(
                fw,
                task,
                None,
                state,
                Reason::ReasonReconciliation,
                "kill of a task the master does not know",
            );
            self.send_event(fw, Event::Update(status));
            return Ok(());
        };
        let agent = t.info.agent_id.clone();
        let grace = grace
            .map(|g| u64::try_from(g.as_millis()).unwrap_or(u64::MAX))
            .or(t.info.kill_grace_ms);
        let sent = self.send_to_agent(
            &agent,
            pb::master_message::Msg::KillTask(pb::KillTask {
                framework_id: fw.to_string(),
                task_id: task.to_string(),
                grace_ms: grace,
            }),
        );
        if !sent {
            tracing::info!(framework_id = %fw, task_id = %task, agent_id = %agent,
                "kill deferred: agent not connected; it will be reconciled when it returns");
        }
        Ok(())
    }

    /// Explicit (task ids given, each with the agent the framework believes runs it) or
    /// implicit (empty: all the framework's tasks) reconciliation. Each answer carries
    /// REASON_RECONCILIATION. As in Mesos, a task the master does not know on an agent
    /// recovered from the registry but not yet re-registered gets no answer (the agent may
    /// still bring it back); on an unreachable agent it is TASK_UNREACHABLE (or LOST).
    pub(crate) fn reconcile(
        &mut self,
        fw: &FrameworkId,
        tasks: Vec<(TaskId, Option<AgentId>)>,
    ) -> Result<()> {
        self.framework_known(fw)?;
        let ids: Vec<(TaskId, Option<AgentId>)> = if tasks.is_empty() {
            self.tasks
                .keys()
                .filter(|(f, _)| f == fw)
                .map(|(_, t)| (t.clone(), None))
                .collect()
        } else {
            tasks
        };
        for (id, agent) in ids {
            let key = (fw.clone(), id.clone());
            let mut executor = self.executor_of(fw, &id);
            let status = match self.tasks.get(&key) {
                Some(t) => {
                    let mut s = self.master_status(
                        fw,
                        &id,
                        Some(&t.info.agent_id),
                        t.state,
                        Reason::ReasonReconciliation,
                        "Reconciliation: Latest task state",
                    );
                    if let Some(last) = &t.last_status {
                        s.message = last.message.clone();
                        s.exit_code = last.exit_code;
                        s.healthy = last.healthy;
                    }
                    s
                }
                None => {
                    let done = self
                        .completed
                        .iter()
                        .rev()
                        .find(|t| &t.framework_id == fw && t.info.task_id == id);
                    if let Some(t) = done {
                        executor = t.info.executor_id.clone();
                    }
                    match done {
                        Some(t) => self.master_status(
                            fw,
                            &id,
                            Some(&t.info.agent_id),
                            t.state,
                            Reason::ReasonReconciliation,
                            "Reconciliation: Latest task state",
                        ),
                        None => {
                            let agent_state = agent
                                .as_ref()
                                .and_then(|a| self.agents.get(a))
                                .map(|a| a.state);
                            let (state, msg) = match agent_state {
                                Some(crate::model::AgentState::Recovered) => continue,
                                Some(crate::model::AgentState::Unreachable) => (
                                    self.lost_state(fw, TaskState::TaskUnreachable),
                                    "Reconciliation: Task is unknown and its agent is unreachable",
                                ),
                                _ => (
                                    self.lost_state(fw, TaskState::TaskUnknown),
                                    "Reconciliation: Task is unknown",
                                ),
                            };
                            self.master_status(
                                fw,
                                &id,
                                agent.as_ref(),
                                state,
                                Reason::ReasonReconciliation,
                                msg,
                            )
                        }
                    }
                }
            };
            self.send_event(fw, status_event(status, executor));
        }
        Ok(())
    }

    /// Delivers an event to a connected framework. A full or closed queue disconnects it
    /// (it re-subscribes and reconciles; agents keep retrying unacknowledged updates).
    pub(crate) fn send_event(&mut self, fw: &FrameworkId, event: Event) {
        let Some(f) = self.frameworks.get_mut(fw) else {
            return;
        };
        let Some(sink) = &f.sink else {
            return;
        };
        if sink.try_send(event).is_err() {
            tracing::warn!(framework_id = %fw, "framework event queue closed or full; disconnecting it");
            self.disconnect_framework(fw);
        }
    }
}
