//! The actor's side of maintenance: each change is decided by [`super::schedule`], recorded
//! in the registry, and only then applied — agents' unavailability recomputed (their offers
//! and inverse offers renewed), agents on machines brought down removed (their tasks end
//! TASK_GONE_BY_OPERATOR for PARTITION_AWARE frameworks, TASK_LOST for others, as when an
//! operator marks an agent gone, and each framework gets FAILURE for the agent).

use std::collections::BTreeSet;

use tessera_api::pb;
use tessera_types::{AgentId, FrameworkId, Reason, TaskState};
use tokio::sync::oneshot;

use super::schedule::{AgentMaintenance, MachineId, Maintenance, Schedule};
use crate::actor::{Master, Reply};
use crate::error::Result;
use crate::model::{AgentState, Event, InverseAnswer, OperatorEvent};

/// What the maintenance calls ask of the actor. `field` is where the request's schedule or
/// machine list sits in the caller's message, so errors name the path the caller sent
/// (empty when it is the whole body).
pub enum MaintenanceCommand {
    UpdateSchedule {
        field: String,
        schedule: Schedule,
        reply: Reply<()>,
    },
    Start {
        field: String,
        machines: Vec<MachineId>,
        reply: Reply<()>,
    },
    Stop {
        field: String,
        machines: Vec<MachineId>,
        reply: Reply<()>,
    },
    Schedule {
        reply: oneshot::Sender<Schedule>,
    },
    Status {
        reply: oneshot::Sender<MaintenanceStatus>,
    },
}

/// Mesos `maintenance.ClusterStatus`.
#[derive(Debug, Clone, PartialEq)]
pub struct MaintenanceStatus {
    /// In schedule order.
    pub draining: Vec<DrainingMachine>,
    pub down: Vec<MachineId>,
}

/// A DRAINING machine and the last answer of each framework asked about its agents.
#[derive(Debug, Clone, PartialEq)]
pub struct DrainingMachine {
    pub id: MachineId,
    pub statuses: Vec<(FrameworkId, InverseAnswer)>,
}

impl Master {
    pub(crate) fn on_maintenance(&mut self, cmd: MaintenanceCommand) {
        match cmd {
            MaintenanceCommand::UpdateSchedule {
                field,
                schedule,
                reply,
            } => {
                let r = self
                    .maintenance
                    .update_schedule(&field, schedule)
                    .map_err(Into::into)
                    .and_then(|next| self.commit_maintenance(next));
                let _ = reply.send(r);
            }
            MaintenanceCommand::Start {
                field,
                machines,
                reply,
            } => {
                let r = self
                    .maintenance
                    .start(&field, &machines)
                    .map_err(Into::into)
                    .and_then(|next| self.commit_maintenance(next));
                let _ = reply.send(r);
            }
            MaintenanceCommand::Stop {
                field,
                machines,
                reply,
            } => {
                let r = self
                    .maintenance
                    .stop(&field, &machines)
                    .map_err(Into::into)
                    .and_then(|next| self.commit_maintenance(next));
                let _ = reply.send(r);
            }
            MaintenanceCommand::Schedule { reply } => {
                let _ = reply.send(self.maintenance.schedule.clone());
            }
            MaintenanceCommand::Status { reply } => {
                let _ = reply.send(self.maintenance_status());
            }
        }
    }

