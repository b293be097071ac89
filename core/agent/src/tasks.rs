//! The task table, sandbox layout, and how an exit becomes a terminal state.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tessera_types::{AgentId, FrameworkId, Reason, TaskId, TaskInfo, TaskState};
use tokio_util::sync::CancellationToken;

use crate::launcher::{Container, TaskExit};

/// One task the agent knows about, from RunTask until its terminal update is acknowledged.
pub struct Task {
    pub framework_id: FrameworkId,
    pub info: TaskInfo,
    /// The state of the latest update generated for this task.
    pub state: TaskState,
    pub container_id: String,
    pub sandbox: PathBuf,
    /// Set while the container runs.
    pub container: Option<Arc<dyn Container>>,
    /// The launch is under way (off the agent loop): no container yet, but one is coming.
    pub launching: bool,
    /// The agent asked for this task to die (kill, framework shutdown, agent shutdown).
    pub killing: bool,
    /// The grace of a kill asked for while the task was launching, applied once it runs.
    pub pending_kill_grace: Option<std::time::Duration>,
    /// Cancelled when the container's main process has exited.
    pub exited: CancellationToken,
    /// The framework wants TASK_KILLING when a kill starts (TASK_KILLING_STATE).
    pub killing_state: bool,
    /// Cancels the task's health checker (see [`crate::health`]), while one runs.
    pub health: Option<CancellationToken>,
    /// The latest health reported; `None` before the first result or without a check.
    pub healthy: Option<bool>,
    /// Why a failing health check had the agent kill the task.
    pub health_kill: Option<String>,
    /// The container outgrew a limit (disk) and the agent killed it: its terminal update.
    pub limitation: Option<Limitation>,
    /// The default executor and group running it (a task of a LAUNCH_GROUP).
    pub group: Option<crate::executor::GroupRef>,
    /// Why the agent killed it when it was not asked to: another task of its group ended
    /// (see [`crate::executor`]); added to its TASK_KILLED message.
    pub kill_reason: Option<String>,
    /// The user its command runs as (see [`crate::user`]), for its COMMAND health checks;
    /// `None`: the agent's user (also after a recovery, which does not keep it).
    pub user: Option<String>,
}

impl Task {
    /// A task about to be launched (TASK_STAGING, launch under way), with nothing of a
    /// kill, health check or limitation yet.
    pub fn staging(
        framework_id: FrameworkId,
        info: TaskInfo,
        container_id: String,
        sandbox: PathBuf,
        killing_state: bool,
        group: Option<crate::executor::GroupRef>,
    ) -> Task {
        Task {
            framework_id,
            info,
            state: TaskState::TaskStaging,
            container_id,
            sandbox,
            container: None,
            launching: true,
            killing: false,
            pending_kill_grace: None,
            exited: CancellationToken::new(),
            killing_state,
            health: None,
            healthy: None,
            health_kill: None,
            limitation: None,
            group,
            kill_reason: None,
            user: None,
        }
    }
}

/// All tasks, keyed by (framework, task).
#[derive(Default)]
pub struct TaskTable {
    tasks: BTreeMap<(FrameworkId, TaskId), Task>,
}

impl TaskTable {
    pub fn contains(&self, fw: &FrameworkId, task: &TaskId) -> bool {
        self.tasks.contains_key(&(fw.clone(), task.clone()))
    }

    pub fn insert(&mut self, task: Task) {
        let key = (task.framework_id.clone(), task.info.task_id.clone());
        self.tasks.insert(key, task);
    }

    pub fn get(&self, fw: &FrameworkId, task: &TaskId) -> Option<&Task> {
        self.tasks.get(&(fw.clone(), task.clone()))
    }

    pub fn get_mut(&mut self, fw: &FrameworkId, task: &TaskId) -> Option<&mut Task> {
        self.tasks.get_mut(&(fw.clone(), task.clone()))
    }

