//! Checkpointing and recovery of custom executors (see `agent_custom` and
//! [`crate::checkpoint::CustomCheckpoint`]).
//!
//! The executor and its tasks are rewritten to `custom_executor.json` in the executor run's
//! checkpoint directory whenever one of them changes. An agent restarted with the same work
//! directory re-attaches to the executor's process (as to any task's), takes its tasks
//! back with their states and unacknowledged updates, and waits for the executor to
//! subscribe again: executors are started with `MESOS_CHECKPOINT=1`, so a Mesos executor
//! library (pymesos' among them) reconnects to `MESOS_AGENT_ENDPOINT` instead of exiting
//! when the agent goes away. One that does not come back within the registration timeout
//! is killed and its tasks fail. An executor that ended while the agent was down ends as
//! if the agent had seen it: its open tasks fail (REASON_EXECUTOR_TERMINATED) and the
//! master hears that it exited once the agent is registered.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use tessera_types::{ExecutorId, FrameworkId, TaskId};
use tokio::time::Instant;
use tracing::{error, info, warn};

use super::agent_custom::CustomExecutor;
use super::{Agent, Event};
use crate::checkpoint::{
    self, CUSTOM_EXECUTOR_FILE, CustomCheckpoint, CustomTaskCheckpoint, meta_dir_of_sandbox,
};
use crate::launcher::{RecoverSpec, Recovered};
use crate::tasks::Task;

/// The custom executor's checkpoint directory for its sandbox.
fn ck_dir(sandbox: &Path) -> Option<PathBuf> {
    meta_dir_of_sandbox(sandbox)
}

impl Agent {
    /// Rewrites the checkpoint of the custom executor running task `tid`, if any.
    pub(super) fn checkpoint_custom_of_task(&mut self, fw: &FrameworkId, tid: &TaskId) {
        let exec = self
            .tasks
            .get(fw, tid)
            .and_then(|t| t.info.executor.as_ref())
            .map(|e| e.executor_id.clone());
        if let Some(exec) = exec {
            self.checkpoint_custom(&(fw.clone(), exec));
        }
    }

    /// Rewrites the checkpoint of custom executor `key` (nothing when it is gone).
    pub(super) fn checkpoint_custom(&mut self, key: &(FrameworkId, ExecutorId)) {
        let Some(e) = self.customs.get(key) else {
            return;
        };
        let Some(dir) = ck_dir(&e.sandbox) else {
            return;
        };
        let queued: BTreeSet<&TaskId> = e.queued.iter().map(|t| &t.task_id).collect();
        let tasks = self
            .custom_tasks(key)
            .map(|t| CustomTaskCheckpoint {
                info: t.info.clone(),
                killing_state: t.killing_state,
                state: t.state,
                updates: self.updates.queued(&key.0, &t.info.task_id),
                given: !queued.contains(&t.info.task_id),
            })
            .collect();
        let ck = CustomCheckpoint {
            framework_id: key.0.clone(),
            framework_name: e.framework_name.clone(),
            user: e.user.clone(),
            info: e.info.clone(),
            container_id: e.container_id.clone(),
            sandbox: e.sandbox.clone(),
            record: e.container.as_ref().and_then(|c| c.record()),
            shutting_down: e.shutting_down,
            tasks,
        };
        if let Err(err) = checkpoint::write_json(&dir.join(CUSTOM_EXECUTOR_FILE), &ck) {
            error!(error = %err, "custom executor checkpoint failed; it cannot be recovered after an agent restart");
        }
    }

    /// Removes a custom executor's checkpoint (it ended).
    pub(super) fn forget_custom_checkpoint(&self, sandbox: &Path) {
        if let Some(dir) = ck_dir(sandbox)
            && let Err(e) = checkpoint::remove_run(&dir)
        {
            warn!(dir = %dir.display(), error = %e, "cannot remove a custom executor's checkpoint");
        }
    }

