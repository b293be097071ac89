//! Task records shared by master and agents: what to run ([`TaskInfo`]) and what happened
//! to it ([`TaskStatus`]). States and reasons carry the Mesos names and numbers.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::container::ContainerInfo;
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
    ReasonExecutorUnregistered = 2,
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
    ReasonExecutorRegistrationTimeout = 23,
    ReasonExecutorReregistrationTimeout = 24,
    ReasonTaskGroupInvalid = 25,
    ReasonTaskCheckStatusUpdated = 28,
    ReasonTaskHealthCheckStatusUpdated = 29,
    ReasonTaskKilledDuringLaunch = 30,
    ReasonAgentRemovedByOperator = 31,
    ReasonAgentReregistered = 32,
    ReasonAgentDraining = 34,
}

impl Reason {
    pub const ALL: [Reason; 26] = [
        Reason::ReasonCommandExecutorFailed,
        Reason::ReasonExecutorTerminated,
        Reason::ReasonExecutorUnregistered,
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
        Reason::ReasonExecutorRegistrationTimeout,
        Reason::ReasonExecutorReregistrationTimeout,
        Reason::ReasonTaskGroupInvalid,
        Reason::ReasonTaskCheckStatusUpdated,
        Reason::ReasonTaskHealthCheckStatusUpdated,
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
    /// Files the agent fetches into the sandbox before the command starts.
    #[serde(default)]
    pub uris: Vec<Uri>,
}

fn yes() -> bool {
    true
}

/// A file to fetch into the sandbox before a task starts (Mesos `CommandInfo.URI`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Uri {
    /// `file:///abs/path`, `/abs/path`, `http://…` or `https://…`.
    pub value: String,
    /// Set the executable bit on the fetched file.
    #[serde(default)]
    pub executable: bool,
    /// Extract archives (`.tar`, `.tar.gz`, `.tgz`, `.zip`, `.gz`) into the sandbox.
    #[serde(default = "yes")]
    pub extract: bool,
    /// Keep a copy in the agent's fetch cache and reuse it.
    #[serde(default)]
    pub cache: bool,
    /// Name of the fetched file in the sandbox; default: the URI's last path segment.
    #[serde(default)]
    pub output_file: Option<String>,
}

impl Uri {
    /// A URI with the Mesos defaults (extract, no cache, not executable).
    pub fn new(value: impl Into<String>) -> Self {
        Uri {
            value: value.into(),
            executable: false,
            extract: true,
            cache: false,
            output_file: None,
        }
    }

    /// Checks the value's scheme and that `output_file` is a plain relative name.
    pub fn validate(&self, field: &str) -> Result<()> {
        let v = &self.value;
        if v.is_empty() {
            return Err(Error::invalid(format!("{field}.value"), "is empty"));
        }
        let ok_scheme = v.starts_with('/')
            || ["file://", "http://", "https://"]
                .iter()
                .any(|s| v.len() > s.len() && v[..s.len()].eq_ignore_ascii_case(s));
        if !ok_scheme {
            return Err(Error::invalid(
                format!("{field}.value"),
                format!(
                    "'{v}': only file://, http://, https:// URIs and absolute paths are supported"
                ),
            ));
        }
        if let Some(o) = &self.output_file
            && !is_plain_file_name(o)
        {
            return Err(Error::invalid(
                format!("{field}.output_file"),
                format!("'{o}' must be a plain file name (no '/', not '.' or '..')"),
            ));
        }
        Ok(())
    }
}

/// A non-empty name without `/` or NUL that is not `.` or `..` and contains no `..`.
pub fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['/', '\0']) && name != "." && !name.contains("..")
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
    /// What the task runs in; `None` = the agent's own containerizer.
    #[serde(default)]
    pub container: Option<ContainerInfo>,
    /// Checked by the agent while the task runs; see [`HealthCheck`].
    #[serde(default)]
    pub health_check: Option<HealthCheck>,
    /// The custom executor that runs the task (then `command` is empty and `executor_id`
    /// is this executor's id); `None` for a command task or a task of a group.
    #[serde(default)]
    pub executor: Option<crate::executor::ExecutorInfo>,
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
        if let Some(e) = &self.executor {
            return self.validate_custom(field, e);
        }
        if self.command.value.is_empty() && self.command.arguments.is_empty() {
            return Err(Error::invalid(format!("{field}.command.value"), "is empty"));
        }
        for (i, u) in self.command.uris.iter().enumerate() {
            u.validate(&format!("{field}.command.uris[{i}]"))?;
        }
        if self.resources.is_empty() {
            return Err(Error::invalid(
                format!("{field}.resources"),
                "a task must use some resources",
            ));
        }
        if let Some(c) = &self.container {
            c.validate(&format!("{field}.container"), &self.resources)?;
        }
        if let Some(h) = &self.health_check {
            h.validate(&format!("{field}.health_check"))?;
        }
        Ok(())
    }
}

