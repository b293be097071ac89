//! Launching task processes: the [`Launcher`] trait and the plain-process implementation.
//!
//! The trait is what containerizers (cgroups isolation, Docker) implement: `launch` returns a
//! [`Container`] handle that can be signalled and waited on. Handles are shared (`Arc`) so
//! the agent can kill while a watcher waits. `recover` finds a container again after an
//! agent restart from its checkpointed [`ContainerRecord`].
//!
//! Process tasks run under the [`supervisor`], so their exit status survives the agent.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::future::Future;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use nix::sys::signal::Signal;
use tessera_types::CommandInfo;

use crate::checkpoint::{ContainerKind, ContainerRecord};
use crate::error::AgentError;
use crate::namespaces::TaskNamespaces;
use crate::supervisor::{self, RecoveredProcess};

/// A boxed, sendable future, so the traits stay object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// PATH given to tasks when the agent itself has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Everything needed to start one task's container. `env` is complete (see
/// [`task_environment`]); the launcher adds nothing but `PATH` when it is missing.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    pub container_id: String,
    pub sandbox: PathBuf,
    pub command: CommandInfo,
    pub env: BTreeMap<String, String>,
    /// The task's resources (`cpus`, `mem` become limits under isolation).
    pub resources: tessera_types::Resources,
    /// What the task runs in (`None`: the agent's own containerizer).
    pub container: Option<tessera_types::ContainerInfo>,
    /// The user the command runs as (see [`crate::user`]); `None` = the agent's.
    pub user: Option<String>,
    /// The task's persistent volumes, their directories made ([`crate::volumes`]): the
    /// launcher makes each appear at its place in the sandbox.
    pub volumes: Vec<crate::volumes::VolumeMount>,
}

impl LaunchSpec {
    /// Whether the task asks for a Docker container.
    pub fn is_docker(&self) -> bool {
        self.container.as_ref().is_some_and(|c| c.is_docker())
    }
}

/// How a container's main process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskExit {
    Code(i32),
    Signal(i32),
    /// The kernel's OOM killer killed a process of the container at its memory limit.
    MemoryLimit {
        /// The limit, in MB.
        limit_mb: u64,
    },
}

impl From<std::process::ExitStatus> for TaskExit {
    fn from(s: std::process::ExitStatus) -> Self {
        match (s.code(), s.signal()) {
            (Some(c), _) => TaskExit::Code(c),
            (None, Some(sig)) => TaskExit::Signal(sig),
            (None, None) => TaskExit::Code(-1),
        }
    }
}

/// A running container.
pub trait Container: Send + Sync {
    /// What to checkpoint to find this container again after an agent restart; `None` when
    /// it cannot be recovered.
    fn record(&self) -> Option<ContainerRecord> {
        None
    }
    /// The main process id, when there is a host process.
    fn pid(&self) -> Option<u32>;
    /// Sends `signal` to every process of the container. Signalling a container that has
    /// already exited is not an error.
    fn kill(&self, signal: Signal) -> io::Result<()>;
    /// Resolves when the main process has exited (call once).
    fn wait(&self) -> BoxFuture<'_, io::Result<TaskExit>>;
}

/// Starts containers, and finds them again after an agent restart.
pub trait Launcher: Send + Sync {
    fn launch(&self, spec: LaunchSpec) -> BoxFuture<'_, Result<Arc<dyn Container>, AgentError>>;

    /// Re-attaches to a container a previous run of the agent started (see
    /// [`crate::checkpoint`]). The default cannot.
    fn recover(&self, spec: RecoverSpec) -> BoxFuture<'_, Result<Recovered, AgentError>> {
        Box::pin(async move {
            Err(AgentError::Recover {
                container_id: spec.container_id,
                reason: "this launcher cannot recover containers".into(),
            })
        })
    }

    /// Makes the container of a default executor (see [`crate::executor`]): what the
    /// containers of its tasks nest in, limited to `resources` (the executor's plus all its
    /// tasks'). The default has nothing to make (no isolation).
    fn prepare_executor(
        &self,
        container_id: &str,
        resources: &tessera_types::Resources,
    ) -> BoxFuture<'_, Result<(), AgentError>> {
        let _ = (container_id, resources);
        Box::pin(async { Ok(()) })
    }

    /// Gives a default executor's container new limits (a group joined it).
    fn update_executor(
        &self,
        container_id: &str,
        resources: &tessera_types::Resources,
    ) -> BoxFuture<'_, Result<(), AgentError>> {
        let _ = (container_id, resources);
        Box::pin(async { Ok(()) })
    }

    /// Starts a task of a group inside its executor's container `executor_container`
    /// (made by [`prepare_executor`](Self::prepare_executor)). The default launches it like
    /// any task.
    fn launch_nested(
        &self,
        executor_container: &str,
        spec: LaunchSpec,
    ) -> BoxFuture<'_, Result<Arc<dyn Container>, AgentError>> {
        let _ = executor_container;
        self.launch(spec)
    }

    /// Removes a default executor's container once all its tasks have exited (killing
    /// anything left in it). Idempotent.
    fn destroy_executor(&self, container_id: &str) -> BoxFuture<'_, Result<(), AgentError>> {
        let _ = container_id;
        Box::pin(async { Ok(()) })
    }
}

