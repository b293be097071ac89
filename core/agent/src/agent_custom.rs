//! Custom executors on the agent (Mesos `ExecutorInfo` of type CUSTOM): the framework's
//! own executor program, started by the agent and driven over the v1 executor HTTP API
//! ([`crate::executor_api`]).
//!
//! * **Start.** The first task naming an executor starts it: a container whose sandbox is
//!   the executor run directory (`…/executors/<id>/runs/<container>`, shared by its
//!   tasks), limited to the executor's resources plus its live tasks' (the limits grow as
//!   tasks join), the executor's URIs fetched into it, and the `MESOS_*` environment
//!   (`MESOS_AGENT_ENDPOINT`, `MESOS_FRAMEWORK_ID`, `MESOS_EXECUTOR_ID`, `MESOS_DIRECTORY`,
//!   `MESOS_SANDBOX`, …) a Mesos executor library needs to call back.
//! * **Subscribe.** Tasks wait until the executor subscribes; it then gets SUBSCRIBED and a
//!   LAUNCH per task, and later tasks are sent at once. An executor that has not
//!   subscribed within the registration timeout is killed and its tasks fail
//!   (REASON_EXECUTOR_REGISTRATION_TIMEOUT).
//! * **Updates** come from the executor (UPDATE calls with its UUID) and go through the
//!   same reliable status-update path as every task's; the framework's acknowledgement
//!   comes back to the executor as ACKNOWLEDGED. MESSAGE goes both ways.
//! * **Kill** of a task is a KILL event to the executor (which reports TASK_KILLED itself);
//!   a task the executor was not yet given ends TASK_KILLED at once. SHUTDOWN (framework
//!   shutdown, the scheduler's SHUTDOWN call, agent shutdown) is a SHUTDOWN event, then
//!   SIGTERM and SIGKILL after the grace period.
//! * **End.** When the executor's process exits, its tasks that are not terminal end
//!   TASK_FAILED (TASK_KILLED when it was being shut down) with
//!   REASON_EXECUTOR_TERMINATED, its container is destroyed, and the master is told
//!   (which frees the executor's resources and sends the framework FAILURE).
//!
//! Checkpointed (see `agent_custom_ck`): an agent restarted after SIGKILL re-attaches to
//! its executors, which are started with `MESOS_CHECKPOINT=1` and subscribe again.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use tessera_api::mesos::{executor, v1};
use tessera_api::pb;
use tessera_types::{
    ExecutorId, ExecutorInfo, FrameworkId, Reason, Resources, TaskId, TaskInfo, TaskState,
    TaskStatus, UpdateSource,
};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::{Agent, Change, Event, unix_now};
use crate::error::AgentError;
use crate::executor_api::{CallError, CallKind, ExecutorCall, ExecutorUpdate};
use crate::launcher::{Container, LaunchSpec, TaskEnvIds, TaskExit, task_environment};
use crate::tasks::{Task, sandbox_dir};

/// How long an executor has to subscribe after its process started (Mesos
/// `--executor_registration_timeout` defaults to one minute).
pub(crate) const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(60);
/// Between SHUTDOWN and SIGTERM, and again before SIGKILL (Mesos
/// `--executor_shutdown_grace_period` defaults to 5 s).
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// One running custom executor.
pub(crate) struct CustomExecutor {
    pub framework_name: String,
    pub user: String,
    pub info: ExecutorInfo,
    /// The executor container's id (its cgroup's name) and its sandbox.
    pub container_id: String,
    pub sandbox: PathBuf,
    pub container: Option<Arc<dyn Container>>,
    /// The executor's event stream, while subscribed.
    pub stream: Option<mpsc::Sender<executor::Event>>,
    /// Tasks waiting for the executor to subscribe.
    pub queued: Vec<TaskInfo>,
    /// A shutdown was asked for (the executor's end is then expected).
    pub shutting_down: bool,
}

