//! Running one MPI job in the foreground, as `srun`/`mpirun` do, with MPICH direct launch:
//! this process is the framework (over the public v1 API through the SDK driver), serves
//! PMI-1 to the ranks, streams every rank's output from its sandbox, and returns the job's
//! outcome. The framework uses `failover_timeout = 0`: if this process dies, the master
//! kills the ranks.
//!
//! Flow: check the gang can ever fit the cluster (`/master/slaves`), start the PMI server,
//! subscribe; the [`MpiFramework`] holds offers until the whole gang fits and launches it
//! (every rank gets `PMI_PORT` and `PMI_ID`); the PMI server learns the node layout before
//! the LAUNCH leaves; rank failures, aborts and the time limit kill the rest; the framework
//! tears down when the job has ended and the output is drained.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;

use tessera_framework::{Action, Driver, DriverConfig, Scheduler, SchedulerEvent, sandbox};
use tessera_types::parse::parse_resources;
use tessera_types::{AgentId, Capability, FrameworkInfo, Resources, TaskId, Time};

use crate::framework::{MpiFramework, Phase};
use crate::pmi::PmiEvent;
use crate::pmi_server::PmiServer;
use crate::queue::{GangId, QueueConfig};
use crate::spec::GangSpec;
use crate::supervise::Outcome;

/// What to run and where.
#[derive(Debug, Clone)]
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
    /// One line of a rank's output (without its newline).
    Output {
        rank: u32,
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
    #[error("cannot start the PMI server on {bind}: {source}")]
    Pmi {
        bind: SocketAddr,
        source: std::io::Error,
    },
    #[error("the framework driver stopped: {0}")]
    Driver(String),
}

/// How often the driver is woken to act on time (holds, time limits, kill retries).
const TICK: Duration = Duration::from_millis(200);
/// How often each rank's sandbox is polled for output.
const POLL: Duration = Duration::from_millis(150);
/// Bytes read per `/files/read`.
const CHUNK: u64 = 64 * 1024;

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
fn local_address_towards(master: &str) -> Option<IpAddr> {
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

struct Clock(Instant);

impl Clock {
    fn now(&self) -> Time {
        Time::from_millis(self.0.elapsed().as_millis() as u64)
    }
}

fn lock(fw: &Mutex<MpiFramework>) -> MutexGuard<'_, MpiFramework> {
    fw.lock().unwrap_or_else(|p| p.into_inner())
}

/// The driver's scheduler: the shared framework, on this runner's clock, telling the PMI
/// server the node layout before a launch leaves.
struct Adapter {
    fw: Arc<Mutex<MpiFramework>>,
    framework_id: Arc<Mutex<Option<String>>>,
    pmi: Arc<PmiServer>,
    clock: Arc<Clock>,
    changed: Arc<Notify>,
}

impl Scheduler for Adapter {
    fn on_event(&mut self, ev: &SchedulerEvent, _driver_now: Time) -> Vec<Action> {
        if let SchedulerEvent::Subscribed { framework_id } = ev {
            *self.framework_id.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(framework_id.as_str().to_string());
        }
        let mut fw = lock(&self.fw);
        let actions = fw.on_event(ev, self.clock.now());
        for (_, layout) in fw.take_launched() {
            self.pmi.set_node_layout(&layout);
        }
        drop(fw);
        self.changed.notify_one();
        actions
    }

    fn wants_offers(&self) -> bool {
        lock(&self.fw).wants_offers()
    }

    fn holds(&self, offer: &tessera_types::OfferId) -> bool {
        lock(&self.fw).holds(offer)
    }
}

