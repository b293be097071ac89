//! `tessera-agent`: the per-machine agent of Tessera, speaking the internal master↔agent
//! protocol (`tessera_api::pb`, one bidirectional `Attach` stream).
//!
//! It registers with the master (persisting its agent id in the work dir so a restart
//! re-registers as the same agent), heartbeats, launches tasks through a [`Launcher`] into
//! Mesos-layout sandboxes, kills them (SIGTERM to the process group, SIGKILL after the
//! grace), and reports status updates at least once and in order per task (see [`status`]).
//! When the master link breaks, tasks keep running while the agent reconnects with backoff.
//! Tasks with a Mesos `HealthCheck` (COMMAND, HTTP, TCP) are probed by a checker per task
//! ([`health`]); health changes become TASK_RUNNING updates with `healthy` set, and too many
//! consecutive failures kill the task (TASK_KILLED, `healthy: false`).
//!
//! Task groups (Mesos LAUNCH_GROUP) run in a default executor played by the agent itself
//! ([`executor`]): one executor sandbox and cgroup for the group, each task supervised like
//! any other, and a task that fails or is killed ending the rest of its group.
//!
//! Tasks also outlive the agent itself: each runs under a small [`supervisor`] that records
//! its exit status, and the agent checkpoints every task, its container and its
//! unacknowledged updates under `<work_dir>/meta` ([`checkpoint`]). An agent restarted
//! (even after SIGKILL) with the same work dir re-attaches to its containers, reports the
//! tasks that ended meanwhile, re-registers with them and resends what was not
//! acknowledged. A wiped work dir registers as a new agent.
//!
//! Containment ([`default_launcher`]): process tasks run in a cgroup per container when
//! cgroups are usable ([`isolation`]), and in their own pid and mount namespaces with a
//! private `/tmp` when the agent can create them ([`namespaces`]); a task with a `disk`
//! resource has its sandbox measured periodically and is killed (TASK_FAILED,
//! REASON_CONTAINER_LIMITATION_DISK) when it grows past it ([`disk`]). NVIDIA GPUs are
//! counted into the `gpus` resource when present ([`resources`]).
//!
//! Structure: pure pieces ([`status`], [`tasks`] helpers, [`launcher::task_environment`])
//! are unit-tested without I/O; one loop (`agent`) owns all mutable state.
//!
//! Must not depend on: the master, the allocator, or any framework crate.

mod agent;
pub mod cgroups;
pub mod checkpoint;
pub mod config;
pub mod dial;
pub mod disk;
pub mod docker;
pub mod docker_probe;
pub mod error;
pub mod executor;
pub mod executor_api;
pub mod fetcher;
pub mod files;
pub mod gc;
pub mod health;
pub mod http;
pub mod isolation;
pub mod launcher;
pub mod namespaces;
pub mod resources;
pub mod status;
pub mod supervisor;
pub mod tasks;
pub mod user;
pub mod volumes;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

pub use config::{AgentConfig, Isolation, Namespaces};
pub use dial::Dialer;
pub use docker::DockerLauncher;
pub use error::AgentError;
pub use isolation::CgroupLauncher;
pub use launcher::{
    ComposingLauncher, Container, LaunchSpec, Launcher, ProcessLauncher, RecoverSpec, Recovered,
    TaskExit,
};
pub use namespaces::{NamespaceLauncher, TaskNamespaces};
pub use resources::{detect_gpus, detect_resources, resources_with_overrides};

/// Runs the agent until `shutdown` is cancelled; then kills all running tasks, briefly tries
/// to deliver their final updates, and returns. Process tasks are contained as
/// [`default_launcher`] says.
///
/// Tasks whose `ContainerInfo.type` is `DOCKER` go to a [`DockerLauncher`] on
/// `config.docker_socket`; when no engine answers there, one line says so and those tasks
/// fail with that reason.
pub async fn run(config: AgentConfig, shutdown: CancellationToken) -> Result<(), AgentError> {
    let launcher = Arc::new(ComposingLauncher::new(
        default_launcher(&config),
        Arc::new(docker_launcher(&config).await),
    ));
    run_with_launcher(config, launcher, shutdown).await
}

/// Connects the Docker containerizer [`run`] uses and logs whether Docker is available.
pub async fn docker_launcher(config: &AgentConfig) -> DockerLauncher {
    let docker = DockerLauncher::connect(&config.docker_socket).await;
    match docker.availability() {
        Ok(()) => tracing::info!(socket = %config.docker_socket, "Docker containerizer available"),
        Err(e) => tracing::warn!("Docker containerizer unavailable: {e}; DOCKER tasks will fail"),
    }
    docker
}

