//! Records the master keeps and the public shapes it hands out (events for frameworks, a
//! state snapshot for operators).

use serde::Serialize;
use tessera_allocator::{RoleInfo, Unmet};
use tessera_types::{
    AgentId, ExecutorId, ExecutorInfo, FrameworkId, FrameworkInfo, OfferId, Resources, Role,
    TaskGroup, TaskInfo, TaskState, TaskStatus, Time,
};

use crate::link::AgentLink;
use crate::registry::AgentRecord;

/// Where an agent (or the master) is: Mesos `DomainInfo.FaultDomain`. Agents in a region
/// other than the master's are offered only to REGION_AWARE frameworks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct FaultDomain {
    pub region: String,
    pub zone: String,
}

impl FaultDomain {
    /// Validates a domain from outside: region and zone are 1-255 bytes, no control
    /// characters. Errors name `field.region` / `field.zone`.
    pub fn new(field: &str, region: &str, zone: &str) -> tessera_types::Result<FaultDomain> {
        for (name, v) in [("region", region), ("zone", zone)] {
            if v.is_empty() || v.len() > 255 || v.chars().any(char::is_control) {
                return Err(tessera_types::Error::invalid(
                    format!("{field}.{name}"),
                    "must be 1-255 bytes without control characters",
                ));
            }
        }
        Ok(FaultDomain {
            region: region.to_string(),
            zone: zone.to_string(),
        })
    }
}

/// What a framework is offered: everything allocatable to `role` on one agent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Offer {
    pub id: OfferId,
    pub framework_id: FrameworkId,
    pub agent_id: AgentId,
    pub hostname: String,
    pub role: Role,
    pub resources: Resources,
    pub attributes: Vec<(String, String)>,
    /// Where the agent is reachable (Mesos `Offer.url`).
    pub agent_ip: Option<std::net::IpAddr>,
    pub agent_port: u32,
    /// The agent's fault domain, when it has one (Mesos `Offer.domain`).
    pub domain: Option<FaultDomain>,
    /// When the agent is going away, if it is (its machine is in the maintenance schedule).
    pub unavailability: Option<Unavailability>,
}

/// When an agent becomes unavailable and for how long (Mesos `Unavailability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Unavailability {
    /// Nanoseconds since the Unix epoch (Mesos `TimeInfo`, kept exact).
    pub start_ns: i64,
    /// `None`: until an operator brings the agent back.
    pub duration: Option<std::time::Duration>,
}

/// An inverse offer: the master asks a framework to give back what it holds on an agent
/// that is going away (DRAIN_AGENT, or its machine is scheduled for maintenance). It covers
/// the whole agent, so it lists no resources.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InverseOffer {
    pub id: OfferId,
    pub framework_id: FrameworkId,
    pub agent_id: AgentId,
    pub hostname: String,
    pub agent_ip: Option<std::net::IpAddr>,
    pub agent_port: u32,
    pub unavailability: Unavailability,
}

/// A framework's last answer to an inverse offer for an agent (Mesos
/// `allocator.InverseOfferStatus`, ACCEPT or DECLINE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct InverseAnswer {
    pub accept: bool,
    /// When it answered, nanoseconds since the Unix epoch.
    pub at_ns: i64,
}

pub(crate) struct InverseOfferEntry {
    pub offer: InverseOffer,
    pub expires: Option<Time>,
}

