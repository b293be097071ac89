//! The MPI service: one framework (over the public v1 API through the SDK driver) running
//! any number of gangs — queued in one [`MpiFramework`], each with its launch edge (a PMI-1
//! server, or a control server and an `mpiexec`/`mpirun` process) and a supervisor task
//! that follows it to the end, keeping its state and output for `queue`, `why` and `logs`.
//!
//! `tessera mpi run` starts a private service for one job in the foreground
//! ([`crate::runner::run`]); `tessera up` and `tessera master` host a shared one behind
//! the REST API in [`crate::rest`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use tessera_framework::{Action, Driver, DriverConfig, DriverHandle, Scheduler, SchedulerEvent};
use tessera_types::{AgentId, Capability, CommandInfo, FrameworkInfo, Role, TaskId, Time};

use crate::framework::MpiFramework;
use crate::mpiexec::Launcher;
use crate::pmi::PmiEvent;
use crate::queue::{GangId, QueueConfig};
use crate::runner::{RunError, RunEvent, RunReport, Stream, cluster_totals, local_address_towards};
use crate::spec::GangSpec;
use crate::stdin::{StdinGate, StdinRelay, StdinWriter, new_token, stdin_queue};
use crate::supervise::Outcome;
use crate::watch_job::{JobEdge, follow_job};

/// How the service connects and behaves.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// `HOST:PORT` of the master.
    pub master: String,
    pub framework_name: String,
    pub user: String,
    /// Roles the framework subscribes with; a job's role must be one of them.
    pub roles: Vec<Role>,
    /// Longest an offer is held while a gang accumulates, and the refusal on release.
    pub hold: Duration,
    pub release_refuse: Duration,
    /// How long the master keeps the framework's tasks when the service disconnects.
    pub failover_timeout: Duration,
    /// This program (`tessera`), for node tasks and the launchers' ssh stand-in.
    pub tessera_exe: PathBuf,
    /// Address the PMI and control servers listen on; `None`: the one this host uses to
    /// reach the master.
    pub bind: Option<IpAddr>,
}

/// One job to run.
#[derive(Debug, Clone)]
pub struct JobRequest {
    pub name: String,
    pub spec: GangSpec,
    /// Counted from the launch.
    pub time_limit: Option<Duration>,
    /// `None`: MPICH direct launch through the PMI-1 server.
    pub launcher: Option<Launcher>,
    /// Rank 0 reads the submitter's stdin ([`MpiService::claim_stdin`]); otherwise its
    /// stdin is closed.
    pub stdin: bool,
}

/// A queued job: its id, and the token its stdin is streamed with (jobs with
/// [`JobRequest::stdin`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub id: GangId,
    pub stdin_token: Option<String>,
}

/// One line of a job's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLine {
    pub rank: Option<u32>,
    pub stream: Stream,
    pub line: String,
}

/// Where a job stands.
#[derive(Debug, Clone, PartialEq)]
pub enum JobState {
    /// Waiting for offers; why.
    Pending(String),
    /// Launched: agents and ranks on each.
    Running(Vec<(String, u32)>),
    Ended(RunReport),
    /// The framework lost the master for good; the job's fate is unknown.
    Lost(String),
}

/// A job as `queue` and `show` see it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSummary {
    pub id: GangId,
    pub name: String,
    pub ranks: u32,
    pub layout: String,
    pub launch: &'static str,
    pub submitted: SystemTime,
    pub state: JobState,
}

/// Lines of output kept per job (the oldest are dropped beyond it).
pub const OUTPUT_LINES: usize = 100_000;

struct JobRecord {
    summary: JobSummary,
    output: VecDeque<OutputLine>,
    /// Index of `output[0]` in the job's whole output.
    first_line: u64,
    done: watch::Sender<bool>,
    stdin: StdinGate<StdinWriter>,
}

pub(crate) struct Shared {
    pub(crate) cfg: ServiceConfig,
    pub(crate) fw: Mutex<MpiFramework>,
    pub(crate) edges: Mutex<HashMap<GangId, JobEdge>>,
    jobs: Mutex<BTreeMap<GangId, JobRecord>>,
    start: Instant,
    /// Bumped after every event the framework handled: job supervisors look again.
    pub(crate) generation: watch::Sender<u64>,
    pub(crate) framework_id: Mutex<Option<String>>,
    pub(crate) handle: OnceLock<DriverHandle>,
    pub(crate) driver_error: Mutex<Option<String>>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub(crate) fn now(&self) -> Time {
        Time::from_millis(self.start.elapsed().as_millis() as u64)
    }