    /// Records `next` and makes it the master's: agents on machines now DOWN are removed,
    /// every other agent takes its machine's unavailability. A registry failure changes
    /// nothing.
    fn commit_maintenance(&mut self, next: Maintenance) -> Result<()> {
        self.registry.put_maintenance(&next)?;
        tracing::info!(
            windows = next.schedule.windows.len(),
            down = next.down.len(),
            "maintenance updated"
        );
        self.maintenance = next;
        let down: Vec<AgentId> = self
            .agents
            .iter()
            .filter(|(_, a)| a.state != AgentState::Gone)
            .filter(|(_, a)| {
                matches!(
                    self.maintenance.agent(&a.record.hostname, a.ip),
                    AgentMaintenance::Down(_)
                )
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in down {
            self.remove_for_maintenance(&id);
        }
        self.apply_schedule();
        Ok(())
    }

    /// The DOWN machine an agent reporting `hostname` from `ip` is on, if any.
    pub(crate) fn machine_down(
        &self,
        hostname: &str,
        ip: Option<std::net::IpAddr>,
    ) -> Option<MachineId> {
        match self.maintenance.agent(hostname, ip) {
            AgentMaintenance::Down(m) => Some(m),
            _ => None,
        }
    }

    /// The unavailability an agent's machine gives it (its window's, while DRAINING).
    pub(crate) fn scheduled_unavailability(
        &self,
        hostname: &str,
        ip: Option<std::net::IpAddr>,
    ) -> Option<crate::model::Unavailability> {
        match self.maintenance.agent(hostname, ip) {
            AgentMaintenance::Draining(u) => Some(u),
            _ => None,
        }
    }

    /// Gives every agent its machine's unavailability. Agents whose unavailability changed
    /// lose their offers (new ones carry the new one) and their inverse offers; frameworks
    /// with tasks on unavailable agents are asked.
    pub(crate) fn apply_schedule(&mut self) {
        let wanted: Vec<(AgentId, Option<crate::model::Unavailability>)> = self
            .agents
            .iter()
            .filter(|(_, a)| a.state != AgentState::Gone)
            .map(|(id, a)| {
                (
                    id.clone(),
                    self.scheduled_unavailability(&a.record.hostname, a.ip),
                )
            })
            .collect();
        for (id, want) in wanted {
            let Some(a) = self.agents.get_mut(&id) else {
                continue;
            };
            if a.scheduled == want {
                continue;
            }
            let before = a.unavailability();
            a.scheduled = want;
            if before != a.unavailability() {
                tracing::info!(agent_id = %id, unavailability = ?want, "agent's maintenance changed");
                self.rescind_agent_offers(&id);
                self.unavailability_changed(&id);
            }
        }
        let now = self.now();
        self.send_inverse_offers(now);
    }

    /// Removes an agent whose machine was brought down: it is told to shut its frameworks
    /// down, its tasks end, its frameworks get FAILURE, and it is forgotten (registry
    /// included) so that it comes back, once its machine is up, as a new agent.
    fn remove_for_maintenance(&mut self, id: &AgentId) {
        let frameworks: BTreeSet<FrameworkId> = self
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
        for (fw, task) in self.live_tasks_on(id) {
            let state = self.lost_state(&fw, TaskState::TaskGoneByOperator);
            self.master_update(
                &fw,
                &task,
                state,
                Reason::ReasonAgentRemovedByOperator,
                "the agent's machine was brought down for maintenance",
                true,
            );
        }
        for fw in frameworks {
            self.send_event(
                &fw,
                Event::Failure {
                    agent_id: id.clone(),
                },
            );
        }
        self.unavailability_changed(id);
        if let Err(e) = self.registry.remove_agent(id) {
            tracing::error!(agent_id = %id, error = %e,
                "could not forget an agent removed for maintenance; its machine being DOWN still keeps it out");
        }
        if let Some(a) = self.agents.remove(id)
            && let Some((conn, _)) = a.link
        {
            self.conns.remove(&conn);
        }
        if self.has_operators() {
            self.emit(OperatorEvent::AgentRemoved(id.clone()));
        }
        tracing::warn!(agent_id = %id, "agent removed: its machine was brought down for maintenance");
    }

    /// Draining machines with the answers from frameworks about their agents, and down
    /// machines.
    pub(crate) fn maintenance_status(&self) -> MaintenanceStatus {
        let draining = self
            .maintenance
            .draining()
            .map(|m| {
                let agents: BTreeSet<&AgentId> = self
                    .agents
                    .iter()
                    .filter(|(_, a)| m.covers(&a.record.hostname, a.ip))
                    .map(|(id, _)| id)
                    .collect();
                DrainingMachine {
                    id: m.clone(),
                    statuses: self
                        .inverse_answers
                        .iter()
                        .filter(|((a, _), _)| agents.contains(a))
                        .map(|((_, fw), ans)| (fw.clone(), *ans))
                        .collect(),
                }
            })
            .collect();
        MaintenanceStatus {
            draining,
            down: self.maintenance.down.iter().cloned().collect(),
        }
    }
}
