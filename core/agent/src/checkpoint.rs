//! Checkpoints: what the agent writes under `<work_dir>/meta` so that an agent restarted
//! with the same work directory finds its tasks again (Mesos' `meta/` directory).
//!
//! The layout mirrors the sandbox layout. For the sandbox
//! `<work>/slaves/<agent>/frameworks/<fw>/executors/<exec>/runs/<container>` the run's
//! checkpoints are in `<work>/meta/slaves/<agent>/frameworks/<fw>/executors/<exec>/runs/<container>/`:
//!
//! | file | written | holds |
//! |---|---|---|
//! | `task.json` | once, at RunTask | [`TaskCheckpoint`]: TaskInfo, framework, container id, sandbox |
//! | `container.json` | once the container runs | [`ContainerRecord`]: launcher kind, pid and its start time, cgroups, Docker name |
//! | `status.json` | on every update and acknowledgement | [`StatusCheckpoint`]: latest state and the unacknowledged updates, in order, with their uuids |
//! | `exit_status` | by the task's supervisor when the command ends | the shell's `$?` (see [`crate::supervisor`]) |
//!
//! A default executor's run (task groups, see [`crate::executor`]) has `executor.json`
//! ([`ExecutorCheckpoint`]) in its run directory instead, and each of its tasks the files
//! above in `tasks/<task_id>` below it, mirroring the task sandboxes
//! `…/runs/<container>/tasks/<task_id>`.
//!
//! A custom executor's run has `custom_executor.json` ([`CustomCheckpoint`]): the executor,
//! its container, and each of its tasks with its state and unacknowledged updates (its
//! tasks share the executor's sandbox, so they have no run directories of their own).
//!
//! Every JSON file is written atomically (temp file, rename), so a reader sees the old or the
//! new content, never a torn one. The files are not fsynced: they must survive the *agent*
//! dying (the page cache does), and after a *machine* crash the tasks they describe are gone
//! anyway and are reported lost. An fsync per status update put the disk's flush latency on
//! the agent loop and capped a busy agent at a few hundred updates per second. The run's directory is removed when the agent
//! forgets the task (its terminal update was acknowledged).
//!
//! Pure path and (de)serialisation helpers; the agent loop decides when to write.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tessera_types::{AgentId, ExecutorInfo, FrameworkId, TaskInfo, TaskState, TaskStatus};

/// Name of the checkpoint directory under the work dir.
pub const META_DIR: &str = "meta";
pub const TASK_FILE: &str = "task.json";
pub const CONTAINER_FILE: &str = "container.json";
pub const STATUS_FILE: &str = "status.json";
/// A default executor's run: [`ExecutorCheckpoint`].
pub const EXECUTOR_FILE: &str = "executor.json";
/// Written by the supervisor, not by the agent: `<code>\n`.
pub const EXIT_STATUS_FILE: &str = "exit_status";

/// A checkpoint could not be written or read. Usually a full or read-only disk, or a file
/// damaged by hand; the task it belongs to cannot be recovered after a restart.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("writing checkpoint {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("reading checkpoint {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("checkpoint {path} is not valid: {source}; remove its directory to drop it")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("checkpoint directory {path} has no {TASK_FILE}; ignoring it")]
    Incomplete { path: PathBuf },
}

/// Which containerizer runs a container, so recovery asks the right one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerKind {
    /// A supervised process in its own process group.
    Process,
    /// A supervised process in per-container cgroups.
    Cgroups,
    /// A Docker container named `mesos-<container id>`.
    Docker,
}

/// How to find a running container again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub kind: ContainerKind,
    /// The supervisor's pid (also the process group id).
    pub pid: Option<u32>,
    /// Field 22 of `/proc/PID/stat` (clock ticks after boot): tells a reused pid apart.
    pub start_time: Option<u64>,
    /// The container's cgroup directories (informational: recovery recomputes them from
    /// the container id and the configured cgroups root).
    #[serde(default)]
    pub cgroups: Vec<PathBuf>,
    pub docker_name: Option<String>,
    /// The container's cgroup relative to the cgroups root, when it is not the container
    /// id: `<executor container>/<container>` for a task of a group (nested in its
    /// executor's cgroup).
    #[serde(default)]
    pub cgroup: Option<String>,
}