/// The launcher [`run`] uses for `config`: cgroups ([`CgroupLauncher`]) when
/// `config.isolation` asks for them and they are usable, else plain processes
/// ([`ProcessLauncher`]), with one warning saying so; either with pid and mount namespaces
/// when [`task_namespaces`] finds them available. Probes the machine (blocking, a few
/// milliseconds); call it once at start-up.
pub fn default_launcher(config: &AgentConfig) -> Arc<dyn Launcher> {
    let namespaces = task_namespaces(config);
    let plain = |ns: Option<TaskNamespaces>| -> Arc<dyn Launcher> {
        match ns {
            Some(ns) => Arc::new(NamespaceLauncher::new(ns)),
            None => Arc::new(ProcessLauncher),
        }
    };
    match config.isolation {
        Isolation::None => plain(namespaces),
        Isolation::Cgroups => match CgroupLauncher::probe(&config.cgroups_root) {
            Ok(l) => {
                tracing::info!(roots = ?l.cgroups().root_dirs(), "isolating tasks with cgroups");
                Arc::new(l.with_namespaces(namespaces))
            }
            Err(e) => {
                tracing::warn!(
                    "cgroups isolation unavailable ({e}); tasks run WITHOUT cpu/memory limits"
                );
                plain(namespaces)
            }
        },
    }
}

/// pid and mount namespaces for process tasks, when `config.namespaces` asks for them and
/// this machine allows them ([`TaskNamespaces::probe`]). Logs one line saying which, and
/// why not.
pub fn task_namespaces(config: &AgentConfig) -> Option<TaskNamespaces> {
    match config.namespaces {
        Namespaces::None => {
            tracing::info!(
                "pid and mount namespaces are off by configuration; tasks share the agent's pid namespace and /tmp"
            );
            None
        }
        Namespaces::Auto => match TaskNamespaces::probe() {
            Ok(ns) => {
                tracing::info!(
                    "tasks run in their own pid and mount namespaces, with a private /tmp"
                );
                Some(ns)
            }
            Err(e) => {
                tracing::warn!(
                    "pid and mount namespaces unavailable: {e}; tasks share the agent's pid namespace and /tmp"
                );
                None
            }
        },
    }
}

/// [`run`] with a chosen [`Launcher`] (a containerizer, or a fake in tests).
pub async fn run_with_launcher(
    config: AgentConfig,
    launcher: Arc<dyn Launcher>,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    run_inner(config, launcher, None, shutdown).await
}

/// [`run_with_launcher`] reaching the master through `dialer` instead of TCP to
/// `config.master` (which must still be a valid `HOST:PORT`; it is not dialled). For tests
/// under a paused clock: see [`dial`].
pub async fn run_with_dialer(
    config: AgentConfig,
    launcher: Arc<dyn Launcher>,
    dialer: Dialer,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    run_inner(config, launcher, Some(dialer), shutdown).await
}

async fn run_inner(
    config: AgentConfig,
    launcher: Arc<dyn Launcher>,
    dialer: Option<Dialer>,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    let mut config = config;
    std::fs::create_dir_all(&config.work_dir).map_err(|source| AgentError::WorkDir {
        path: config.work_dir.clone(),
        source,
    })?;
    let endpoint = agent::master_endpoint(&config)?;
    let agent_id = agent::load_agent_id(&config.work_dir)?;
    let work_dir_err = |source| AgentError::WorkDir {
        path: config.work_dir.join("slaves"),
        source,
    };
    let root = Arc::new(files::Root::for_work_dir(&config.work_dir).map_err(work_dir_err)?);
    // The HTTP server starts before the agent registers so the master learns its port;
    // it reads snapshots from a channel whose sender the agent gets below.
    let (snap_tx, snap_rx) = tokio::sync::watch::channel(Arc::new(http::Snapshot::empty(&config)));
    let (calls_tx, calls_rx) = tokio::sync::mpsc::channel(256);
    let agent_serves_http = config.http_listen.is_some();
    let server_stop = shutdown.child_token();
    if let Some(addr) = config.http_listen {
        let state = Arc::new(http::HttpState {
            snapshots: snap_rx.clone(),
            cgroups: http::stats_cgroups(&config),
            files: root.clone(),
            executor_calls: Some(calls_tx),
        });
        let bound = http::serve(addr, state, server_stop.clone())
            .await
            .map_err(|source| AgentError::HttpListen { addr, source })?;
        config.http_port = bound.port();
        tracing::info!(%bound, "agent HTTP endpoints listening");
    }
    let policy = gc::Policy {
        delay: config.gc_delay,
        disk_threshold: config.gc_disk_threshold,
    };
    let gc = tokio::spawn(gc::run(
        root.path().to_path_buf(),
        snap_rx,
        policy,
        config.gc_interval,
        server_stop.clone(),
    ));
    let mut agent = agent::Agent::new(config, launcher, endpoint, agent_id);
    agent.dialer = dialer;
    // Without HTTP endpoints no executor can call; the sender is gone with the server.
    agent.executor_calls = agent_serves_http.then_some(calls_rx);
    agent.snapshot.attach(snap_tx);
    let res = agent.run(shutdown).await;
    server_stop.cancel();
    let _ = gc.await;
    res
}