/// What a launcher needs to find a container again.
#[derive(Debug, Clone)]
pub struct RecoverSpec {
    pub container_id: String,
    pub sandbox: PathBuf,
    /// The run's checkpoint directory (the supervisor's `exit_status` is there).
    pub meta_dir: PathBuf,
    pub record: ContainerRecord,
    /// The task's resources (limits, for the OOM report).
    pub resources: tessera_types::Resources,
}

/// A container found again.
pub struct Recovered {
    pub container: Arc<dyn Container>,
    /// Still running; `false` when it ended while the agent was down (then `wait` returns
    /// at once).
    pub running: bool,
}

impl ProcessLauncher {
    /// A recovered supervised process, or why not.
    pub(crate) fn recover_process(spec: &RecoverSpec) -> Result<RecoveredProcess, AgentError> {
        let pid = spec.record.pid.ok_or_else(|| AgentError::Recover {
            container_id: spec.container_id.clone(),
            reason: "no pid was checkpointed".into(),
        })?;
        Ok(RecoveredProcess::new(
            pid,
            spec.record.start_time,
            spec.meta_dir.clone(),
        ))
    }
}

/// Sends each task to the containerizer its `ContainerInfo` asks for: Docker tasks to
/// `docker`, everything else to `mesos` (processes, cgroups). Mesos calls this the
/// composing containerizer.
#[derive(Clone)]
pub struct ComposingLauncher {
    mesos: Arc<dyn Launcher>,
    docker: Arc<dyn Launcher>,
}

impl ComposingLauncher {
    pub fn new(mesos: Arc<dyn Launcher>, docker: Arc<dyn Launcher>) -> Self {
        ComposingLauncher { mesos, docker }
    }
}

impl Launcher for ComposingLauncher {
    fn launch(&self, spec: LaunchSpec) -> BoxFuture<'_, Result<Arc<dyn Container>, AgentError>> {
        if spec.is_docker() {
            self.docker.launch(spec)
        } else {
            self.mesos.launch(spec)
        }
    }

    fn recover(&self, spec: RecoverSpec) -> BoxFuture<'_, Result<Recovered, AgentError>> {
        if spec.record.kind == ContainerKind::Docker {
            self.docker.recover(spec)
        } else {
            self.mesos.recover(spec)
        }
    }

    // Default executors and their tasks are the Mesos containerizer's: groups hold no
    // Docker tasks (the master refuses them; a stray one is refused here too).
    fn prepare_executor(
        &self,
        container_id: &str,
        resources: &tessera_types::Resources,
    ) -> BoxFuture<'_, Result<(), AgentError>> {
        self.mesos.prepare_executor(container_id, resources)
    }

    fn update_executor(
        &self,
        container_id: &str,
        resources: &tessera_types::Resources,
    ) -> BoxFuture<'_, Result<(), AgentError>> {
        self.mesos.update_executor(container_id, resources)
    }

    fn launch_nested(
        &self,
        executor_container: &str,
        spec: LaunchSpec,
    ) -> BoxFuture<'_, Result<Arc<dyn Container>, AgentError>> {
        if spec.is_docker() {
            let container_id = spec.container_id;
            return Box::pin(async move {
                Err(AgentError::Launch {
                    container_id,
                    source: io::Error::new(
                        io::ErrorKind::Unsupported,
                        "a task of a group cannot run in a Docker container",
                    ),
                })
            });
        }
        self.mesos.launch_nested(executor_container, spec)
    }

    fn destroy_executor(&self, container_id: &str) -> BoxFuture<'_, Result<(), AgentError>> {
        self.mesos.destroy_executor(container_id)
    }
}