/// Events the master sends a subscribed framework, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Subscribed {
        framework_id: FrameworkId,
    },
    Offers(Vec<Offer>),
    Rescind(OfferId),
    /// Agents the framework holds resources on are going away (Mesos maintenance).
    InverseOffers(Vec<InverseOffer>),
    /// An inverse offer no longer stands (answered elsewhere, agent back, drained, expired).
    RescindInverseOffer(OfferId),
    Update(TaskStatus),
    /// A status update of a task run by a default executor (a task of a LAUNCH_GROUP): the
    /// same as [`Event::Update`], and the framework sees `executor_id` set to the group's
    /// executor instead of the task id.
    ExecutorUpdate {
        executor_id: ExecutorId,
        status: TaskStatus,
    },
    /// An agent the framework had tasks on was lost.
    Failure {
        agent_id: AgentId,
    },
    /// A custom executor of the framework ended (Mesos FAILURE with `executor_id` and the
    /// executor's exit `status`).
    ExecutorFailure {
        agent_id: AgentId,
        executor_id: ExecutorId,
        status: Option<i32>,
    },
    /// A custom executor sent its framework a message.
    Message {
        agent_id: AgentId,
        executor_id: ExecutorId,
        data: Vec<u8>,
    },
    /// The fate of an offer operation that asked for feedback (Mesos
    /// UPDATE_OPERATION_STATUS).
    UpdateOperationStatus(OperationStatus),
    /// The master gave up on the framework (e.g. torn down); the stream ends after this.
    Error(String),
}

/// Mesos `OperationState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OperationState {
    Pending,
    Finished,
    Failed,
    /// The operation was invalid (bad resources, invalid offers); nothing changed.
    Error,
    /// The operation was valid but could not be applied for a transient reason.
    Dropped,
    Unreachable,
    GoneByOperator,
    /// Reconciliation: the operation is unknown and its agent has not re-registered since
    /// the master restarted.
    Recovering,
    Unknown,
}

impl OperationState {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            OperationState::Finished
                | OperationState::Failed
                | OperationState::Error
                | OperationState::Dropped
                | OperationState::GoneByOperator
        )
    }
}

/// What a framework is told about an operation it gave an id (Mesos `OperationStatus`).
#[derive(Debug, Clone, PartialEq)]
pub struct OperationStatus {
    /// The framework's `Offer.Operation.id`.
    pub operation_id: String,
    pub state: OperationState,
    pub message: Option<String>,
    /// What the operation turned the resources into (the reserved or unreserved form).
    pub converted_resources: Resources,
    /// The role the operation's resources were offered to (MULTI_ROLE frameworks see it as
    /// `allocation_info`).
    pub role: Option<Role>,
    /// Set on updates the framework must acknowledge (ACKNOWLEDGE_OPERATION_STATUS); absent
    /// on answers to reconciliation and on validation errors, as in Mesos.
    pub uuid: Option<uuid::Uuid>,
    pub agent_id: Option<AgentId>,
}

/// What operators subscribed to the master (`/api/v1` SUBSCRIBE) are told, in order.
#[derive(Debug, Clone)]
pub enum OperatorEvent {
    TaskAdded(Box<TaskEntry>),
    TaskUpdated {
        framework_id: FrameworkId,
        status: TaskStatus,
        state: TaskState,
    },
    AgentAdded(AgentView),
    AgentRemoved(AgentId),
    FrameworkAdded(FrameworkView),
    FrameworkUpdated(FrameworkView),
    FrameworkRemoved(FrameworkInfo),
}

/// Offer operations a framework may ACCEPT with.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    Launch(Vec<TaskInfo>),
    /// Dynamically reserve offered resources (given in their reserved form).
    Reserve(Resources),
    /// Give back dynamically reserved offered resources (given in their reserved form).
    Unreserve(Resources),
    /// Turn offered reserved disk into persistent volumes (given as the volumes).
    Create(Resources),
    /// Turn persistent volumes back into plain reserved disk, deleting their data.
    Destroy(Resources),
    /// Launch a task group in a default executor (Mesos LAUNCH_GROUP): all its tasks start,
    /// or all end TASK_ERROR.
    LaunchGroup(TaskGroup),
    /// An operation the API layer could not turn into a valid one (bad TaskInfo, or a type
    /// not supported yet). Its task, when there is one, ends as TASK_ERROR with `reason`.
    Invalid {
        task_id: Option<tessera_types::TaskId>,
        reason: String,
    },
    /// A LAUNCH_GROUP the API layer could not turn into a valid [`TaskGroup`]: each of its
    /// tasks (those whose id could be read) ends TASK_ERROR with REASON_TASK_GROUP_INVALID
    /// and `reason`.
    InvalidGroup {
        task_ids: Vec<tessera_types::TaskId>,
        reason: String,
    },
    /// `op` carries an id (Mesos `Offer.Operation.id`): the framework is told how it ended
    /// with UPDATE_OPERATION_STATUS. Only RESERVE, UNRESERVE, CREATE and DESTROY may carry
    /// one; LAUNCH and LAUNCH_GROUP with an id fail their tasks with TASK_ERROR, anything
    /// else is OPERATION_ERROR.
    WithId {
        id: String,
        op: Box<Operation>,
    },
}

