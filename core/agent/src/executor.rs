//! The default executor, as the agent runs it for task groups (Mesos LAUNCH_GROUP).
//!
//! Mesos starts a separate default-executor process that launches each task of a group as
//! a nested container. Here the agent plays that executor itself, with the machinery it
//! already has for command tasks: each task of a group is a supervised process of its own
//! (checkpointed, recovered and killed like any task), and what makes them a group is kept
//! here:
//!
//! * **One executor container.** Its sandbox is the Mesos executor run directory
//!   `…/executors/<executor_id>/runs/<container_id>`; each task's sandbox is
//!   `tasks/<task_id>` inside it (Mesos' layout for task groups), its `MESOS_SANDBOX`.
//!   Under cgroups isolation the executor container is a cgroup limited to the executor's
//!   resources plus every task's, and each task's container is a cgroup nested in it
//!   (sharing those limits; Mesos' `share_cgroups`). Tasks run in the host network
//!   namespace, so the tasks of a group share it, as Mesos requires.
//! * **Group semantics** ([`fails_group`]): a task that ends in any terminal state but
//!   TASK_FINISHED (non-zero exit, signal, OOM, launch failure, a kill) has the agent kill
//!   every other task of its group; they end TASK_KILLED with a message naming that task. A
//!   group whose tasks all finish ends normally. Several groups may share an executor id
//!   (same `ExecutorInfo`); each group fails on its own.
//! * **Lifetime.** The executor ends (its cgroup is removed) once every task it ran has
//!   exited; it is forgotten, checkpoints included, once those tasks are. A later group with
//!   the same executor id starts a new executor run.
//!
//! Checkpoints: `executor.json` ([`crate::checkpoint::ExecutorCheckpoint`]) in the executor
//! run's meta directory, and each task's usual checkpoints under its `tasks/<task_id>`,
//! including which group it belongs to ([`GroupRef`]), so a restarted agent re-forms the
//! groups and a later failure still ends them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tessera_types::{ExecutorInfo, FrameworkId, Resources, TaskId, TaskState};

/// The directory of the task sandboxes inside an executor's sandbox (Mesos).
pub const TASKS_DIR: &str = "tasks";

/// Which default executor run, and which group in it, a task belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRef {
    /// The executor run's container id.
    pub executor_container: String,
    /// The group (one per `RunTaskGroup`) within the executor.
    pub group: String,
}

/// The sandbox of task `task_id` of the executor whose sandbox is `executor_sandbox`.
pub fn task_sandbox(executor_sandbox: &Path, task_id: &TaskId) -> PathBuf {
    executor_sandbox.join(TASKS_DIR).join(task_id.as_str())
}

/// The executor sandbox a task sandbox lies in (`…/runs/<container>/tasks/<task>`), if it
/// is one.
pub fn executor_sandbox_of(task_sandbox: &Path) -> Option<&Path> {
    let tasks = task_sandbox.parent()?;
    (tasks.file_name()? == TASKS_DIR).then_some(())?;
    let run = tasks.parent()?;
    (run.parent()?.file_name()? == "runs").then_some(run)
}

/// Whether a task ending in `state` ends its group (every terminal state but FINISHED, as
/// in Mesos' default executor: a failed or killed task kills the rest).
pub fn fails_group(state: TaskState) -> bool {
    state.is_terminal() && state != TaskState::TaskFinished
}

/// What the other tasks of a group killed because `task` ended in `state` are told.
pub fn group_kill_reason(task: &TaskId, state: TaskState, message: Option<&str>) -> String {
    let why = match state {
        TaskState::TaskKilled => "was killed".to_string(),
        other => format!("ended {}", other.name()),
    };
    match message {
        Some(m) if !m.is_empty() => {
            format!("killed because task '{task}' of its task group {why} ({m})")
        }
        _ => format!("killed because task '{task}' of its task group {why}"),
    }
}

/// What the default executor's container setup needs across the launches of its groups:
/// whether its container exists yet, and the limits it should have now.
#[derive(Debug)]
pub struct Setup {
    /// Held while the container is made or resized, so launches of groups queue behind.
    pub prepared: tokio::sync::Mutex<bool>,
    pub limits: std::sync::Mutex<Resources>,
}

