//! Agent recovery (a child module of the agent loop, so it works on the loop's own state):
//! writing the checkpoints as tasks change, and reading them back on start.
//!
//! On start, with a persisted agent id, every run checkpointed under
//! `meta/slaves/<agent id>` (see [`crate::checkpoint`]) becomes a task again:
//! - its unacknowledged updates are queued again, in order, with their uuids, and are
//!   resent once the agent is registered;
//! - a task whose latest state is terminal has nothing left to run; it is forgotten at once
//!   when nothing is left to deliver either;
//! - otherwise the launcher that ran it re-attaches to its container
//!   ([`Launcher::recover`](crate::Launcher::recover)): a live one is watched as if just
//!   launched; one that ended while the agent was down yields its terminal update before the
//!   agent registers; one that cannot be found fails the task with the reason.
//!
//! Default executors (task groups, see [`crate::executor`]) come back first, from their
//! `executor.json`; each recovered task of a group rejoins its group, and once all tasks are
//! back a group with a task that failed or was killed meanwhile is ended, as it would have
//! been had the agent been up.
//!
//! Checkpoint writes happen on the loop (small files, fsynced); a failed write is logged
//! and only costs the ability to recover that task.

use std::path::Path;
use std::sync::Arc;

use tessera_types::{FrameworkId, Reason, TaskId, TaskState, UpdateSource};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::{Agent, Change, Event};
use crate::checkpoint::{
    self, CONTAINER_FILE, RunCheckpoint, STATUS_FILE, StatusCheckpoint, TASK_FILE, TaskCheckpoint,
};
use crate::launcher::{Container, RecoverSpec, Recovered};
use crate::tasks::Task;

/// Removes the checkpoints of the task whose sandbox is `sandbox`.
pub(super) fn forget_checkpoint(sandbox: &Path) {
    if let Some(dir) = checkpoint::meta_dir_of_sandbox(sandbox)
        && let Err(e) = checkpoint::remove_run(&dir)
    {
        warn!(dir = %dir.display(), error = %e, "cannot remove a forgotten task's checkpoint");
    }
}

fn write<T: serde::Serialize>(sandbox: &Path, file: &str, value: &T) {
    let Some(dir) = checkpoint::meta_dir_of_sandbox(sandbox) else {
        return;
    };
    if let Err(e) = checkpoint::write_json(&dir.join(file), value) {
        error!(error = %e, "checkpoint failed; this task cannot be recovered after an agent restart");
    }
}

impl Agent {
    /// Checkpoints what RunTask said about a task.
    pub(super) fn checkpoint_task(&mut self, fw: &FrameworkId, tid: &TaskId) {
        // Tasks of custom executors are not checkpointed (see `agent_custom`).
        let Some(t) = self
            .tasks
            .get_mut(fw, tid)
            .filter(|t| t.info.executor.is_none())
        else {
            return;
        };
        let ck = TaskCheckpoint {
            framework_id: t.framework_id.clone(),
            info: t.info.clone(),
            container_id: t.container_id.clone(),
            sandbox: t.sandbox.clone(),
            killing_state: t.killing_state,
            group: t.group.clone(),
        };
        write(&t.sandbox, TASK_FILE, &ck);
    }

    /// Checkpoints a task's latest state and unacknowledged updates.
    pub(super) fn checkpoint_status(&mut self, fw: &FrameworkId, tid: &TaskId) {
        let updates = self.updates.queued(fw, tid);
        let Some(t) = self
            .tasks
            .get_mut(fw, tid)
            .filter(|t| t.info.executor.is_none())
        else {
            return;
        };
        let ck = StatusCheckpoint {
            state: t.state,
            updates,
        };
        write(&t.sandbox, STATUS_FILE, &ck);
    }

    /// Checkpoints how to find a task's running container again.
    pub(super) fn checkpoint_container(
        &mut self,
        fw: &FrameworkId,
        tid: &TaskId,
        container: &dyn Container,
    ) {
        let (Some(t), Some(record)) = (self.tasks.get_mut(fw, tid), container.record()) else {
            return;
        };
        write(&t.sandbox, CONTAINER_FILE, &record);
    }

    /// Waits for `container` off the loop and reports its exit as [`Event::Exited`].
    pub(super) fn watch(
        &self,
        fw: FrameworkId,
        tid: TaskId,
        container_id: String,
        container: Arc<dyn Container>,
        exited: CancellationToken,
    ) {
        let tx = self.events_tx.clone();
        tokio::spawn(async move {
            let result = container.wait().await;
            exited.cancel();
            let _ = tx
                .send(Event::Exited {
                    framework_id: fw,
                    task_id: tid,
                    container_id,
                    result,
                })
                .await;
        });
    }