/// An operation with an id whose final status the framework has not acknowledged yet.
#[derive(Debug, Clone)]
pub(crate) struct OperationEntry {
    pub agent_id: AgentId,
    pub info: OperationInfo,
    /// The operation's own uuid (Mesos `Operation.uuid`), not its status'.
    pub uuid: uuid::Uuid,
    pub status: OperationStatus,
}

impl Operation {
    /// The operations the master applies to resources itself (no task involved): their
    /// kind and resources.
    pub(crate) fn on_resources(&self) -> Option<(OperationKind, &Resources)> {
        match self {
            Operation::Reserve(r) => Some((OperationKind::Reserve, r)),
            Operation::Unreserve(r) => Some((OperationKind::Unreserve, r)),
            Operation::Create(r) => Some((OperationKind::Create, r)),
            Operation::Destroy(r) => Some((OperationKind::Destroy, r)),
            _ => None,
        }
    }
}

/// An operation on resources the master applies itself, at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationKind {
    Reserve,
    Unreserve,
    /// Persistent volumes made of reserved disk.
    Create,
    Destroy,
}

impl OperationKind {
    /// The Mesos name (`Offer.Operation.Type`).
    pub fn name(self) -> &'static str {
        match self {
            OperationKind::Reserve => "RESERVE",
            OperationKind::Unreserve => "UNRESERVE",
            OperationKind::Create => "CREATE",
            OperationKind::Destroy => "DESTROY",
        }
    }
}

/// What an operation the master tracks asked for (Mesos `Offer.Operation`): only
/// operations on resources ([`OperationKind`]) carry an id the master keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct OperationInfo {
    /// The framework's `Offer.Operation.id`.
    pub id: String,
    pub kind: OperationKind,
    /// The resources as the framework gave them (reserved form, or the volumes).
    pub resources: Resources,
}

