//! The Docker containerizer: [`DockerLauncher`] runs tasks whose `ContainerInfo.type` is
//! `DOCKER` through the machine's Docker engine (Engine API over its unix socket, `bollard`).
//!
//! Per task, following the Mesos Docker containerizer:
//! - the container is named `mesos-<container_id>` and labelled with the task's ids
//!   ([`LABEL_CONTAINER_ID`], [`LABEL_TASK_ID`], ...), so it can be found and cleaned up;
//! - `shell` commands run as entrypoint `/bin/sh` with `-c VALUE`; other commands append
//!   `VALUE ARGUMENTS…` to the image's entrypoint;
//! - the sandbox is bind-mounted at [`SANDBOX_MOUNT`] (also the working directory and
//!   `MESOS_SANDBOX`), the task's volumes beside it; `cpus` become CPU shares (×1024) and
//!   `mem` the memory limit; the container runs with Docker's init so SIGTERM reaches the
//!   command;
//! - `docker logs` is followed into the sandbox's `stdout` and `stderr` files;
//! - the exit code comes from the engine; `State.OOMKilled` with a non-zero exit is reported
//!   as the memory limitation, like the cgroups launcher does; the container is removed
//!   once it has exited.
//!
//! After an agent restart a task container is found again by its name
//! ([`Launcher::recover`]): its output is followed again (appended to the sandbox files,
//! from the moment of recovery on) and `wait` reports its exit as for a launched one; a
//! container that exited while the agent was down is reported at once.
//!
//! There may be no registry: an image missing locally is pulled once, and when that fails
//! the launch fails with a message saying how to provide the image (`docker import`,
//! `docker load`). Without a reachable engine every Docker launch fails with
//! [`DockerError::Unavailable`]; the agent keeps running its other tasks.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as EngineError;
use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, KillContainerOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder,
};
use futures_util::StreamExt;
use nix::sys::signal::Signal;
use tessera_types::{ContainerInfo, DockerInfo, DockerNetwork, VolumeMode};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::checkpoint::{ContainerKind, ContainerRecord};
use crate::error::AgentError;
use crate::launcher::{
    BoxFuture, Container, LaunchSpec, Launcher, RecoverSpec, Recovered, TaskExit,
};

/// Where the sandbox appears inside the container (Mesos' `--sandbox_directory`).
pub const SANDBOX_MOUNT: &str = "/mnt/mesos/sandbox";
/// Prefix of container names (Mesos' `DOCKER_NAME_PREFIX`).
pub const NAME_PREFIX: &str = "mesos-";
/// Labels put on every task container.
pub const LABEL_CONTAINER_ID: &str = "tessera.container_id";
pub const LABEL_TASK_ID: &str = "tessera.task_id";
pub const LABEL_FRAMEWORK_ID: &str = "tessera.framework_id";
pub const LABEL_AGENT_ID: &str = "tessera.agent_id";
/// Timeout of one Engine API request (until the response starts; streams may run longer).
const ENGINE_TIMEOUT_SECS: u64 = 120;
/// How long the probe at start-up waits for the engine to answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long, after the container exited, its remaining log output may take to arrive.
const LOG_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Docker parameters (`docker run --KEY VALUE`) the launcher understands.
pub const SUPPORTED_PARAMETERS: &[&str] = &[
    "env", "label", "user", "workdir", "hostname", "cap-add", "cap-drop",
];