    pub(crate) fn wake(&self) {
        if let Some(h) = self.handle.get() {
            h.wake();
        }
    }

    pub(crate) fn set_state(&self, id: GangId, state: JobState) {
        if let Some(j) = lock(&self.jobs).get_mut(&id) {
            let ended = matches!(state, JobState::Ended(_) | JobState::Lost(_));
            j.summary.state = state;
            if ended {
                let _ = j.done.send(true);
            }
        }
    }

    pub(crate) fn record_output(&self, id: GangId, line: OutputLine) {
        if let Some(j) = lock(&self.jobs).get_mut(&id) {
            if j.output.len() >= OUTPUT_LINES {
                j.output.pop_front();
                j.first_line += 1;
            }
            j.output.push_back(line);
        }
    }
}

/// The driver's scheduler: the shared framework on the service's clock; it tells each
/// job's edge the node layout before its LAUNCH leaves, and node tasks' ends to the
/// control servers.
struct Adapter {
    shared: Arc<Shared>,
}

impl Scheduler for Adapter {
    fn on_event(&mut self, ev: &SchedulerEvent, _driver_now: Time) -> Vec<Action> {
        let s = &self.shared;
        match ev {
            SchedulerEvent::Subscribed { framework_id } => {
                *lock(&s.framework_id) = Some(framework_id.as_str().to_string());
            }
            SchedulerEvent::Update(status) => {
                if let Some((gang, _)) = GangId::parse_task_id(&status.task_id)
                    && let Some(edge) = lock(&s.edges).get(&gang)
                {
                    edge.node_task_update(status);
                }
            }
            _ => {}
        }
        let mut fw = lock(&s.fw);
        let actions = fw.on_event(ev, s.now());
        for (gang, layout) in fw.take_launched() {
            if let Some(edge) = lock(&s.edges).get_mut(&gang) {
                edge.placed(layout);
            }
        }
        drop(fw);
        s.generation.send_modify(|g| *g += 1);
        actions
    }

    fn wants_offers(&self) -> bool {
        lock(&self.shared.fw).wants_offers()
    }

    fn holds(&self, offer: &tessera_types::OfferId) -> bool {
        lock(&self.shared.fw).holds(offer)
    }
}

/// How often the driver is woken to act on time (holds, time limits, kill retries).
const TICK: Duration = Duration::from_millis(200);

/// See the module doc.
pub struct MpiService {
    shared: Arc<Shared>,
    tasks: Mutex<JoinSet<()>>,
    /// One submission at a time: a job's id is chosen before its edge starts (the PMI
    /// port goes into its spec), so two concurrent submissions must not pick the same.
    submitting: tokio::sync::Mutex<()>,
}

