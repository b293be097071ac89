//! The master actor: one task owns all cluster state and processes [`Command`]s one at a
//! time. Timers (allocation runs, agent timeouts, offer expiry, framework failover) are
//! checked on each wake-up; time comes from tokio's clock so tests can pause it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tessera_allocator::{Allocator, Quota, SplitMix64, Unmet};
use tessera_api::pb;
use tessera_types::{AgentId, Filters, FrameworkId, FrameworkInfo, OfferId, Role, TaskId, Time};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::config::MasterConfig;
use crate::error::{MasterError, Result};
use crate::link::AgentLink;
use crate::model::{
    AgentEntry, Event, FrameworkEntry, MasterState, Metrics, OfferEntry, Operation, TaskEntry,
};
use crate::registry::Registry;

pub type Reply<T> = oneshot::Sender<Result<T>>;

/// Everything the master can be asked. The gRPC and HTTP layers translate into these.
pub enum Command {
    AgentAttached {
        conn: u64,
        link: Box<dyn AgentLink>,
        /// The agent's address as seen by the master, for offer URLs.
        peer: Option<std::net::IpAddr>,
    },
    AgentMessage {
        conn: u64,
        msg: pb::AgentMessage,
    },
    AgentDetached {
        conn: u64,
    },
    Subscribe {
        info: FrameworkInfo,
        /// Roles the framework starts suppressed in (no offers until REVIVE).
        suppressed: Vec<Role>,
        reply: Reply<(FrameworkId, mpsc::Receiver<Event>)>,
    },
    /// UPDATE_FRAMEWORK: new roles, capabilities or failover timeout for a subscribed
    /// framework, and its suppressed roles.
    UpdateFramework {
        info: FrameworkInfo,
        suppressed: Vec<Role>,
        reply: Reply<()>,
    },
    Teardown {
        framework: FrameworkId,
        reply: Reply<()>,
    },
    /// Scheduler MESSAGE / SHUTDOWN for a custom executor.
    ToExecutor {
        framework: FrameworkId,
        agent: tessera_types::AgentId,
        executor: tessera_types::ExecutorId,
        action: crate::custom::ExecutorAction,
        reply: Reply<()>,
    },
    Accept {
        framework: FrameworkId,
        offers: Vec<OfferId>,
        operations: Vec<Operation>,
        filters: Filters,
        reply: Reply<()>,
    },
    Decline {
        framework: FrameworkId,
        offers: Vec<OfferId>,
        filters: Filters,
        reply: Reply<()>,
    },
    Acknowledge {
        framework: FrameworkId,
        agent: AgentId,
        task: TaskId,
        uuid: String,
        reply: Reply<()>,
    },
    Kill {
        framework: FrameworkId,
        task: TaskId,
        /// Overrides the task's kill grace period (Mesos `Call.Kill.kill_policy`).
        grace: Option<Duration>,
        reply: Reply<()>,
    },
    Reconcile {
        framework: FrameworkId,
        /// Each task with the agent the framework believes runs it, if it said.
        tasks: Vec<(TaskId, Option<AgentId>)>,
        reply: Reply<()>,
    },
    /// ACCEPT_INVERSE_OFFERS (`accept`) or DECLINE_INVERSE_OFFERS.
    AnswerInverseOffers {
        framework: FrameworkId,
        inverse_offers: Vec<OfferId>,
        accept: bool,
        filters: Filters,
        reply: Reply<()>,
    },
    /// ACKNOWLEDGE_OPERATION_STATUS.
    AcknowledgeOperation {
        framework: FrameworkId,
        agent: AgentId,
        operation: String,
        uuid: uuid::Uuid,
        reply: Reply<()>,
    },
    /// RECONCILE_OPERATIONS: each operation id with its agent, if given; empty = all.
    ReconcileOperations {
        framework: FrameworkId,
        operations: Vec<(String, Option<AgentId>)>,
        reply: Reply<()>,
    },
    Revive {
        framework: FrameworkId,
        roles: Option<Vec<Role>>,
        reply: Reply<()>,
    },
    Suppress {
        framework: FrameworkId,
        roles: Option<Vec<Role>>,
        reply: Reply<()>,
    },
    SetWeight {
        role: Role,
        weight: f64,
        reply: Reply<()>,
    },
    SetQuota {
        role: Role,
        quota: Quota,
        force: bool,
        reply: Reply<()>,
    },
    SubscribeOperator {
        reply: oneshot::Sender<(
            MasterState,
            tokio::sync::broadcast::Receiver<crate::model::OperatorEvent>,
        )>,
    },
    /// RESERVE (`reserve = true`) or UNRESERVE resources given in their reserved form.
    Reservation {
        agent: AgentId,
        resources: tessera_types::Resources,
        reserve: bool,
        reply: Reply<()>,
    },
    /// CREATE (`create = true`) or DESTROY persistent volumes made of free reserved disk.
    Volumes {
        agent: AgentId,
        volumes: tessera_types::Resources,
        create: bool,
        reply: Reply<()>,
    },
    AgentAction {
        agent: AgentId,
        action: AgentAction,
        reply: Reply<()>,
    },
    State {
        reply: oneshot::Sender<MasterState>,
    },
    /// Maintenance: the schedule, machines down and up, the cluster's status.
    Maintenance(crate::maintenance::MaintenanceCommand),
}