/// Runs the job to its end; `cancel` resolving cancels it (Ctrl-C). Progress and output
/// go to `events`.
pub async fn run(
    cfg: RunConfig,
    cancel: impl std::future::Future<Output = ()>,
    events: mpsc::UnboundedSender<RunEvent>,
) -> Result<RunReport, RunError> {
    cfg.spec.validate()?;
    let totals = cluster_totals(&cfg.master, cfg.spec.role.as_str()).await?;
    crate::place::can_ever_fit(&cfg.spec, &totals)?;

    let ip = cfg
        .pmi_bind
        .or_else(|| local_address_towards(&cfg.master))
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let bind = SocketAddr::new(ip, 0);
    // Several foreground jobs are separate frameworks, each holding part of the cluster
    // for its gang. Equal hold windows would make them release and re-grab in lockstep;
    // a per-process jitter (0.5–1.5 × hold, refusals 1–3 s) breaks the symmetry so one of
    // them collects what the other lets go.
    let spread = jitter();
    let mut fw = MpiFramework::new(QueueConfig {
        hold: cfg.hold.mul_f64(0.5 + spread),
        release_refuse: Duration::from_secs_f64(1.0 + 2.0 * spread),
        ..QueueConfig::default()
    });
    let gang = fw.next_id();
    let (pmi, mut pmi_events) =
        PmiServer::start(bind, cfg.spec.ranks, &format!("kvs_tessera_{gang}"))
            .await
            .map_err(|source| RunError::Pmi { bind, source })?;
    let mut spec = cfg.spec.clone();
    let env = &mut spec.command.environment;
    env.insert("PMI_PORT".into(), pmi.addr().to_string());
    // Let MPICH's hostname exchange and UCX pick the agents' own addresses.
    env.remove("PMI_FD");
    fw.submit(spec, cfg.time_limit)?;

    let clock = Arc::new(Clock(Instant::now()));
    let fw = Arc::new(Mutex::new(fw));
    let changed = Arc::new(Notify::new());
    let framework_id = Arc::new(Mutex::new(None));
    let adapter = Adapter {
        fw: fw.clone(),
        framework_id: framework_id.clone(),
        pmi: Arc::new(pmi),
        clock: clock.clone(),
        changed: changed.clone(),
    };
    let info = FrameworkInfo {
        id: None,
        name: cfg.framework_name.clone(),
        user: cfg.user.clone(),
        roles: vec![cfg.spec.role.clone()],
        capabilities: vec![Capability::MultiRole],
        failover_timeout_secs: 0.0,
        principal: None,
        hostname: None,
    };
    let mut dc = DriverConfig::new(cfg.master.clone(), info);
    dc.default_refuse = Duration::from_secs(1);
    dc.max_attempts = Some(10);
    let mut driver = Driver::new(dc, adapter);
    let handle = driver.handle();
    let mut driver_task = tokio::spawn(async move { driver.run().await });

    tokio::pin!(cancel);
    let mut cancelled = false;
    let mut ticker = tokio::time::interval(TICK);
    let mut last_wait = String::new();
    let mut waited = None;
    let mut initialized = None;
    let (over_tx, over_rx) = watch::channel(false);
    let mut followers = JoinSet::new();
    let outcome = loop {
        tokio::select! {
            ev = pmi_events.recv() => {
                if let Some(ev) = ev {
                    if ev == PmiEvent::AllInitialized && initialized.is_none() {
                        initialized = Some(clock.0.elapsed());
                        let _ = events.send(RunEvent::Initialized);
                    }
                    lock(&fw).on_pmi(gang, &ev, clock.now());
                    handle.wake();
                }
            }
            _ = ticker.tick() => handle.wake(),
            _ = &mut cancel, if !cancelled => {
                cancelled = true;
                // Unknown here means it already ended; the loop sees that below.
                let _ = lock(&fw).cancel(gang, clock.now());
                handle.wake();
            }
            _ = changed.notified() => {}
            r = &mut driver_task => {
                let why = match r {
                    Ok(Ok(())) => "it stopped before the job ended".to_string(),
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => e.to_string(),
                };
                return Err(RunError::Driver(why));
            }
        }
        let g = lock(&fw);
        match g.phase(gang) {
            Some(Phase::Waiting(w)) => {
                let text = w.to_string();
                if text != last_wait {
                    let _ = events.send(RunEvent::Waiting(text.clone()));
                    last_wait = text;
                }
            }
            Some(Phase::Running(run)) => {
                if waited.is_none() {
                    waited = Some(clock.0.elapsed());
                    let ranks: Vec<(u32, TaskId, AgentId)> = run
                        .ranks()
                        .map(|(r, t, a, _)| (r, t.clone(), a.clone()))
                        .collect();
                    let _ = events.send(RunEvent::Launched(layout(&ranks)));
                    let fid = framework_id
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone();
                    for (rank, task, agent) in ranks {
                        followers.spawn(follow(
                            cfg.master.clone(),
                            fid.clone(),
                            rank,
                            task,
                            agent,
                            events.clone(),
                            over_rx.clone(),
                        ));
                    }
                }
            }
            Some(Phase::Ended(o)) => break o.clone(),
            None => break Outcome::Cancelled,
        }
    };
    let _ = over_tx.send(true);
    let drain = async { while followers.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(10), drain)
        .await
        .is_err()
    {
        tracing::warn!("gave up reading the ranks' last output after 10 s");
    }
    lock(&fw).teardown();
    handle.wake();
    if tokio::time::timeout(Duration::from_secs(5), &mut driver_task)
        .await
        .is_err()
    {
        handle.stop();
    }
    Ok(RunReport {
        gang,
        outcome,
        waited,
        initialized,
        total: clock.0.elapsed(),
    })
}