    /// Takes back the custom executors a previous run of the agent left (see the module
    /// doc). Call before the task runs are recovered.
    pub(super) async fn recover_customs(&mut self, agent_meta: &Path) {
        let dir = agent_meta.to_path_buf();
        let found = match tokio::task::spawn_blocking(move || {
            checkpoint::load_custom_executors(&dir)
        })
        .await
        {
            Ok(found) => found,
            Err(e) => return error!(error = %e, "reading custom executor checkpoints failed"),
        };
        for item in found {
            match item {
                Ok((dir, ck)) => self.recover_custom(dir, ck).await,
                Err(e) => warn!(error = %e, "skipping an unreadable custom executor checkpoint"),
            }
        }
    }

    async fn recover_custom(&mut self, dir: PathBuf, ck: CustomCheckpoint) {
        let key = (ck.framework_id.clone(), ck.info.executor_id.clone());
        let mut queued = Vec::new();
        let now = Instant::now();
        for t in ck.tasks {
            if !t.state.is_terminal() && !t.given {
                queued.push(t.info.clone());
            }
            let mut task = Task::staging(
                key.0.clone(),
                t.info,
                ck.container_id.clone(),
                ck.sandbox.clone(),
                t.killing_state,
                None,
            );
            task.state = t.state;
            task.launching = false;
            self.tasks.insert(task);
            for u in t.updates {
                let _ = self.updates.enqueue(key.0.clone(), u, now);
            }
        }
        self.customs.insert(
            key.clone(),
            CustomExecutor {
                framework_name: ck.framework_name,
                user: ck.user,
                info: ck.info,
                container_id: ck.container_id.clone(),
                sandbox: ck.sandbox.clone(),
                container: None,
                stream: None,
                queued,
                shutting_down: ck.shutting_down,
            },
        );
        let Some(record) = ck.record else {
            return self.custom_gone_while_down(
                &key,
                "the agent restarted before the executor had started",
            );
        };
        let resources = self.custom_limits(&key, &Default::default());
        let spec = RecoverSpec {
            container_id: format!("{}-executor", ck.container_id),
            sandbox: ck.sandbox,
            meta_dir: dir,
            record,
            resources,
        };
        match self.launcher.recover(spec).await {
            Ok(Recovered {
                container,
                running: true,
            }) => {
                info!(framework_id = %key.0, executor_id = %key.1, pid = ?container.pid(),
                    "re-attached to a custom executor; waiting for it to subscribe again");
                if let Some(e) = self.customs.get_mut(&key) {
                    e.container = Some(container.clone());
                }
                self.watch_custom(&key, ck.container_id, container);
            }
            Ok(Recovered { running: false, .. }) => {
                self.custom_gone_while_down(&key, "the executor ended while the agent was down")
            }
            Err(e) => self.custom_gone_while_down(
                &key,
                &format!("the agent restarted and could not find the executor again: {e}"),
            ),
        }
    }

    fn custom_gone_while_down(&mut self, key: &(FrameworkId, ExecutorId), why: &str) {
        warn!(framework_id = %key.0, executor_id = %key.1, reason = why, "custom executor lost");
        self.custom_executor_ended(key, None, why, false);
    }

    /// Watches a running executor: its exit, and its deadline to subscribe.
    pub(super) fn watch_custom(
        &self,
        key: &(FrameworkId, ExecutorId),
        container_id: String,
        container: std::sync::Arc<dyn crate::launcher::Container>,
    ) {
        let tx = self.events_tx.clone();
        let k = key.clone();
        let cid = container_id.clone();
        tokio::spawn(async move {
            let result = container.wait().await;
            let _ = tx
                .send(Event::ExecutorExited {
                    framework_id: k.0,
                    executor_id: k.1,
                    container_id: cid,
                    result,
                })
                .await;
        });
        let tx = self.events_tx.clone();
        let timeout = self.config.executor_registration_timeout;
        let k = key.clone();
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            let _ = tx
                .send(Event::ExecutorRegistrationTimeout {
                    framework_id: k.0,
                    executor_id: k.1,
                    container_id,
                })
                .await;
        });
    }
}
