//! The cgroups containerizer: [`CgroupLauncher`] runs each task like [`ProcessLauncher`]
//! but inside its own cgroups, with CPU shares and quota and a memory limit from the task's
//! resources, reports OOM kills, kills the whole cgroup, and removes it after exit.
//!
//! **Getting the task into its cgroups before any of its code runs.** The task's
//! [`supervisor`](crate::supervisor) is started (still through `posix_spawn`, no `pre_exec`
//! fork path) with `STOP=1`: the shell stops itself first thing. The launcher waits until
//! `/proc/PID/stat` shows it stopped, writes the pid into `cgroup.procs` of every
//! hierarchy, then sends SIGCONT; only then does the supervisor start the task, which (with
//! everything it forks) runs inside the cgroups. If placing fails, the stopped process is
//! killed and the launch fails with a typed error.
//!
//! With [`with_namespaces`](CgroupLauncher::with_namespaces) the task also gets its own pid
//! and mount namespaces; the supervisor that is stopped and placed stays outside them, and
//! everything it starts inherits its cgroups.
//!
//! **Task groups.** A default executor's container ([`crate::executor`]) is a cgroup limited
//! to the executor's and all its tasks' resources; each task of its groups runs in a cgroup
//! nested in it, without limits of its own, so the group shares the executor's limits
//! while kills, OOM counts and cleanup stay per task.
//!
//! **Recovery.** After an agent restart a cgroups container is found again from its
//! checkpointed pid (and start time) and its cgroups, recomputed from the container id (or
//! the checkpointed nested name): a kill still freezes and kills the whole cgroup, and the
//! OOM counter is read at exit.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tracing::warn;

use crate::cgroups::{CgroupError, Cgroups, ContainerCgroup, Limits};
use crate::checkpoint::{ContainerKind, ContainerRecord};
use crate::error::AgentError;
use crate::launcher::{
    BoxFuture, Container, LaunchSpec, Launcher, ProcessLauncher, RecoverSpec, Recovered, TaskExit,
};
use crate::namespaces::TaskNamespaces;

/// How long a freshly spawned wrapper may take to stop itself.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs tasks in per-container cgroups.
#[derive(Debug, Clone)]
pub struct CgroupLauncher {
    cgroups: Arc<Cgroups>,
    namespaces: Option<Arc<TaskNamespaces>>,
}

impl CgroupLauncher {
    /// Detects the cgroups layout, with container cgroups under `root` (relative to the
    /// agent's own cgroup in each hierarchy), and checks that they can be used.
    pub fn probe(root: &str) -> Result<Self, CgroupError> {
        let cgroups = Cgroups::detect(root)?;
        cgroups.check_usable()?;
        Ok(CgroupLauncher {
            cgroups: Arc::new(cgroups),
            namespaces: None,
        })
    }

    /// Also runs each task in its own pid and mount namespaces ([`crate::namespaces`]).
    pub fn with_namespaces(mut self, namespaces: Option<TaskNamespaces>) -> Self {
        self.namespaces = namespaces.map(Arc::new);
        self
    }

    pub fn cgroups(&self) -> &Cgroups {
        &self.cgroups
    }

    /// Starts `spec` in the new cgroup `name` (relative to the root) with `limits`; `nested`
    /// when `name` lies in a default executor's cgroup (whose limits apply).
    fn launch_blocking(
        &self,
        spec: &LaunchSpec,
        name: &str,
        limits: Limits,
        nested: bool,
    ) -> Result<CgroupContainer, CgroupLaunchError> {
        let cg = self
            .cgroups
            .create(name, &limits)
            .map_err(CgroupLaunchError::Cgroup)?;
        let child = match ProcessLauncher::spawn_with(spec, true, self.namespaces.as_deref()) {
            Ok(c) => c,
            Err(e) => {
                let _ = cg.destroy();
                return Err(CgroupLaunchError::Spawn(e));
            }
        };
        let placed = wait_stopped(child.pid)
            .map_err(CgroupLaunchError::Spawn)
            .and_then(|()| cg.attach(child.pid).map_err(CgroupLaunchError::Cgroup));
        let pid = nix::unistd::Pid::from_raw(child.pid as i32);
        if let Err(e) = placed {
            let _ = nix::sys::signal::killpg(pid, Signal::SIGKILL);
            let _ = cg.destroy();
            // The killed child is reaped when `child` drops (tokio's orphan reaper).
            return Err(e);
        }
        nix::sys::signal::kill(pid, Signal::SIGCONT).map_err(|e| {
            let _ = cg.destroy();
            CgroupLaunchError::Spawn(io::Error::from(e))
        })?;
        Ok(CgroupContainer {
            inner: Box::new(child),
            cg,
            limits: if nested {
                limits_of(&spec.resources)
            } else {
                limits
            },
            nested_name: nested.then(|| name.to_string()),
        })
    }

