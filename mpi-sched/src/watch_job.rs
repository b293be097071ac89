//! One job's edge and supervisor inside the [`MpiService`](crate::service::MpiService):
//! its PMI-1 server (direct launch) or control server and launcher process (Hydra, Open
//! MPI), the task that follows it from queue to end, and the readers of its output.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

use tessera_framework::sandbox;
use tessera_types::{AgentId, CommandInfo, TaskId, TaskState, TaskStatus};

use crate::control::Control;
use crate::framework::Phase;
use crate::mpiexec::{self, Launcher};
use crate::pmi::PmiEvent;
use crate::pmi_server::PmiServer;
use crate::queue::GangId;
use crate::runner::{RunError, RunEvent, Stream};
use crate::service::{
    EdgeEvent, JobRequest, JobState, OutputLine, Shared, ended, lock, lost, node_list, program_argv,
};
use crate::spec::GangSpec;
use crate::stdin::{StdinRelay, StdinSource, pump};
use crate::supervise::Outcome;

/// How often the ranks' sandboxes are polled for output while it flows.
const POLL: Duration = Duration::from_millis(100);
/// The longest pause between polls while no rank writes.
const POLL_IDLE: Duration = Duration::from_millis(800);
/// Bytes read per `/files/read`.
const CHUNK: u64 = 64 * 1024;

/// A job's launch edge.
pub(crate) struct JobEdge {
    pmi: Option<Arc<PmiServer>>,
    control: Option<Arc<Control>>,
    pub(crate) layout: Option<Vec<u32>>,
    ip: IpAddr,
    /// The rank argv a launcher runs (launcher modes).
    program: Vec<String>,
    /// Where rank 0's wrapper reads the job's stdin (direct launch and Hydra, whose own
    /// stdin forwarding gives up on a rank that reads slowly); held here, dropping it
    /// stops it.
    stdin_relay: Option<StdinRelay>,
    /// The job's stdin, for mpirun's own stdin (Open MPI forwards it to rank 0), and the
    /// task copying it there.
    stdin: Option<StdinSource>,
    stdin_pump: Option<JoinHandle<()>>,
}

impl Drop for JobEdge {
    fn drop(&mut self) {
        if let Some(p) = self.stdin_pump.take() {
            p.abort();
        }
    }
}

impl JobEdge {
    /// Starts the job's servers and returns the spec to queue (with `PMI_PORT`, or as one
    /// proxy task per node) and the stream of the edge's events.
    pub(crate) async fn open(
        gang: GangId,
        ip: IpAddr,
        req: &JobRequest,
        exe: &Path,
        stdin: Option<StdinSource>,
    ) -> Result<(JobEdge, GangSpec, mpsc::UnboundedReceiver<EdgeEvent>), RunError> {
        let mut spec = req.spec.clone();
        let (tx, rx) = mpsc::unbounded_channel();
        let mut edge = JobEdge {
            pmi: None,
            control: None,
            layout: None,
            ip,
            program: Vec::new(),
            stdin_relay: None,
            stdin: None,
            stdin_pump: None,
        };
        match req.launcher {
            None => {
                let bind = SocketAddr::new(ip, 0);
                let (server, mut events) =
                    PmiServer::start(bind, spec.ranks, &format!("kvs_tessera_{gang}"))
                        .await
                        .map_err(|source| RunError::Pmi { bind, source })?;
                let env = &mut spec.command.environment;
                env.insert("PMI_PORT".into(), server.addr().to_string());
                env.remove("PMI_FD");
                edge.pmi = Some(Arc::new(server));
                if let Some(source) = stdin {
                    let relay = StdinRelay::start(ip, source)
                        .await
                        .map_err(|e| RunError::Launcher(format!("stdin relay on {ip}: {e}")))?;
                    spec.first_rank_wrapper = relay.wrapper(&exe.display().to_string());
                    edge.stdin_relay = Some(relay);
                }
                tokio::spawn(async move {
                    while let Some(e) = events.recv().await {
                        if tx.send(EdgeEvent::Pmi(e)).is_err() {
                            break;
                        }
                    }
                });
            }
            Some(launcher) => {
                let (c, mut exits) = Control::start(ip)
                    .await
                    .map_err(|e| RunError::Launcher(format!("control server on {ip}: {e}")))?;
                let exe = exe.display().to_string();
                match (launcher, stdin) {
                    (Launcher::Hydra, Some(source)) => {
                        let relay = StdinRelay::start(ip, source)
                            .await
                            .map_err(|e| RunError::Launcher(format!("stdin relay on {ip}: {e}")))?;
                        edge.stdin_relay = Some(relay);
                    }
                    (_, source) => edge.stdin = source,
                }
                edge.program = program_argv(
                    &spec.command,
                    launcher,
                    &exe,
                    c.addr(),
                    edge.stdin_relay.as_ref(),
                );
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
                    environment: spec.command.environment.clone(),
                    ..CommandInfo::default()
                };
                spec.per_node = true;
                edge.control = Some(Arc::new(c));
                tokio::spawn(async move {
                    while let Some(e) = exits.recv().await {
                        let ev = EdgeEvent::RankExit {
                            rank: e.rank,
                            code: e.code,
                        };
                        if tx.send(ev).is_err() {
                            break;
                        }
                    }
                });
            }
        }
        Ok((edge, spec, rx))
    }

    /// The gang was placed: ranks per node, in node order (before its LAUNCH leaves).
    pub(crate) fn placed(&mut self, layout: Vec<u32>) {
        if let Some(pmi) = &self.pmi {
            pmi.set_node_layout(&layout);
        }
        if let Some(c) = &self.control {
            c.set_nodes(layout.len() as u32);
        }
        self.layout = Some(layout);
    }

    /// With one task per node, a node task's end is its launch agent's exit status.
    pub(crate) fn node_task_update(&self, status: &TaskStatus) {
        let (Some(control), true) = (&self.control, status.state.is_terminal()) else {
            return;
        };
        let Some((_, first_rank)) = GangId::parse_task_id(&status.task_id) else {
            return;
        };
        let mut start = 0u32;
        for (node, n) in self.layout.iter().flatten().enumerate() {
            if start == first_rank {
                let code = match (status.state, status.exit_code) {
                    (_, Some(c)) => c,
                    (TaskState::TaskFinished, None) => 0,
                    _ => 137,
                };
                control.node_ended(node as u32, code);
                return;
            }
            start += n;
        }
    }
}