/// Why the Docker containerizer could not run a task. Every message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// No engine answers on the configured socket (operator's fault; retrying the task on
    /// this agent will fail the same way until Docker runs).
    #[error(
        "no Docker engine at {socket}: {reason}; start the Docker daemon or point the agent's --docker-socket at it"
    )]
    Unavailable { socket: String, reason: String },
    /// The image is not on this machine and could not be pulled (no registry, unknown name).
    #[error(
        "Docker image '{image}' was not found locally and could not be pulled ({reason}); provide it on the agent with `docker import ROOTFS.tar {image}` or `docker load -i IMAGE.tar`, or fix the image name"
    )]
    ImageNotFound { image: String, reason: String },
    /// A `DockerInfo.parameters` key this agent does not translate (framework's fault).
    #[error("Docker parameter '{key}' is not supported; supported: {}", SUPPORTED_PARAMETERS.join(", "))]
    UnsupportedParameter { key: String },
    /// The task is not a Docker task (a routing bug; cannot happen through the agent).
    #[error("task has no ContainerInfo.docker")]
    NotDocker,
    /// The engine refused a request; `what` says which step.
    #[error("Docker engine: {what}: {source}")]
    Engine {
        what: &'static str,
        #[source]
        source: EngineError,
    },
    /// The sandbox's output files could not be created.
    #[error("sandbox file {path}: {source}")]
    Sandbox {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn engine(what: &'static str) -> impl FnOnce(EngineError) -> DockerError {
    move |source| DockerError::Engine { what, source }
}

/// Runs Docker tasks; see the module doc. Cheap to clone.
#[derive(Clone)]
pub struct DockerLauncher {
    socket: String,
    /// The client, or why there is none.
    engine: Result<Docker, String>,
}

impl std::fmt::Debug for DockerLauncher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerLauncher")
            .field("socket", &self.socket)
            .field("available", &self.engine.is_ok())
            .finish()
    }
}

impl DockerLauncher {
    /// Connects to the engine at `socket` (`unix:///PATH` or a plain path), negotiates the
    /// API version and pings it. Never fails: without an engine, the launcher refuses
    /// Docker tasks with [`DockerError::Unavailable`] (see [`availability`](Self::availability)).
    pub async fn connect(socket: &str) -> Self {
        let engine = match tokio::time::timeout(PROBE_TIMEOUT, probe(socket)).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
        };
        DockerLauncher {
            socket: socket.to_string(),
            engine,
        }
    }

    /// `Ok` when an engine answered at start-up, else why not.
    pub fn availability(&self) -> Result<(), DockerError> {
        match &self.engine {
            Ok(_) => Ok(()),
            Err(reason) => Err(DockerError::Unavailable {
                socket: self.socket.clone(),
                reason: reason.clone(),
            }),
        }
    }

    pub fn socket(&self) -> &str {
        &self.socket
    }

    async fn launch_docker(&self, spec: LaunchSpec) -> Result<DockerContainer, DockerError> {
        self.availability()?;
        let docker = match &self.engine {
            Ok(d) => d.clone(),
            Err(_) => return Err(DockerError::NotDocker),
        };
        let (info, volumes) = match &spec.container {
            Some(ContainerInfo {
                docker: Some(d),
                volumes,
                ..
            }) => (d.clone(), volumes.clone()),
            _ => return Err(DockerError::NotDocker),
        };
        let body = container_body(&spec, &info, &volumes)?;
        ensure_image(&docker, &info.image, info.force_pull_image).await?;
        let stdout = create_output(&spec.sandbox, "stdout").await?;
        let stderr = create_output(&spec.sandbox, "stderr").await?;
        let name = container_name(&spec.container_id);
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        docker
            .create_container(Some(options), body)
            .await
            .map_err(engine("creating the container"))?;
        if let Err(e) = docker.start_container(&name, None).await {
            remove(&docker, &name).await;
            return Err(DockerError::Engine {
                what: "starting the container",
                source: e,
            });
        }
        let logs = tokio::spawn(copy_logs(docker.clone(), name.clone(), stdout, stderr, 0));
        debug!(container = %name, image = %info.image, "docker container started");
        Ok(DockerContainer {
            docker,
            name,
            mem_mb: crate::isolation::limits_of(&spec.resources)
                .mem_mb
                .unwrap_or(0.0) as u64,
            logs: Mutex::new(Some(logs)),
        })
    }
}

/// A connection to the engine at `socket`, version negotiated and pinged.
pub(crate) async fn connect_engine(socket: &str) -> Result<Docker, String> {
    probe(socket).await
}

