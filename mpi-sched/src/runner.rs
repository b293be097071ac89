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
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;

use tessera_framework::{Action, Driver, DriverConfig, Scheduler, SchedulerEvent, sandbox};
use tessera_types::parse::parse_resources;
use tessera_types::{AgentId, Capability, CommandInfo, FrameworkInfo, Resources, TaskId, Time};

use crate::control::Control;
use crate::framework::{MpiFramework, Phase};
use crate::mpiexec::{self, Launcher};
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
    /// `None`: MPICH direct launch through Tessera's PMI-1 server, one task per rank.
    /// `Some`: the implementation's own launcher, its per-node daemons as tasks.
    pub launcher: Option<Launcher>,
    /// This program (`tessera`): node tasks run `tessera mpi proxy`, launchers call
    /// `tessera mpi launch-agent`.
    pub tessera_exe: PathBuf,
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
    pmi: Option<Arc<PmiServer>>,
    control: Option<Arc<Control>>,
    /// Ranks per node of the launched gang (set before its LAUNCH leaves).
    layout: Arc<Mutex<Option<Vec<u32>>>>,
    clock: Arc<Clock>,
    changed: Arc<Notify>,
}

impl Adapter {
    /// With per-node tasks, tells the control server a node's task ended (its launch
    /// agent exits with the status, as ssh would).
    fn node_task_update(&self, status: &tessera_types::TaskStatus) {
        let (Some(control), true) = (&self.control, status.state.is_terminal()) else {
            return;
        };
        let Some((_, first_rank)) = GangId::parse_task_id(&status.task_id) else {
            return;
        };
        let layout = self.layout.lock().unwrap_or_else(|p| p.into_inner());
        let mut start = 0u32;
        for (node, n) in layout.iter().flatten().enumerate() {
            if start == first_rank {
                let code = match (status.state, status.exit_code) {
                    (_, Some(c)) => c,
                    (tessera_types::TaskState::TaskFinished, None) => 0,
                    _ => 137,
                };
                control.node_ended(node as u32, code);
                return;
            }
            start += n;
        }
    }
}