impl TaskInfo {
    /// A task run by the custom executor `e`: no command of its own (Mesos: one of
    /// `command` or `executor`, not both), the executor's id, and neither a container nor
    /// a health check (the executor runs the task as it sees fit).
    fn validate_custom(&self, field: &str, e: &crate::executor::ExecutorInfo) -> Result<()> {
        if !self.command.value.is_empty() || !self.command.arguments.is_empty() {
            return Err(Error::invalid(
                format!("{field}.command"),
                "a task has either a command or an executor, not both",
            ));
        }
        e.validate(&format!("{field}.executor"))?;
        if !e.is_custom() {
            return Err(Error::invalid(
                format!("{field}.executor.command"),
                "is required: a task's own executor is a custom executor (the default executor runs task groups)",
            ));
        }
        if self.executor_id.as_ref() != Some(&e.executor_id) {
            return Err(Error::invalid(
                format!("{field}.executor_id"),
                "must be the executor's id",
            ));
        }
        if self.container.is_some() {
            return Err(Error::invalid(
                format!("{field}.container"),
                "is not supported for a task of a custom executor (give the executor the container)",
            ));
        }
        if self.health_check.is_some() {
            return Err(Error::invalid(
                format!("{field}.health_check"),
                "is not supported for a task of a custom executor",
            ));
        }
        if self.resources.is_empty() && e.resources.is_empty() {
            return Err(Error::invalid(
                format!("{field}.resources"),
                "a task and its executor must use some resources",
            ));
        }
        Ok(())
    }
}

/// Mesos `HealthCheck`: what the agent probes while a task runs, and how often.
///
/// Durations are milliseconds (the wire's `*_seconds` doubles are converted once, in the
/// codec). Semantics follow the Mesos health checker: the first probe runs `delay_ms` after
/// the task started, then every `interval_ms`; a probe not done within `timeout_ms` (0 = no
/// limit) failed; failures before the first success and within `grace_period_ms` of the
/// start are ignored; `consecutive_failures` failures in a row kill the task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub probe: HealthProbe,
    #[serde(default = "HealthCheck::default_delay_ms")]
    pub delay_ms: u64,
    #[serde(default = "HealthCheck::default_interval_ms")]
    pub interval_ms: u64,
    #[serde(default = "HealthCheck::default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "HealthCheck::default_grace_period_ms")]
    pub grace_period_ms: u64,
    #[serde(default = "HealthCheck::default_consecutive_failures")]
    pub consecutive_failures: u32,
}

/// What one health probe does. Ports are on 127.0.0.1 (the task shares the host network).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HealthProbe {
    /// Run a command in the task's sandbox with its environment; exit 0 is healthy.
    Command { command: CommandInfo },
    /// GET `scheme://127.0.0.1:port/path`; a status in 200..=399 is healthy.
    Http {
        port: u32,
        #[serde(default)]
        path: Option<String>,
        /// `http` (default) or `https` (certificates are not verified, like Mesos).
        #[serde(default)]
        scheme: Option<String>,
    },
    /// A TCP connect to 127.0.0.1:port succeeds.
    Tcp { port: u32 },
}

impl HealthProbe {
    /// The Mesos type name (`COMMAND`, `HTTP`, `TCP`).
    pub fn type_name(&self) -> &'static str {
        match self {
            HealthProbe::Command { .. } => "COMMAND",
            HealthProbe::Http { .. } => "HTTP",
            HealthProbe::Tcp { .. } => "TCP",
        }
    }
}

impl HealthCheck {
    /// Mesos defaults: delay 15 s, interval 10 s, timeout 20 s, grace 10 s, 3 failures.
    pub const DEFAULT_DELAY_MS: u64 = 15_000;
    pub const DEFAULT_INTERVAL_MS: u64 = 10_000;
    pub const DEFAULT_TIMEOUT_MS: u64 = 20_000;
    pub const DEFAULT_GRACE_PERIOD_MS: u64 = 10_000;
    pub const DEFAULT_CONSECUTIVE_FAILURES: u32 = 3;