async fn probe(socket: &str) -> Result<Docker, String> {
    let path = socket.strip_prefix("unix://").unwrap_or(socket);
    if socket.contains("://") && !socket.starts_with("unix://") {
        return Err("only unix:// sockets are supported".into());
    }
    let docker = Docker::connect_with_unix(path, ENGINE_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
        .map_err(|e| e.to_string())?;
    // The engine here may speak an older API than bollard's default; settle on its version.
    let docker = docker
        .negotiate_version()
        .await
        .map_err(|e| e.to_string())?;
    docker.ping().await.map_err(|e| e.to_string())?;
    Ok(docker)
}

impl Launcher for DockerLauncher {
    fn launch(&self, spec: LaunchSpec) -> BoxFuture<'_, Result<Arc<dyn Container>, AgentError>> {
        Box::pin(async move {
            let c = self.launch_docker(spec).await?;
            Ok(Arc::new(c) as Arc<dyn Container>)
        })
    }

    fn recover(&self, spec: RecoverSpec) -> BoxFuture<'_, Result<Recovered, AgentError>> {
        Box::pin(async move {
            let fail = |reason: String| AgentError::Recover {
                container_id: spec.container_id.clone(),
                reason,
            };
            self.availability().map_err(|e| fail(e.to_string()))?;
            let Ok(docker) = self.engine.clone() else {
                return Err(fail("no Docker engine".into()));
            };
            let name = spec
                .record
                .docker_name
                .clone()
                .unwrap_or_else(|| container_name(&spec.container_id));
            let state = match docker.inspect_container(&name, None).await {
                Ok(i) => i.state,
                Err(EngineError::DockerResponseServerError {
                    status_code: 404, ..
                }) => return Err(fail(format!("container {name} no longer exists"))),
                Err(e) => return Err(fail(format!("inspecting {name}: {e}"))),
            };
            let running = state.and_then(|s| s.running).unwrap_or(false);
            let append = |file: &'static str| {
                let path = spec.sandbox.join(file);
                async move {
                    tokio::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&path)
                        .await
                        .map_err(|source| DockerError::Sandbox { path, source })
                }
            };
            let stdout = append("stdout").await?;
            let stderr = append("stderr").await?;
            let since = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| i32::try_from(d.as_secs()).unwrap_or(i32::MAX))
                .unwrap_or(0);
            let logs = tokio::spawn(copy_logs(
                docker.clone(),
                name.clone(),
                stdout,
                stderr,
                since,
            ));
            debug!(container = %name, running, "docker container recovered");
            let container = DockerContainer {
                docker,
                name,
                mem_mb: crate::isolation::limits_of(&spec.resources)
                    .mem_mb
                    .unwrap_or(0.0) as u64,
                logs: Mutex::new(Some(logs)),
            };
            Ok(Recovered {
                container: Arc::new(container),
                running,
            })
        })
    }
}

/// The Docker name of a task container.
pub fn container_name(container_id: &str) -> String {
    format!("{NAME_PREFIX}{container_id}")
}

