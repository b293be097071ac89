//! `tessera-agent`: the per-machine agent of Tessera, speaking the internal master↔agent
//! protocol (`tessera_api::pb`, one bidirectional `Attach` stream).
//!
//! It registers with the master (persisting its agent id in the work dir so a restart
//! re-registers as the same agent), heartbeats, launches tasks through a [`Launcher`] into
//! Mesos-layout sandboxes, kills them (SIGTERM to the process group, SIGKILL after the
//! grace), and reports status updates at least once and in order per task (see [`status`]).
//! When the master link breaks, tasks keep running while the agent reconnects with backoff.
//!
//! Structure: pure pieces ([`status`], [`tasks`] helpers, [`launcher::task_environment`])
//! are unit-tested without I/O; one loop (`agent`) owns all mutable state.
//!
//! Must not depend on: the master, the allocator, or any framework crate.

mod agent;
pub mod cgroups;
pub mod config;
pub mod error;
pub mod isolation;
pub mod launcher;
pub mod resources;
pub mod status;
pub mod tasks;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

pub use config::{AgentConfig, Isolation};
pub use error::AgentError;
pub use isolation::CgroupLauncher;
pub use launcher::{Container, LaunchSpec, Launcher, ProcessLauncher, TaskExit};
pub use resources::{detect_resources, resources_with_overrides};

/// Runs the agent until `shutdown` is cancelled; then kills all running tasks, briefly tries
/// to deliver their final updates, and returns. Tasks run in cgroups ([`CgroupLauncher`])
/// when `config.isolation` asks for it and cgroups are usable, else as plain processes
/// ([`ProcessLauncher`]), with one warning saying so.
pub async fn run(config: AgentConfig, shutdown: CancellationToken) -> Result<(), AgentError> {
    let launcher = default_launcher(&config);
    run_with_launcher(config, launcher, shutdown).await
}

/// The launcher [`run`] uses for `config`.
pub fn default_launcher(config: &AgentConfig) -> Arc<dyn Launcher> {
    match config.isolation {
        Isolation::None => Arc::new(ProcessLauncher),
        Isolation::Cgroups => match CgroupLauncher::probe(&config.cgroups_root) {
            Ok(l) => {
                tracing::info!(roots = ?l.cgroups().root_dirs(), "isolating tasks with cgroups");
                Arc::new(l)
            }
            Err(e) => {
                tracing::warn!(
                    "cgroups isolation unavailable ({e}); tasks run WITHOUT cpu/memory limits"
                );
                Arc::new(ProcessLauncher)
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
    std::fs::create_dir_all(&config.work_dir).map_err(|source| AgentError::WorkDir {
        path: config.work_dir.clone(),
        source,
    })?;
    let endpoint = agent::master_endpoint(&config)?;
    let agent_id = agent::load_agent_id(&config.work_dir)?;
    agent::Agent::new(config, launcher, endpoint, agent_id)
        .run(shutdown)
        .await
}