/// Follows one job from queue to end: feeds its edge's events to the framework, reports
/// progress, starts the launcher or the output readers once placed, and records the end.
pub(crate) async fn follow_job(
    shared: Arc<Shared>,
    gang: GangId,
    req: JobRequest,
    mut edge_events: mpsc::UnboundedReceiver<EdgeEvent>,
    events: Option<mpsc::UnboundedSender<RunEvent>>,
) {
    let started = Instant::now();
    let emit = |ev: RunEvent| {
        if let RunEvent::Output { rank, stream, line } = &ev {
            shared.record_output(
                gang,
                OutputLine {
                    rank: *rank,
                    stream: *stream,
                    line: line.clone(),
                },
            );
        }
        if let Some(tx) = &events {
            let _ = tx.send(ev);
        }
    };
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<RunEvent>();
    let mut generation = shared.generation.subscribe();
    let mut last_wait = String::new();
    let mut waited = None;
    let mut initialized = None;
    let (over_tx, over_rx) = watch::channel(false);
    let mut readers = JoinSet::new();
    let (exit_tx, mut exit_rx) = mpsc::unbounded_channel::<i32>();
    let mut kill_launcher: Option<oneshot::Sender<()>> = None;
    let outcome = loop {
        tokio::select! {
            Some(ev) = out_rx.recv() => { emit(ev); continue; }
            Some(ev) = edge_events.recv() => {
                let now = shared.now();
                match ev {
                    EdgeEvent::Pmi(e) => {
                        if e == PmiEvent::AllInitialized && initialized.is_none() {
                            initialized = Some(started.elapsed());
                            emit(RunEvent::Initialized);
                        }
                        lock(&shared.fw).on_pmi(gang, &e, now);
                    }
                    EdgeEvent::RankExit { rank, code } => {
                        lock(&shared.fw).on_rank_exit(gang, rank, code, now);
                    }
                }
                shared.wake();
            }
            Some(code) = exit_rx.recv() => {
                lock(&shared.fw).on_launcher_exit(gang, code, shared.now());
                shared.wake();
            }
            r = generation.changed() => {
                if r.is_err() {
                    break None;
                }
            }
        }
        if let Some(why) = lock(&shared.driver_error).clone() {
            // The framework is gone: the master kills its tasks (failover timeout).
            if let Some(k) = kill_launcher.take() {
                let _ = k.send(());
            }
            lost(&shared, gang, why);
            break None;
        }
        let fw = lock(&shared.fw);
        match fw.phase(gang) {
            Some(Phase::Waiting(w)) => {
                let text = w.to_string();
                if text != last_wait {
                    shared.set_state(gang, JobState::Pending(text.clone()));
                    emit(RunEvent::Waiting(text.clone()));
                    last_wait = text;
                }
            }
            Some(Phase::Running(run)) => {
                if run.outcome().is_some()
                    && let Some(k) = kill_launcher.take()
                {
                    // Failed, timed out or cancelled: the launcher goes with the tasks.
                    let _ = k.send(());
                }
                if waited.is_some() {
                    continue;
                }
                waited = Some(started.elapsed());
                let ranks: Vec<(u32, TaskId, AgentId)> = run
                    .ranks()
                    .map(|(r, t, a, _)| (r, t.clone(), a.clone()))
                    .collect();
                drop(fw);
                let mut edges = lock(&shared.edges);
                let Some(edge) = edges.get_mut(&gang) else {
                    continue;
                };
                let nodes = match (&req.launcher, &edge.layout) {
                    (Some(_), Some(layout)) => ranks
                        .iter()
                        .zip(layout)
                        .map(|((_, _, a), n)| (a.as_str().to_string(), *n))
                        .collect(),
                    _ => node_list(&ranks),
                };
                shared.set_state(gang, JobState::Running(nodes.clone()));
                emit(RunEvent::Launched(nodes));
                match req.launcher {
                    Some(launcher) => {
                        let started = start_launcher(&shared, launcher, edge, gang, &req, &out_tx);
                        drop(edges);
                        match started {
                            Ok((kill, child)) => {
                                kill_launcher = Some(kill);
                                let tx = exit_tx.clone();
                                tokio::spawn(reap(child, tx));
                            }
                            Err(e) => {
                                emit(RunEvent::Output {
                                    rank: None,
                                    stream: Stream::Stderr,
                                    line: format!("cannot start the MPI launcher: {e}"),
                                });
                                let _ = exit_tx.send(127);
                            }
                        }
                    }
                    None => {
                        drop(edges);
                        let fid = lock(&shared.framework_id).clone();
                        readers.spawn(follow_output(
                            shared.cfg.master.clone(),
                            fid,
                            ranks,
                            out_tx.clone(),
                            over_rx.clone(),
                        ));
                    }
                }
            }
            Some(Phase::Ended(o)) => break Some(o.clone()),
            None => break Some(Outcome::Cancelled),
        }
    };
    if let Some(k) = kill_launcher.take() {
        let _ = k.send(());
    }
    let _ = over_tx.send(true);
    drop(out_tx);
    let drain = async {
        while readers.join_next().await.is_some() {}
        while let Some(ev) = out_rx.recv().await {
            emit(ev);
        }
    };
    if tokio::time::timeout(Duration::from_secs(10), drain)
        .await
        .is_err()
    {
        tracing::warn!(gang = %gang, "gave up reading the ranks' last output after 10 s");
    }
    lock(&shared.edges).remove(&gang);
    if let Some(outcome) = outcome {
        // The service's record holds the outcome from now on (recorded first, so a cancel
        // in between finds the job ended); then the framework may forget it.
        let total = started.elapsed();
        ended(&shared, gang, outcome, waited, initialized, total);
        let _ = lock(&shared.fw).forget(gang);
    }
}