/// The create request for a task: command, environment, mounts, network, limits, labels.
pub fn container_body(
    spec: &LaunchSpec,
    info: &DockerInfo,
    volumes: &[tessera_types::Volume],
) -> Result<ContainerCreateBody, DockerError> {
    let c = &spec.command;
    let (entrypoint, cmd) = if c.shell {
        (
            Some(vec!["/bin/sh".to_string()]),
            vec!["-c".to_string(), c.value.clone()],
        )
    } else {
        let mut cmd = Vec::with_capacity(c.arguments.len() + 1);
        if !c.value.is_empty() {
            cmd.push(c.value.clone());
        }
        cmd.extend(c.arguments.iter().cloned());
        (None, cmd)
    };

    // The agent's PATH means nothing inside an image; keep PATH only when the task set it.
    let mut env = spec.env.clone();
    if !c.environment.contains_key("PATH") {
        env.remove("PATH");
    }
    env.insert("MESOS_SANDBOX".into(), SANDBOX_MOUNT.into());

    let mut labels = HashMap::new();
    labels.insert(LABEL_CONTAINER_ID.to_string(), spec.container_id.clone());
    for (label, var) in [
        (LABEL_TASK_ID, "MESOS_TASK_ID"),
        (LABEL_FRAMEWORK_ID, "MESOS_FRAMEWORK_ID"),
        (LABEL_AGENT_ID, "MESOS_AGENT_ID"),
    ] {
        if let Some(v) = spec.env.get(var) {
            labels.insert(label.to_string(), v.clone());
        }
    }

    let mut binds = vec![format!("{}:{SANDBOX_MOUNT}:rw", spec.sandbox.display())];
    for v in volumes {
        let host = if v.host_path.starts_with('/') {
            PathBuf::from(&v.host_path)
        } else {
            spec.sandbox.join(&v.host_path)
        };
        let mode = match v.mode {
            VolumeMode::Rw => "rw",
            VolumeMode::Ro => "ro",
        };
        binds.push(format!("{}:{}:{mode}", host.display(), v.container_path));
    }
    // Persistent volumes, at their place in the sandbox as the container sees it.
    for m in &spec.volumes {
        let mode = match m.mode {
            VolumeMode::Rw => "rw",
            VolumeMode::Ro => "ro",
        };
        let inside = m.container_path.trim_end_matches('/');
        binds.push(format!(
            "{}:{SANDBOX_MOUNT}/{inside}:{mode}",
            m.host_path.display()
        ));
    }

    let mut exposed = Vec::new();
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for m in &info.port_mappings {
        let proto = m.protocol.as_deref().unwrap_or("tcp").to_ascii_lowercase();
        let key = format!("{}/{proto}", m.container_port);
        exposed.push(key.clone());
        bindings
            .entry(key)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: None,
                host_port: Some(m.host_port.to_string()),
            });
    }

    let limits = crate::isolation::limits_of(&spec.resources);
    let memory = limits.mem_mb.map(|mb| (mb * 1024.0 * 1024.0) as i64);
    let mut host = HostConfig {
        binds: Some(binds),
        network_mode: Some(
            match info.network {
                DockerNetwork::Host => "host",
                DockerNetwork::Bridge => "bridge",
                DockerNetwork::None => "none",
            }
            .to_string(),
        ),
        port_bindings: (!bindings.is_empty()).then_some(bindings),
        privileged: Some(info.privileged),
        init: Some(true),
        cpu_shares: limits.cpus.map(|c| ((c * 1024.0) as i64).max(2)),
        memory,
        // No swap beyond the limit, so the limit is what the task gets.
        memory_swap: memory,
        ..Default::default()
    };
    let mut body = ContainerCreateBody {
        image: Some(info.image.clone()),
        entrypoint,
        cmd: Some(cmd),
        working_dir: Some(SANDBOX_MOUNT.to_string()),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        ..Default::default()
    };
    for (key, value) in &info.parameters {
        match key.as_str() {
            "env" | "e" => match value.split_once('=') {
                Some((k, v)) => {
                    env.insert(k.to_string(), v.to_string());
                }
                None => {
                    env.remove(value);
                }
            },
            "label" | "l" => {
                let (k, v) = value.split_once('=').unwrap_or((value.as_str(), ""));
                labels.insert(k.to_string(), v.to_string());
            }
            "user" | "u" => body.user = Some(value.clone()),
            "workdir" | "w" => body.working_dir = Some(value.clone()),
            "hostname" | "h" => body.hostname = Some(value.clone()),
            "cap-add" => host
                .cap_add
                .get_or_insert_with(Vec::new)
                .push(value.clone()),
            "cap-drop" => host
                .cap_drop
                .get_or_insert_with(Vec::new)
                .push(value.clone()),
            _ => return Err(DockerError::UnsupportedParameter { key: key.clone() }),
        }
    }
    body.env = Some(env.into_iter().map(|(k, v)| format!("{k}={v}")).collect());
    body.labels = Some(labels);
    body.host_config = Some(host);
    Ok(body)
}