/// Identifiers that end up in a task's environment.
#[derive(Debug, Clone)]
pub struct TaskEnvIds<'a> {
    pub task_id: &'a str,
    pub framework_id: &'a str,
    pub agent_id: &'a str,
    pub executor_id: &'a str,
    pub container_id: &'a str,
    /// `host:port` of the agent's HTTP endpoints, when it serves them.
    pub agent_endpoint: Option<&'a str>,
}

/// The task's environment: inherited `PATH`, then the command's environment, then the
/// `MESOS_*` variables (which win, as the executor would set them).
pub fn task_environment(
    command: &CommandInfo,
    sandbox: &std::path::Path,
    ids: &TaskEnvIds<'_>,
    inherited_path: Option<String>,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert(
        "PATH".to_string(),
        inherited_path.unwrap_or_else(|| DEFAULT_PATH.to_string()),
    );
    env.extend(command.environment.clone());
    let sandbox = sandbox.display().to_string();
    let mut set = |k: &str, v: &str| {
        env.insert(k.to_string(), v.to_string());
    };
    set("MESOS_SANDBOX", &sandbox);
    set("MESOS_DIRECTORY", &sandbox);
    set("MESOS_TASK_ID", ids.task_id);
    set("MESOS_FRAMEWORK_ID", ids.framework_id);
    set("MESOS_AGENT_ID", ids.agent_id);
    set("MESOS_SLAVE_ID", ids.agent_id);
    set("MESOS_EXECUTOR_ID", ids.executor_id);
    set("MESOS_CONTAINER_ID", ids.container_id);
    if let Some(ep) = ids.agent_endpoint {
        set("MESOS_AGENT_ENDPOINT", ep);
    }
    env
}

/// Runs each task as a child process in its own process group, in its sandbox, with
/// stdout/stderr written to `stdout`/`stderr` there. No isolation.
#[derive(Debug, Default, Clone)]
pub struct ProcessLauncher;

/// The executable `program` names: itself when it contains a `/`, else the first executable
/// regular file called `program` in the directories of `path` (as `execvp` would search).
/// `None` when there is none; the spawn then reports the usual "not found".
pub(crate) fn resolve_program(program: &str, path: Option<&str>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    if program.is_empty() || program.contains('/') {
        return None;
    }
    let path = path.unwrap_or(DEFAULT_PATH);
    path.split(':').find_map(|dir| {
        // An empty entry means the current directory, which for a task is its sandbox; leave
        // that case to the spawn itself.
        if dir.is_empty() {
            return None;
        }
        let candidate = std::path::Path::new(dir).join(program);
        let meta = std::fs::metadata(&candidate).ok()?;
        (meta.is_file() && meta.permissions().mode() & 0o111 != 0).then_some(candidate)
    })
}

