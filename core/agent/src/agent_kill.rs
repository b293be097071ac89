//! Ending tasks (a child module of the agent loop, like `recover`): kills with a grace
//! (SIGTERM, then SIGKILL) — of a task of a group, the whole group ([`crate::executor`]) —
//! kills for an exceeded limit (the disk watcher of [`crate::disk`]), and turning a
//! container's exit into the task's terminal update.

use std::io;
use std::time::Duration;

use nix::sys::signal::Signal;
use tessera_api::pb;
use tessera_types::{FrameworkId, Reason, TaskId, TaskState, UpdateSource};
use tracing::{debug, info, warn};

use super::{Agent, Change, Event};
use crate::executor::group_kill_reason;
use crate::launcher::TaskExit;
use crate::tasks::{Limitation, Task, exit_outcome};

impl Agent {
    pub(super) fn kill_task(&mut self, k: pb::KillTask) {
        let (fw, tid) = match (FrameworkId::new(k.framework_id), TaskId::new(k.task_id)) {
            (Ok(fw), Ok(tid)) => (fw, tid),
            _ => return warn!("ignoring KillTask with invalid ids"),
        };
        match self.tasks.get_mut(&fw, &tid) {
            Some(t) if t.info.executor.is_some() => {
                self.kill_custom_task(&fw, &tid, k.grace_ms.map(Duration::from_millis));
            }
            Some(t) if t.container.is_some() || t.launching => {
                let group = t.group.clone();
                self.begin_kill(&fw, &tid, k.grace_ms.map(Duration::from_millis));
                // Mesos' default executor: killing one task of a group kills the group.
                if let Some(g) = group {
                    let reason = group_kill_reason(&tid, TaskState::TaskKilled, None);
                    self.kill_group(&fw, &g, Some(&tid), &reason);
                }
            }
            Some(t) => debug!(framework_id = %fw, task_id = %tid, state = t.state.name(),
                "kill for a task that is no longer running"),
            None => {
                info!(framework_id = %fw, task_id = %tid, "kill for an unknown task");
                self.update(
                    &fw,
                    &tid,
                    Change {
                        state: TaskState::TaskLost,
                        source: UpdateSource::SourceAgent,
                        reason: Some(Reason::ReasonTaskUnknown),
                        message: Some("task unknown to agent".into()),
                        exit_code: None,
                    },
                );
            }
        }
    }

    /// Starts killing a running or launching task, announcing TASK_KILLING to frameworks
    /// that asked for it.
    pub(super) fn begin_kill(
        &mut self,
        fw: &FrameworkId,
        tid: &TaskId,
        requested: Option<Duration>,
    ) {
        let default = self.config.default_kill_grace;
        let Some(t) = self.tasks.get_mut(fw, tid) else {
            return;
        };
        let announce = t.killing_state && !t.killing;
        start_kill(t, default, requested);
        if announce {
            self.update(
                fw,
                tid,
                Change {
                    state: TaskState::TaskKilling,
                    source: UpdateSource::SourceExecutor,
                    reason: None,
                    message: Some("Command is being killed".into()),
                    exit_code: None,
                },
            );
        }
    }

    /// A container exited: its task's terminal update (see [`exit_outcome`]; a limitation
    /// or a failing health check that had the agent kill it says so).
    pub(super) fn on_exited(
        &mut self,
        fw: FrameworkId,
        tid: TaskId,
        container_id: String,
        result: io::Result<TaskExit>,
    ) {
        let Some(t) = self.tasks.get_mut(&fw, &tid) else {
            return;
        };
        if t.container_id != container_id {
            return;
        }
        t.container = None;
        if let Some(h) = t.health.take() {
            h.cancel();
        }
        let killing = t.killing;
        let health_kill = t.health_kill.clone();
        let kill_reason = t.kill_reason.clone();
        if let Some(l) = t.limitation.take() {
            // Killed for a limit: that is the outcome, however the process then ended.
            let o = l.outcome();
            return self.update(
                &fw,
                &tid,
                Change {
                    state: o.state,
                    source: UpdateSource::SourceExecutor,
                    reason: o.reason,
                    message: Some(o.message),
                    exit_code: o.exit_code,
                },
            );
        }
        match result {
            Ok(exit) => {
                let o = exit_outcome(exit, killing);
                let message = match (health_kill, kill_reason) {
                    (Some(why), _) => format!("{}; killed by the agent: {why}", o.message),
                    (None, Some(why)) if killing => format!("{}; {why}", o.message),
                    _ => o.message,
                };
                self.update(
                    &fw,
                    &tid,
                    Change {
                        state: o.state,
                        source: UpdateSource::SourceExecutor,
                        reason: o.reason,
                        message: Some(message),
                        exit_code: o.exit_code,
                    },
                );
            }
            Err(e) => {
                let state = if killing {
                    TaskState::TaskKilled
                } else {
                    TaskState::TaskFailed
                };
                let e = match kill_reason.filter(|_| killing) {
                    Some(why) => format!("{e}; {why}"),
                    None => e.to_string(),
                };
                self.update(
                    &fw,
                    &tid,
                    Change {
                        state,
                        source: UpdateSource::SourceExecutor,
                        reason: Some(Reason::ReasonExecutorTerminated),
                        message: Some(format!("Cannot wait for the command: {e}")),
                        exit_code: None,
                    },
                );
            }
        }
    }