/// What an operator can do to an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentAction {
    Deactivate,
    Reactivate,
    Drain {
        grace: Option<Duration>,
        mark_gone: bool,
    },
    MarkGone,
}

/// A fresh master id (new per run, as in Mesos).
pub fn new_master_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

pub struct Master {
    pub(crate) config: MasterConfig,
    pub(crate) master_id: String,
    pub(crate) registry: Box<dyn Registry>,
    pub(crate) allocator: Allocator,
    pub(crate) rng: SplitMix64,
    pub(crate) started: tokio::time::Instant,
    pub(crate) next_id: u64,
    pub(crate) agents: BTreeMap<AgentId, AgentEntry>,
    /// conn id → agent id, for connections that have registered.
    pub(crate) conns: BTreeMap<u64, AgentId>,
    /// Connections that attached but have not registered yet.
    pub(crate) pending: BTreeMap<u64, Box<dyn AgentLink>>,
    /// Peer address of each connection (when known).
    pub(crate) peers: BTreeMap<u64, std::net::IpAddr>,
    pub(crate) frameworks: BTreeMap<FrameworkId, FrameworkEntry>,
    /// Shared so a state snapshot is a cheap pointer copy; changed with `Arc::make_mut`.
    pub(crate) tasks: BTreeMap<(FrameworkId, TaskId), Arc<TaskEntry>>,
    pub(crate) completed: VecDeque<Arc<TaskEntry>>,
    /// Default executors of task groups, per (framework, agent, executor id).
    pub(crate) executors:
        BTreeMap<(FrameworkId, AgentId, tessera_types::ExecutorId), crate::model::ExecutorEntry>,
    pub(crate) offers: BTreeMap<OfferId, OfferEntry>,
    pub(crate) inverse_offers: BTreeMap<OfferId, crate::model::InverseOfferEntry>,
    /// (framework, agent) → until when no inverse offer for the agent goes to the framework.
    pub(crate) inverse_filters: BTreeMap<(FrameworkId, AgentId), Time>,
    /// (agent, framework) → the framework's last answer to an inverse offer for the agent,
    /// until the agent's unavailability changes.
    pub(crate) inverse_answers: BTreeMap<(AgentId, FrameworkId), crate::model::InverseAnswer>,
    /// The maintenance schedule and the machines that are DOWN (kept in the registry).
    pub(crate) maintenance: crate::maintenance::Maintenance,
    /// Operations with an id whose final status is not acknowledged yet, per framework.
    pub(crate) operations: BTreeMap<(FrameworkId, String), crate::model::OperationEntry>,
    pub(crate) unmet: Vec<Unmet>,
    pub(crate) metrics: Metrics,
    pub(crate) next_housekeeping: Time,
    pub(crate) start_wall: f64,
    pub(crate) operator_tx: tokio::sync::broadcast::Sender<crate::model::OperatorEvent>,
}

impl Master {
    /// Builds the master from its registry. Fails if the registry cannot be read.
    pub fn new(config: MasterConfig, registry: Box<dyn Registry>) -> Result<Master> {
        Self::with_id(config, registry, new_master_id())
    }