impl ProcessLauncher {
    /// Starts the task's process. Blocking (file creation, process spawn): call it off the
    /// async workers.
    ///
    /// The program is resolved against the task's own `PATH` here, so that the standard
    /// library can start it with `posix_spawn` (a `CLONE_VFORK` child sharing our memory)
    /// instead of `fork`: with a replaced environment and a bare program name it has to
    /// fork in order to search the new `PATH`, and forking the agent (a large,
    /// multi-threaded process, and in `tessera up` the master too) copies its whole page
    /// table on every launch.
    ///
    /// With `stop_first`, the supervisor stops itself before it starts the command, letting
    /// the caller place it (and so all the task's processes) into cgroups and then continue
    /// it with SIGCONT; with `namespaces`, the command runs in its own pid and mount
    /// namespaces ([`crate::namespaces`]). Both keep the `posix_spawn` path (no `pre_exec`).
    ///
    /// The command always runs under the [`supervisor`], which records its exit status in
    /// the run's checkpoint directory (the sandbox itself when the sandbox does not follow
    /// the Mesos layout).
    pub(crate) fn spawn_with(
        spec: &LaunchSpec,
        stop_first: bool,
        namespaces: Option<&TaskNamespaces>,
    ) -> io::Result<ProcessContainer> {
        let status_dir = crate::checkpoint::meta_dir_of_sandbox(&spec.sandbox)
            .unwrap_or_else(|| spec.sandbox.clone());
        std::fs::create_dir_all(&status_dir)?;
        // A status left by an earlier run of the same container id would be read as ours.
        match std::fs::remove_file(status_dir.join(crate::checkpoint::EXIT_STATUS_FILE)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let binds = crate::volumes::show(&spec.sandbox, &spec.volumes, namespaces.is_some())?;
        let stdout = File::create(spec.sandbox.join("stdout"))?;
        let stderr = File::create(spec.sandbox.join("stderr"))?;
        let c = &spec.command;
        let task_path = spec.env.get("PATH").map(String::as_str);
        let (program, args): (PathBuf, Vec<String>) = if c.shell {
            let sh = resolve_program("sh", task_path).unwrap_or_else(|| PathBuf::from("/bin/sh"));
            (sh, vec!["-c".to_string(), c.value.clone()])
        } else {
            let program = if c.value.is_empty() {
                c.arguments.first().cloned().unwrap_or_default()
            } else {
                c.value.clone()
            };
            // The supervisor starts the command, so a missing program would only show as
            // exit 127; refuse the launch instead, as a direct spawn would.
            let resolved = match resolve_program(&program, task_path) {
                Some(p) => p,
                None if program.contains('/') => PathBuf::from(&program),
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("program '{program}' not found on the task's PATH"),
                    ));
                }
            };
            if !resolved.is_file() {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("program {} does not exist", resolved.display()),
                ));
            }
            let rest = c.arguments.iter().skip(1).cloned().collect();
            (resolved, rest)
        };
        let (program, args) = match &spec.user {
            None => (program, args),
            Some(user) => match crate::user::resolve(user, task_path)? {
                None => (program, args),
                Some(switch) => {
                    let out = spec.sandbox.join("stdout");
                    let err = spec.sandbox.join("stderr");
                    switch.own(&[&spec.sandbox, &out, &err])?;
                    // As Mesos does for volumes that are not shared: the task's user owns
                    // the volume's top directory (its data keeps whatever owners it has).
                    let vols: Vec<&Path> =
                        spec.volumes.iter().map(|v| v.host_path.as_path()).collect();
                    switch.own(&vols)?;
                    switch.wrap(program, args)
                }
            },
        };
        let sh = resolve_program("sh", task_path).unwrap_or_else(|| PathBuf::from("/bin/sh"));
        let argv = supervised_argv(
            &sh,
            &status_dir,
            stop_first,
            namespaces.map(|ns| (ns, binds.as_slice())),
            &spec.sandbox,
            program.into(),
            args.into_iter().map(OsString::from).collect(),
        )?;
        let (first, rest) = argv
            .split_first()
            .ok_or_else(|| io::Error::other("empty command line"))?;
        let mut cmd = tokio::process::Command::new(first);
        if namespaces.is_none() {
            cmd.arg0("sh");
        }
        cmd.args(rest)
            .current_dir(&spec.sandbox)
            .env_clear()
            .envs(&spec.env)
            .stdin(std::process::Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0)
            .kill_on_drop(false);
        let child = cmd.spawn()?;
        let pid = child
            .id()
            .ok_or_else(|| io::Error::other("child exited at once"))?;
        Ok(ProcessContainer {
            pid,
            start_time: supervisor::start_time(pid),
            status_dir,
            child: tokio::sync::Mutex::new(child),
        })
    }

    /// Launches off the async workers (creating files and spawning block, and a batch of
    /// launches must not stall the agent loop or other tasks).
    pub(crate) async fn launch_with(
        spec: LaunchSpec,
        namespaces: Option<Arc<TaskNamespaces>>,
    ) -> Result<Arc<dyn Container>, AgentError> {
        let container_id = spec.container_id.clone();
        let result = tokio::task::spawn_blocking(move || {
            Self::spawn_with(&spec, false, namespaces.as_deref())
        })
        .await
        .unwrap_or_else(|join| Err(io::Error::other(format!("launch failed: {join}"))));
        match result {
            Ok(c) => Ok(Arc::new(c) as Arc<dyn Container>),
            Err(source) => Err(AgentError::Launch {
                container_id,
                source,
            }),
        }
    }
}

/// The supervised command line: `[unshare --pid --] sh -c SUPERVISOR tessera-supervisor
/// STATUS_DIR STOP [NAMESPACE INIT…] PROGRAM ARGS…` (the bracketed parts with
/// `namespaces`, which also prepares the sandbox's private `/tmp`; the init makes the bind
/// mounts given with them).
pub(crate) fn supervised_argv(
    sh: &Path,
    status_dir: &Path,
    stop_first: bool,
    namespaces: Option<(&TaskNamespaces, &[crate::volumes::Bind])>,
    sandbox: &Path,
    program: OsString,
    args: Vec<OsString>,
) -> io::Result<Vec<OsString>> {
    let mut argv: Vec<OsString> = Vec::new();
    if let Some((ns, _)) = namespaces {
        argv.extend(ns.supervisor_prefix());
    }
    argv.extend([
        sh.into(),
        "-c".into(),
        supervisor::SCRIPT.into(),
        supervisor::SUPERVISOR_NAME.into(),
        status_dir.into(),
        if stop_first { "1" } else { "0" }.into(),
    ]);
    if let Some((ns, binds)) = namespaces {
        argv.extend(ns.init_prefix(sandbox, binds)?);
    }
    argv.push(program);
    argv.extend(args);
    Ok(argv)
}