impl MpiService {
    /// Subscribes (in the background) and starts ticking.
    pub fn start(cfg: ServiceConfig) -> MpiService {
        let fw = MpiFramework::new(QueueConfig {
            hold: cfg.hold,
            release_refuse: cfg.release_refuse,
            ..QueueConfig::default()
        });
        let info = FrameworkInfo {
            id: None,
            name: cfg.framework_name.clone(),
            user: cfg.user.clone(),
            roles: cfg.roles.clone(),
            capabilities: vec![Capability::MultiRole],
            failover_timeout_secs: cfg.failover_timeout.as_secs_f64(),
            principal: None,
            hostname: None,
        };
        let mut dc = DriverConfig::new(cfg.master.clone(), info);
        dc.default_refuse = Duration::from_secs(1);
        dc.max_attempts = Some(10);
        let (generation, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            cfg,
            fw: Mutex::new(fw),
            edges: Mutex::new(HashMap::new()),
            jobs: Mutex::new(BTreeMap::new()),
            start: Instant::now(),
            generation,
            framework_id: Mutex::new(None),
            handle: OnceLock::new(),
            driver_error: Mutex::new(None),
        });
        let mut driver = Driver::new(
            dc,
            Adapter {
                shared: shared.clone(),
            },
        );
        let _ = shared.handle.set(driver.handle());
        let mut tasks = JoinSet::new();
        let s = shared.clone();
        tasks.spawn(async move {
            let why = match driver.run().await {
                Ok(()) => "the framework stopped".to_string(),
                Err(e) => e.to_string(),
            };
            *lock(&s.driver_error) = Some(why);
            s.generation.send_modify(|g| *g += 1);
        });
        let s = shared.clone();
        tasks.spawn(async move {
            let mut ticker = tokio::time::interval(TICK);
            loop {
                ticker.tick().await;
                s.wake();
            }
        });
        MpiService {
            shared,
            tasks: Mutex::new(tasks),
            submitting: tokio::sync::Mutex::new(()),
        }
    }

    /// Checks the job against the cluster, starts its launch edge and queues it;
    /// `events`, when given, receives its progress and output as they happen.
    pub async fn submit(
        &self,
        req: JobRequest,
        events: Option<mpsc::UnboundedSender<RunEvent>>,
    ) -> Result<Submitted, RunError> {
        let s = &self.shared;
        req.spec.validate()?;
        if !s.cfg.roles.contains(&req.spec.role) {
            return Err(RunError::Refused(crate::error::Error::InvalidSpec {
                field: "role".into(),
                reason: format!(
                    "{} is not one of this service's roles ({})",
                    req.spec.role,
                    s.cfg
                        .roles
                        .iter()
                        .map(|r| r.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }));
        }
        let totals = cluster_totals(&s.cfg.master, req.spec.role.as_str()).await?;
        crate::place::can_ever_fit(&req.spec, &totals)?;
        let ip = s
            .cfg
            .bind
            .or_else(|| local_address_towards(&s.cfg.master))
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let _one_at_a_time = self.submitting.lock().await;
        let gang = lock(&s.fw).next_id();
        let (stdin, source) = if req.stdin {
            let (writer, source) = stdin_queue();
            let token = new_token();
            (StdinGate::Open { token, writer }, Some(source))
        } else {
            (StdinGate::NotForwarded, None)
        };
        let stdin_token = stdin.token().map(str::to_string);
        let (edge, spec, edge_events) =
            JobEdge::open(gang, ip, &req, &s.cfg.tessera_exe, source).await?;
        let summary = JobSummary {
            id: gang,
            name: req.name.clone(),
            ranks: req.spec.ranks,
            layout: req.spec.layout.to_string(),
            launch: match req.launcher {
                None => "pmi",
                Some(Launcher::Hydra) => "hydra",
                Some(Launcher::Orted) => "orted",
            },
            submitted: SystemTime::now(),
            state: JobState::Pending("waiting for offers".into()),
        };
        let (done, _) = watch::channel(false);
        {
            // The edge must be known before the framework can launch the gang.
            let mut fw = lock(&s.fw);
            lock(&s.edges).insert(gang, edge);
            let id = fw.submit(spec, req.time_limit)?;
            if id != gang {
                lock(&s.edges).remove(&gang);
                return Err(RunError::Launcher(format!(
                    "internal: job id {id} differs from the reserved {gang}"
                )));
            }
            lock(&s.jobs).insert(
                gang,
                JobRecord {
                    summary,
                    output: VecDeque::new(),
                    first_line: 0,
                    done,
                    stdin,
                },
            );
        }
        s.wake();
        let shared = s.clone();
        lock(&self.tasks).spawn(follow_job(shared, gang, req, edge_events, events));
        Ok(Submitted {
            id: gang,
            stdin_token,
        })
    }

    /// The writing end of job `id`'s stdin, for the stream that carries the token handed
    /// out at submit; once. Dropping it is rank 0's EOF.
    pub fn claim_stdin(&self, id: GangId, token: &str) -> Result<StdinWriter, crate::error::Error> {
        let mut jobs = lock(&self.shared.jobs);
        let j = jobs
            .get_mut(&id)
            .ok_or(crate::error::Error::UnknownGang(id))?;
        if matches!(j.summary.state, JobState::Ended(_) | JobState::Lost(_)) {
            return Err(crate::error::Error::AlreadyEnded(id));
        }
        j.stdin
            .claim(token)
            .map_err(|r| crate::error::Error::Stdin(id, r))
    }

    /// Cancels a pending or running job (its ranks are killed).
    pub fn cancel(&self, id: GangId) -> Result<(), crate::error::Error> {
        let s = &self.shared;
        match lock(&s.jobs).get(&id).map(|j| &j.summary.state) {
            None => return Err(crate::error::Error::UnknownGang(id)),
            Some(JobState::Ended(_) | JobState::Lost(_)) => {
                return Err(crate::error::Error::AlreadyEnded(id));
            }
            Some(_) => {}
        }
        lock(&s.fw).cancel(id, s.now())?;
        s.wake();
        Ok(())
    }

    /// Waits for the job to end.
    pub async fn wait(&self, id: GangId) -> Result<RunReport, RunError> {
        let mut done = {
            let jobs = lock(&self.shared.jobs);
            let j = jobs
                .get(&id)
                .ok_or(RunError::Refused(crate::error::Error::UnknownGang(id)))?;
            j.done.subscribe()
        };
        let _ = done.wait_for(|d| *d).await;
        match self.job(id).map(|j| j.state) {
            Some(JobState::Ended(r)) => Ok(r),
            Some(JobState::Lost(why)) => Err(RunError::Driver(why)),
            _ => Err(RunError::Driver("the job's supervisor stopped".into())),
        }
    }

    pub fn job(&self, id: GangId) -> Option<JobSummary> {
        lock(&self.shared.jobs).get(&id).map(|j| j.summary.clone())
    }

    /// Every job, oldest first.
    pub fn jobs(&self) -> Vec<JobSummary> {
        lock(&self.shared.jobs)
            .values()
            .map(|j| j.summary.clone())
            .collect()
    }

    /// Up to `max` output lines of a job from line `from` (0 = the first ever); the index
    /// of the line after the last returned, and whether the job has ended. Lines dropped
    /// from the buffer are skipped.
    pub fn output(
        &self,
        id: GangId,
        from: u64,
        max: usize,
    ) -> Option<(Vec<OutputLine>, u64, bool)> {
        let jobs = lock(&self.shared.jobs);
        let j = jobs.get(&id)?;
        let start = from.max(j.first_line);
        let skip = (start - j.first_line) as usize;
        let lines: Vec<OutputLine> = j.output.iter().skip(skip).take(max).cloned().collect();
        let next = start + lines.len() as u64;
        let ended = matches!(j.summary.state, JobState::Ended(_) | JobState::Lost(_));
        Some((lines, next, ended))
    }

    /// The framework's id once subscribed.
    pub fn framework_id(&self) -> Option<String> {
        lock(&self.shared.framework_id).clone()
    }

    /// Why the framework stopped, if it did.
    pub fn driver_error(&self) -> Option<String> {
        lock(&self.shared.driver_error).clone()
    }

    /// Tears the framework down (its tasks are killed) and stops.
    pub async fn shutdown(&self) {
        lock(&self.shared.fw).teardown();
        self.shared.wake();
        let mut tasks = std::mem::take(&mut *lock(&self.tasks));
        let wait = async {
            // The driver ends after TEARDOWN; then the ticker and supervisors are stopped.
            loop {
                if lock(&self.shared.driver_error).is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), wait).await;
        if let Some(h) = self.shared.handle.get() {
            h.stop();
        }
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}

/// Hostnames (agent ids) and ranks per node, in rank order.
pub(crate) fn node_list(ranks: &[(u32, TaskId, AgentId)]) -> Vec<(String, u32)> {
    let mut out: Vec<(String, u32)> = Vec::new();
    for (_, _, a) in ranks {
        match out.last_mut() {
            Some((last, n)) if last == a.as_str() => *n += 1,
            _ => out.push((a.as_str().to_string(), 1)),
        }
    }
    out
}

/// The rank command a launcher mode runs: the user's program, under Hydra wrapped in
/// `tessera mpi rank-exec` so a failing rank is reported (and rank 0 reads the job's
/// stdin from `stdin`, when given).
pub(crate) fn program_argv(
    command: &CommandInfo,
    launcher: Launcher,
    exe: &str,
    control: SocketAddr,
    stdin: Option<&StdinRelay>,
) -> Vec<String> {
    let mut program = if command.arguments.is_empty() {
        vec![command.value.clone()]
    } else {
        command.arguments.clone()
    };
    if launcher == Launcher::Hydra {
        let mut wrapped = vec![
            exe.to_string(),
            "mpi".into(),
            "rank-exec".into(),
            "--control".into(),
            control.to_string(),
        ];
        wrapped.extend(stdin.map(StdinRelay::args).unwrap_or_default());
        wrapped.push("--".into());
        wrapped.append(&mut program);
        program = wrapped;
    }
    program
}

/// What the job's edge reports while it runs.
pub(crate) enum EdgeEvent {
    Pmi(PmiEvent),
    RankExit { rank: u32, code: i32 },
}

/// Ends a job that can no longer be followed.
pub(crate) fn lost(shared: &Shared, id: GangId, why: String) {
    shared.set_state(id, JobState::Lost(why));
}

/// A finished job's report.
pub(crate) fn ended(
    shared: &Shared,
    id: GangId,
    outcome: Outcome,
    waited: Option<Duration>,
    initialized: Option<Duration>,
    total: Duration,
) {
    let report = RunReport {
        gang: id,
        outcome,
        waited,
        initialized,
        total,
    };
    shared.set_state(id, JobState::Ended(report));
}