pub(crate) type CustomTable = BTreeMap<(FrameworkId, ExecutorId), CustomExecutor>;

/// Whether custom executor `key` runs task `t`.
fn runs_task(key: &(FrameworkId, ExecutorId), t: &Task) -> bool {
    t.framework_id == key.0 && t.info.executor.as_ref().map(|e| &e.executor_id) == Some(&key.1)
}

fn event(kind: executor::event::Type) -> executor::Event {
    executor::Event {
        r#type: Some(kind as i32),
        ..Default::default()
    }
}

fn launch_event(t: &TaskInfo) -> executor::Event {
    let mut e = event(executor::event::Type::Launch);
    e.launch = Some(executor::event::Launch {
        task: tessera_api::mesos::convert::task_info_to_v1(t, None),
    });
    e
}

impl Agent {
    /// RunTask for a task of a custom executor (`info.executor` is set).
    pub(super) fn run_custom_task(
        &mut self,
        fw: FrameworkId,
        info: TaskInfo,
        framework_name: &str,
        user: &str,
        killing_state: bool,
    ) {
        let Some(exec) = info.executor.clone() else {
            return;
        };
        let Some(agent_id) = self.agent_id.clone() else {
            return warn!(task_id = %info.task_id, "RunTask before registration; ignoring");
        };
        let key = (fw.clone(), exec.executor_id.clone());
        let tid = info.task_id.clone();
        if self.customs.get(&key).is_some_and(|e| e.shutting_down) {
            let t = Task::staging(
                fw.clone(),
                info,
                String::new(),
                PathBuf::new(),
                killing_state,
                None,
            );
            self.tasks.insert(t);
            return self.custom_update(
                &fw,
                &tid,
                TaskState::TaskFailed,
                Reason::ReasonExecutorTerminated,
                "the executor is shutting down; launch the task again",
            );
        }
        if !self.customs.contains_key(&key) {
            let container_id = uuid::Uuid::new_v4().to_string();
            let sandbox = sandbox_dir(
                &self.config.work_dir,
                &agent_id,
                &fw,
                exec.executor_id.as_str(),
                &container_id,
            );
            self.customs.insert(
                key.clone(),
                CustomExecutor {
                    framework_name: framework_name.to_string(),
                    user: user.to_string(),
                    info: exec.clone(),
                    container_id,
                    sandbox,
                    container: None,
                    stream: None,
                    queued: Vec::new(),
                    shutting_down: false,
                },
            );
            self.start_custom_executor(&key, &info.resources);
        } else {
            self.grow_custom_executor(&key, &info.resources);
        }
        let Some(e) = self.customs.get(&key) else {
            return;
        };
        let (cid, sandbox) = (e.container_id.clone(), e.sandbox.clone());
        let mut task = Task::staging(fw.clone(), info.clone(), cid, sandbox, killing_state, None);
        task.launching = false;
        self.tasks.insert(task);
        info!(framework_id = %fw, task_id = %tid, executor_id = %exec.executor_id,
            "task for a custom executor");
        let Some(e) = self.customs.get_mut(&key) else {
            return;
        };
        let given = e
            .stream
            .as_ref()
            .is_some_and(|s| s.try_send(launch_event(&info)).is_ok());
        if !given {
            e.queued.push(info);
        }
        self.checkpoint_custom(&key);
    }

    /// An update the agent makes for a task of a custom executor.
    fn custom_update(
        &mut self,
        fw: &FrameworkId,
        tid: &TaskId,
        state: TaskState,
        reason: Reason,
        message: &str,
    ) {
        self.update(
            fw,
            tid,
            Change {
                state,
                source: UpdateSource::SourceAgent,
                reason: Some(reason),
                message: Some(message.to_string()),
                exit_code: None,
            },
        );
    }

