//! [`MasterHandle`]: the async, cloneable front door to the master actor. The Mesos v1
//! scheduler/operator HTTP API is a thin layer over these calls.

use tessera_types::{AgentId, Filters, FrameworkId, FrameworkInfo, OfferId, Role, TaskId};
use tokio::sync::{mpsc, oneshot};

use crate::actor::{Command, Reply};
use crate::error::{MasterError, Result};
use crate::maintenance::{MachineId, MaintenanceCommand, MaintenanceStatus, Schedule};
use crate::model::{Event, MasterState, Operation};

#[derive(Clone)]
pub struct MasterHandle {
    tx: mpsc::Sender<Command>,
}

/// A subscribed framework: its id and its ordered event stream.
pub struct Subscription {
    pub framework_id: FrameworkId,
    pub events: mpsc::Receiver<Event>,
}

impl MasterHandle {
    pub fn new(tx: mpsc::Sender<Command>) -> Self {
        MasterHandle { tx }
    }

    pub(crate) fn sender(&self) -> mpsc::Sender<Command> {
        self.tx.clone()
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| MasterError::Stopped)?;
        rx.await.map_err(|_| MasterError::Stopped)?
    }

    pub async fn subscribe(&self, info: FrameworkInfo) -> Result<Subscription> {
        self.subscribe_suppressed(info, Vec::new()).await
    }

    /// SUBSCRIBE starting suppressed in `suppressed` roles.
    pub async fn subscribe_suppressed(
        &self,
        info: FrameworkInfo,
        suppressed: Vec<Role>,
    ) -> Result<Subscription> {
        let (framework_id, events) = self
            .call(|reply| Command::Subscribe {
                info,
                suppressed,
                reply,
            })
            .await?;
        Ok(Subscription {
            framework_id,
            events,
        })
    }

    pub async fn teardown(&self, framework: FrameworkId) -> Result<()> {
        self.call(|reply| Command::Teardown { framework, reply })
            .await
    }

    pub async fn accept(
        &self,
        framework: FrameworkId,
        offers: Vec<OfferId>,
        operations: Vec<Operation>,
        filters: Filters,
    ) -> Result<()> {
        self.call(|reply| Command::Accept {
            framework,
            offers,
            operations,
            filters,
            reply,
        })
        .await
    }

    pub async fn decline(
        &self,
        framework: FrameworkId,
        offers: Vec<OfferId>,
        filters: Filters,
    ) -> Result<()> {
        self.call(|reply| Command::Decline {
            framework,
            offers,
            filters,
            reply,
        })
        .await
    }

    pub async fn acknowledge(
        &self,
        framework: FrameworkId,
        agent: AgentId,
        task: TaskId,
        uuid: String,
    ) -> Result<()> {
        self.call(|reply| Command::Acknowledge {
            framework,
            agent,
            task,
            uuid,
            reply,
        })
        .await
    }

    /// Scheduler MESSAGE (`ExecutorAction::Message`) or SHUTDOWN for the framework's custom
    /// executor `executor` on `agent`.
    pub async fn send_to_executor(
        &self,
        framework: FrameworkId,
        agent: tessera_types::AgentId,
        executor: tessera_types::ExecutorId,
        action: crate::custom::ExecutorAction,
    ) -> Result<()> {
        self.call(|reply| Command::ToExecutor {
            framework,
            agent,
            executor,
            action,
            reply,
        })
        .await
    }

    pub async fn kill(&self, framework: FrameworkId, task: TaskId) -> Result<()> {
        self.kill_with_grace(framework, task, None).await
    }

    /// KILL with a grace period overriding the task's own kill policy.
    pub async fn kill_with_grace(
        &self,
        framework: FrameworkId,
        task: TaskId,
        grace: Option<std::time::Duration>,
    ) -> Result<()> {
        self.call(|reply| Command::Kill {
            framework,
            task,
            grace,
            reply,
        })
        .await
    }

    /// UPDATE_FRAMEWORK for a subscribed framework (`info.id` names it).
    pub async fn update_framework(&self, info: FrameworkInfo, suppressed: Vec<Role>) -> Result<()> {
        self.call(|reply| Command::UpdateFramework {
            info,
            suppressed,
            reply,
        })
        .await
    }

    /// RECONCILE: each task with the agent the framework believes runs it (if known);
    /// empty asks about every task of the framework.
    pub async fn reconcile(
        &self,
        framework: FrameworkId,
        tasks: Vec<(TaskId, Option<AgentId>)>,
    ) -> Result<()> {
        self.call(|reply| Command::Reconcile {
            framework,
            tasks,
            reply,
        })
        .await
    }

    /// ACCEPT_INVERSE_OFFERS (`accept = true`) or DECLINE_INVERSE_OFFERS; `filters` keeps
    /// the next inverse offer for the same agent away.
    pub async fn answer_inverse_offers(
        &self,
        framework: FrameworkId,
        inverse_offers: Vec<OfferId>,
        accept: bool,
        filters: Filters,
    ) -> Result<()> {
        self.call(|reply| Command::AnswerInverseOffers {
            framework,
            inverse_offers,
            accept,
            filters,
            reply,
        })
        .await
    }

    /// ACKNOWLEDGE_OPERATION_STATUS: the framework handled the status `uuid` of operation
    /// `operation` on `agent`.
    pub async fn acknowledge_operation(
        &self,
        framework: FrameworkId,
        agent: AgentId,
        operation: String,
        uuid: uuid::Uuid,
    ) -> Result<()> {
        self.call(|reply| Command::AcknowledgeOperation {
            framework,
            agent,
            operation,
            uuid,
            reply,
        })
        .await
    }

    /// RECONCILE_OPERATIONS: each operation id with its agent, if known; empty asks about
    /// every operation the master keeps for the framework.
    pub async fn reconcile_operations(
        &self,
        framework: FrameworkId,
        operations: Vec<(String, Option<AgentId>)>,
    ) -> Result<()> {
        self.call(|reply| Command::ReconcileOperations {
            framework,
            operations,
            reply,
        })
        .await
    }

    pub async fn revive(&self, framework: FrameworkId, roles: Option<Vec<Role>>) -> Result<()> {
        self.call(|reply| Command::Revive {
            framework,
            roles,
            reply,
        })
        .await
    }

    pub async fn suppress(&self, framework: FrameworkId, roles: Option<Vec<Role>>) -> Result<()> {
        self.call(|reply| Command::Suppress {
            framework,
            roles,
            reply,
        })
        .await
    }

    pub async fn set_weight(&self, role: Role, weight: f64) -> Result<()> {
        self.call(|reply| Command::SetWeight {
            role,
            weight,
            reply,
        })
        .await
    }

    /// A new agent connection (the gRPC layer, or simulated agents) with its outbound link.
    pub async fn agent_attached(
        &self,
        conn: u64,
        link: Box<dyn crate::link::AgentLink>,
        peer: Option<std::net::IpAddr>,
    ) -> Result<()> {
        self.tx
            .send(Command::AgentAttached { conn, link, peer })
            .await
            .map_err(|_| MasterError::Stopped)
    }

    /// A message that arrived on agent connection `conn`.
    pub async fn agent_message(&self, conn: u64, msg: tessera_api::pb::AgentMessage) -> Result<()> {
        self.tx
            .send(Command::AgentMessage { conn, msg })
            .await
            .map_err(|_| MasterError::Stopped)
    }

    /// Agent connection `conn` closed.
    pub async fn agent_detached(&self, conn: u64) -> Result<()> {
        self.tx
            .send(Command::AgentDetached { conn })
            .await
            .map_err(|_| MasterError::Stopped)
    }

    /// Sets a top-level role's quota (guarantees and limits); an empty quota removes it.
    pub async fn set_quota(&self, role: Role, quota: tessera_allocator::Quota) -> Result<()> {
        self.update_quota(role, quota, true).await
    }

    /// UPDATE_QUOTA: like [`MasterHandle::set_quota`], but refused (Conflict) when the role
    /// already consumes more than a new limit, unless `force`.
    pub async fn update_quota(
        &self,
        role: Role,
        quota: tessera_allocator::Quota,
        force: bool,
    ) -> Result<()> {
        self.call(|reply| Command::SetQuota {
            role,
            quota,
            force,
            reply,
        })
        .await
    }

    /// The state now and every operator event after it, with nothing lost in between.
    pub async fn subscribe_operator(
        &self,
    ) -> Result<(
        MasterState,
        tokio::sync::broadcast::Receiver<crate::model::OperatorEvent>,
    )> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::SubscribeOperator { reply: tx })
            .await
            .map_err(|_| MasterError::Stopped)?;
        rx.await.map_err(|_| MasterError::Stopped)
    }

    /// Dynamically reserves (or, with `reserve = false`, unreserves) free resources on an
    /// agent; `resources` are given in their reserved form.
    pub async fn reservation(
        &self,
        agent: AgentId,
        resources: tessera_types::Resources,
        reserve: bool,
    ) -> Result<()> {
        self.call(|reply| Command::Reservation {
            agent,
            resources,
            reserve,
            reply,
        })
        .await
    }

    /// Creates (or, with `create = false`, destroys) persistent volumes on an agent from
    /// free reserved disk; `volumes` carry their `disk` info.
    pub async fn volumes(
        &self,
        agent: AgentId,
        volumes: tessera_types::Resources,
        create: bool,
    ) -> Result<()> {
        self.call(|reply| Command::Volumes {
            agent,
            volumes,
            create,
            reply,
        })
        .await
    }

    pub async fn agent_action(
        &self,
        agent: AgentId,
        action: crate::actor::AgentAction,
    ) -> Result<()> {
        self.call(|reply| Command::AgentAction {
            agent,
            action,
            reply,
        })
        .await
    }

    /// UPDATE_MAINTENANCE_SCHEDULE: `schedule` replaces the current one (Mesos' rules, see
    /// [`crate::maintenance::schedule`]); errors name paths under `field`, where the
    /// schedule sits in the caller's request ("" for a whole body).
    pub async fn update_maintenance_schedule(&self, field: &str, schedule: Schedule) -> Result<()> {
        let field = field.to_string();
        self.call(|reply| {
            Command::Maintenance(MaintenanceCommand::UpdateSchedule {
                field,
                schedule,
                reply,
            })
        })
        .await
    }

    /// START_MAINTENANCE: the machines (each in the schedule and DRAINING) go DOWN and
    /// their agents are removed. Errors name `field[i]`.
    pub async fn start_maintenance(&self, field: &str, machines: Vec<MachineId>) -> Result<()> {
        let field = field.to_string();
        self.call(|reply| {
            Command::Maintenance(MaintenanceCommand::Start {
                field,
                machines,
                reply,
            })
        })
        .await
    }

    /// STOP_MAINTENANCE: DOWN machines come UP and leave the schedule; their agents may
    /// register again. Errors name `field[i]`.
    pub async fn stop_maintenance(&self, field: &str, machines: Vec<MachineId>) -> Result<()> {
        let field = field.to_string();
        self.call(|reply| {
            Command::Maintenance(MaintenanceCommand::Stop {
                field,
                machines,
                reply,
            })
        })
        .await
    }

    /// The maintenance schedule in force.
    pub async fn maintenance_schedule(&self) -> Result<Schedule> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Maintenance(MaintenanceCommand::Schedule {
                reply: tx,
            }))
            .await
            .map_err(|_| MasterError::Stopped)?;
        rx.await.map_err(|_| MasterError::Stopped)
    }

    /// Draining machines (with the frameworks' answers to inverse offers) and down ones.
    pub async fn maintenance_status(&self) -> Result<MaintenanceStatus> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Maintenance(MaintenanceCommand::Status {
                reply: tx,
            }))
            .await
            .map_err(|_| MasterError::Stopped)?;
        rx.await.map_err(|_| MasterError::Stopped)
    }

    pub async fn state(&self) -> Result<MasterState> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::State { reply: tx })
            .await
            .map_err(|_| MasterError::Stopped)?;
        rx.await.map_err(|_| MasterError::Stopped)
    }
}
