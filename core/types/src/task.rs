//! Task records shared by master and agents: what to run ([`TaskInfo`]) and what happened
//! to it ([`TaskStatus`]). States and reasons carry the Mesos names and numbers.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::ids::{AgentId, ExecutorId, FrameworkId, TaskId};
use crate::resources::Resources;

/// Mesos `TaskState`, with its wire numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskState {
    TaskStaging = 6,
    TaskStarting = 0,
    TaskRunning = 1,
    TaskKilling = 8,
    TaskFinished = 2,
    TaskFailed = 3,
    TaskKilled = 4,
    TaskError = 7,
    TaskLost = 5,
    TaskDropped = 9,
    TaskUnreachable = 10,
    TaskGone = 11,
    TaskGoneByOperator = 12,
    TaskUnknown = 13,
}

impl TaskState {
    pub const ALL: [TaskState; 14] = [
        TaskState::TaskStaging,
        TaskState::TaskStarting,
        TaskState::TaskRunning,
        TaskState::TaskKilling,
        TaskState::TaskFinished,
        TaskState::TaskFailed,
        TaskState::TaskKilled,
        TaskState::TaskError,
        TaskState::TaskLost,
        TaskState::TaskDropped,
        TaskState::TaskUnreachable,
        TaskState::TaskGone,
        TaskState::TaskGoneByOperator,
        TaskState::TaskUnknown,
    ];

    /// Terminal states free the task's resources and never change again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::TaskFinished
                | TaskState::TaskFailed
                | TaskState::TaskKilled
                | TaskState::TaskError
                | TaskState::TaskLost
                | TaskState::TaskDropped
                | TaskState::TaskGone
                | TaskState::TaskGoneByOperator
        )
    }

    pub fn as_i32(self) -> i32 {
        self as i32
    }

    pub fn from_i32(v: i32) -> Option<TaskState> {
        Self::ALL.into_iter().find(|s| *s as i32 == v)
    }

    /// The Mesos name, e.g. `TASK_RUNNING`.
    pub fn name(self) -> &'static str {
        match self {
            TaskState::TaskStaging => "TASK_STAGING",
            TaskState::TaskStarting => "TASK_STARTING",
            TaskState::TaskRunning => "TASK_RUNNING",
            TaskState::TaskKilling => "TASK_KILLING",
            TaskState::TaskFinished => "TASK_FINISHED",
            TaskState::TaskFailed => "TASK_FAILED",
            TaskState::TaskKilled => "TASK_KILLED",
            TaskState::TaskError => "TASK_ERROR",
            TaskState::TaskLost => "TASK_LOST",
            TaskState::TaskDropped => "TASK_DROPPED",
            TaskState::TaskUnreachable => "TASK_UNREACHABLE",
            TaskState::TaskGone => "TASK_GONE",
            TaskState::TaskGoneByOperator => "TASK_GONE_BY_OPERATOR",
            TaskState::TaskUnknown => "TASK_UNKNOWN",
        }
    }
}

/// Mesos `TaskStatus.Reason` values Tessera produces, with their wire numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason {
    ReasonCommandExecutorFailed = 0,
    ReasonExecutorTerminated = 1,
    ReasonFrameworkRemoved = 3,
    ReasonInvalidOffers = 6,
    ReasonContainerLimitationMemory = 8,
    ReasonReconciliation = 9,
    ReasonAgentDisconnected = 10,
    ReasonAgentRemoved = 11,
    ReasonAgentRestarted = 12,
    ReasonAgentUnknown = 13,
    ReasonTaskInvalid = 14,
    ReasonTaskUnknown = 16,
    ReasonResourcesUnknown = 18,
    ReasonContainerLimitation = 19,
    ReasonContainerLimitationDisk = 20,
    ReasonContainerLaunchFailed = 21,
    ReasonTaskKilledDuringLaunch = 30,
    ReasonAgentRemovedByOperator = 31,
    ReasonAgentReregistered = 32,
    ReasonAgentDraining = 34,
}