    /// A check with the Mesos defaults.
    pub fn new(probe: HealthProbe) -> Self {
        HealthCheck {
            probe,
            delay_ms: Self::DEFAULT_DELAY_MS,
            interval_ms: Self::DEFAULT_INTERVAL_MS,
            timeout_ms: Self::DEFAULT_TIMEOUT_MS,
            grace_period_ms: Self::DEFAULT_GRACE_PERIOD_MS,
            consecutive_failures: Self::DEFAULT_CONSECUTIVE_FAILURES,
        }
    }

    fn default_delay_ms() -> u64 {
        Self::DEFAULT_DELAY_MS
    }
    fn default_interval_ms() -> u64 {
        Self::DEFAULT_INTERVAL_MS
    }
    fn default_timeout_ms() -> u64 {
        Self::DEFAULT_TIMEOUT_MS
    }
    fn default_grace_period_ms() -> u64 {
        Self::DEFAULT_GRACE_PERIOD_MS
    }
    fn default_consecutive_failures() -> u32 {
        Self::DEFAULT_CONSECUTIVE_FAILURES
    }

    /// Ports in 1..=65535, an HTTP path starting with `/`, scheme `http`/`https`, a command
    /// that is not empty; errors name the field (`task.health_check.http.port`).
    pub fn validate(&self, field: &str) -> Result<()> {
        let port_ok = |f: String, port: u32| {
            if (1..=65535).contains(&port) {
                Ok(())
            } else {
                Err(Error::invalid(f, format!("{port} is not in 1..=65535")))
            }
        };
        match &self.probe {
            HealthProbe::Command { command } => {
                if command.value.is_empty() && command.arguments.is_empty() {
                    return Err(Error::invalid(format!("{field}.command.value"), "is empty"));
                }
                if !command.uris.is_empty() {
                    return Err(Error::invalid(
                        format!("{field}.command.uris"),
                        "a health check command cannot fetch URIs",
                    ));
                }
            }
            HealthProbe::Http { port, path, scheme } => {
                port_ok(format!("{field}.http.port"), *port)?;
                if let Some(p) = path
                    && !p.starts_with('/')
                {
                    return Err(Error::invalid(
                        format!("{field}.http.path"),
                        format!("'{p}' must start with '/'"),
                    ));
                }
                if let Some(s) = scheme
                    && s != "http"
                    && s != "https"
                {
                    return Err(Error::invalid(
                        format!("{field}.http.scheme"),
                        format!("'{s}' is not 'http' or 'https'"),
                    ));
                }
            }
            HealthProbe::Tcp { port } => port_ok(format!("{field}.tcp.port"), *port)?,
        }
        if self.interval_ms == 0 {
            return Err(Error::invalid(
                format!("{field}.interval_seconds"),
                "must be positive",
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
    /// The task's health, in updates from a health-checked task (Mesos `healthy`).
    #[serde(default)]
    pub healthy: Option<bool>,
}

#[cfg(test)]
mod uri_tests {
    use super::*;

    #[test]
    fn uri_validation() {
        for ok in ["/a/b", "file:///x", "http://h/x", "HTTPS://h/x"] {
            assert!(Uri::new(ok).validate("u").is_ok(), "{ok}");
        }
        for bad in ["", "relative/x", "ftp://h/x", "hdfs://x", "http://"] {
            assert!(Uri::new(bad).validate("u").is_err(), "{bad}");
        }
        let mut u = Uri::new("/x");
        for bad in ["", "a/b", "..", ".", "../x", "a..b"] {
            u.output_file = Some(bad.into());
            let e = u.validate("u").unwrap_err();
            assert_eq!(e.field(), Some("u.output_file"), "{bad}");
        }
        u.output_file = Some("run.sh".into());
        assert!(u.validate("u").is_ok());
    }

    #[test]
    fn old_command_json_parses_with_defaults() {
        let c: CommandInfo = serde_json::from_str(r#"{"value":"true"}"#).unwrap();
        assert!(c.uris.is_empty());
        let u: Uri = serde_json::from_str(r#"{"value":"/x"}"#).unwrap();
        assert_eq!(u, Uri::new("/x"));
    }
}