    /// [`Master::new`] with a master id chosen beforehand (the listener reports it while the
    /// registry is still being read).
    pub fn with_id(
        config: MasterConfig,
        mut registry: Box<dyn Registry>,
        master_id: String,
    ) -> Result<Master> {
        config.validate()?;
        let snap = registry.load()?;
        let mut allocator = Allocator::new(config.allocator.clone());
        for (role, w) in &snap.weights {
            allocator
                .set_weight(role.clone(), *w)
                .map_err(|e| MasterError::Registry(e.to_string()))?;
        }
        for (role, q) in &snap.quotas {
            allocator
                .set_quota(role.clone(), q.clone())
                .map_err(|e| MasterError::Registry(e.to_string()))?;
        }
        let mut m = Master {
            rng: SplitMix64::new(config.seed),
            config,
            master_id,
            registry,
            allocator,
            started: tokio::time::Instant::now(),
            next_id: snap.next_id.max(1),
            agents: BTreeMap::new(),
            conns: BTreeMap::new(),
            pending: BTreeMap::new(),
            peers: BTreeMap::new(),
            frameworks: BTreeMap::new(),
            tasks: BTreeMap::new(),
            completed: VecDeque::new(),
            executors: BTreeMap::new(),
            offers: BTreeMap::new(),
            inverse_offers: BTreeMap::new(),
            inverse_filters: BTreeMap::new(),
            inverse_answers: BTreeMap::new(),
            maintenance: snap.maintenance,
            operations: BTreeMap::new(),
            unmet: Vec::new(),
            metrics: Metrics::default(),
            next_housekeeping: Time::ZERO,
            start_wall: crate::agents::wall_seconds(),
            operator_tx: tokio::sync::broadcast::channel(crate::operator::OPERATOR_EVENT_BUFFER).0,
        };
        let now = m.now();
        for (id, record) in snap.agents {
            let scheduled = m.scheduled_unavailability(&record.hostname, None);
            m.agents.insert(
                id,
                AgentEntry {
                    record,
                    state: crate::model::AgentState::Recovered,
                    link: None,
                    ip: None,
                    http_port: 0,
                    deactivated: false,
                    draining: false,
                    drain_unavailability: None,
                    scheduled,
                    used: tessera_types::Resources::new(),
                    offered: tessera_types::Resources::new(),
                    last_seen: now,
                    registered_wall: crate::agents::wall_seconds(),
                },
            );
        }
        for (id, info) in snap.frameworks {
            let deadline = now.plus(Duration::from_secs_f64(info.failover_timeout_secs.min(1e9)));
            m.frameworks.insert(
                id,
                FrameworkEntry {
                    info,
                    sink: None,
                    state: crate::model::FrameworkState::Disconnected,
                    failover_deadline: Some(deadline),
                    registered_wall: crate::agents::wall_seconds(),
                },
            );
        }
        Ok(m)
    }

    pub fn master_id(&self) -> &str {
        &self.master_id
    }

