//! The agent's configuration: a validated value built once by the binary (or a test).

use std::path::PathBuf;
use std::time::Duration;

use tessera_types::Resources;

/// Grace between SIGTERM and SIGKILL when neither the kill nor the task names one.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(3);
/// First retry interval for an unacknowledged status update.
pub const DEFAULT_STATUS_RETRY_BASE: Duration = Duration::from_secs(10);
/// Longest retry interval for an unacknowledged status update.
pub const DEFAULT_STATUS_RETRY_CAP: Duration = Duration::from_secs(600);
/// First reconnect delay after the master link breaks.
pub const DEFAULT_RECONNECT_BASE: Duration = Duration::from_millis(100);
/// Longest reconnect delay.
pub const DEFAULT_RECONNECT_CAP: Duration = Duration::from_secs(5);
/// How long to wait for `Registered`/`Rejected` after opening the stream.
pub const DEFAULT_REGISTER_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 keepalive ping interval towards the master; a dead master is noticed within
/// about this plus [`DEFAULT_KEEPALIVE_TIMEOUT`].
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// How long a keepalive ping may go unanswered.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for final status updates to be acknowledged.
pub const DEFAULT_SHUTDOWN_FLUSH: Duration = Duration::from_secs(1);

/// Default cgroups root, under the agent's own cgroup in each hierarchy.
pub const DEFAULT_CGROUPS_ROOT: &str = "tessera";

/// How tasks are isolated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// A cgroup per container with CPU and memory limits, when cgroups are usable (root,
    /// controllers mounted); otherwise the agent warns once and runs plain processes.
    #[default]
    Cgroups,
    /// Plain processes in their own process group: no limits.
    None,
}

/// Everything [`run`](crate::run) needs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Master address as `HOST:PORT`.
    pub master: String,
    /// Holds `agent_id` and the sandboxes (`slaves/...`).
    pub work_dir: PathBuf,
    pub resources: Resources,
    pub attributes: Vec<(String, String)>,
    pub hostname: String,
    /// Port of the agent's own HTTP endpoints; 0 when it serves none.
    pub http_port: u16,
    pub default_kill_grace: Duration,
    pub status_retry_base: Duration,
    pub status_retry_cap: Duration,
    pub reconnect_base: Duration,
    pub reconnect_cap: Duration,
    pub register_timeout: Duration,
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    pub shutdown_flush: Duration,
    pub isolation: Isolation,
    /// Relative path of the container cgroups under the agent's own cgroup (Mesos'
    /// `--cgroups_root`).
    pub cgroups_root: String,
}

impl AgentConfig {
    /// A configuration with the named defaults for everything but the essentials.
    pub fn new(
        master: impl Into<String>,
        work_dir: impl Into<PathBuf>,
        resources: Resources,
    ) -> Self {
        AgentConfig {
            master: master.into(),
            work_dir: work_dir.into(),
            resources,
            attributes: Vec::new(),
            hostname: local_hostname(),
            http_port: 0,
            default_kill_grace: DEFAULT_KILL_GRACE,
            status_retry_base: DEFAULT_STATUS_RETRY_BASE,
            status_retry_cap: DEFAULT_STATUS_RETRY_CAP,
            reconnect_base: DEFAULT_RECONNECT_BASE,
            reconnect_cap: DEFAULT_RECONNECT_CAP,
            register_timeout: DEFAULT_REGISTER_TIMEOUT,
            keepalive_interval: DEFAULT_KEEPALIVE_INTERVAL,
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            shutdown_flush: DEFAULT_SHUTDOWN_FLUSH,
            isolation: Isolation::default(),
            cgroups_root: DEFAULT_CGROUPS_ROOT.to_string(),
        }
    }
}

/// This machine's hostname, or `localhost` when it cannot be read.
pub fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}