    /// The tasks (in the agent's table) of custom executor `key`.
    pub(super) fn custom_tasks<'a>(
        &'a self,
        key: &'a (FrameworkId, ExecutorId),
    ) -> impl Iterator<Item = &'a Task> + 'a {
        self.tasks.iter().filter(move |t| runs_task(key, t))
    }

    /// The resources an executor's container is limited to: its own plus its tasks'.
    pub(super) fn custom_limits(
        &self,
        key: &(FrameworkId, ExecutorId),
        extra: &Resources,
    ) -> Resources {
        let mut total = extra.clone();
        for t in self.custom_tasks(key).filter(|t| !t.state.is_terminal()) {
            let _ = total.add_assign(&t.info.resources);
        }
        if let Some(e) = self.customs.get(key) {
            let _ = total.add_assign(&e.info.resources);
        }
        total
    }

    fn start_custom_executor(&mut self, key: &(FrameworkId, ExecutorId), first: &Resources) {
        let limits = self.custom_limits(key, first);
        let Some(e) = self.customs.get(key) else {
            return;
        };
        let Some(command) = e.info.command.clone() else {
            return;
        };
        let agent_id = self.agent_id.as_ref().map(|a| a.to_string());
        let mut env = task_environment(
            &command,
            &e.sandbox,
            &TaskEnvIds {
                task_id: "",
                framework_id: key.0.as_str(),
                agent_id: agent_id.as_deref().unwrap_or_default(),
                executor_id: key.1.as_str(),
                container_id: &e.container_id,
                agent_endpoint: self.config.agent_endpoint().as_deref(),
            },
            std::env::var("PATH").ok(),
        );
        env.remove("MESOS_TASK_ID");
        env.insert(
            "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD".into(),
            format!("{}secs", SHUTDOWN_GRACE.as_secs()),
        );
        env.insert("MESOS_HTTP_COMMAND_EXECUTOR".into(), "0".into());
        // The agent checkpoints its executors: they are to reconnect across its restarts.
        env.insert("MESOS_CHECKPOINT".into(), "1".into());
        env.insert(
            "MESOS_RECOVERY_TIMEOUT".into(),
            format!(
                "{}secs",
                self.config.executor_registration_timeout.as_secs()
            ),
        );
        if self.config.agent_endpoint().is_none() {
            warn!(executor_id = %key.1, "this agent serves no HTTP endpoints; the executor cannot subscribe");
        }
        let user =
            crate::user::effective_user(self.config.switch_user, command.user.as_deref(), &e.user);
        let spec = LaunchSpec {
            container_id: format!("{}-executor", e.container_id),
            sandbox: e.sandbox.clone(),
            command,
            env,
            resources: limits.clone(),
            container: None,
            user,
            // Filled from `resources` (the executor's and its first task's) below.
            volumes: Vec::new(),
        };
        info!(framework_id = %key.0, executor_id = %key.1, sandbox = %e.sandbox.display(),
            "starting custom executor");
        let exec_container = e.container_id.clone();
        let launcher = self.launcher.clone();
        let tx = self.events_tx.clone();
        let fetcher = crate::fetcher::Fetcher::for_work_dir(&self.config.work_dir);
        let work_dir = self.config.work_dir.clone();
        let key = key.clone();
        tokio::spawn(async move {
            let result = async {
                super::prepare_sandbox(&fetcher, &spec).await?;
                // The persistent volumes of the executor and its first task.
                let spec = crate::volumes::with_volumes(work_dir, spec).await?;
                launcher.prepare_executor(&exec_container, &limits).await?;
                launcher.launch_nested(&exec_container, spec).await
            }
            .await;
            let sent = tx
                .send(Event::ExecutorLaunched {
                    framework_id: key.0,
                    executor_id: key.1,
                    container_id: exec_container,
                    result,
                })
                .await;
            if let Err(mpsc::error::SendError(Event::ExecutorLaunched {
                result: Ok(orphan), ..
            })) = sent
            {
                let _ = orphan.kill(Signal::SIGKILL);
            }
        });
    }

    /// A task joined a running executor: its container's limits grow.
    fn grow_custom_executor(&mut self, key: &(FrameworkId, ExecutorId), added: &Resources) {
        let limits = self.custom_limits(key, added);
        // Before the container exists its start applies the limits (see
        // `on_executor_launched`).
        let Some(e) = self.customs.get(key).filter(|e| e.container.is_some()) else {
            return;
        };
        let launcher = self.launcher.clone();
        let id = e.container_id.clone();
        tokio::spawn(async move {
            if let Err(err) = launcher.update_executor(&id, &limits).await {
                warn!(container_id = %id, error = %err, "cannot raise the executor's limits");
            }
        });
        // The joining task's persistent volumes appear in the executor's sandbox.
        if added.iter().any(|(k, _)| k.volume.is_some()) {
            let (work_dir, sandbox, added) = (
                self.config.work_dir.clone(),
                e.sandbox.clone(),
                added.clone(),
            );
            tokio::task::spawn_blocking(move || {
                let shown = crate::volumes::prepare(&work_dir, &added)
                    .map_err(|e| e.to_string())
                    .and_then(|m| {
                        crate::volumes::show(&sandbox, &m, false).map_err(|e| e.to_string())
                    });
                if let Err(err) = shown {
                    warn!(sandbox = %sandbox.display(), error = %err,
                        "cannot give the executor a task's volume");
                }
            });
        }
    }

    pub(super) fn on_executor_launched(
        &mut self,
        key: (FrameworkId, ExecutorId),
        container_id: String,
        result: Result<Arc<dyn Container>, AgentError>,
    ) {
        let Some(e) = self
            .customs
            .get_mut(&key)
            .filter(|e| e.container_id == container_id)
        else {
            if let Ok(c) = result {
                let _ = c.kill(Signal::SIGKILL);
            }
            return;
        };
        let container = match result {
            Ok(c) => c,
            Err(err) => {
                warn!(framework_id = %key.0, executor_id = %key.1, error = %err,
                    "custom executor failed to start");
                let why = match err {
                    AgentError::Fetch(f) => format!("Failed to fetch {f}"),
                    err => format!("Failed to launch the executor: {err}"),
                };
                return self.custom_executor_ended(&key, None, &why, true);
            }
        };
        e.container = Some(container.clone());
        let keep = container.clone();
        let shutting_down = e.shutting_down;
        // Tasks that joined while it started count in its limits too.
        self.grow_custom_executor(&key, &Resources::new());
        self.watch_custom(&key, container_id, container);
        self.checkpoint_custom(&key);
        if shutting_down {
            // Shut down while it was starting: it has nothing to finish.
            let _ = keep.kill(Signal::SIGKILL);
        }
    }

    pub(super) fn on_executor_registration_timeout(
        &mut self,
        key: (FrameworkId, ExecutorId),
        container_id: String,
    ) {
        let Some(e) = self
            .customs
            .get_mut(&key)
            .filter(|e| e.container_id == container_id && e.stream.is_none() && !e.shutting_down)
        else {
            return;
        };
        warn!(framework_id = %key.0, executor_id = %key.1,
            "the custom executor did not subscribe in time; killing it");
        e.shutting_down = true;
        let pending: Vec<TaskId> = e.queued.drain(..).map(|t| t.task_id).collect();
        if let Some(c) = &e.container {
            let _ = c.kill(Signal::SIGKILL);
        }
        for tid in pending {
            self.custom_update(
                &key.0,
                &tid,
                TaskState::TaskFailed,
                Reason::ReasonExecutorRegistrationTimeout,
                "the executor did not subscribe within the registration timeout",
            );
        }
    }

    pub(super) fn on_executor_exited(
        &mut self,
        key: (FrameworkId, ExecutorId),
        container_id: String,
        result: io::Result<TaskExit>,
    ) {
        if self
            .customs
            .get(&key)
            .is_none_or(|e| e.container_id != container_id)
        {
            return;
        }
        let (code, what) = match result {
            Ok(TaskExit::Code(c)) => (Some(c), format!("exited with status {c}")),
            Ok(TaskExit::Signal(s)) => (None, format!("was terminated by signal {s}")),
            Ok(TaskExit::MemoryLimit { limit_mb }) => {
                (None, format!("was OOM-killed (memory limit {limit_mb} MB)"))
            }
            Err(e) => (None, format!("could not be waited for: {e}")),
        };
        info!(framework_id = %key.0, executor_id = %key.1, "custom executor {what}");
        self.custom_executor_ended(&key, code, &format!("Executor {what}"), false);
    }

    /// The executor is gone (exited, or never started): its tasks end, its container is
    /// destroyed, and the master is told.
    pub(super) fn custom_executor_ended(
        &mut self,
        key: &(FrameworkId, ExecutorId),
        exit_code: Option<i32>,
        why: &str,
        launch_failed: bool,
    ) {
        let Some(e) = self.customs.remove(key) else {
            return;
        };
        let open: Vec<TaskId> = self
            .custom_tasks(key)
            .filter(|t| !t.state.is_terminal())
            .map(|t| t.info.task_id.clone())
            .collect();
        let (state, reason) = if launch_failed {
            (TaskState::TaskFailed, Reason::ReasonContainerLaunchFailed)
        } else if e.shutting_down {
            (TaskState::TaskKilled, Reason::ReasonExecutorTerminated)
        } else {
            (TaskState::TaskFailed, Reason::ReasonExecutorTerminated)
        };
        for tid in open {
            self.custom_update(&key.0, &tid, state, reason, why);
        }
        self.forget_custom_checkpoint(&e.sandbox);
        let launcher = self.launcher.clone();
        let cid = e.container_id.clone();
        tokio::spawn(async move {
            if let Err(err) = launcher.destroy_executor(&cid).await {
                warn!(container_id = %cid, error = %err, "cannot destroy the executor's container");
            }
        });
        self.send_or_keep(pb::AgentMessage {
            msg: Some(pb::agent_message::Msg::ExecutorExited(pb::ExecutorExited {
                framework_id: key.0.to_string(),
                executor_id: key.1.to_string(),
                exit_code,
                message: why.to_string(),
            })),
        });
    }

    /// A call from an executor (see [`crate::executor_api`]).
    pub(super) fn on_executor_call(&mut self, call: ExecutorCall) {
        let key = (call.framework_id.clone(), call.executor_id.clone());
        tracing::debug!(framework_id = %key.0, executor_id = %key.1, call = ?call.kind, "executor call");
        let answer = match self.customs.get(&key) {
            None => Err(CallError {
                status: axum::http::StatusCode::BAD_REQUEST,
                message: format!(
                    "executor_id: executor '{}' of framework '{}' is not running on this agent",
                    key.1, key.0
                ),
            }),
            Some(_) => match call.kind {
                CallKind::Subscribe { events } => self.executor_subscribed(&key, events),
                CallKind::Update(u) => self.executor_update(&key, u),
                CallKind::Message(data) => {
                    self.send(pb::AgentMessage {
                        msg: Some(pb::agent_message::Msg::ExecutorMessage(
                            pb::ExecutorMessage {
                                framework_id: key.0.to_string(),
                                executor_id: key.1.to_string(),
                                data,
                            },
                        )),
                    });
                    Ok(())
                }
            },
        };
        let _ = call.reply.send(answer);
    }

    fn executor_subscribed(
        &mut self,
        key: &(FrameworkId, ExecutorId),
        events: mpsc::Sender<executor::Event>,
    ) -> Result<(), CallError> {
        let agent_info = v1::AgentInfo {
            hostname: self.config.hostname.clone(),
            id: self.agent_id.as_ref().map(|a| v1::AgentId {
                value: a.to_string(),
            }),
            port: Some(i32::from(self.config.http_port)),
            resources: tessera_api::mesos::convert::resources_to_v1(&self.config.resources, None),
            ..Default::default()
        };
        let Some(e) = self.customs.get_mut(key) else {
            return Err(CallError::bad("executor_id: not running on this agent"));
        };
        if e.shutting_down {
            return Err(CallError::bad(
                "executor_id: the executor is shutting down; it cannot subscribe",
            ));
        }
        let mut sub = event(executor::event::Type::Subscribed);
        let mut executor_info = tessera_api::mesos::convert::executor_info_to_v1(&e.info);
        executor_info.framework_id = Some(v1::FrameworkId {
            value: key.0.to_string(),
        });
        sub.subscribed = Some(executor::event::Subscribed {
            executor_info,
            framework_info: v1::FrameworkInfo {
                id: Some(v1::FrameworkId {
                    value: key.0.to_string(),
                }),
                name: e.framework_name.clone(),
                user: e.user.clone(),
                ..Default::default()
            },
            agent_info,
            container_id: Some(v1::ContainerId {
                value: e.container_id.clone(),
                ..Default::default()
            }),
        });
        let first = e.stream.is_none();
        let mut batch = vec![sub];
        let queued: Vec<TaskInfo> = e.queued.drain(..).collect();
        batch.extend(queued.iter().map(launch_event));
        for ev in batch {
            if events.try_send(ev).is_err() {
                return Err(CallError {
                    status: axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    message: "the executor's stream is full; subscribe again".into(),
                });
            }
        }
        e.stream = Some(events);
        info!(framework_id = %key.0, executor_id = %key.1, resubscribed = !first,
            "custom executor subscribed");
        self.checkpoint_custom(key);
        Ok(())
    }

    fn executor_update(
        &mut self,
        key: &(FrameworkId, ExecutorId),
        u: ExecutorUpdate,
    ) -> Result<(), CallError> {
        let fw = &key.0;
        let known = self
            .tasks
            .get(fw, &u.task_id)
            .is_some_and(|t| runs_task(key, t));
        if !known {
            return Err(CallError::bad(format!(
                "update.status.task_id: task '{}' is not a task of executor '{}'",
                u.task_id, key.1
            )));
        }
        if self
            .tasks
            .get(fw, &u.task_id)
            .is_some_and(|t| t.state.is_terminal())
        {
            return Err(CallError::bad(format!(
                "update.status.state: task '{}' has already ended; no update may follow a terminal one",
                u.task_id
            )));
        }
        let status = TaskStatus {
            task_id: u.task_id.clone(),
            state: u.state,
            reason: u.reason,
            message: u.message,
            source: UpdateSource::SourceExecutor,
            agent_id: self.agent_id.clone(),
            framework_id: Some(fw.clone()),
            uuid: Some(u.uuid),
            timestamp: unix_now(),
            exit_code: None,
            healthy: u.healthy,
        };
        self.enqueue_status(fw, &u.task_id, status);
        Ok(())
    }

    /// The framework acknowledged `uuid` for a task of a custom executor: tell it.
    pub(super) fn custom_acknowledged(&mut self, fw: &FrameworkId, tid: &TaskId, uuid: &str) {
        let Some(exec) = self
            .tasks
            .get(fw, tid)
            .and_then(|t| t.info.executor.as_ref())
            .map(|e| e.executor_id.clone())
        else {
            return;
        };
        let Some(stream) = self
            .customs
            .get(&(fw.clone(), exec))
            .and_then(|e| e.stream.clone())
        else {
            return;
        };
        let Ok(id) = uuid::Uuid::parse_str(uuid) else {
            return;
        };
        let mut e = event(executor::event::Type::Acknowledged);
        e.acknowledged = Some(executor::event::Acknowledged {
            task_id: v1::TaskId {
                value: tid.to_string(),
            },
            uuid: id.as_bytes().to_vec(),
        });
        let _ = stream.try_send(e);
    }

    /// KILL of a task of a custom executor.
    pub(super) fn kill_custom_task(
        &mut self,
        fw: &FrameworkId,
        tid: &TaskId,
        grace: Option<Duration>,
    ) {
        let Some(exec) = self
            .tasks
            .get(fw, tid)
            .filter(|t| !t.state.is_terminal())
            .and_then(|t| t.info.executor.as_ref())
            .map(|e| e.executor_id.clone())
        else {
            return;
        };
        let Some(e) = self.customs.get_mut(&(fw.clone(), exec)) else {
            return;
        };
        if let Some(i) = e.queued.iter().position(|t| &t.task_id == tid) {
            e.queued.remove(i);
            return self.custom_update(
                fw,
                tid,
                TaskState::TaskKilled,
                Reason::ReasonTaskKilledDuringLaunch,
                "killed before the executor was given the task",
            );
        }
        let mut kill = event(executor::event::Type::Kill);
        kill.kill = Some(executor::event::Kill {
            task_id: v1::TaskId {
                value: tid.to_string(),
            },
            kill_policy: grace.map(|g| v1::KillPolicy {
                grace_period: Some(v1::DurationInfo {
                    nanoseconds: i64::try_from(g.as_nanos()).unwrap_or(i64::MAX),
                }),
            }),
        });
        match &e.stream {
            Some(s) if s.try_send(kill).is_ok() => {}
            _ => warn!(framework_id = %fw, task_id = %tid,
                "the task's executor is not connected; the kill waits for it"),
        }
    }

    /// Sends an executor a framework's message (dropped when it is not subscribed).
    pub(super) fn message_to_executor(&mut self, m: pb::ExecutorMessage) {
        let (Ok(fw), Ok(exec)) = (
            FrameworkId::new(m.framework_id),
            ExecutorId::new(m.executor_id),
        ) else {
            return warn!("ignoring a framework message with invalid ids");
        };
        let Some(stream) = self
            .customs
            .get(&(fw.clone(), exec.clone()))
            .and_then(|e| e.stream.clone())
        else {
            return info!(framework_id = %fw, executor_id = %exec,
                "executor not subscribed; framework message dropped");
        };
        let mut e = event(executor::event::Type::Message);
        e.message = Some(executor::event::Message { data: m.data });
        let _ = stream.try_send(e);
    }

    /// Shuts a custom executor down: SHUTDOWN, then SIGTERM and SIGKILL after the grace.
    pub(super) fn shutdown_custom(&mut self, key: &(FrameworkId, ExecutorId), grace: Duration) {
        let Some(e) = self.customs.get_mut(key) else {
            return;
        };
        if e.shutting_down {
            return;
        }
        e.shutting_down = true;
        info!(framework_id = %key.0, executor_id = %key.1, "shutting down custom executor");
        let subscribed = match &e.stream {
            Some(s) => s.try_send(event(executor::event::Type::Shutdown)).is_ok(),
            None => false,
        };
        if let Some(c) = e.container.clone() {
            let first = if subscribed { grace } else { Duration::ZERO };
            tokio::spawn(async move {
                tokio::time::sleep(first).await;
                let _ = c.kill(Signal::SIGTERM);
                tokio::time::sleep(grace).await;
                let _ = c.kill(Signal::SIGKILL);
            });
        }
    }

    /// Every custom executor of `fw` (or all, for `None`).
    pub(super) fn custom_keys(&self, fw: Option<&FrameworkId>) -> Vec<(FrameworkId, ExecutorId)> {
        self.customs
            .keys()
            .filter(|(f, _)| fw.is_none_or(|w| w == f))
            .cloned()
            .collect()
    }

    /// True when no custom executor process is left.
    pub(super) fn customs_exited(&self) -> bool {
        self.customs.is_empty()
    }
}