    pub(crate) fn now(&self) -> Time {
        let ms = self.started.elapsed().as_millis();
        Time::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    /// A fresh id with the given tag, unique across master restarts (the counter is in the
    /// registry and the master id changes per run).
    pub(crate) fn fresh_id(&mut self, tag: &str) -> String {
        let n = self.next_id;
        self.next_id += 1;
        format!("{}-{tag}{n}", self.master_id)
    }

    /// Persists the id counter; called after ids that others will remember (agents,
    /// frameworks) were handed out.
    pub(crate) fn persist_next_id(&mut self) {
        if let Err(e) = self.registry.put_next_id(self.next_id) {
            tracing::error!(error = %e, "could not persist the id counter");
        }
    }

    fn instant_of(&self, t: Time) -> tokio::time::Instant {
        self.started + Duration::from_millis(t.as_millis())
    }

    /// Runs until `shutdown` fires or every sender is dropped.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Command>, shutdown: CancellationToken) {
        tracing::info!(master_id = %self.master_id, "master started");
        loop {
            let now = self.now();
            let mut wake = self.next_housekeeping;
            if let Some(t) = self.allocator.next_run() {
                wake = wake.min(t);
            }
            let wake = self.instant_of(wake.max(now));
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                cmd = rx.recv() => match cmd {
                    Some(cmd) => self.handle(cmd),
                    None => break,
                },
                _ = tokio::time::sleep_until(wake) => {}
            }
            self.on_timers();
        }
        tracing::info!(master_id = %self.master_id, "master stopped");
    }

    /// Timer work due now: housekeeping and allocation.
    pub(crate) fn on_timers(&mut self) {
        let now = self.now();
        if now >= self.next_housekeeping {
            self.check_agents(now);
            self.expire_offers(now);
            self.check_frameworks(now);
            self.check_inverse_offers(now);
            let step = self
                .config
                .agent_heartbeat_interval
                .min(Duration::from_secs(1));
            self.next_housekeeping = now.plus(step);
        }
        if self.allocator.next_run().is_some_and(|t| t <= now) {
            self.allocate(now);
        }
    }

    pub(crate) fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::AgentAttached { conn, link, peer } => {
                self.pending.insert(conn, link);
                if let Some(ip) = peer {
                    self.peers.insert(conn, ip);
                }
            }
            Command::AgentMessage { conn, msg } => self.on_agent_message(conn, msg),
            Command::AgentDetached { conn } => self.on_agent_detached(conn),
            Command::Subscribe {
                info,
                suppressed,
                reply,
            } => {
                let _ = reply.send(self.subscribe(info, &suppressed));
            }
            Command::UpdateFramework {
                info,
                suppressed,
                reply,
            } => {
                let _ = reply.send(self.update_framework(info, &suppressed));
            }
            Command::Teardown { framework, reply } => {
                let _ = reply.send(self.teardown(&framework));
            }
            Command::Accept {
                framework,
                offers,
                operations,
                filters,
                reply,
            } => {
                let _ = reply.send(self.accept(&framework, offers, operations, filters));
            }
            Command::Decline {
                framework,
                offers,
                filters,
                reply,
            } => {
                let _ = reply.send(self.decline(&framework, offers, filters));
            }
            Command::Acknowledge {
                framework,
                agent,
                task,
                uuid,
                reply,
            } => {
                let _ = reply.send(self.acknowledge(&framework, &agent, &task, uuid));
            }
            Command::ToExecutor {
                framework,
                agent,
                executor,
                action,
                reply,
            } => {
                let _ = reply.send(self.send_to_executor(&framework, &agent, &executor, action));
            }
            Command::Kill {
                framework,
                task,
                grace,
                reply,
            } => {
                let _ = reply.send(self.kill(&framework, &task, grace));
            }
            Command::Reconcile {
                framework,
                tasks,
                reply,
            } => {
                let _ = reply.send(self.reconcile(&framework, tasks));
            }
            Command::AnswerInverseOffers {
                framework,
                inverse_offers,
                accept,
                filters,
                reply,
            } => {
                let r = self.answer_inverse_offers(&framework, inverse_offers, accept, filters);
                let _ = reply.send(r);
            }
            Command::AcknowledgeOperation {
                framework,
                agent,
                operation,
                uuid,
                reply,
            } => {
                let r = self.acknowledge_operation(&framework, &agent, &operation, uuid);
                let _ = reply.send(r);
            }
            Command::ReconcileOperations {
                framework,
                operations,
                reply,
            } => {
                let _ = reply.send(self.reconcile_operations(&framework, operations));
            }
            Command::Revive {
                framework,
                roles,
                reply,
            } => {
                let r = self.framework_known(&framework).map(|()| {
                    let now = self.now();
                    self.allocator.revive(&framework, roles.as_deref(), now);
                });
                let _ = reply.send(r);
            }
            Command::Suppress {
                framework,
                roles,
                reply,
            } => {
                let r = self
                    .framework_known(&framework)
                    .map(|()| self.allocator.suppress(&framework, roles.as_deref()));
                let _ = reply.send(r);
            }
            Command::SetWeight {
                role,
                weight,
                reply,
            } => {
                let _ = reply.send(self.set_weight(role, weight));
            }
            Command::SetQuota {
                role,
                quota,
                force,
                reply,
            } => {
                let _ = reply.send(self.update_quota(role, quota, force));
            }
            Command::SubscribeOperator { reply } => {
                let _ = reply.send(self.subscribe_operator());
            }
            Command::Reservation {
                agent,
                resources,
                reserve,
                reply,
            } => {
                let r = if reserve {
                    self.reserve(&agent, resources)
                } else {
                    self.unreserve(&agent, resources)
                };
                let _ = reply.send(r);
            }
            Command::Volumes {
                agent,
                volumes,
                create,
                reply,
            } => {
                let r = if create {
                    self.create_volumes(&agent, volumes)
                } else {
                    self.destroy_volumes(&agent, volumes)
                };
                let _ = reply.send(r);
            }
            Command::AgentAction {
                agent,
                action,
                reply,
            } => {
                let r = match action {
                    AgentAction::Deactivate => self.deactivate_agent(&agent),
                    AgentAction::Reactivate => self.reactivate_agent(&agent),
                    AgentAction::Drain { grace, mark_gone } => {
                        self.drain_agent(&agent, grace, mark_gone)
                    }
                    AgentAction::MarkGone => self.mark_agent_gone(&agent),
                };
                let _ = reply.send(r);
            }
            Command::State { reply } => {
                let _ = reply.send(self.state());
            }
            Command::Maintenance(cmd) => self.on_maintenance(cmd),
        }
    }

    fn set_weight(&mut self, role: Role, weight: f64) -> Result<()> {
        if !weight.is_finite() || weight <= 0.0 {
            return Err(tessera_types::Error::invalid(
                "weight",
                format!("{weight} is not a positive finite number"),
            )
            .into());
        }
        self.registry.put_weight(&role, weight)?;
        self.allocator
            .set_weight(role, weight)
            .map_err(|e| tessera_types::Error::invalid("weight", e.to_string()))?;
        Ok(())
    }

    /// Sets (or, when empty, removes) a top-level role's quota; validated before it is stored.
    pub(crate) fn set_quota(&mut self, role: Role, quota: Quota) -> Result<()> {
        quota
            .validate(&role)
            .map_err(|e| tessera_types::Error::invalid("quota", e.to_string()))?;
        let stored = (!quota.is_empty()).then_some(&quota);
        self.registry.put_quota(&role, stored)?;
        self.allocator
            .set_quota(role, quota)
            .map_err(|e| tessera_types::Error::invalid("quota", e.to_string()))?;
        Ok(())
    }

    /// Adds (`add`) or removes resources from an agent's running (`used`) or offered sum.
    pub(crate) fn track(
        &mut self,
        agent: &AgentId,
        res: &tessera_types::Resources,
        used: bool,
        add: bool,
    ) {
        let Some(a) = self.agents.get_mut(agent) else {
            return;
        };
        let sum = if used { &mut a.used } else { &mut a.offered };
        let r = if add {
            sum.add_assign(res)
        } else {
            sum.sub_assign(res)
        };
        if let Err(e) = r {
            tracing::error!(agent_id = %agent, error = %e, "usage bookkeeping is off; this is a bug");
        }
    }

    pub(crate) fn framework_known(&self, id: &FrameworkId) -> Result<()> {
        if self.frameworks.contains_key(id) {
            Ok(())
        } else {
            Err(MasterError::UnknownFramework(id.clone()))
        }
    }

    /// A snapshot of everything, cheap enough to take on the actor: tasks are shared
    /// pointers and per-agent usage is kept up to date as things change.
    pub fn state(&self) -> MasterState {
        MasterState {
            master_id: self.master_id.clone(),
            start_time: self.start_wall,
            agents: self.agents.values().map(AgentEntry::view).collect(),
            frameworks: self.frameworks.iter().map(|(id, f)| f.view(id)).collect(),
            tasks: self.tasks.values().cloned().collect(),
            completed_tasks: self.completed.iter().cloned().collect(),
            offers: self.offers.values().map(|o| o.offer.clone()).collect(),
            executors: self.executor_views(),
            inverse_offers: self
                .inverse_offers
                .values()
                .map(|o| o.offer.clone())
                .collect(),
            operations: self.operation_views(),
            unmet: self.unmet.clone(),
            roles: self.allocator.roles(),
            metrics: self.metrics.clone(),
        }
    }
}