/// Waits for the launcher; returns its exit status as a shell reports it.
async fn reap(
    (mut child, mut kill): (tokio::process::Child, oneshot::Receiver<()>),
    tx: mpsc::UnboundedSender<i32>,
) {
    let status = tokio::select! {
        s = child.wait() => s,
        _ = &mut kill => {
            let _ = child.start_kill();
            child.wait().await
        }
    };
    use std::os::unix::process::ExitStatusExt;
    let code = match status {
        Ok(s) => s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(9)),
        Err(_) => 1,
    };
    let _ = tx.send(code);
}

type Started = (
    oneshot::Sender<()>,
    (tokio::process::Child, oneshot::Receiver<()>),
);

/// Starts mpiexec / mpirun for the placed gang, its output forwarded as events.
fn start_launcher(
    shared: &Shared,
    launcher: Launcher,
    edge: &mut JobEdge,
    gang: GangId,
    req: &JobRequest,
    events: &mpsc::UnboundedSender<RunEvent>,
) -> std::io::Result<Started> {
    let (Some(control), Some(layout)) = (&edge.control, &edge.layout) else {
        return Err(std::io::Error::other("the job was not placed yet"));
    };
    let dir = std::env::temp_dir().join(format!("tessera-mpi-{}-{gang}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let script = mpiexec::write_agent_script(&dir, &shared.cfg.tessera_exe)?;
    let mut cmd = mpiexec::command(
        launcher,
        &script,
        &dir,
        layout,
        edge.ip,
        &edge.program,
        &req.spec.command.environment,
    )?;
    cmd.env("TESSERA_MPI_CONTROL", control.addr().to_string());
    let stdin = edge.stdin.take();
    if stdin.is_some() {
        // mpirun forwards its stdin to rank 0.
        cmd.stdin(std::process::Stdio::piped());
    }
    let mut child = cmd.spawn()?;
    if let (Some(source), Some(pipe)) = (stdin, child.stdin.take()) {
        edge.stdin_pump = Some(tokio::spawn(pump(source, pipe)));
    }
    mpiexec::forward_output(&mut child, events);
    let (tx, rx) = oneshot::channel();
    Ok((tx, (child, rx)))
}

/// One rank's output files: where they are and how far they were read.
struct RankFiles {
    rank: u32,
    task: TaskId,
    agent: AgentId,
    dir: Option<String>,
    /// (file name, stream, bytes read, the unfinished last line).
    files: [(&'static str, Stream, u64, Vec<u8>); 2],
}

/// Streams every rank's stdout and stderr from the sandboxes, line by line, until the job
/// is over and the files are drained. The agents' addresses come from one `/master/slaves`
/// and each agent's sandboxes from one `/state` (asked again only while some rank's is
/// missing); then each poll reads what the files gained. Polls come every [`POLL`] while
/// output flows, less often (up to [`POLL_IDLE`]) while it does not: ranks starting up
/// share the machine with this.
async fn follow_output(
    master: String,
    framework_id: Option<String>,
    ranks: Vec<(u32, TaskId, AgentId)>,
    events: mpsc::UnboundedSender<RunEvent>,
    mut over: watch::Receiver<bool>,
) {
    let mut ranks: Vec<RankFiles> = ranks
        .into_iter()
        .map(|(rank, task, agent)| RankFiles {
            rank,
            task,
            agent,
            dir: None,
            files: [
                ("stdout", Stream::Stdout, 0, Vec::new()),
                ("stderr", Stream::Stderr, 0, Vec::new()),
            ],
        })
        .collect();
    let mut addrs: BTreeMap<AgentId, String> = BTreeMap::new();
    let mut pause = POLL;
    loop {
        let finishing = *over.borrow();
        if ranks.iter().any(|r| !addrs.contains_key(&r.agent))
            && let Ok(v) = sandbox::get_json(&master, "/master/slaves").await
        {
            for s in v["slaves"].as_array().into_iter().flatten() {
                let id = s["id"].as_str().and_then(|i| AgentId::new(i).ok());
                let addr = s["pid"].as_str().and_then(|p| p.split_once('@'));
                if let (Some(id), Some((_, addr))) = (id, addr) {
                    addrs.insert(id, addr.to_string());
                }
            }
        }
        let missing: std::collections::BTreeSet<&AgentId> = ranks
            .iter()
            .filter(|r| r.dir.is_none())
            .map(|r| &r.agent)
            .collect();
        let mut states = BTreeMap::new();
        for agent in missing {
            if let Some(addr) = addrs.get(agent)
                && let Ok(state) = sandbox::get_json(addr, "/state").await
            {
                states.insert(agent.clone(), state);
            }
        }
        for r in ranks.iter_mut().filter(|r| r.dir.is_none()) {
            if let Some(state) = states.get(&r.agent) {
                r.dir = sandbox::find_directory(state, framework_id.as_deref(), r.task.as_str());
            }
        }
        let reads = ranks.iter_mut().filter_map(|r| {
            let addr = addrs.get(&r.agent)?;
            Some(read_new_output(addr, r, &events))
        });
        let got = futures_util::future::join_all(reads).await;
        if finishing {
            for r in &mut ranks {
                for (_, stream, _, partial) in r.files.iter_mut() {
                    if !partial.is_empty() {
                        send_line(&events, r.rank, *stream, partial);
                        partial.clear();
                    }
                }
            }
            return;
        }
        pause = if got.iter().any(|&g| g) {
            POLL
        } else {
            (pause * 2).min(POLL_IDLE)
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = over.changed() => {}
        }
    }
}

fn send_line(events: &mpsc::UnboundedSender<RunEvent>, rank: u32, stream: Stream, bytes: &[u8]) {
    let _ = events.send(RunEvent::Output {
        rank: Some(rank),
        stream,
        line: String::from_utf8_lossy(bytes).into_owned(),
    });
}

/// Reads what one rank's files gained on the agent at `addr` and sends the complete
/// lines; whether there was anything.
async fn read_new_output(
    addr: &str,
    r: &mut RankFiles,
    events: &mpsc::UnboundedSender<RunEvent>,
) -> bool {
    let Some(dir) = &r.dir else {
        return false;
    };
    let mut got = false;
    for (name, stream, offset, partial) in r.files.iter_mut() {
        // Read until a short chunk: the file's end for now.
        loop {
            let path = format!("{dir}/{name}");
            let Ok(v) = sandbox::read(addr, &path, *offset, CHUNK).await else {
                break;
            };
            let data = v["data"].as_str().unwrap_or("").as_bytes().to_vec();
            if data.is_empty() {
                break;
            }
            got = true;
            *offset += data.len() as u64;
            partial.extend_from_slice(&data);
            while let Some(nl) = partial.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = partial.drain(..=nl).collect();
                send_line(events, r.rank, *stream, &line[..line.len() - 1]);
            }
            if (data.len() as u64) < CHUNK {
                break;
            }
        }
    }
    got
}