impl Scheduler for Adapter {
    fn on_event(&mut self, ev: &SchedulerEvent, _driver_now: Time) -> Vec<Action> {
        if let SchedulerEvent::Subscribed { framework_id } = ev {
            *self.framework_id.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(framework_id.as_str().to_string());
        }
        if let SchedulerEvent::Update(status) = ev {
            self.node_task_update(status);
        }
        let mut fw = lock(&self.fw);
        let actions = fw.on_event(ev, self.clock.now());
        for (_, layout) in fw.take_launched() {
            if let Some(pmi) = &self.pmi {
                pmi.set_node_layout(&layout);
            }
            if let Some(control) = &self.control {
                control.set_nodes(layout.len() as u32);
            }
            *self.layout.lock().unwrap_or_else(|p| p.into_inner()) = Some(layout);
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
    let mut spec = cfg.spec.clone();
    let (pmi_tx, mut pmi_events) = mpsc::unbounded_channel();
    let mut pmi = None;
    let mut control = None;
    let (_rank_exit_tx, mut rank_exits) = mpsc::unbounded_channel();
    let mut program = Vec::new();
    match cfg.launcher {
        None => {
            let (server, events) =
                PmiServer::start(bind, cfg.spec.ranks, &format!("kvs_tessera_{gang}"))
                    .await
                    .map_err(|source| RunError::Pmi { bind, source })?;
            pmi_events = events;
            let env = &mut spec.command.environment;
            env.insert("PMI_PORT".into(), server.addr().to_string());
            env.remove("PMI_FD");
            pmi = Some(Arc::new(server));
        }
        Some(launcher) => {
            let (c, exits) = Control::start(ip)
                .await
                .map_err(|e| RunError::Launcher(format!("control server on {ip}: {e}")))?;
            rank_exits = exits;
            program = if spec.command.arguments.is_empty() {
                vec![spec.command.value.clone()]
            } else {
                spec.command.arguments.clone()
            };
            let exe = cfg.tessera_exe.display().to_string();
            if launcher == Launcher::Hydra {
                let mut wrapped = vec![
                    exe.clone(),
                    "mpi".into(),
                    "rank-exec".into(),
                    "--control".into(),
                    c.addr().to_string(),
                    "--".into(),
                ];
                wrapped.append(&mut program);
                program = wrapped;
            }
            spec.command = CommandInfo {
                value: exe.clone(),
                shell: false,
                arguments: vec![
                    exe,
                    "mpi".into(),
                    "proxy".into(),
                    "--control".into(),
                    c.addr().to_string(),
                ],
                ..CommandInfo::default()
            };
            spec.per_node = true;
            control = Some(Arc::new(c));
        }
    }
    // Keeps the unused PMI channel open in launcher mode (its branch then never fires).
    let _pmi_tx = pmi_tx;
    fw.submit(spec, cfg.time_limit)?;

    let clock = Arc::new(Clock(Instant::now()));
    let fw = Arc::new(Mutex::new(fw));
    let changed = Arc::new(Notify::new());
    let framework_id = Arc::new(Mutex::new(None));
    let layout_slot = Arc::new(Mutex::new(None));
    let adapter = Adapter {
        fw: fw.clone(),
        framework_id: framework_id.clone(),
        pmi,
        control: control.clone(),
        layout: layout_slot.clone(),
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
    let (exit_tx, mut exit_rx) = mpsc::unbounded_channel::<i32>();
    let mut kill_launcher: Option<tokio::sync::oneshot::Sender<()>> = None;
    let outcome = loop {
        tokio::select! {
            Some(e) = rank_exits.recv() => {
                lock(&fw).on_rank_exit(gang, e.rank, e.code, clock.now());
                handle.wake();
            }
            Some(code) = exit_rx.recv() => {
                lock(&fw).on_launcher_exit(gang, code, clock.now());
                handle.wake();
            }
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
                if run.outcome().is_some() {
                    // Failed, timed out or cancelled: the launcher goes with the tasks.
                    if let Some(k) = kill_launcher.take() {
                        let _ = k.send(());
                    }
                }
                if waited.is_none() && cfg.launcher.is_some() {
                    waited = Some(clock.0.elapsed());
                    let layout = layout_slot
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone()
                        .unwrap_or_default();
                    let ranks: Vec<(u32, TaskId, AgentId)> = run
                        .ranks()
                        .map(|(r, t, a, _)| (r, t.clone(), a.clone()))
                        .collect();
                    let nodes: Vec<(String, u32)> = ranks
                        .iter()
                        .zip(&layout)
                        .map(|((_, _, a), n)| (a.as_str().to_string(), *n))
                        .collect();
                    let _ = events.send(RunEvent::Launched(nodes));
                    let (Some(launcher), Some(c)) = (cfg.launcher, &control) else {
                        continue;
                    };
                    drop(g);
                    match start_launcher(launcher, &cfg, c, ip, gang, &layout, &program, &events) {
                        Ok((kill, mut child)) => {
                            kill_launcher = Some(kill.0);
                            let mut kill_rx = kill.1;
                            let tx = exit_tx.clone();
                            tokio::spawn(async move {
                                let status = tokio::select! {
                                    s = child.wait() => s,
                                    _ = &mut kill_rx => {
                                        let _ = child.start_kill();
                                        child.wait().await
                                    }
                                };
                                let _ = tx.send(exit_code(status));
                            });
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "cannot start the MPI launcher");
                            let _ = events.send(RunEvent::Output {
                                rank: None,
                                stream: Stream::Stderr,
                                line: format!("cannot start the MPI launcher: {e}"),
                            });
                            let _ = exit_tx.send(127);
                        }
                    }
                    continue;
                }
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
    if let Some(k) = kill_launcher.take() {
        let _ = k.send(());
    }
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

type KillSwitch = (
    tokio::sync::oneshot::Sender<()>,
    tokio::sync::oneshot::Receiver<()>,
);

/// Starts mpiexec / mpirun for the placed gang, its output forwarded as events.
#[allow(clippy::too_many_arguments)]
fn start_launcher(
    launcher: Launcher,
    cfg: &RunConfig,
    control: &Control,
    ip: IpAddr,
    gang: GangId,
    layout: &[u32],
    program: &[String],
    events: &mpsc::UnboundedSender<RunEvent>,
) -> std::io::Result<(KillSwitch, tokio::process::Child)> {
    let dir = std::env::temp_dir().join(format!("tessera-mpi-{}-{gang}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let script = mpiexec::write_agent_script(&dir, &cfg.tessera_exe)?;
    let mut cmd = mpiexec::command(
        launcher,
        &script,
        &dir,
        layout,
        ip,
        program,
        &cfg.spec.command.environment,
    )?;
    cmd.env("TESSERA_MPI_CONTROL", control.addr().to_string());
    let mut child = cmd.spawn()?;
    mpiexec::forward_output(&mut child, events);
    Ok((tokio::sync::oneshot::channel(), child))
}

/// A process's exit status as a shell reports it (128 + signal when killed).
fn exit_code(status: std::io::Result<std::process::ExitStatus>) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(9)),
        Err(_) => 1,
    }
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
                            rank: Some(rank),
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
                        rank: Some(rank),
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