    /// Runs `spec` (cgroup `name`, `nested` in an executor's or not) off the async workers.
    async fn launch_in(
        &self,
        spec: LaunchSpec,
        name: String,
        limits: Limits,
        nested: bool,
    ) -> Result<Arc<dyn Container>, AgentError> {
        let container_id = spec.container_id.clone();
        let this = self.clone();
        let result =
            tokio::task::spawn_blocking(move || this.launch_blocking(&spec, &name, limits, nested))
                .await
                .unwrap_or_else(|join| {
                    Err(CgroupLaunchError::Spawn(io::Error::other(format!(
                        "launch failed: {join}"
                    ))))
                });
        match result {
            Ok(c) => Ok(Arc::new(c) as Arc<dyn Container>),
            Err(CgroupLaunchError::Spawn(source)) => Err(AgentError::Launch {
                container_id,
                source,
            }),
            Err(CgroupLaunchError::Cgroup(source)) => Err(AgentError::Isolation {
                container_id,
                source,
            }),
        }
    }

    /// Runs a blocking cgroups operation on an executor's container off the async workers.
    async fn on_executor(
        &self,
        container_id: &str,
        op: impl FnOnce(&Cgroups, &str) -> Result<(), CgroupError> + Send + 'static,
    ) -> Result<(), AgentError> {
        let id = container_id.to_string();
        let cgroups = self.cgroups.clone();
        let id2 = id.clone();
        tokio::task::spawn_blocking(move || op(&cgroups, &id2))
            .await
            .unwrap_or_else(|join| {
                Err(CgroupError::Unusable(format!(
                    "cgroup operation failed: {join}"
                )))
            })
            .map_err(|source| AgentError::Isolation {
                container_id: id,
                source,
            })
    }
}

enum CgroupLaunchError {
    Cgroup(CgroupError),
    Spawn(io::Error),
}

/// Limits from a task's resources (absent or zero = unlimited).
pub fn limits_of(r: &tessera_types::Resources) -> Limits {
    let positive = |v: f64| (v > 0.0).then_some(v);
    Limits {
        cpus: positive(r.scalar("cpus").as_f64()),
        mem_mb: positive(r.scalar("mem").as_f64()),
    }
}

/// Waits until process `pid` is stopped (state `T` in `/proc/PID/stat`).
fn wait_stopped(pid: u32) -> io::Result<()> {
    let path = format!("/proc/{pid}/stat");
    let start = Instant::now();
    loop {
        let stat = std::fs::read_to_string(&path)?;
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next());
        match state {
            Some('T') | Some('t') => return Ok(()),
            Some('Z') | Some('X') => {
                return Err(io::Error::other(
                    "the task's wrapper exited before it could be isolated",
                ));
            }
            _ => {}
        }
        if start.elapsed() > STOP_TIMEOUT {
            return Err(io::Error::other(format!(
                "the task's wrapper (pid {pid}) did not stop within {STOP_TIMEOUT:?}"
            )));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

impl Launcher for CgroupLauncher {
    fn recover(&self, spec: RecoverSpec) -> BoxFuture<'_, Result<Recovered, AgentError>> {
        Box::pin(async move {
            if spec.record.kind != ContainerKind::Cgroups {
                return ProcessLauncher.recover(spec).await;
            }
            let p = ProcessLauncher::recover_process(&spec)?;
            let running = p.is_running();
            let name = spec.record.cgroup.clone();
            let container = CgroupContainer {
                inner: Box::new(p),
                cg: self
                    .cgroups
                    .container(name.as_deref().unwrap_or(&spec.container_id)),
                limits: limits_of(&spec.resources),
                nested_name: name,
            };
            Ok(Recovered {
                container: Arc::new(container),
                running,
            })
        })
    }

    fn launch(&self, spec: LaunchSpec) -> BoxFuture<'_, Result<Arc<dyn Container>, AgentError>> {
        let name = spec.container_id.clone();
        let limits = limits_of(&spec.resources);
        Box::pin(self.launch_in(spec, name, limits, false))
    }

    /// The executor's cgroup, limited to the executor's and its tasks' resources; on cgroup
    /// v2 it delegates its controllers to the tasks' cgroups nested in it.
    fn prepare_executor(
        &self,
        container_id: &str,
        resources: &tessera_types::Resources,
    ) -> BoxFuture<'_, Result<(), AgentError>> {
        let limits = limits_of(resources);
        let id = container_id.to_string();
        Box::pin(async move {
            self.on_executor(&id, move |cg, id| cg.create_parent(id, &limits).map(|_| ()))
                .await
        })
    }

    fn update_executor(
        &self,
        container_id: &str,
        resources: &tessera_types::Resources,
    ) -> BoxFuture<'_, Result<(), AgentError>> {
        let limits = limits_of(resources);
        let id = container_id.to_string();
        Box::pin(async move {
            self.on_executor(&id, move |cg, id| cg.container(id).update(&limits))
                .await
        })
    }

    /// The task's own cgroup, nested in its executor's, without limits of its own: the
    /// executor's limit the whole group (Mesos' `share_cgroups`), while a kill, the OOM
    /// count and the cleanup stay per task.
    fn launch_nested(
        &self,
        executor_container: &str,
        spec: LaunchSpec,
    ) -> BoxFuture<'_, Result<Arc<dyn Container>, AgentError>> {
        let name = format!("{executor_container}/{}", spec.container_id);
        Box::pin(self.launch_in(spec, name, Limits::default(), true))
    }

    fn destroy_executor(&self, container_id: &str) -> BoxFuture<'_, Result<(), AgentError>> {
        let id = container_id.to_string();
        Box::pin(async move {
            self.on_executor(&id, |cg, id| cg.container(id).destroy())
                .await
        })
    }
}