/// Hostnames (agent ids) and ranks per node, in rank order.
fn layout(ranks: &[(u32, TaskId, AgentId)]) -> Vec<(String, u32)> {
    let mut out: Vec<(String, u32)> = Vec::new();
    for (_, _, a) in ranks {
        match out.last_mut() {
            Some((last, n)) if last == a.as_str() => *n += 1,
            _ => out.push((a.as_str().to_string(), 1)),
        }
    }
    out
}

/// Streams one rank's stdout and stderr, line by line, until the job is over and the
/// files are drained.
async fn follow(
    master: String,
    framework_id: Option<String>,
    rank: u32,
    task: TaskId,
    agent: AgentId,
    events: mpsc::UnboundedSender<RunEvent>,
    mut over: watch::Receiver<bool>,
) {
    let mut addr: Option<String> = None;
    let mut dir: Option<String> = None;
    let mut files: BTreeMap<&'static str, (Stream, u64, Vec<u8>)> = BTreeMap::new();
    files.insert("stdout", (Stream::Stdout, 0, Vec::new()));
    files.insert("stderr", (Stream::Stderr, 0, Vec::new()));
    loop {
        let finishing = *over.borrow();
        if addr.is_none() {
            addr = sandbox::agent_address(&master, agent.as_str())
                .await
                .ok()
                .flatten();
        }
        if let (Some(a), None) = (&addr, &dir) {
            dir = sandbox::sandbox_directory(a, framework_id.as_deref(), task.as_str())
                .await
                .ok()
                .flatten();
        }
        if let (Some(a), Some(d)) = (&addr, &dir) {
            for (name, (stream, offset, partial)) in files.iter_mut() {
                // Read until a short chunk: the file's end for now.
                loop {
                    let path = format!("{d}/{name}");
                    let Ok(v) = sandbox::read(a, &path, *offset, CHUNK).await else {
                        break;
                    };
                    let data = v["data"].as_str().unwrap_or("").as_bytes().to_vec();
                    if data.is_empty() {
                        break;
                    }
                    *offset += data.len() as u64;
                    partial.extend_from_slice(&data);
                    while let Some(nl) = partial.iter().position(|&b| b == b'\n') {
                        let line: Vec<u8> = partial.drain(..=nl).collect();
                        let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
                        let _ = events.send(RunEvent::Output {
                            rank,
                            stream: *stream,
                            line: text,
                        });
                    }
                    if (data.len() as u64) < CHUNK {
                        break;
                    }
                }
            }
        }
        if finishing {
            for (stream, _, partial) in files.values_mut() {
                if !partial.is_empty() {
                    let text = String::from_utf8_lossy(partial).into_owned();
                    partial.clear();
                    let _ = events.send(RunEvent::Output {
                        rank,
                        stream: *stream,
                        line: text,
                    });
                }
            }
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = over.changed() => {}
        }
    }
}