/// What the agent knew at RunTask.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskCheckpoint {
    pub framework_id: FrameworkId,
    pub info: TaskInfo,
    pub container_id: String,
    pub sandbox: PathBuf,
    /// The framework wants TASK_KILLING.
    pub killing_state: bool,
    /// The default executor and group running it (a task of a group).
    #[serde(default)]
    pub group: Option<crate::executor::GroupRef>,
}

/// A default executor's run (see [`crate::executor`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecutorCheckpoint {
    pub framework_id: FrameworkId,
    pub info: ExecutorInfo,
    pub container_id: String,
    pub sandbox: PathBuf,
    /// Every task it ran had exited and its container was removed.
    #[serde(default)]
    pub ended: bool,
}

/// A custom executor's run (see the module doc).
pub const CUSTOM_EXECUTOR_FILE: &str = "custom_executor.json";

/// A custom executor and its tasks, rewritten whenever either changes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CustomCheckpoint {
    pub framework_id: FrameworkId,
    pub framework_name: String,
    pub user: String,
    pub info: ExecutorInfo,
    pub container_id: String,
    pub sandbox: PathBuf,
    /// How to find the executor's process again; `None` until it started.
    pub record: Option<ContainerRecord>,
    pub shutting_down: bool,
    pub tasks: Vec<CustomTaskCheckpoint>,
}

/// One task of a custom executor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CustomTaskCheckpoint {
    pub info: TaskInfo,
    pub killing_state: bool,
    pub state: TaskState,
    /// Unacknowledged updates, head first.
    pub updates: Vec<TaskStatus>,
    /// The executor was given the task (LAUNCH sent); otherwise it waits for a subscription.
    pub given: bool,
}

/// Every custom executor's run checkpointed under `agent_meta`, with its directory.
pub fn load_custom_executors(
    agent_meta: &Path,
) -> Vec<Result<(PathBuf, CustomCheckpoint), CheckpointError>> {
    run_dirs(agent_meta)
        .into_iter()
        .filter_map(|run| match read_json(&run.join(CUSTOM_EXECUTOR_FILE)) {
            Ok(None) => None,
            Ok(Some(c)) => Some(Ok((run, c))),
            Err(e) => Some(Err(e)),
        })
        .collect()
}

/// The task's latest state and its unacknowledged updates, head first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusCheckpoint {
    pub state: TaskState,
    pub updates: Vec<TaskStatus>,
}

/// Everything checkpointed for one run.
#[derive(Debug, Clone)]
pub struct RunCheckpoint {
    pub dir: PathBuf,
    pub task: TaskCheckpoint,
    pub status: Option<StatusCheckpoint>,
    pub container: Option<ContainerRecord>,
}

/// `<work>/meta/slaves/<agent>`: every checkpoint of one agent id.
pub fn agent_meta_dir(work_dir: &Path, agent_id: &AgentId) -> PathBuf {
    work_dir
        .join(META_DIR)
        .join("slaves")
        .join(agent_id.as_str())
}

/// The checkpoint directory of the run whose sandbox is `sandbox`, when the sandbox follows
/// the Mesos layout (`…/slaves/A/frameworks/F/executors/E/runs/C`, or a task of a group:
/// `…/runs/C/tasks/T`).
pub fn meta_dir_of_sandbox(sandbox: &Path) -> Option<PathBuf> {
    let parts: Vec<&std::ffi::OsStr> = sandbox.iter().collect();
    let n = parts.len();
    if n >= 11 && parts[n - 2] == crate::executor::TASKS_DIR {
        let mut dir = meta_dir_of_sandbox(&parts[..n - 2].iter().collect::<PathBuf>())?;
        dir.push(crate::executor::TASKS_DIR);
        dir.push(parts[n - 1]);
        return Some(dir);
    }
    if n < 9 {
        return None;
    }
    let tail = &parts[n - 8..];
    let fixed = [
        (0, "slaves"),
        (2, "frameworks"),
        (4, "executors"),
        (6, "runs"),
    ];
    if !fixed.iter().all(|(i, name)| tail[*i] == *name) {
        return None;
    }
    let mut dir: PathBuf = parts[..n - 8].iter().collect();
    dir.push(META_DIR);
    dir.extend(tail);
    Some(dir)
}

/// Writes `value` as JSON to `path` atomically: temp file, rename. Creates the parent
/// directory.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), CheckpointError> {
    let err = |source| CheckpointError::Write {
        path: path.to_path_buf(),
        source,
    };
    let bytes = serde_json::to_vec(value).map_err(|e| err(io::Error::other(e)))?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    f.write_all(&bytes).map_err(err)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(err)
}