/// A task running in its own cgroups.
pub struct CgroupContainer {
    /// The supervisor: the agent's child, or a recovered one.
    inner: Box<dyn Container>,
    cg: ContainerCgroup,
    limits: Limits,
    /// `<executor container>/<container>` for a task of a group (its cgroup is nested in
    /// its executor's); `None` when the cgroup is named by the container id.
    nested_name: Option<String>,
}

impl std::fmt::Debug for CgroupContainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CgroupContainer")
            .field("pid", &self.inner.pid())
            .field("cg", &self.cg)
            .finish()
    }
}

impl Container for CgroupContainer {
    fn pid(&self) -> Option<u32> {
        self.inner.pid()
    }

    fn record(&self) -> Option<ContainerRecord> {
        let mut r = self.inner.record()?;
        r.kind = ContainerKind::Cgroups;
        r.cgroups = self.cg.dirs();
        r.cgroup = self.nested_name.clone();
        Some(r)
    }

    /// SIGKILL kills the whole cgroup through the freezer (nothing can fork away meanwhile);
    /// other signals go to every process of the cgroup. Falls back to the process group.
    fn kill(&self, signal: Signal) -> io::Result<()> {
        let result = if signal == Signal::SIGKILL {
            self.cg.kill_all()
        } else {
            self.cg.signal_all(signal)
        };
        if let Err(e) = result {
            warn!(error = %e, "signalling the container's cgroup failed; signalling its process group");
            return self.inner.kill(signal);
        }
        Ok(())
    }

    fn wait(&self) -> BoxFuture<'_, io::Result<TaskExit>> {
        Box::pin(async move {
            // Clean up even when the exit is unknown (a recovered supervisor that was killed).
            let waited = self.inner.wait().await;
            let cg = self.cg.clone();
            let (ooms, destroyed) = tokio::task::spawn_blocking(move || {
                // Read the OOM counter before destroying (the files go with the cgroup).
                let ooms = cg.oom_kills();
                (ooms, cg.destroy())
            })
            .await
            .map_err(|e| io::Error::other(format!("cgroup cleanup failed: {e}")))?;
            if let Err(e) = destroyed {
                warn!(error = %e, "removing the container's cgroups failed");
            }
            let ooms = ooms.unwrap_or_else(|e| {
                warn!(error = %e, "cannot read the container's OOM counter");
                0
            });
            let limit = TaskExit::MemoryLimit {
                limit_mb: self.limits.mem_mb.unwrap_or(0.0) as u64,
            };
            let exit = match waited {
                Ok(exit) => exit,
                // The OOM killer took the supervisor too: the limit is still the reason.
                Err(_) if ooms > 0 => return Ok(limit),
                Err(e) => return Err(e),
            };
            // A process of the container was OOM-killed and the task did not succeed: the
            // memory limit ended it (the main process may be the victim, or a shell whose
            // child was).
            if ooms > 0 && exit != TaskExit::Code(0) {
                return Ok(limit);
            }
            Ok(exit)
        })
    }
}
