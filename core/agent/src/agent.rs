//! The agent's single owner of state: one loop that talks to the master, launches and kills
//! tasks, and drives the status update manager. Launch watchers and kill escalations run as
//! small tasks that report back through a channel; nothing else mutates agent state.
//! Every task change is also checkpointed, and a start re-attaches to what a previous run
//! left (the `recover` submodule).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;
use tessera_api::convert::{resources_to_pb, status_to_pb, task_from_pb, task_to_pb};
use tessera_api::pb;
use tessera_types::{AgentId, FrameworkId, Reason, TaskId, TaskState, TaskStatus, UpdateSource};
use tokio::sync::mpsc;
use tokio::time::{Instant, Interval, sleep_until};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use tracing::{debug, error, info, warn};

#[path = "recover.rs"]
mod recover;

#[path = "agent_health.rs"]
mod agent_health;

#[path = "agent_kill.rs"]
mod agent_kill;

#[path = "agent_group.rs"]
mod agent_group;

#[path = "agent_custom.rs"]
mod agent_custom;

#[path = "agent_custom_ck.rs"]
mod agent_custom_ck;

pub(crate) use agent_custom::REGISTRATION_TIMEOUT as EXECUTOR_REGISTRATION_TIMEOUT;

use crate::config::AgentConfig;
use crate::error::AgentError;
use crate::launcher::{Container, LaunchSpec, Launcher, TaskExit};
use crate::status::{Acked, Outgoing, StatusUpdateManager};
use crate::tasks::{Task, TaskTable, sandbox_dir};
use agent_kill::{signal_and_escalate, start_kill};

/// Outbound queue depth towards the master. Status updates dropped on a full queue are
/// resent by the retry timer.
const OUTBOUND_QUEUE: usize = 1024;
/// Heartbeat interval used when the master sends 0.
const FALLBACK_HEARTBEAT: Duration = Duration::from_secs(5);
/// Extra time beyond the longest kill grace that shutdown waits for processes to exit.
const SHUTDOWN_EXIT_SLACK: Duration = Duration::from_secs(2);
const AGENT_ID_FILE: &str = "agent_id";

enum Event {
    /// A launch started by `run_task` finished (successfully or not).
    Launched {
        framework_id: FrameworkId,
        task_id: TaskId,
        container_id: String,
        result: Result<Arc<dyn Container>, AgentError>,
    },
    Exited {
        framework_id: FrameworkId,
        task_id: TaskId,
        container_id: String,
        result: io::Result<TaskExit>,
    },
    /// A health checker saw the task's health change (see [`crate::health`]).
    Health {
        framework_id: FrameworkId,
        task_id: TaskId,
        container_id: String,
        report: crate::health::HealthReport,
    },
    /// A custom executor's container started (or failed to).
    ExecutorLaunched {
        framework_id: FrameworkId,
        executor_id: tessera_types::ExecutorId,
        container_id: String,
        result: Result<Arc<dyn Container>, AgentError>,
    },
    /// A custom executor's process ended.
    ExecutorExited {
        framework_id: FrameworkId,
        executor_id: tessera_types::ExecutorId,
        container_id: String,
        result: io::Result<TaskExit>,
    },
    /// A custom executor's time to subscribe is up.
    ExecutorRegistrationTimeout {
        framework_id: FrameworkId,
        executor_id: tessera_types::ExecutorId,
        container_id: String,
    },
    /// A task's container outgrew a limit (see [`crate::disk`]).
    Limited {
        framework_id: FrameworkId,
        task_id: TaskId,
        container_id: String,
        limitation: crate::tasks::Limitation,
    },
}

/// Hands a launch's outcome to the agent loop; if the loop is gone, kills what was started
/// rather than leave the process behind.
async fn report_launched(
    tx: &mpsc::Sender<Event>,
    framework_id: FrameworkId,
    task_id: TaskId,
    container_id: String,
    result: Result<Arc<dyn Container>, AgentError>,
) {
    let sent = tx
        .send(Event::Launched {
            framework_id,
            task_id,
            container_id,
            result,
        })
        .await;
    if let Err(tokio::sync::mpsc::error::SendError(Event::Launched {
        result: Ok(orphan), ..
    })) = sent
    {
        let _ = orphan.kill(Signal::SIGKILL);
    }
}