/// Makes sure `image` is present: pulls it when forced or missing locally.
async fn ensure_image(docker: &Docker, image: &str, force_pull: bool) -> Result<(), DockerError> {
    if !force_pull {
        match docker.inspect_image(image).await {
            Ok(_) => return Ok(()),
            Err(EngineError::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => {
                return Err(DockerError::Engine {
                    what: "inspecting the image",
                    source: e,
                });
            }
        }
    }
    pull(docker, image)
        .await
        .map_err(|reason| DockerError::ImageNotFound {
            image: image.to_string(),
            reason,
        })
}

/// `docker pull image`; the error's text on failure.
async fn pull(docker: &Docker, image: &str) -> Result<(), String> {
    let (repo, tag) = split_image(image);
    let options = CreateImageOptionsBuilder::default()
        .from_image(repo)
        .tag(tag)
        .build();
    let mut progress = docker.create_image(Some(options), None, None);
    while let Some(item) = progress.next().await {
        match item {
            Ok(info) => {
                if let Some(detail) = info.error_detail {
                    return Err(detail.message.unwrap_or_else(|| "pull failed".into()));
                }
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}

/// `repo[:tag]` → (repo, tag); a `:` inside a registry host's port is not a tag.
pub fn split_image(image: &str) -> (&str, &str) {
    if image.contains('@') {
        return (image, "");
    }
    match image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (image, "latest"),
    }
}

async fn create_output(sandbox: &Path, name: &str) -> Result<tokio::fs::File, DockerError> {
    let path = sandbox.join(name);
    tokio::fs::File::create(&path)
        .await
        .map_err(|source| DockerError::Sandbox { path, source })
}

/// Follows the container's output into the sandbox files until the container exits.
async fn copy_logs(
    docker: Docker,
    name: String,
    mut stdout: tokio::fs::File,
    mut stderr: tokio::fs::File,
    since: i32,
) {
    use bollard::container::LogOutput;
    let options = LogsOptionsBuilder::default()
        .since(since)
        .follow(true)
        .stdout(true)
        .stderr(true)
        .build();
    let mut logs = docker.logs(&name, Some(options));
    while let Some(item) = logs.next().await {
        let written = match item {
            Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
                stdout.write_all(&message).await
            }
            Ok(LogOutput::StdErr { message }) => stderr.write_all(&message).await,
            Ok(LogOutput::StdIn { .. }) => Ok(()),
            Err(e) => {
                warn!(container = %name, error = %e, "following the container's logs failed");
                break;
            }
        };
        if let Err(e) = written {
            warn!(container = %name, error = %e, "writing the container's output to the sandbox failed");
            break;
        }
    }
    let _ = stdout.flush().await;
    let _ = stderr.flush().await;
}

/// Force-removes a container (and its anonymous volumes); failures are logged.
async fn remove(docker: &Docker, name: &str) {
    let options = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    match docker.remove_container(name, Some(options)).await {
        Ok(())
        | Err(EngineError::DockerResponseServerError {
            status_code: 404, ..
        }) => {}
        Err(e) => warn!(container = %name, error = %e, "removing the container failed"),
    }
}

/// A running task container.
pub struct DockerContainer {
    docker: Docker,
    name: String,
    /// The memory limit, for the OOM report.
    mem_mb: u64,
    logs: Mutex<Option<JoinHandle<()>>>,
}

impl DockerContainer {
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Container for DockerContainer {
    /// No host process of ours: the engine owns it.
    fn pid(&self) -> Option<u32> {
        None
    }

    fn record(&self) -> Option<ContainerRecord> {
        Some(ContainerRecord {
            kind: ContainerKind::Docker,
            pid: None,
            start_time: None,
            cgroups: Vec::new(),
            docker_name: Some(self.name.clone()),
            cgroup: None,
        })
    }

    /// `docker kill --signal`, sent in the background (the engine call is async). A
    /// container that already stopped or is gone is not an error.
    fn kill(&self, signal: Signal) -> io::Result<()> {
        let handle = tokio::runtime::Handle::try_current().map_err(|e| {
            io::Error::other(format!("no async runtime to signal the container: {e}"))
        })?;
        let docker = self.docker.clone();
        let name = self.name.clone();
        handle.spawn(async move {
            let options = KillContainerOptionsBuilder::default()
                .signal(signal.as_str())
                .build();
            match docker.kill_container(&name, Some(options)).await {
                Ok(()) => {
                    debug!(container = %name, signal = signal.as_str(), "signalled container")
                }
                Err(EngineError::DockerResponseServerError {
                    status_code: 404 | 409,
                    ..
                }) => {}
                Err(e) => warn!(container = %name, error = %e, "signalling the container failed"),
            }
        });
        Ok(())
    }

    fn wait(&self) -> BoxFuture<'_, io::Result<TaskExit>> {
        Box::pin(async move {
            let docker = &self.docker;
            let name = self.name.as_str();
            // A non-zero exit comes back as an error carrying the code.
            let waited = docker.wait_container(name, None).next().await;
            let wait_code = match waited {
                Some(Ok(r)) => Some(r.status_code),
                Some(Err(EngineError::DockerContainerWaitError { code, .. })) => Some(code),
                Some(Err(e)) => {
                    warn!(container = %name, error = %e, "waiting for the container failed");
                    None
                }
                None => None,
            };
            let logs = self.logs.lock().ok().and_then(|mut l| l.take());
            if let Some(mut logs) = logs
                && tokio::time::timeout(LOG_DRAIN_TIMEOUT, &mut logs)
                    .await
                    .is_err()
            {
                warn!(container = %name, "container output did not drain in time");
                logs.abort();
            }
            let state = docker
                .inspect_container(name, None)
                .await
                .ok()
                .and_then(|i| i.state);
            remove(docker, name).await;
            let (code, oom) = match (state, wait_code) {
                (Some(s), _) if s.running != Some(true) && s.exit_code.is_some() => (
                    s.exit_code.unwrap_or_default(),
                    s.oom_killed.unwrap_or(false),
                ),
                (_, Some(code)) => (code, false),
                _ => {
                    return Err(io::Error::other(format!(
                        "lost track of container {name}: the engine reported no exit"
                    )));
                }
            };
            // OOMKilled means a process of the container was OOM-killed; when the task did
            // not succeed, the memory limit ended it.
            if oom && code != 0 {
                return Ok(TaskExit::MemoryLimit {
                    limit_mb: self.mem_mb,
                });
            }
            Ok(TaskExit::Code(i32::try_from(code).unwrap_or(-1)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use tessera_types::parse::parse_resources;
    use tessera_types::{CommandInfo, PortMapping, Volume};

    fn spec(command: CommandInfo) -> LaunchSpec {
        let mut env = BTreeMap::new();
        env.insert("PATH".into(), "/host/bin".into());
        env.insert("MESOS_SANDBOX".into(), "/work/sb".into());
        env.insert("MESOS_TASK_ID".into(), "t1".into());
        LaunchSpec {
            container_id: "c1".into(),
            sandbox: PathBuf::from("/work/sb"),
            command,
            env,
            resources: parse_resources("cpus:0.5;mem:64").expect("resources"),
            user: None,
            container: Some(ContainerInfo::docker("img")),
            volumes: Vec::new(),
        }
    }

    #[test]
    fn shell_commands_run_under_bin_sh() {
        let s = spec(CommandInfo::shell("echo hi"));
        let b = container_body(&s, &DockerInfo::default(), &[]).expect("body");
        assert_eq!(b.entrypoint, Some(vec!["/bin/sh".to_string()]));
        assert_eq!(b.cmd, Some(vec!["-c".to_string(), "echo hi".to_string()]));
        let env = b.env.expect("env");
        assert!(env.contains(&format!("MESOS_SANDBOX={SANDBOX_MOUNT}")));
        assert!(!env.iter().any(|e| e.starts_with("PATH=")), "{env:?}");
        let host = b.host_config.expect("host config");
        assert_eq!(host.cpu_shares, Some(512));
        assert_eq!(host.memory, Some(64 << 20));
        assert_eq!(host.network_mode.as_deref(), Some("host"));
        assert_eq!(
            host.binds.expect("binds")[0],
            format!("/work/sb:{SANDBOX_MOUNT}:rw")
        );
        assert_eq!(b.labels.expect("labels")[LABEL_TASK_ID], "t1");
    }

    #[test]
    fn plain_commands_append_value_and_arguments() {
        let mut c = CommandInfo::shell("");
        c.shell = false;
        c.value = "httpd".into();
        c.arguments = vec!["-f".into(), "-p".into(), "80".into()];
        let b = container_body(&spec(c), &DockerInfo::default(), &[]).expect("body");
        assert_eq!(b.entrypoint, None);
        assert_eq!(
            b.cmd,
            Some(vec!["httpd".into(), "-f".into(), "-p".into(), "80".into()])
        );
    }

    #[test]
    fn ports_volumes_and_parameters() {
        let info = DockerInfo {
            image: "img".into(),
            network: DockerNetwork::Bridge,
            port_mappings: vec![PortMapping {
                host_port: 31000,
                container_port: 80,
                protocol: None,
            }],
            parameters: vec![("label".into(), "a=b".into()), ("env".into(), "X=1".into())],
            ..Default::default()
        };
        let vols = [
            Volume {
                container_path: "/data".into(),
                host_path: "/srv".into(),
                mode: VolumeMode::Ro,
            },
            Volume {
                container_path: "/out".into(),
                host_path: "out".into(),
                mode: VolumeMode::Rw,
            },
        ];
        let b = container_body(&spec(CommandInfo::shell("x")), &info, &vols).expect("body");
        assert_eq!(b.exposed_ports, Some(vec!["80/tcp".to_string()]));
        let host = b.host_config.expect("host");
        let binding = &host.port_bindings.expect("bindings")["80/tcp"];
        assert_eq!(
            binding.as_ref().expect("some")[0].host_port.as_deref(),
            Some("31000")
        );
        let binds = host.binds.expect("binds");
        assert_eq!(binds[1], "/srv:/data:ro");
        assert_eq!(binds[2], "/work/sb/out:/out:rw");
        assert_eq!(b.labels.expect("labels")["a"], "b");
        assert!(b.env.expect("env").contains(&"X=1".to_string()));

        let bad = DockerInfo {
            parameters: vec![("volumes-from".into(), "x".into())],
            ..Default::default()
        };
        let e = container_body(&spec(CommandInfo::shell("x")), &bad, &[]).unwrap_err();
        assert!(e.to_string().contains("volumes-from"), "{e}");
    }

    #[test]
    fn persistent_volumes_are_bound_into_the_sandbox() {
        let mut s = spec(CommandInfo::shell("x"));
        s.volumes.push(crate::volumes::VolumeMount {
            host_path: "/work/volumes/roles/eng/v1".into(),
            container_path: "data/".into(),
            mode: VolumeMode::Ro,
        });
        let b = container_body(&s, &DockerInfo::default(), &[]).expect("body");
        let binds = b.host_config.expect("host").binds.expect("binds");
        assert_eq!(
            binds[1],
            format!("/work/volumes/roles/eng/v1:{SANDBOX_MOUNT}/data:ro")
        );
    }

    #[test]
    fn image_references_split_into_repo_and_tag() {
        assert_eq!(split_image("busybox"), ("busybox", "latest"));
        assert_eq!(split_image("a/b:1.2"), ("a/b", "1.2"));
        assert_eq!(split_image("reg:5000/a/b"), ("reg:5000/a/b", "latest"));
        assert_eq!(split_image("reg:5000/a:t"), ("reg:5000/a", "t"));
    }

    #[tokio::test]
    async fn no_engine_refuses_with_a_clear_message() {
        let l = DockerLauncher::connect("unix:///nonexistent/docker.sock").await;
        let e = l.availability().unwrap_err().to_string();
        assert!(
            e.starts_with("no Docker engine at unix:///nonexistent/docker.sock: "),
            "{e}"
        );
        let e = match l.launch(spec(CommandInfo::shell("true"))).await {
            Ok(_) => panic!("launch without an engine"),
            Err(e) => e.to_string(),
        };
        assert!(e.starts_with("no Docker engine at"), "{e}");
    }
}