    /// Reads every checkpoint of this agent id and takes its tasks back (see the module doc).
    pub(super) async fn recover(&mut self) {
        let Some(agent_id) = self.agent_id.clone() else {
            return;
        };
        let dir = checkpoint::agent_meta_dir(&self.config.work_dir, &agent_id);
        // Executors first, so each recovered task of a group finds its executor.
        self.recovering = true;
        self.recover_executors(&dir).await;
        self.recover_customs(&dir).await;
        let runs = match tokio::task::spawn_blocking(move || checkpoint::load_runs(&dir)).await {
            Ok(runs) => runs,
            Err(e) => {
                self.recovering = false;
                return error!(error = %e, "reading checkpoints failed");
            }
        };
        let total = runs.len();
        for run in runs {
            match run {
                Ok(r) => self.recover_run(r).await,
                Err(e) => warn!(error = %e, "skipping an unreadable checkpoint"),
            }
        }
        // Every task is back: end the groups that failed meanwhile.
        self.recovering = false;
        self.reconcile_groups();
        if total > 0 {
            info!(%agent_id, runs = total, tasks = self.tasks.iter().count(), "recovered from checkpoints");
        }
    }

    async fn recover_run(&mut self, run: RunCheckpoint) {
        let RunCheckpoint {
            dir,
            task: ck,
            status,
            container,
        } = run;
        let fw = ck.framework_id.clone();
        let tid = ck.info.task_id.clone();
        if self.tasks.contains(&fw, &tid) {
            return warn!(framework_id = %fw, task_id = %tid, dir = %dir.display(),
                "a second checkpoint of a recovered task; ignoring it");
        }
        let (state, updates) = status.map_or((TaskState::TaskStaging, Vec::new()), |s| {
            (s.state, s.updates)
        });
        if state.is_terminal() && updates.is_empty() {
            // Finished and acknowledged; the agent died before forgetting it.
            let _ = checkpoint::remove_run(&dir);
            return;
        }
        let mut task = Task::staging(
            fw.clone(),
            ck.info,
            ck.container_id.clone(),
            ck.sandbox.clone(),
            ck.killing_state,
            ck.group.clone(),
        );
        // Recovered, not launching: its state is the checkpointed one.
        task.state = state;
        task.launching = false;
        let exited = task.exited.clone();
        self.tasks.insert(task);
        self.join_recovered_group(&fw, &tid);
        let now = Instant::now();
        for u in updates {
            // Sent once registered (`resend_all`), not now.
            let _ = self.updates.enqueue(fw.clone(), u, now);
        }
        if state.is_terminal() {
            return info!(framework_id = %fw, task_id = %tid, state = state.name(),
                "recovered a finished task with updates to deliver");
        }
        let Some(record) = container else {
            return self.update(
                &fw,
                &tid,
                Change {
                    state: TaskState::TaskFailed,
                    source: UpdateSource::SourceAgent,
                    reason: Some(Reason::ReasonAgentRestarted),
                    message: Some(
                        "the agent restarted while launching the task; its container was never checkpointed"
                            .into(),
                    ),
                    exit_code: None,
                },
            );
        };
        let resources = self
            .tasks
            .get_mut(&fw, &tid)
            .map(|t| t.info.resources.clone())
            .unwrap_or_default();
        let spec = RecoverSpec {
            container_id: ck.container_id.clone(),
            sandbox: ck.sandbox,
            meta_dir: dir,
            record,
            resources,
        };
        match self.launcher.recover(spec).await {
            Err(e) => {
                warn!(framework_id = %fw, task_id = %tid, error = %e, "cannot recover the task's container");
                self.update(
                    &fw,
                    &tid,
                    Change {
                        state: TaskState::TaskFailed,
                        source: UpdateSource::SourceAgent,
                        reason: Some(Reason::ReasonAgentRestarted),
                        message: Some(format!(
                            "the agent restarted and could not find the task's container again: {e}"
                        )),
                        exit_code: None,
                    },
                );
            }
            Ok(Recovered { container, running }) => {
                info!(framework_id = %fw, task_id = %tid, pid = ?container.pid(), running,
                    "re-attached to the task's container");
                if let Some(t) = self.tasks.get_mut(&fw, &tid) {
                    t.container = Some(container.clone());
                }
                if running {
                    self.watch(fw.clone(), tid.clone(), ck.container_id, container, exited);
                    // Health is not checkpointed: a fresh checker, reporting anew.
                    self.start_health_check(&fw, &tid);
                    self.start_disk_watch(&fw, &tid);
                } else {
                    // Ended while the agent was down: report it before registering.
                    let result = container.wait().await;
                    exited.cancel();
                    self.on_event(Event::Exited {
                        framework_id: fw,
                        task_id: tid,
                        container_id: ck.container_id,
                        result,
                    });
                }
            }
        }
    }
}