/// Makes a task's (or executor's) sandbox and fetches its command's URIs into it, before
/// its process starts.
async fn prepare_sandbox(
    fetcher: &crate::fetcher::Fetcher,
    spec: &LaunchSpec,
) -> Result<(), AgentError> {
    tokio::fs::create_dir_all(&spec.sandbox)
        .await
        .map_err(|source| AgentError::Sandbox {
            path: spec.sandbox.clone(),
            source,
        })?;
    fetcher
        .fetch_all(&spec.command.uris, &spec.sandbox)
        .await
        .map_err(AgentError::Fetch)
}

/// A stream on which the master answered `Registered`.
struct Link {
    channel: Channel,
    out: mpsc::Sender<pb::AgentMessage>,
    inbound: tonic::Streaming<pb::MasterMessage>,
    reply: pb::Registered,
}

enum Registration {
    Registered(Box<Link>),
    Rejected(String),
}

pub(crate) struct Agent {
    config: AgentConfig,
    launcher: Arc<dyn Launcher>,
    endpoint: Endpoint,
    /// Replaces TCP to `config.master` when set (see [`crate::dial`]).
    pub(crate) dialer: Option<crate::dial::Dialer>,
    agent_id: Option<AgentId>,
    tasks: TaskTable,
    /// Default executors running task groups (see [`crate::executor`]).
    executors: crate::executor::ExecutorTable,
    /// Custom executors (see `agent_custom`).
    customs: agent_custom::CustomTable,
    /// Calls of custom executors from the HTTP endpoint (see [`crate::executor_api`]).
    pub(crate) executor_calls: Option<mpsc::Receiver<crate::executor_api::ExecutorCall>>,
    /// Messages for the master made while not registered (an executor's end), sent once
    /// registered; status updates have their own retries.
    pending_to_master: Vec<pb::AgentMessage>,
    /// Set while checkpoints are read back: group failures are applied once every task of
    /// every group is back.
    recovering: bool,
    updates: StatusUpdateManager,
    events_tx: mpsc::Sender<Event>,
    events_rx: mpsc::Receiver<Event>,
    // The link: all three are Some exactly while registered.
    channel: Option<Channel>,
    out: Option<mpsc::Sender<pb::AgentMessage>>,
    inbound: Option<tonic::Streaming<pb::MasterMessage>>,
    heartbeat: Option<Interval>,
    backoff: Duration,
    retry_at: Instant,
    /// Set once shutdown began: the hard deadline, and the flush deadline once all exited.
    stop_at: Option<Instant>,
    flush_until: Option<Instant>,
    /// Read-only view for the HTTP endpoints and the sandbox GC.
    pub(crate) snapshot: crate::http::Publisher,
}

