//! The one error type of this crate. Each variant says what went wrong and what to do.

use std::io;
use std::path::PathBuf;

/// Errors the agent reports to its caller (the binary) or uses internally for launches.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The work directory cannot be created, read or written. Operator's fault; fix the
    /// path or its permissions and restart.
    #[error("work dir {path}: {source}; check that it exists and is writable by the agent")]
    WorkDir { path: PathBuf, source: io::Error },
    /// The master address cannot be turned into an endpoint. Operator's fault.
    #[error("master address '{addr}' is not valid: {reason}; give it as HOST:PORT")]
    MasterAddress { addr: String, reason: String },
    /// A `--resources` value did not parse or validate. Operator's fault.
    #[error("resources: {0}; fix the --resources flag")]
    Resources(#[from] tessera_types::Error),
    /// Automatic resource detection failed; pass the resource explicitly instead.
    #[error("cannot detect {what}: {reason}; pass it explicitly with --resources")]
    Detect { what: &'static str, reason: String },
    /// The agent's HTTP endpoints cannot listen (address in use, or not this machine's).
    #[error(
        "cannot listen on {addr} for the agent's HTTP endpoints: {source}; pick another --http-listen"
    )]
    HttpListen {
        addr: std::net::SocketAddr,
        source: io::Error,
    },
    /// A task's sandbox could not be created. Usually a full or read-only disk.
    #[error("sandbox {path}: {source}")]
    Sandbox { path: PathBuf, source: io::Error },
    /// The container could not be started (the OS refused the spawn). Retrying the same
    /// command usually fails the same way.
    #[error("launching container {container_id}: {source}")]
    Launch {
        container_id: String,
        source: io::Error,
    },
    /// The container's cgroups could not be created, limited or joined.
    #[error("isolating container {container_id}: {source}")]
    Isolation {
        container_id: String,
        source: crate::cgroups::CgroupError,
    },
    /// A `CommandInfo.uris` entry could not be fetched into the sandbox.
    #[error("fetching {0}")]
    Fetch(#[from] crate::fetcher::FetchError),
    /// The Docker containerizer could not run the task (no engine, missing image, engine
    /// error). The message says what to do.
    #[error("{0}")]
    Docker(#[from] crate::docker::DockerError),
    /// A persistent volume of the task could not be made or shown in its sandbox.
    #[error("{0}")]
    Volume(#[from] crate::volumes::VolumeError),
    /// A checkpointed container could not be found again after a restart (it is gone, or
    /// the launcher that ran it is not available now). Its task is reported failed.
    #[error("recovering container {container_id}: {reason}")]
    Recover {
        container_id: String,
        reason: String,
    },
}