    pub fn remove(&mut self, fw: &FrameworkId, task: &TaskId) -> Option<Task> {
        self.tasks.remove(&(fw.clone(), task.clone()))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Task> {
        self.tasks.values()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Task> {
        self.tasks.values_mut()
    }

    /// True when no container is running any more, nor being launched.
    pub fn all_exited(&self) -> bool {
        self.tasks
            .values()
            .all(|t| t.container.is_none() && !t.launching)
    }
}

/// `<work_dir>/slaves/<agent>/frameworks/<fw>/executors/<executor>/runs/<container>`, the
/// Mesos sandbox layout. All components are validated ids (no `/`, not `.`/`..`) or uuids.
pub fn sandbox_dir(
    work_dir: &Path,
    agent_id: &AgentId,
    framework_id: &FrameworkId,
    executor_id: &str,
    container_id: &str,
) -> PathBuf {
    work_dir
        .join("slaves")
        .join(agent_id.as_str())
        .join("frameworks")
        .join(framework_id.as_str())
        .join("executors")
        .join(executor_id)
        .join("runs")
        .join(container_id)
}

/// A terminal update's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub state: TaskState,
    pub reason: Option<Reason>,
    pub message: String,
    pub exit_code: Option<i32>,
}

fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {sig}"))
}

/// A limit the container exceeded, which the agent enforced by killing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limitation {
    pub reason: Reason,
    pub message: String,
}

impl Limitation {
    /// The terminal update of a task killed for this limitation, however it then exited.
    pub fn outcome(&self) -> Outcome {
        Outcome {
            state: TaskState::TaskFailed,
            reason: Some(self.reason),
            message: self.message.clone(),
            exit_code: None,
        }
    }
}

/// How a container exit maps to a terminal state. `killed_by_agent` wins over the code.
pub fn exit_outcome(exit: TaskExit, killed_by_agent: bool) -> Outcome {
    let (message, exit_code) = match exit {
        TaskExit::Code(c) => (format!("Command exited with status {c}"), Some(c)),
        TaskExit::Signal(s) => (
            format!("Command terminated with signal {}", signal_name(s)),
            None,
        ),
        TaskExit::MemoryLimit { limit_mb } => (
            format!("Memory limit exceeded: Requested: {limit_mb}MB; the task was OOM-killed"),
            None,
        ),
    };
    let state = if killed_by_agent {
        TaskState::TaskKilled
    } else if exit == TaskExit::Code(0) {
        TaskState::TaskFinished
    } else {
        TaskState::TaskFailed
    };
    let reason = (state == TaskState::TaskFailed).then_some(match exit {
        TaskExit::MemoryLimit { .. } => Reason::ReasonContainerLimitationMemory,
        _ => Reason::ReasonCommandExecutorFailed,
    });
    Outcome {
        state,
        reason,
        message,
        exit_code,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_map_to_mesos_states() {
        let ok = exit_outcome(TaskExit::Code(0), false);
        assert_eq!(ok.state, TaskState::TaskFinished);
        assert_eq!(ok.exit_code, Some(0));
        let bad = exit_outcome(TaskExit::Code(3), false);
        assert_eq!(bad.state, TaskState::TaskFailed);
        assert_eq!(bad.message, "Command exited with status 3");
        let sig = exit_outcome(TaskExit::Signal(9), false);
        assert_eq!(sig.state, TaskState::TaskFailed);
        assert!(sig.message.contains("SIGKILL"), "{}", sig.message);
        assert_eq!(
            exit_outcome(TaskExit::Signal(15), true).state,
            TaskState::TaskKilled
        );
        assert_eq!(
            exit_outcome(TaskExit::Code(0), true).state,
            TaskState::TaskKilled
        );
        let oom = exit_outcome(TaskExit::MemoryLimit { limit_mb: 64 }, false);
        assert_eq!(oom.state, TaskState::TaskFailed);
        assert_eq!(oom.reason, Some(Reason::ReasonContainerLimitationMemory));
        assert!(oom.message.contains("64MB"), "{}", oom.message);
    }

    #[test]
    fn a_limitation_fails_the_task_with_its_reason() {
        let l = Limitation {
            reason: Reason::ReasonContainerLimitationDisk,
            message: "Disk usage (2 bytes) exceeds the task's disk limit (1 bytes)".into(),
        };
        let o = l.outcome();
        assert_eq!(o.state, TaskState::TaskFailed);
        assert_eq!(o.reason, Some(Reason::ReasonContainerLimitationDisk));
        assert_eq!(o.message, l.message);
    }

    #[test]
    fn sandbox_follows_the_mesos_layout() {
        let p = sandbox_dir(
            Path::new("/w"),
            &AgentId::new("a").unwrap(),
            &FrameworkId::new("f").unwrap(),
            "e",
            "c",
        );
        assert_eq!(p, Path::new("/w/slaves/a/frameworks/f/executors/e/runs/c"));
    }
}