    /// Starts the disk watcher of a running task with a `disk` resource (process tasks
    /// only: a Docker task's files are not in its sandbox), unless disk is not enforced.
    pub(super) fn start_disk_watch(&mut self, fw: &FrameworkId, tid: &TaskId) {
        let Some(interval) = self.config.disk_watch_interval else {
            return;
        };
        let Some(t) = self.tasks.get_mut(fw, tid) else {
            return;
        };
        let docker = t.info.container.as_ref().is_some_and(|c| c.is_docker());
        let Some(limit) = crate::disk::limit_bytes(&t.info.resources).filter(|_| !docker) else {
            return;
        };
        if t.container.is_none() {
            return;
        }
        debug!(framework_id = %fw, task_id = %tid, limit, "watching the sandbox's disk usage");
        let (framework_id, task_id, container_id) =
            (fw.clone(), tid.clone(), t.container_id.clone());
        crate::disk::spawn(
            t.sandbox.clone(),
            limit,
            interval,
            t.exited.clone(),
            self.events_tx.clone(),
            move |limitation| Event::Limited {
                framework_id,
                task_id,
                container_id,
                limitation,
            },
        );
    }

    /// A running task exceeded a limit: SIGKILL now (as Mesos destroys such a container);
    /// its exit is then reported as the limitation. A task already being killed keeps that
    /// outcome.
    pub(super) fn on_limited(
        &mut self,
        fw: FrameworkId,
        tid: TaskId,
        container_id: String,
        limitation: Limitation,
    ) {
        let Some(t) = self.tasks.get_mut(&fw, &tid) else {
            return;
        };
        if t.container_id != container_id || t.killing || t.limitation.is_some() {
            return;
        }
        let Some(c) = t.container.clone() else {
            return;
        };
        warn!(framework_id = %fw, task_id = %tid, reason = %limitation.message,
            "the task exceeded a limit; killing it");
        if let Some(h) = t.health.take() {
            h.cancel();
        }
        t.killing = true;
        t.limitation = Some(limitation);
        if let Err(e) = c.kill(Signal::SIGKILL) {
            warn!(task_id = %tid, error = %e, "SIGKILL failed");
        }
    }
}

/// SIGTERM the task's container now and SIGKILL it after the grace unless it exits first.
/// Returns the grace used. A second kill of the same task does nothing new. A task still
/// launching is marked, and killed with this grace as soon as its container exists.
pub(super) fn start_kill(t: &mut Task, default: Duration, requested: Option<Duration>) -> Duration {
    let grace = requested
        .or(t.info.kill_grace_ms.map(Duration::from_millis))
        .unwrap_or(default);
    if t.killing {
        return grace;
    }
    // Like the Mesos command executor, health checking stops once a kill starts.
    if let Some(h) = t.health.take() {
        h.cancel();
    }
    if t.launching {
        t.killing = true;
        t.pending_kill_grace = Some(grace);
        info!(framework_id = %t.framework_id, task_id = %t.info.task_id,
            grace_ms = grace.as_millis() as u64, "killing task once its launch completes");
        return grace;
    }
    if t.container.is_none() {
        return grace;
    }
    t.killing = true;
    signal_and_escalate(t, grace);
    grace
}

/// Sends SIGTERM to the running container of `t` and SIGKILL after `grace` unless it exits.
pub(super) fn signal_and_escalate(t: &Task, grace: Duration) {
    let Some(c) = t.container.clone() else {
        return;
    };
    info!(framework_id = %t.framework_id, task_id = %t.info.task_id, grace_ms = grace.as_millis() as u64, "killing task");
    if let Err(e) = c.kill(Signal::SIGTERM) {
        warn!(task_id = %t.info.task_id, error = %e, "SIGTERM failed");
    }
    let exited = t.exited.clone();
    let task_id = t.info.task_id.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = exited.cancelled() => {}
            _ = tokio::time::sleep(grace) => {
                debug!(%task_id, "grace over; SIGKILL");
                if let Err(e) = c.kill(Signal::SIGKILL) {
                    warn!(%task_id, error = %e, "SIGKILL failed");
                }
            }
        }
    });
}