/// The content of a new status update; uuid and timestamp are added when it is made.
struct Change {
    state: TaskState,
    source: UpdateSource,
    reason: Option<Reason>,
    message: Option<String>,
    exit_code: Option<i32>,
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(365 * 24 * 3600)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Builds the tonic endpoint for `HOST:PORT`, with HTTP/2 keepalive so a dead master is
/// noticed even when no messages flow.
pub(crate) fn master_endpoint(config: &AgentConfig) -> Result<Endpoint, AgentError> {
    let bad = |reason: String| AgentError::MasterAddress {
        addr: config.master.clone(),
        reason,
    };
    if config.master.is_empty() || config.master.contains("://") {
        return Err(bad("expected HOST:PORT without a scheme".into()));
    }
    Ok(Endpoint::from_shared(format!("http://{}", config.master))
        .map_err(|e| bad(e.to_string()))?
        .connect_timeout(config.register_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(config.keepalive_interval)
        .keep_alive_timeout(config.keepalive_timeout)
        .keep_alive_while_idle(true))
}

pub(crate) fn load_agent_id(work_dir: &Path) -> Result<Option<AgentId>, AgentError> {
    let path = work_dir.join(AGENT_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) => match AgentId::new(s.trim()) {
            Ok(id) => Ok(Some(id)),
            Err(e) => {
                warn!(path = %path.display(), error = %e, "ignoring unreadable persisted agent id");
                Ok(None)
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(AgentError::WorkDir { path, source }),
    }
}

fn persist_agent_id(work_dir: &Path, id: &AgentId) -> io::Result<()> {
    let tmp: PathBuf = work_dir.join(format!("{AGENT_ID_FILE}.tmp"));
    std::fs::write(&tmp, id.as_str())?;
    std::fs::rename(&tmp, work_dir.join(AGENT_ID_FILE))
}

fn status_message(fw: &FrameworkId, status: &TaskStatus) -> pb::AgentMessage {
    pb::AgentMessage {
        msg: Some(pb::agent_message::Msg::StatusUpdate(pb::StatusUpdate {
            framework_id: fw.to_string(),
            status: Some(status_to_pb(status)),
        })),
    }
}

impl Agent {
    pub(crate) fn new(
        config: AgentConfig,
        launcher: Arc<dyn Launcher>,
        endpoint: Endpoint,
        agent_id: Option<AgentId>,
    ) -> Self {
        let (events_tx, events_rx) = mpsc::channel(256);
        Agent {
            updates: StatusUpdateManager::new(config.status_retry_base, config.status_retry_cap),
            backoff: config.reconnect_base,
            snapshot: crate::http::Publisher::new(&config),
            config,
            launcher,
            endpoint,
            dialer: None,
            agent_id,
            tasks: TaskTable::default(),
            executors: Default::default(),
            customs: Default::default(),
            executor_calls: None,
            pending_to_master: Vec::new(),
            recovering: false,
            events_tx,
            events_rx,
            channel: None,
            out: None,
            inbound: None,
            heartbeat: None,
            retry_at: Instant::now(),
            stop_at: None,
            flush_until: None,
        }
    }

    pub(crate) async fn run(mut self, shutdown: CancellationToken) -> Result<(), AgentError> {
        // Re-attach to what a previous run left running before (re-)registering, so the
        // registration reports those tasks.
        self.recover().await;
        loop {
            self.snapshot
                .refresh(&self.config, self.agent_id.as_ref(), &self.tasks);
            if let Some(stop_at) = self.stop_at {
                let now = Instant::now();
                if self.tasks.all_exited() && self.customs_exited() {
                    let flush = *self
                        .flush_until
                        .get_or_insert(now + self.config.shutdown_flush);
                    if self.updates.is_empty() || self.out.is_none() || now >= flush {
                        break;
                    }
                }
                if now >= stop_at {
                    warn!("shutdown deadline passed with work outstanding");
                    break;
                }
            }
            let stopping = self.stop_at.is_some();
            let wake_stop = match (self.stop_at, self.flush_until) {
                (Some(s), Some(f)) => s.min(f),
                (Some(s), None) => s,
                _ => far_future(),
            };
            let next_due = self.updates.next_due();
            let connected = self.out.is_some();
            let inbound = &mut self.inbound;
            let heartbeat = &mut self.heartbeat;
            let calls = &mut self.executor_calls;
            let has_calls = calls.is_some();
            tokio::select! {
                Some(call) = async { calls.as_mut().expect("guarded").recv().await }, if has_calls => {
                    self.on_executor_call(call);
                }
                _ = shutdown.cancelled(), if !stopping => self.begin_shutdown(),
                _ = sleep_until(wake_stop), if stopping => {}
                Some(ev) = self.events_rx.recv() => self.on_event(ev),
                msg = async { inbound.as_mut().expect("guarded").message().await }, if connected => {
                    match msg {
                        Ok(Some(m)) => self.on_master(m).await,
                        Ok(None) => self.link_lost("master closed the stream".into()),
                        Err(s) => self.link_lost(format!("stream error: {s}")),
                    }
                }
                _ = async { heartbeat.as_mut().expect("guarded").tick().await }, if connected => {
                    self.send(pb::AgentMessage {
                        msg: Some(pb::agent_message::Msg::Heartbeat(pb::Heartbeat {})),
                    });
                }
                _ = sleep_until(next_due.unwrap_or_else(far_future)), if next_due.is_some() => {
                    for o in self.updates.due(Instant::now()) {
                        debug!(framework_id = %o.framework_id, task_id = %o.status.task_id,
                            state = o.status.state.name(), "resending unacknowledged update");
                        self.send_update(&o);
                    }
                }
                _ = sleep_until(self.retry_at), if !connected && !stopping => {
                    tokio::select! {
                        _ = self.connect() => {}
                        _ = shutdown.cancelled() => {}
                    }
                }
            }
        }
        self.destroy_ended_executors().await;
        info!("agent stopped");
        Ok(())
    }

    // ---- the link -----------------------------------------------------------------------

    fn register_message(&self) -> pb::AgentMessage {
        let c = &self.config;
        let info = pb::AgentInfo {
            hostname: c.hostname.clone(),
            http_port: u32::from(c.http_port),
            resources: resources_to_pb(&c.resources),
            attributes: c
                .attributes
                .iter()
                .map(|(name, value)| pb::Attribute {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let tasks = self
            .tasks
            .iter()
            .map(|t| pb::RunningTask {
                framework_id: t.framework_id.to_string(),
                task: Some(task_to_pb(&t.info)),
                state: t.state.as_i32(),
                executor: self.executor_pb_of(t),
            })
            .collect();
        let register = pb::Register {
            info: Some(info),
            agent_id: self.agent_id.as_ref().map(ToString::to_string),
            tasks,
        };
        let msg = match &c.domain {
            None => pb::agent_message::Msg::Register(register),
            Some((region, zone)) => {
                pb::agent_message::Msg::RegisterInDomain(pb::RegisterInDomain {
                    register: Some(register),
                    domain: Some(pb::FaultDomain {
                        region: region.clone(),
                        zone: zone.clone(),
                    }),
                })
            }
        };
        pb::AgentMessage { msg: Some(msg) }
    }

    async fn try_register(&self) -> Result<Registration, String> {
        let channel = crate::dial::connect(&self.endpoint, self.dialer.as_ref())
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let mut client = pb::agent_service_client::AgentServiceClient::new(channel.clone());
        let (out, rx) = mpsc::channel(OUTBOUND_QUEUE);
        out.try_send(self.register_message())
            .map_err(|_| "outbound queue".to_string())?;
        let mut inbound = client
            .attach(ReceiverStream::new(rx))
            .await
            .map_err(|s| format!("attach: {s}"))?
            .into_inner();
        match inbound.message().await {
            Ok(Some(pb::MasterMessage {
                msg: Some(pb::master_message::Msg::Registered(reply)),
            })) => Ok(Registration::Registered(Box::new(Link {
                channel,
                out,
                inbound,
                reply,
            }))),
            Ok(Some(pb::MasterMessage {
                msg: Some(pb::master_message::Msg::Rejected(r)),
            })) => Ok(Registration::Rejected(r.reason)),
            Ok(Some(other)) => Err(format!("expected Registered, got {other:?}")),
            Ok(None) => Err("master closed the stream before answering".into()),
            Err(s) => Err(format!("awaiting Registered: {s}")),
        }
    }

    async fn connect(&mut self) {
        let attempt = tokio::time::timeout(self.config.register_timeout, self.try_register());
        let result = match attempt.await {
            Ok(r) => r,
            Err(_) => Err("timed out waiting for the master".into()),
        };
        match result {
            Ok(Registration::Registered(link)) => self.on_registered(*link),
            Ok(Registration::Rejected(reason)) => {
                warn!(%reason, master = %self.config.master, "master rejected registration");
                let r = reason.to_ascii_lowercase();
                if r.contains("unknown") || r.contains("removed") {
                    warn!("dropping the persisted agent id; registering as a new agent");
                    self.agent_id = None;
                    let _ = std::fs::remove_file(self.config.work_dir.join(AGENT_ID_FILE));
                }
                self.schedule_retry();
            }
            Err(reason) => {
                warn!(%reason, master = %self.config.master, "registration failed");
                self.schedule_retry();
            }
        }
    }

    fn on_registered(&mut self, link: Link) {
        let Link {
            channel,
            out,
            inbound,
            reply,
        } = link;
        let id = match AgentId::new(reply.agent_id.clone()) {
            Ok(id) => id,
            Err(e) => {
                warn!(error = %e, "master sent an invalid agent id");
                self.schedule_retry();
                return;
            }
        };
        if let Err(e) = persist_agent_id(&self.config.work_dir, &id) {
            error!(error = %e, work_dir = %self.config.work_dir.display(),
                "cannot persist the agent id; a restart will register as a new agent");
        }
        info!(agent_id = %id, master_id = %reply.master_id, reregistered = self.agent_id.is_some(),
            "registered with master");
        self.agent_id = Some(id);
        self.snapshot.touch();
        let period = match reply.heartbeat_interval_ms {
            0 => FALLBACK_HEARTBEAT,
            ms => Duration::from_millis(ms),
        };
        self.heartbeat = Some(tokio::time::interval_at(Instant::now() + period, period));
        self.channel = Some(channel);
        self.out = Some(out);
        self.inbound = Some(inbound);
        self.backoff = self.config.reconnect_base;
        for o in self.updates.resend_all(Instant::now()) {
            self.send_update(&o);
        }
        for m in std::mem::take(&mut self.pending_to_master) {
            self.send(m);
        }
    }

    fn link_lost(&mut self, reason: String) {
        warn!(%reason, "lost the master link; tasks keep running, reconnecting");
        self.out = None;
        self.inbound = None;
        self.heartbeat = None;
        self.channel = None;
        self.schedule_retry();
    }

    fn schedule_retry(&mut self) {
        let jitter_ms = (self.backoff.as_millis() as u64 / 10).max(1);
        let jitter =
            Duration::from_millis((uuid::Uuid::new_v4().as_u128() % jitter_ms as u128) as u64);
        self.retry_at = Instant::now() + self.backoff + jitter;
        self.backoff = (self.backoff * 2).min(self.config.reconnect_cap);
    }

    fn send(&mut self, msg: pb::AgentMessage) {
        let Some(out) = &self.out else { return };
        match out.try_send(msg) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                warn!("outbound queue full; message dropped (updates are retried)");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.link_lost("outbound stream closed".into());
            }
        }
    }

    /// Sends `msg` now, or once registered when the link is down.
    fn send_or_keep(&mut self, msg: pb::AgentMessage) {
        if self.out.is_some() {
            self.send(msg);
        } else {
            self.pending_to_master.push(msg);
        }
    }

    fn send_update(&mut self, o: &Outgoing) {
        self.send(status_message(&o.framework_id, &o.status));
    }

    // ---- master messages ----------------------------------------------------------------

    async fn on_master(&mut self, m: pb::MasterMessage) {
        use pb::master_message::Msg;
        match m.msg {
            Some(Msg::RunTask(rt)) => self.run_task(rt).await,
            Some(Msg::KillTask(k)) => self.kill_task(k),
            Some(Msg::Acknowledge(a)) => self.acknowledge(a),
            Some(Msg::ShutdownFramework(s)) => match FrameworkId::new(s.framework_id) {
                Ok(fw) => {
                    info!(framework_id = %fw, "shutting down framework");
                    let grace = self.config.default_kill_grace;
                    for t in self.tasks.iter_mut().filter(|t| t.framework_id == fw) {
                        start_kill(t, grace, None);
                    }
                    for key in self.custom_keys(Some(&fw)) {
                        self.shutdown_custom(&key, agent_custom::SHUTDOWN_GRACE);
                    }
                }
                Err(e) => warn!(error = %e, "ignoring ShutdownFramework"),
            },
            Some(Msg::RunTaskGroup(g)) => self.run_task_group(g),
            Some(Msg::DestroyVolume(d)) => {
                // The master never destroys a volume in use; a task here still using it
                // (a stale message) keeps it.
                let live = self.tasks.iter().filter(|t| !t.state.is_terminal());
                if crate::volumes::in_use(live.map(|t| &t.info.resources), &d) {
                    warn!(role = %d.role, persistence_id = %d.persistence_id,
                        "not destroying a persistent volume a task uses");
                } else {
                    crate::volumes::spawn_destroy(self.config.work_dir.clone(), d);
                }
            }
            Some(Msg::FrameworkMessage(m)) => self.message_to_executor(m),
            Some(Msg::ShutdownExecutor(s)) => {
                match (
                    FrameworkId::new(s.framework_id),
                    tessera_types::ExecutorId::new(s.executor_id),
                ) {
                    (Ok(fw), Ok(exec)) => {
                        self.shutdown_custom(&(fw, exec), agent_custom::SHUTDOWN_GRACE)
                    }
                    _ => warn!("ignoring ShutdownExecutor with invalid ids"),
                }
            }
            Some(Msg::Registered(_)) | Some(Msg::Rejected(_)) | None => {
                debug!("ignoring unexpected master message");
            }
        }
    }

    fn update(&mut self, fw: &FrameworkId, task_id: &TaskId, change: Change) {
        let Change {
            state,
            source,
            reason,
            message,
            exit_code,
        } = change;
        // Like the Mesos command executor: live updates carry the latest health; a terminal
        // one says `healthy: false` only when a failing health check killed the task.
        let healthy = self.tasks.get_mut(fw, task_id).and_then(|t| {
            if state.is_terminal() {
                t.health_kill.is_some().then_some(false)
            } else {
                t.healthy
            }
        });
        let status = TaskStatus {
            task_id: task_id.clone(),
            state,
            reason,
            message,
            source,
            agent_id: self.agent_id.clone(),
            framework_id: Some(fw.clone()),
            uuid: Some(uuid::Uuid::new_v4().to_string()),
            timestamp: unix_now(),
            exit_code,
            healthy,
        };
        self.enqueue_status(fw, task_id, status);
    }

    /// Records `status` as the task's latest state and queues it for the master (sent now
    /// when nothing earlier of the task is unacknowledged).
    fn enqueue_status(&mut self, fw: &FrameworkId, task_id: &TaskId, status: TaskStatus) {
        let state = status.state;
        self.snapshot.on_update(state);
        if let Some(t) = self.tasks.get_mut(fw, task_id) {
            info!(framework_id = %fw, %task_id, from = t.state.name(), to = state.name(), "task state");
            t.state = state;
        }
        let ended = state.is_terminal().then(|| status.message.clone());
        let head = self.updates.enqueue(fw.clone(), status, Instant::now());
        self.checkpoint_status(fw, task_id);
        self.checkpoint_custom_of_task(fw, task_id);
        if let Some(o) = head {
            self.send_update(&o);
        }
        if let Some(message) = ended {
            self.group_task_ended(fw, task_id, state, message.as_deref());
        }
    }

    async fn run_task(&mut self, rt: pb::RunTask) {
        let fw = match FrameworkId::new(rt.framework_id) {
            Ok(fw) => fw,
            Err(e) => return warn!(error = %e, "ignoring RunTask"),
        };
        let Some(raw) = rt.task else {
            return warn!(framework_id = %fw, "ignoring RunTask without a task");
        };
        let info = match task_from_pb("run_task.task", &raw) {
            Ok(info) => info,
            Err(e) => {
                let Ok(tid) = TaskId::new(raw.task_id.clone()) else {
                    return warn!(error = %e, "ignoring RunTask with an invalid task id");
                };
                if !self.tasks.contains(&fw, &tid) {
                    self.update(
                        &fw,
                        &tid,
                        Change {
                            state: TaskState::TaskError,
                            source: UpdateSource::SourceAgent,
                            reason: Some(Reason::ReasonTaskInvalid),
                            message: Some(e.to_string()),
                            exit_code: None,
                        },
                    );
                }
                return;
            }
        };
        let tid = info.task_id.clone();
        if self.tasks.contains(&fw, &tid) {
            return info!(framework_id = %fw, task_id = %tid, "ignoring duplicate RunTask");
        }
        if info.executor.is_some() {
            return self.run_custom_task(
                fw,
                info,
                &rt.framework_name,
                &rt.user,
                rt.task_killing_state,
            );
        }
        let Some(agent_id) = self.agent_id.clone() else {
            return warn!(task_id = %tid, "RunTask before registration; ignoring");
        };
        let container_id = uuid::Uuid::new_v4().to_string();
        let executor_id = info
            .executor_id
            .as_ref()
            .map_or_else(|| tid.to_string(), ToString::to_string);
        let sandbox = sandbox_dir(
            &self.config.work_dir,
            &agent_id,
            &fw,
            &executor_id,
            &container_id,
        );
        let command = info.command.clone();
        let resources = info.resources.clone();
        let container = info.container.clone();
        let mut task = Task::staging(
            fw.clone(),
            info,
            container_id.clone(),
            sandbox.clone(),
            rt.task_killing_state,
            None,
        );
        task.user = crate::user::effective_user(
            self.config.switch_user,
            task.info.command.user.as_deref(),
            &rt.user,
        );
        self.tasks.insert(task);
        self.checkpoint_task(&fw, &tid);
        info!(framework_id = %fw, task_id = %tid, framework_name = %rt.framework_name,
            sandbox = %sandbox.display(), "launching task");
        self.update(
            &fw,
            &tid,
            Change {
                state: TaskState::TaskStarting,
                source: UpdateSource::SourceExecutor,
                reason: None,
                message: None,
                exit_code: None,
            },
        );

        let env = self.task_env(&fw, &tid, &command, &sandbox, &executor_id, &container_id);
        let user = self.tasks.get(&fw, &tid).and_then(|t| t.user.clone());
        let spec = LaunchSpec {
            container_id: container_id.clone(),
            sandbox,
            command,
            env,
            resources,
            container,
            user,
            volumes: Vec::new(),
        };
        // The sandbox and the process are made off this loop: they block (mkdir, fork/exec),
        // and a batch of RunTasks done inline here would hold back everything behind them on
        // the stream, notably the acknowledgements of TASK_STARTING that release each task's
        // TASK_RUNNING. The result comes back as `Event::Launched`; until then the task is
        // `launching`, and a kill is remembered and applied when it arrives.
        let launcher = self.launcher.clone();
        let tx = self.events_tx.clone();
        let fetcher = crate::fetcher::Fetcher::for_work_dir(&self.config.work_dir);
        let work_dir = self.config.work_dir.clone();
        tokio::spawn(async move {
            // The sandbox with the URIs, then the persistent volumes, then the process.
            let result = match prepare_sandbox(&fetcher, &spec).await {
                Err(e) => Err(e),
                Ok(()) => match crate::volumes::with_volumes(work_dir, spec).await {
                    Ok(spec) => launcher.launch(spec).await,
                    Err(e) => Err(e),
                },
            };
            report_launched(&tx, fw, tid, container_id, result).await;
        });
    }

    fn on_launched(
        &mut self,
        fw: FrameworkId,
        tid: TaskId,
        container_id: String,
        result: Result<Arc<dyn Container>, AgentError>,
    ) {
        let task = self
            .tasks
            .get_mut(&fw, &tid)
            .filter(|t| t.launching && t.container_id == container_id);
        let Some(task) = task else {
            // Cannot happen (a launching task is never forgotten), but never leak a process.
            warn!(framework_id = %fw, task_id = %tid, "launch completed for an unknown task");
            if let Ok(c) = result {
                let _ = c.kill(Signal::SIGKILL);
            }
            return;
        };
        task.launching = false;
        let container = match result {
            Err(e) => return self.launch_failed(&fw, &tid, e),
            Ok(c) => c,
        };
        task.container = Some(container.clone());
        let exited = task.exited.clone();
        let kill_now = task.killing.then(|| {
            task.pending_kill_grace
                .take()
                .unwrap_or(self.config.default_kill_grace)
        });
        self.checkpoint_container(&fw, &tid, container.as_ref());
        self.watch(fw.clone(), tid.clone(), container_id, container, exited);
        self.update(
            &fw,
            &tid,
            Change {
                state: TaskState::TaskRunning,
                source: UpdateSource::SourceExecutor,
                reason: None,
                message: None,
                exit_code: None,
            },
        );
        if let Some(grace) = kill_now {
            let task = self.tasks.get_mut(&fw, &tid).expect("present above");
            signal_and_escalate(task, grace);
        } else {
            self.start_health_check(&fw, &tid);
            self.start_disk_watch(&fw, &tid);
        }
    }

    fn launch_failed(&mut self, fw: &FrameworkId, tid: &TaskId, e: AgentError) {
        warn!(framework_id = %fw, task_id = %tid, error = %e, "launch failed");
        self.update(
            fw,
            tid,
            Change {
                state: TaskState::TaskFailed,
                source: UpdateSource::SourceExecutor,
                reason: Some(Reason::ReasonContainerLaunchFailed),
                message: Some(match e {
                    AgentError::Fetch(f) => format!("Failed to fetch {f}"),
                    e => format!("Failed to launch container: {e}"),
                }),
                exit_code: None,
            },
        );
    }

    fn acknowledge(&mut self, a: pb::Acknowledge) {
        let (fw, tid) = match (FrameworkId::new(a.framework_id), TaskId::new(a.task_id)) {
            (Ok(fw), Ok(tid)) => (fw, tid),
            _ => return debug!("ignoring Acknowledge with invalid ids"),
        };
        match self.updates.acknowledge(&fw, &tid, &a.uuid, Instant::now()) {
            None => {
                debug!(framework_id = %fw, task_id = %tid, uuid = %a.uuid, "stale acknowledgement")
            }
            Some(Acked { acked, next }) => {
                self.checkpoint_status(&fw, &tid);
                self.custom_acknowledged(&fw, &tid, &a.uuid);
                let custom = self
                    .tasks
                    .get(&fw, &tid)
                    .and_then(|t| t.info.executor.as_ref())
                    .map(|e| (fw.clone(), e.executor_id.clone()));
                if let Some(o) = next {
                    self.send_update(&o);
                } else if acked.state.is_terminal()
                    && self
                        .tasks
                        .get_mut(&fw, &tid)
                        .is_some_and(|t| t.container.is_none())
                {
                    debug!(framework_id = %fw, task_id = %tid, "terminal update acknowledged; forgetting task");
                    if let Some(t) = self.tasks.get_mut(&fw, &tid) {
                        let view = crate::http::task_view(t);
                        self.snapshot.forget(view);
                        if t.info.executor.is_none() {
                            recover::forget_checkpoint(&t.sandbox);
                        }
                    }
                    if let Some(t) = self.tasks.remove(&fw, &tid)
                        && let Some(g) = t.group
                    {
                        self.forget_executor_if_done(&g.executor_container);
                    }
                    self.snapshot.touch();
                }
                if let Some(key) = custom {
                    self.checkpoint_custom(&key);
                }
            }
        }
    }

    // ---- local events -------------------------------------------------------------------

    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Launched {
                framework_id,
                task_id,
                container_id,
                result,
            } => self.on_launched(framework_id, task_id, container_id, result),
            Event::Health {
                framework_id,
                task_id,
                container_id,
                report,
            } => self.on_health(framework_id, task_id, container_id, report),
            Event::Exited {
                framework_id,
                task_id,
                container_id,
                result,
            } => self.on_exited(framework_id, task_id, container_id, result),
            Event::Limited {
                framework_id,
                task_id,
                container_id,
                limitation,
            } => self.on_limited(framework_id, task_id, container_id, limitation),
            Event::ExecutorLaunched {
                framework_id,
                executor_id,
                container_id,
                result,
            } => self.on_executor_launched((framework_id, executor_id), container_id, result),
            Event::ExecutorExited {
                framework_id,
                executor_id,
                container_id,
                result,
            } => self.on_executor_exited((framework_id, executor_id), container_id, result),
            Event::ExecutorRegistrationTimeout {
                framework_id,
                executor_id,
                container_id,
            } => self.on_executor_registration_timeout((framework_id, executor_id), container_id),
        }
    }

    fn begin_shutdown(&mut self) {
        info!("shutting down: killing all tasks");
        let default = self.config.default_kill_grace;
        let mut longest = Duration::ZERO;
        for t in self
            .tasks
            .iter_mut()
            .filter(|t| t.container.is_some() || t.launching)
        {
            longest = longest.max(start_kill(t, default, None));
        }
        for key in self.custom_keys(None) {
            self.shutdown_custom(&key, default);
            longest = longest.max(default * 2);
        }
        self.stop_at =
            Some(Instant::now() + longest + SHUTDOWN_EXIT_SLACK + self.config.shutdown_flush);
    }
}