/// Reads a JSON checkpoint; `None` when the file does not exist.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, CheckpointError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CheckpointError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| CheckpointError::Corrupt {
            path: path.to_path_buf(),
            source,
        })
}

/// Reads one run's checkpoints.
pub fn load_run(dir: &Path) -> Result<RunCheckpoint, CheckpointError> {
    let task = read_json::<TaskCheckpoint>(&dir.join(TASK_FILE))?.ok_or_else(|| {
        CheckpointError::Incomplete {
            path: dir.to_path_buf(),
        }
    })?;
    Ok(RunCheckpoint {
        dir: dir.to_path_buf(),
        task,
        status: read_json(&dir.join(STATUS_FILE))?,
        container: read_json(&dir.join(CONTAINER_FILE))?,
    })
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

fn run_dirs(agent_meta: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for fw in subdirs(&agent_meta.join("frameworks")) {
        for exec in subdirs(&fw.join("executors")) {
            out.extend(subdirs(&exec.join("runs")));
        }
    }
    out
}

/// Every task run checkpointed under `agent_meta` (see [`agent_meta_dir`]), in path order:
/// command tasks' runs, and the tasks of default executors' runs. An absent directory has
/// none.
pub fn load_runs(agent_meta: &Path) -> Vec<Result<RunCheckpoint, CheckpointError>> {
    let mut out = Vec::new();
    for run in run_dirs(agent_meta) {
        if run.join(EXECUTOR_FILE).exists() {
            for task in subdirs(&run.join(crate::executor::TASKS_DIR)) {
                out.push(load_run(&task));
            }
        } else if run.join(CUSTOM_EXECUTOR_FILE).exists() {
            // A custom executor's tasks are in its own checkpoint.
        } else {
            out.push(load_run(&run));
        }
    }
    out
}

/// Every default executor's run checkpointed under `agent_meta`, with its directory.
pub fn load_executors(
    agent_meta: &Path,
) -> Vec<Result<(PathBuf, ExecutorCheckpoint), CheckpointError>> {
    run_dirs(agent_meta)
        .into_iter()
        .filter_map(|run| match read_json(&run.join(EXECUTOR_FILE)) {
            Ok(None) => None,
            Ok(Some(e)) => Some(Ok((run, e))),
            Err(e) => Some(Err(e)),
        })
        .collect()
}

/// Removes a run's checkpoints.
pub fn remove_run(dir: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_dir_mirrors_the_sandbox() {
        let sb = Path::new("/w/slaves/a/frameworks/f/executors/e/runs/c");
        assert_eq!(
            meta_dir_of_sandbox(sb).unwrap(),
            Path::new("/w/meta/slaves/a/frameworks/f/executors/e/runs/c")
        );
        assert_eq!(meta_dir_of_sandbox(Path::new("/tmp/bench-1")), None);
        assert_eq!(
            meta_dir_of_sandbox(Path::new("/w/x/a/frameworks/f/executors/e/runs/c")),
            None
        );
        assert_eq!(
            meta_dir_of_sandbox(&sb.join("tasks/t1")).unwrap(),
            Path::new("/w/meta/slaves/a/frameworks/f/executors/e/runs/c/tasks/t1")
        );
        assert_eq!(
            meta_dir_of_sandbox(Path::new("/a/b/c/d/e/f/g/h/tasks/t")),
            None
        );
    }

    #[test]
    fn json_round_trips_atomically_and_missing_is_none() {
        let dir = std::env::temp_dir().join(format!("tessera-ckpt-{}", uuid::Uuid::new_v4()));
        let p = dir.join("x/container.json");
        assert!(read_json::<ContainerRecord>(&p).unwrap().is_none());
        let r = ContainerRecord {
            kind: ContainerKind::Cgroups,
            pid: Some(42),
            start_time: Some(7),
            cgroups: vec![PathBuf::from("/sys/fs/cgroup/memory/t/c")],
            docker_name: None,
            cgroup: None,
        };
        write_json(&p, &r).unwrap();
        assert_eq!(read_json::<ContainerRecord>(&p).unwrap(), Some(r));
        assert!(!dir.join("x/container.json.tmp").exists());
        std::fs::write(&p, b"{not json").unwrap();
        assert!(matches!(
            read_json::<ContainerRecord>(&p),
            Err(CheckpointError::Corrupt { .. })
        ));
        remove_run(&dir).unwrap();
        remove_run(&dir).unwrap();
    }
}