/// An operation as operators see it (`GET_OPERATIONS`): what it asked for and its latest
/// status. Only operations with an id whose status the framework has not acknowledged are
/// known; the master applies operations on resources at once, so that status is final.
#[derive(Debug, Clone, PartialEq)]
pub struct OperationView {
    pub framework_id: FrameworkId,
    pub agent_id: AgentId,
    pub info: OperationInfo,
    pub uuid: uuid::Uuid,
    pub status: OperationStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AgentState {
    /// Registered and heartbeating.
    Active,
    /// Its stream dropped; it has until the agent timeout to come back.
    Disconnected,
    /// Silent past the timeout: its tasks were reported unreachable/lost.
    Unreachable,
    /// Recovered from the registry after a master restart, not yet re-registered.
    Recovered,
    /// Marked gone by an operator; it may not register again.
    Gone,
}

pub(crate) struct AgentEntry {
    pub record: AgentRecord,
    pub state: AgentState,
    pub link: Option<(u64, Box<dyn AgentLink>)>,
    /// Address the agent connected from, and the port of its HTTP endpoints (0 = none).
    pub ip: Option<std::net::IpAddr>,
    pub http_port: u32,
    /// Deactivated by an operator (DEACTIVATE_AGENT or DRAIN_AGENT): no offers from it.
    pub deactivated: bool,
    /// Being drained: its tasks were told to stop.
    pub draining: bool,
    /// Set while the agent is being drained (DRAIN_AGENT).
    pub drain_unavailability: Option<Unavailability>,
    /// Set while its machine is in the maintenance schedule (DRAINING): its window's.
    pub scheduled: Option<Unavailability>,
    /// Sum of its non-terminal tasks' resources, and of its outstanding offers; kept up to
    /// date on every change so a state snapshot need not add them up.
    pub used: Resources,
    pub offered: Resources,
    pub last_seen: Time,
    /// Wall-clock registration time, seconds since the Unix epoch.
    pub registered_wall: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FrameworkState {
    Active,
    /// Its event stream closed; it may fail over until the deadline.
    Disconnected,
}

pub(crate) struct FrameworkEntry {
    pub info: FrameworkInfo,
    pub sink: Option<tokio::sync::mpsc::Sender<Event>>,
    pub state: FrameworkState,
    /// When a disconnected framework is removed.
    pub failover_deadline: Option<Time>,
    /// Wall-clock subscription time, seconds since the Unix epoch.
    pub registered_wall: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskEntry {
    pub info: TaskInfo,
    pub framework_id: FrameworkId,
    pub role: Role,
    pub state: TaskState,
    /// The latest status seen, replayed on reconciliation.
    pub last_status: Option<TaskStatus>,
    /// Resources were handed back to the allocator (the task reached a terminal state).
    #[serde(skip)]
    pub recovered: bool,
    /// Its resources are counted in its agent's `used` (kept up to date by the actor).
    #[serde(skip)]
    pub counted: bool,
}

/// A default executor the master placed on an agent (for a LAUNCH_GROUP). It holds its
/// resources (counted in the agent's `used` and allocated in the allocator) from its first
/// group's launch until its last task ends, as a Mesos executor does until it exits.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ExecutorEntry {
    /// With `framework_id` filled in.
    pub info: ExecutorInfo,
    pub role: Role,
    /// Its tasks that have not ended yet.
    pub tasks: std::collections::BTreeSet<tessera_types::TaskId>,
}

/// A default executor as operators see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExecutorView {
    pub framework_id: FrameworkId,
    pub agent_id: AgentId,
    pub info: ExecutorInfo,
    pub role: Role,
    /// Its tasks that have not ended yet.
    pub tasks: Vec<tessera_types::TaskId>,
}

pub(crate) struct OfferEntry {
    pub offer: Offer,
    pub expires: Option<Time>,
}

/// A read-only view of the master for operators, tests and later the HTTP state endpoints.
#[derive(Debug, Clone, Serialize)]
pub struct MasterState {
    pub master_id: String,
    /// Seconds since the Unix epoch.
    pub start_time: f64,
    pub agents: Vec<AgentView>,
    pub frameworks: Vec<FrameworkView>,
    pub tasks: Vec<std::sync::Arc<TaskEntry>>,
    pub completed_tasks: Vec<std::sync::Arc<TaskEntry>>,
    pub offers: Vec<Offer>,
    /// Default executors running task groups (their resources are in their agent's
    /// `used`, beside their tasks').
    pub executors: Vec<ExecutorView>,
    /// Outstanding inverse offers.
    pub inverse_offers: Vec<InverseOffer>,
    /// Operations with an id whose final status is not acknowledged yet.
    #[serde(skip)]
    pub operations: Vec<OperationView>,
    /// Why roles with demand got nothing in the last allocation run.
    pub unmet: Vec<Unmet>,
    /// Every role the allocator knows: weight, quota, allocation, share, last reason.
    pub roles: Vec<RoleInfo>,
    pub metrics: Metrics,
}

#[derive(Debug, Clone, Serialize)]
pub struct AgentView {
    pub id: AgentId,
    pub hostname: String,
    pub state: AgentState,
    pub resources: Resources,
    pub attributes: Vec<(String, String)>,
    /// Used by tasks that are not terminal.
    pub used: Resources,
    /// In outstanding offers.
    pub offered: Resources,
    pub ip: Option<std::net::IpAddr>,
    pub http_port: u32,
    /// Seconds since the Unix epoch.
    pub registered_time: f64,
    pub deactivated: bool,
    pub draining: bool,
    pub unavailability: Option<Unavailability>,
    pub domain: Option<FaultDomain>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FrameworkView {
    pub id: FrameworkId,
    pub name: String,
    pub roles: Vec<Role>,
    pub state: FrameworkState,
    pub info: FrameworkInfo,
    /// Seconds since the Unix epoch.
    pub registered_time: f64,
}

impl AgentEntry {
    /// When the agent is going away, if it is: since its drain (which cannot wait), else its
    /// maintenance window. Frameworks with tasks on it get inverse offers.
    pub(crate) fn unavailability(&self) -> Option<Unavailability> {
        self.drain_unavailability.or(self.scheduled)
    }