impl Setup {
    pub fn new(limits: Resources, prepared: bool) -> Arc<Self> {
        Arc::new(Setup {
            prepared: tokio::sync::Mutex::new(prepared),
            limits: std::sync::Mutex::new(limits),
        })
    }

    /// The limits the container should have now.
    pub fn limits(&self) -> Resources {
        self.limits.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

/// One default executor run on this agent.
#[derive(Debug)]
pub struct Executor {
    pub framework_id: FrameworkId,
    /// With `framework_id` filled in.
    pub info: ExecutorInfo,
    pub container_id: String,
    pub sandbox: PathBuf,
    /// Its groups: group id → the tasks launched in it.
    pub groups: BTreeMap<String, Vec<TaskId>>,
    /// Every task it ran has exited and its container is gone: no group joins it any more.
    pub ended: bool,
    pub setup: Arc<Setup>,
}

impl Executor {
    /// The tasks of every group.
    pub fn tasks(&self) -> impl Iterator<Item = &TaskId> {
        self.groups.values().flatten()
    }

    /// The tasks of group `group`.
    pub fn group_of(&self, group: &str) -> &[TaskId] {
        self.groups.get(group).map_or(&[], Vec::as_slice)
    }
}

/// Every executor run the agent knows, by container id.
#[derive(Debug, Default)]
pub struct ExecutorTable {
    runs: BTreeMap<String, Executor>,
}

impl ExecutorTable {
    pub fn insert(&mut self, e: Executor) {
        self.runs.insert(e.container_id.clone(), e);
    }

    pub fn get(&self, container_id: &str) -> Option<&Executor> {
        self.runs.get(container_id)
    }

    pub fn get_mut(&mut self, container_id: &str) -> Option<&mut Executor> {
        self.runs.get_mut(container_id)
    }

    pub fn remove(&mut self, container_id: &str) -> Option<Executor> {
        self.runs.remove(container_id)
    }

    /// The running (not ended) run of the framework's executor `id`.
    pub fn live(&self, fw: &FrameworkId, id: &tessera_types::ExecutorId) -> Option<&Executor> {
        self.runs
            .values()
            .find(|e| !e.ended && &e.framework_id == fw && &e.info.executor_id == id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Executor> {
        self.runs.values()
    }

    pub fn container_ids(&self) -> Vec<String> {
        self.runs.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_sandboxes_follow_the_mesos_layout() {
        let exec = Path::new("/w/slaves/a/frameworks/f/executors/e/runs/c");
        let t = task_sandbox(exec, &TaskId::new("t1").unwrap());
        assert_eq!(
            t,
            Path::new("/w/slaves/a/frameworks/f/executors/e/runs/c/tasks/t1")
        );
        assert_eq!(executor_sandbox_of(&t), Some(exec));
        assert_eq!(executor_sandbox_of(exec), None);
        assert_eq!(executor_sandbox_of(Path::new("/x/tasks/t1")), None);
    }

    #[test]
    fn only_finished_tasks_leave_their_group_running() {
        assert!(!fails_group(TaskState::TaskFinished));
        assert!(!fails_group(TaskState::TaskRunning));
        for s in [
            TaskState::TaskFailed,
            TaskState::TaskKilled,
            TaskState::TaskError,
            TaskState::TaskLost,
        ] {
            assert!(fails_group(s), "{s:?}");
        }
    }

    #[test]
    fn the_kill_reason_names_the_task() {
        let t = TaskId::new("b").unwrap();
        let r = group_kill_reason(
            &t,
            TaskState::TaskFailed,
            Some("Command exited with status 3"),
        );
        assert_eq!(
            r,
            "killed because task 'b' of its task group ended TASK_FAILED (Command exited with status 3)"
        );
        assert_eq!(
            group_kill_reason(&t, TaskState::TaskKilled, None),
            "killed because task 'b' of its task group was killed"
        );
    }
}
