//! Running one MPI job in the foreground, as `srun`/`mpirun` do: this process is the
//! framework (a private [`MpiService`] over the public v1 API), serves the ranks (PMI-1,
//! or a launcher's daemons as tasks), streams their output, and returns the job's outcome.
//! The framework uses `failover_timeout = 0`: if this process dies, the master kills the
//! ranks. Also the types the service reports with, and the cluster-capacity check.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;

use tessera_framework::sandbox;
use tessera_types::parse::parse_resources;
use tessera_types::{AgentId, Resources};

use crate::mpiexec::Launcher;
use crate::queue::GangId;
use crate::service::{JobRequest, MpiService, ServiceConfig};
use crate::spec::GangSpec;
use crate::supervise::Outcome;

/// What to run and where.
#[derive(Debug)]
pub struct RunConfig {
    /// `HOST:PORT` of the master.
    pub master: String,
    pub spec: GangSpec,
    /// Counted from the launch.
    pub time_limit: Option<Duration>,
    /// Address the PMI server listens on; `None`: the one this host uses to reach the
    /// master (so ranks on other agents can connect).
    pub pmi_bind: Option<IpAddr>,
    pub framework_name: String,
    pub user: String,
    /// Longest an offer is held while the gang accumulates.
    pub hold: Duration,
    /// `None`: MPICH direct launch through Tessera's PMI-1 server, one task per rank.
    /// `Some`: the implementation's own launcher, its per-node daemons as tasks.
    pub launcher: Option<Launcher>,
    /// This program (`tessera`): node tasks run `tessera mpi proxy`, launchers call
    /// `tessera mpi launch-agent`.
    pub tessera_exe: PathBuf,
    /// What rank 0 reads as its stdin (the pieces, then EOF when the sender is dropped);
    /// `None`: its stdin is closed.
    pub stdin: Option<mpsc::Receiver<Vec<u8>>>,
}

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// What the caller is told while the job runs.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEvent {
    /// The gang waits; why (changes only).
    Waiting(String),
    /// Every rank was launched: agents' hostnames and ranks on each, in rank order.
    Launched(Vec<(String, u32)>),
    /// Every rank is inside `MPI_Init` (entered the first PMI barrier).
    Initialized,
    /// One line of a rank's output (without its newline); `None`: the launcher's own.
    Output {
        rank: Option<u32>,
        stream: Stream,
        line: String,
    },
}

/// How the job went.
#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    pub gang: GangId,
    pub outcome: Outcome,
    /// From the start to the launch of every rank.
    pub waited: Option<Duration>,
    /// From the start to every rank inside `MPI_Init`.
    pub initialized: Option<Duration>,
    /// From the start to the end.
    pub total: Duration,
}

/// Why the job could not be run at all.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Refused(#[from] crate::error::Error),
    #[error("cannot reach the master at {master}: {reason}")]
    Master { master: String, reason: String },
    #[error("cannot start the MPI launcher: {0}")]
    Launcher(String),
    #[error("cannot start the PMI server on {bind}: {source}")]
    Pmi {
        bind: SocketAddr,
        source: std::io::Error,
    },
    #[error("the framework driver stopped: {0}")]
    Driver(String),
}

/// The cluster's agents and what each holds for `role` (unreserved plus reserved to it),
/// from the master's `/master/slaves`.
pub async fn cluster_totals(
    master: &str,
    role: &str,
) -> Result<Vec<(AgentId, Resources)>, RunError> {
    let unreachable = |reason: String| RunError::Master {
        master: master.to_string(),
        reason,
    };
    let v = sandbox::get_json(master, "/master/slaves")
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let mut out = Vec::new();
    for s in v["slaves"].as_array().into_iter().flatten() {
        if s["active"].as_bool() == Some(false) {
            continue;
        }
        let Some(id) = s["id"].as_str().and_then(|i| AgentId::new(i).ok()) else {
            continue;
        };
        let mut text = Vec::new();
        let mut add = |flat: &serde_json::Value| {
            for (k, val) in flat.as_object().into_iter().flatten() {
                if let Some(x) = val.as_f64() {
                    text.push(format!("{k}:{x}"));
                }
            }
        };
        add(&s["unreserved_resources"]);
        if role != "*" {
            add(&s["reserved_resources"][role]);
        }
        let res = parse_resources(&text.join(";")).unwrap_or_default();
        out.push((id, res));
    }
    Ok(out)
}

/// A number in [0, 1) that differs between processes and runs.
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    let mut x = (nanos ^ ((std::process::id() as u64) << 32)) | 1;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
}

/// The local address this host uses to reach `master` (no packet is sent).
pub(crate) fn local_address_towards(master: &str) -> Option<IpAddr> {
    use std::net::ToSocketAddrs;
    let target = master.to_socket_addrs().ok()?.next()?;
    let bind: SocketAddr = if target.is_ipv4() {
        "0.0.0.0:0".parse().ok()?
    } else {
        "[::]:0".parse().ok()?
    };
    let sock = std::net::UdpSocket::bind(bind).ok()?;
    sock.connect(target).ok()?;
    Some(sock.local_addr().ok()?.ip())
}

/// Runs one job in the foreground on a private [`MpiService`] (its own framework, torn
/// down at the end); `cancel` resolving cancels it (Ctrl-C). Progress and output go to
/// `events`.
pub async fn run(
    cfg: RunConfig,
    cancel: impl std::future::Future<Output = ()>,
    events: mpsc::UnboundedSender<RunEvent>,
) -> Result<RunReport, RunError> {
    // Several foreground jobs are separate frameworks, each holding part of the cluster
    // for its gang. Equal hold windows would make them release and re-grab in lockstep;
    // a per-process jitter (0.5–1.5 × hold, refusals 1–3 s) breaks the symmetry so one of
    // them collects what the other lets go.
    let spread = jitter();
    let service = MpiService::start(ServiceConfig {
        master: cfg.master.clone(),
        framework_name: cfg.framework_name.clone(),
        user: cfg.user.clone(),
        roles: vec![cfg.spec.role.clone()],
        hold: cfg.hold.mul_f64(0.5 + spread),
        release_refuse: Duration::from_secs_f64(1.0 + 2.0 * spread),
        failover_timeout: Duration::ZERO,
        tessera_exe: cfg.tessera_exe.clone(),
        bind: cfg.pmi_bind,
    });
    let request = JobRequest {
        name: cfg.framework_name.clone(),
        spec: cfg.spec.clone(),
        time_limit: cfg.time_limit,
        launcher: cfg.launcher,
        stdin: cfg.stdin.is_some(),
    };
    let submitted = match service.submit(request, Some(events)).await {
        Ok(s) => s,
        Err(e) => {
            service.shutdown().await;
            return Err(e);
        }
    };
    let id = submitted.id;
    if let (Some(mut input), Some(token)) = (cfg.stdin, submitted.stdin_token)
        && let Ok(writer) = service.claim_stdin(id, &token)
    {
        tokio::spawn(async move {
            while let Some(piece) = input.recv().await {
                if writer.write(&piece).await.is_err() {
                    break;
                }
            }
        });
    }
    tokio::pin!(cancel);
    let report = tokio::select! {
        r = service.wait(id) => r,
        _ = &mut cancel => {
            // Unknown here means it already ended; wait() reports either way.
            let _ = service.cancel(id);
            service.wait(id).await
        }
    };
    service.shutdown().await;
    report
}
