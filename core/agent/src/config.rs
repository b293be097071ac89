//! The agent's configuration: a validated value built once by the binary (or a test).

use std::net::SocketAddr;
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

/// How long a finished task's sandbox is kept (Mesos' `--gc_delay`, one week).
pub const DEFAULT_GC_DELAY: Duration = Duration::from_secs(7 * 24 * 3600);
/// Above this fraction of the work dir's disk in use, finished sandboxes are removed early,
/// oldest first (Mesos' `--gc_disk_headroom` of 0.1).
pub const DEFAULT_GC_DISK_THRESHOLD: f64 = 0.9;
/// How often the sandbox garbage collector looks.
pub const DEFAULT_GC_INTERVAL: Duration = Duration::from_secs(60);

/// Default cgroups root, under the agent's own cgroup in each hierarchy.
pub const DEFAULT_CGROUPS_ROOT: &str = "tessera";

/// Where the agent finds the Docker engine for `ContainerInfo.type = DOCKER` tasks.
pub const DEFAULT_DOCKER_SOCKET: &str = "unix:///var/run/docker.sock";

/// How often a task's sandbox is measured against its `disk` resource (Mesos'
/// `--container_disk_watch_interval`, 15 s there).
pub const DEFAULT_DISK_WATCH_INTERVAL: Duration = Duration::from_secs(5);

/// Whether process tasks get their own pid and mount namespaces (see
/// [`crate::namespaces`]). Opt-in, as Mesos' `namespaces/pid` and `filesystem/linux`
/// isolators are: MPI ranks of one job on one agent need to see each other's processes
/// (cross-memory attach) and share `/tmp`, and many tools expect host pids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Namespaces {
    /// A pid namespace (with a fresh `/proc`) and a mount namespace with a private `/tmp`
    /// per task when the agent can create them (root, util-linux, a kernel and container
    /// runtime that allow it); otherwise the agent says why in one log line and runs tasks
    /// without.
    Auto,
    /// Tasks share the agent's pid namespace and `/tmp`.
    #[default]
    None,
}

impl std::str::FromStr for Namespaces {
    type Err = String;

    /// `pid,mount` (either order) or `auto`: [`Namespaces::Auto`]; `none` or `off`:
    /// [`Namespaces::None`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut names: Vec<&str> = s.split(',').map(str::trim).collect();
        names.sort_unstable();
        match names.as_slice() {
            ["auto"] | ["mount", "pid"] => Ok(Namespaces::Auto),
            ["none"] | ["off"] | [""] => Ok(Namespaces::None),
            _ => Err(format!(
                "namespaces: '{s}' is not one of 'pid,mount' (or 'auto'), 'none'"
            )),
        }
    }
}

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
    /// Port of the agent's own HTTP endpoints; 0 when it serves none. Set from the bound
    /// port of `http_listen` when the agent starts its server.
    pub http_port: u16,
    /// Where the agent serves its HTTP endpoints (`/files/*`, `/state`, `/api/v1`, ...);
    /// `None` serves nothing. Port 0 lets the OS choose (reported to the master).
    pub http_listen: Option<SocketAddr>,
    /// Keep a finished task's sandbox this long after its terminal update was acknowledged.
    pub gc_delay: Duration,
    /// Disk usage fraction (0..1] of the work dir's filesystem above which finished
    /// sandboxes are removed before `gc_delay`, oldest first.
    pub gc_disk_threshold: f64,
    pub gc_interval: Duration,
    /// The fault domain (region, zone) the agent reports when it registers (Mesos
    /// `--domain`); `None` registers without one.
    pub domain: Option<(String, String)>,
    /// Run each task as its user (`CommandInfo.user`, else the framework's user), as
    /// Mesos' `--switch_user` (default on); off, tasks run as the agent's user.
    pub switch_user: bool,
    /// How long a custom executor has to subscribe after it started before it is killed
    /// and its tasks fail (Mesos `--executor_registration_timeout`).
    pub executor_registration_timeout: Duration,
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
    /// The Docker engine's socket (`unix:///PATH`) for Docker tasks (Mesos' `--docker_socket`).
    pub docker_socket: String,
    /// pid and mount namespaces for process tasks (with or without cgroups).
    pub namespaces: Namespaces,
    /// How often the sandbox of a task with a `disk` resource is measured; a task whose
    /// sandbox exceeds it is killed (TASK_FAILED, REASON_CONTAINER_LIMITATION_DISK).
    /// `None`: disk is not enforced.
    pub disk_watch_interval: Option<Duration>,
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
            http_listen: None,
            gc_delay: DEFAULT_GC_DELAY,
            gc_disk_threshold: DEFAULT_GC_DISK_THRESHOLD,
            gc_interval: DEFAULT_GC_INTERVAL,
            default_kill_grace: DEFAULT_KILL_GRACE,
            executor_registration_timeout: crate::agent::EXECUTOR_REGISTRATION_TIMEOUT,
            switch_user: true,
            domain: None,
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
            docker_socket: DEFAULT_DOCKER_SOCKET.to_string(),
            namespaces: Namespaces::default(),
            disk_watch_interval: Some(DEFAULT_DISK_WATCH_INTERVAL),
        }
    }
}

impl AgentConfig {
    /// `HOST:PORT` of the agent's HTTP endpoints as tasks see it (`MESOS_AGENT_ENDPOINT`):
    /// the listen IP when it is a specific address (Mesos uses its bound address), else the
    /// hostname. `None` when the agent serves no HTTP.
    pub fn agent_endpoint(&self) -> Option<String> {
        if self.http_port == 0 {
            return None;
        }
        Some(match self.http_listen {
            Some(a) if !a.ip().is_unspecified() => {
                SocketAddr::new(a.ip(), self.http_port).to_string()
            }
            _ => format!("{}:{}", self.hostname, self.http_port),
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_parse_as_a_list_or_a_word() {
        for on in ["pid,mount", "mount,pid", " pid , mount ", "auto"] {
            assert_eq!(on.parse::<Namespaces>(), Ok(Namespaces::Auto), "{on}");
        }
        for off in ["none", "off", ""] {
            assert_eq!(off.parse::<Namespaces>(), Ok(Namespaces::None), "{off}");
        }
        for bad in ["pid", "net", "pid,mount,net"] {
            let e = bad.parse::<Namespaces>().unwrap_err();
            assert!(e.starts_with("namespaces:"), "{e}");
        }
    }
}