    /// What operators and state endpoints see of this agent.
    pub(crate) fn view(&self) -> AgentView {
        AgentView {
            id: self.record.id.clone(),
            hostname: self.record.hostname.clone(),
            state: self.state,
            resources: self.record.effective_total(),
            attributes: self.record.attributes.clone(),
            used: self.used.clone(),
            offered: self.offered.clone(),
            ip: self.ip,
            http_port: self.http_port,
            registered_time: self.registered_wall,
            deactivated: self.deactivated,
            draining: self.draining,
            unavailability: self.unavailability(),
            domain: self.record.domain.clone(),
        }
    }
}

impl FrameworkEntry {
    /// What operators and state endpoints see of this framework.
    pub(crate) fn view(&self, id: &FrameworkId) -> FrameworkView {
        FrameworkView {
            id: id.clone(),
            name: self.info.name.clone(),
            roles: self.info.roles.clone(),
            state: self.state,
            info: self.info.clone(),
            registered_time: self.registered_wall,
        }
    }
}

impl MasterState {
    /// Recomputes each agent's `used` (non-terminal tasks and default executors) and
    /// `offered` (outstanding offers) from the tasks, executors and offers — the oracle the
    /// incremental sums are tested against.
    pub fn fill_usage(&mut self) {
        let mut used: std::collections::HashMap<&AgentId, Resources> = Default::default();
        for t in self.tasks.iter().filter(|t| !t.state.is_terminal()) {
            let _ = used
                .entry(&t.info.agent_id)
                .or_default()
                .add_assign(&t.info.resources);
        }
        for e in &self.executors {
            let _ = used
                .entry(&e.agent_id)
                .or_default()
                .add_assign(&e.info.resources);
        }
        let mut offered: std::collections::HashMap<&AgentId, Resources> = Default::default();
        for o in &self.offers {
            let _ = offered
                .entry(&o.agent_id)
                .or_default()
                .add_assign(&o.resources);
        }
        let (mut used, mut offered): (
            std::collections::HashMap<AgentId, Resources>,
            std::collections::HashMap<AgentId, Resources>,
        ) = (
            used.into_iter().map(|(k, v)| (k.clone(), v)).collect(),
            offered.into_iter().map(|(k, v)| (k.clone(), v)).collect(),
        );
        for a in &mut self.agents {
            a.used = used.remove(&a.id).unwrap_or_default();
            a.offered = offered.remove(&a.id).unwrap_or_default();
        }
    }
}

/// What one allocation run did, for observers such as `tessera sim`
/// ([`crate::MasterConfig::cycle_observer`]).
#[derive(Debug, Clone)]
pub struct AllocationCycle {
    /// Master time of the run.
    pub at: tessera_types::Time,
    /// Wall-clock duration of the allocator's run (offer bookkeeping excluded).
    pub duration: std::time::Duration,
    pub offers: usize,
    /// Each role with its weight and weighted dominant share after the run.
    pub shares: Vec<(Role, f64, f64)>,
}

/// Counters exposed as metrics.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Metrics {
    pub allocation_runs: u64,
    pub offers_sent: u64,
    pub offers_declined: u64,
    pub offers_rescinded: u64,
    pub tasks_launched: u64,
    pub tasks_invalid: u64,
    pub tasks_dropped: u64,
    pub status_updates: u64,
    pub agents_registered: u64,
    pub agents_reregistered: u64,
    pub agents_unreachable: u64,
    pub inverse_offers_sent: u64,
    pub invalid_agent_messages: u64,
    pub last_allocation_ms: f64,
}