impl Reason {
    pub const ALL: [Reason; 20] = [
        Reason::ReasonCommandExecutorFailed,
        Reason::ReasonExecutorTerminated,
        Reason::ReasonFrameworkRemoved,
        Reason::ReasonInvalidOffers,
        Reason::ReasonContainerLimitationMemory,
        Reason::ReasonReconciliation,
        Reason::ReasonAgentDisconnected,
        Reason::ReasonAgentRemoved,
        Reason::ReasonAgentRestarted,
        Reason::ReasonAgentUnknown,
        Reason::ReasonTaskInvalid,
        Reason::ReasonTaskUnknown,
        Reason::ReasonResourcesUnknown,
        Reason::ReasonContainerLimitation,
        Reason::ReasonContainerLimitationDisk,
        Reason::ReasonContainerLaunchFailed,
        Reason::ReasonTaskKilledDuringLaunch,
        Reason::ReasonAgentRemovedByOperator,
        Reason::ReasonAgentReregistered,
        Reason::ReasonAgentDraining,
    ];

    pub fn as_i32(self) -> i32 {
        self as i32
    }

    pub fn from_i32(v: i32) -> Option<Reason> {
        Self::ALL.into_iter().find(|r| *r as i32 == v)
    }
}

/// Who produced a status update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UpdateSource {
    SourceMaster = 0,
    SourceAgent = 1,
    SourceExecutor = 2,
}

/// What a command task runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandInfo {
    /// With `shell`, run as `sh -c VALUE`; otherwise VALUE is the program.
    pub value: String,
    #[serde(default = "yes")]
    pub shell: bool,
    /// argv when not `shell` (argv[0] included, like Mesos).
    #[serde(default)]
    pub arguments: Vec<String>,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Run as this user (agent must be root to switch).
    #[serde(default)]
    pub user: Option<String>,
}

fn yes() -> bool {
    true
}

impl CommandInfo {
    pub fn shell(cmd: impl Into<String>) -> Self {
        CommandInfo {
            value: cmd.into(),
            shell: true,
            ..Default::default()
        }
    }
}

/// A task to launch, as given by a framework in ACCEPT/LAUNCH.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskInfo {
    pub name: String,
    pub task_id: TaskId,
    pub agent_id: AgentId,
    pub resources: Resources,
    pub command: CommandInfo,
    #[serde(default)]
    pub executor_id: Option<ExecutorId>,
    /// Grace between SIGTERM and SIGKILL when killed; `None` = agent default.
    #[serde(default)]
    pub kill_grace_ms: Option<u64>,
}

impl TaskInfo {
    /// Checks what the master must check before anything reaches an agent.
    pub fn validate(&self, field: &str) -> Result<()> {
        if self.name.len() > 1024 {
            return Err(Error::invalid(
                format!("{field}.name"),
                "longer than 1024 bytes",
            ));
        }
        if self.command.value.is_empty() && self.command.arguments.is_empty() {
            return Err(Error::invalid(format!("{field}.command.value"), "is empty"));
        }
        if self.resources.is_empty() {
            return Err(Error::invalid(
                format!("{field}.resources"),
                "a task must use some resources",
            ));
        }
        Ok(())
    }
}

/// A status update for one task. `uuid` is set for updates that need acknowledgement
/// (those from agents); master-generated updates carry none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStatus {
    pub task_id: TaskId,
    pub state: TaskState,
    #[serde(default)]
    pub reason: Option<Reason>,
    #[serde(default)]
    pub message: Option<String>,
    pub source: UpdateSource,
    #[serde(default)]
    pub agent_id: Option<AgentId>,
    #[serde(default)]
    pub framework_id: Option<FrameworkId>,
    #[serde(default)]
    pub uuid: Option<String>,
    /// Seconds since the Unix epoch, like Mesos.
    pub timestamp: f64,
    #[serde(default)]
    pub exit_code: Option<i32>,
}