impl Launcher for ProcessLauncher {
    /// Process and cgroups containers come back as supervised processes (killed through
    /// their process group: without cgroups now, a cgroups container loses its limits'
    /// bookkeeping but not its processes).
    fn recover(&self, spec: RecoverSpec) -> BoxFuture<'_, Result<Recovered, AgentError>> {
        Box::pin(async move {
            if spec.record.kind == ContainerKind::Docker {
                return Err(AgentError::Recover {
                    container_id: spec.container_id,
                    reason: "a Docker container cannot be recovered as a process".into(),
                });
            }
            let p = Self::recover_process(&spec)?;
            let running = p.is_running();
            Ok(Recovered {
                container: Arc::new(p),
                running,
            })
        })
    }

    fn launch(&self, spec: LaunchSpec) -> BoxFuture<'_, Result<Arc<dyn Container>, AgentError>> {
        Box::pin(Self::launch_with(spec, None))
    }
}

/// A process-group leader (the task's supervisor) started by [`ProcessLauncher`].
#[derive(Debug)]
pub struct ProcessContainer {
    pub(crate) pid: u32,
    start_time: Option<u64>,
    /// Where the supervisor writes the command's exit status.
    status_dir: PathBuf,
    child: tokio::sync::Mutex<tokio::process::Child>,
}

impl Container for ProcessContainer {
    fn pid(&self) -> Option<u32> {
        Some(self.pid)
    }

    fn kill(&self, signal: Signal) -> io::Result<()> {
        let pgid = nix::unistd::Pid::from_raw(-(self.pid as i32));
        match nix::sys::signal::kill(pgid, signal) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(e) => Err(io::Error::from(e)),
        }
    }

    fn wait(&self) -> BoxFuture<'_, io::Result<TaskExit>> {
        Box::pin(async move {
            let status = self.child.lock().await.wait().await?;
            // Leftovers of the group (background children) go with the leader.
            let _ = self.kill(Signal::SIGKILL);
            // The command's own status, as the supervisor saw it; the supervisor's when it
            // was killed before it could write one.
            Ok(supervisor::read_exit_status(&self.status_dir)
                .unwrap_or_else(|| TaskExit::from(status)))
        })
    }

    fn record(&self) -> Option<ContainerRecord> {
        Some(ContainerRecord {
            kind: ContainerKind::Process,
            pid: Some(self.pid),
            start_time: self.start_time,
            cgroups: Vec::new(),
            docker_name: None,
            cgroup: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_resolve_against_the_task_path() {
        let sh = resolve_program("sh", Some("/nonexistent:/usr/bin:/bin")).expect("sh on PATH");
        assert!(sh.is_absolute() && sh.ends_with("sh"), "{}", sh.display());
        assert_eq!(resolve_program("sh", Some("/nonexistent")), None);
        assert_eq!(
            resolve_program("./x", None),
            None,
            "paths are used as given"
        );
        assert_eq!(resolve_program("", None), None);
    }

    #[test]
    fn environment_has_mesos_variables_and_they_win() {
        let mut cmd = CommandInfo::shell("true");
        cmd.environment.insert("FOO".into(), "bar".into());
        cmd.environment
            .insert("MESOS_TASK_ID".into(), "spoofed".into());
        let ids = TaskEnvIds {
            task_id: "t1",
            framework_id: "f1",
            agent_id: "a1",
            executor_id: "t1",
            container_id: "c1",
            agent_endpoint: None,
        };
        let env = task_environment(&cmd, std::path::Path::new("/sb"), &ids, None);
        assert_eq!(env["FOO"], "bar");
        assert_eq!(env["MESOS_TASK_ID"], "t1");
        assert_eq!(env["MESOS_SLAVE_ID"], "a1");
        assert_eq!(env["MESOS_SANDBOX"], "/sb");
        assert_eq!(env["PATH"], DEFAULT_PATH);
        assert!(!env.contains_key("MESOS_AGENT_ENDPOINT"));
    }
}
