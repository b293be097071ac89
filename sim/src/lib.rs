//! `tessera-sim`: `tessera sim` — the real master (its actor, the DRF allocator, the offer
//! path and the framework event path) driven by simulated agents and simulated frameworks,
//! to measure how the core behaves at scale and how fairly it shares.
//!
//! Everything runs on one thread under a paused tokio clock: virtual time jumps ahead
//! whenever every party is waiting, so an hour of cluster time costs only the CPU the
//! decisions take, and the same seed gives the same decisions (`decisions_digest`).
//! Wall-clock figures (tasks per second, allocation cycle times, offer → running latency)
//! measure the real work.
//!
//! With [`SimConfig::processes`] the agents run instead in N separate processes
//! ([`run_agents_blocking`], the hidden `tessera sim-agents`) that attach to the master's
//! real gRPC listener on loopback, one `Attach` stream per agent, so the network path
//! (tonic, protobuf, the listener) is measured too. A paused clock cannot span processes:
//! that mode runs in real time (`duration` is wall time, tasks really last their seconds),
//! on a multi-threaded runtime, and its decisions depend on network timing — the same seed
//! gives the same workload but not bit-for-bit the same decisions.
//!
//! Must not depend on: the agent crate (agents are simulated behind the master's
//! `AgentLink`, or as minimal gRPC clients), any framework crate (frameworks are simulated
//! on the master handle).

mod agents;
mod frameworks;
mod procs;
mod remote;
mod report;
mod rng;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tessera_master::{AllocationCycle, MasterConfig};
use tessera_types::parse::parse_resources;
use tessera_types::{Resources, Role};
use tokio_util::sync::CancellationToken;

pub use frameworks::{FwPlan, FwStats};
pub use procs::AGENTS_SUBCOMMAND;
pub use remote::{AgentsConfig, ChildMsg, ChildReport, run_agents_blocking};
pub use report::{Report, jain_index};

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("invalid {field}: {message}")]
    Invalid { field: String, message: String },
    #[error("master: {0}")]
    Master(String),
    #[error("{0}")]
    Io(String),
}

pub(crate) fn invalid(field: &str, message: impl Into<String>) -> SimError {
    SimError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// Workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Finite batches of short tasks (1–10 s).
    Batch,
    /// Tasks that run until the end: measures placement.
    Services,
    /// Gangs of 8 ranks launched whole (5–20 s).
    Mpi,
    /// Frameworks cycle through batch, services and MPI.
    Mix,
    /// Unending demand of ~1 s tasks per role; the last role joins half-way.
    Fairness,
}

impl Profile {
    pub fn parse(s: &str) -> Result<Profile, SimError> {
        Ok(match s {
            "batch" => Profile::Batch,
            "services" => Profile::Services,
            "mpi" => Profile::Mpi,
            "mix" => Profile::Mix,
            "fairness" => Profile::Fairness,
            other => {
                return Err(invalid(
                    "profile",
                    format!("'{other}' is not one of batch, services, mpi, mix, fairness"),
                ));
            }
        })
    }
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub agents: usize,
    pub agent_resources: String,
    pub frameworks: usize,
    pub tasks: u64,
    pub task_resources: String,
    pub roles: usize,
    /// Weight of role i (cycled when shorter than `roles`); empty = all 1.
    pub weights: Vec<f64>,
    pub decline_all: bool,
    pub refuse: Duration,
    /// Virtual time after which the run stops (wall time with `processes`).
    pub duration: Duration,
    pub allocation_interval: Duration,
    pub seed: u64,
    pub profile: Profile,
    pub trace: Option<PathBuf>,
    pub plot: Option<PathBuf>,
    /// Quota guarantees: (role index, scalar resources such as `cpus:40;mem:40000`).
    pub quotas: Vec<(usize, String)>,
    /// Run the agents in this many separate processes over loopback gRPC, in real time;
    /// `None` = in this process, behind `AgentLink`, under the virtual clock.
    pub processes: Option<usize>,
    /// The program started for each agent process as `PROGRAM sim-agents …`; `None` = the
    /// current executable (the `tessera` binary).
    pub agent_exe: Option<PathBuf>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            agents: 100,
            agent_resources: "cpus:64;mem:262144;disk:1000000".into(),
            frameworks: 10,
            tasks: 10_000,
            task_resources: "cpus:0.1;mem:128".into(),
            roles: 1,
            weights: vec![],
            decline_all: false,
            refuse: Duration::from_secs(5),
            duration: Duration::from_secs(300),
            allocation_interval: Duration::from_secs(1),
            seed: 1,
            profile: Profile::Batch,
            trace: None,
            plot: None,
            quotas: vec![],
            processes: None,
            agent_exe: None,
        }
    }
}

impl SimConfig {
    fn validate(&self) -> Result<(Resources, Resources), SimError> {
        if self.agents == 0 {
            return Err(invalid("agents", "must be at least 1"));
        }
        if self.frameworks == 0 {
            return Err(invalid("frameworks", "must be at least 1"));
        }
        if self.roles == 0 || self.roles > self.frameworks {
            return Err(invalid(
                "roles",
                format!("must be between 1 and --frameworks ({})", self.frameworks),
            ));
        }
        if let Some(p) = self.processes
            && (p == 0 || p > self.agents)
        {
            return Err(invalid(
                "processes",
                format!("must be between 1 and --agents ({}); got {p}", self.agents),
            ));
        }
        if let Some(w) = self.weights.iter().find(|w| !w.is_finite() || **w <= 0.0) {
            return Err(invalid("weights", format!("{w} is not a positive number")));
        }
        let agent = parse_resources(&self.agent_resources)
            .map_err(|e| invalid("agent_resources", e.to_string()))?;
        let task = parse_resources(&self.task_resources)
            .map_err(|e| invalid("task_resources", e.to_string()))?;
        if task.scalar("cpus").is_zero() && task.scalar("mem").is_zero() {
            return Err(invalid("task_resources", "needs cpus or mem"));
        }
        Ok((agent, task))
    }

    fn weight(&self, role: usize) -> f64 {
        if self.weights.is_empty() {
            1.0
        } else {
            self.weights[role % self.weights.len()]
        }
    }

    fn plans(&self) -> Vec<FwPlan> {
        let f = self.frameworks as u64;
        let (base, extra) = (self.tasks / f, self.tasks % f);
        (0..self.frameworks)
            .map(|i| {
                let role_i = i % self.roles;
                let kind = match self.profile {
                    Profile::Mix => [Profile::Batch, Profile::Services, Profile::Mpi][i % 3],
                    p => p,
                };
                let mut tasks = base + u64::from((i as u64) < extra);
                let (duration, gang) = match kind {
                    Profile::Batch | Profile::Mix => (Some((1.0, 10.0)), 1),
                    Profile::Services => (None, 1),
                    Profile::Mpi => (Some((5.0, 20.0)), 8),
                    Profile::Fairness => (Some((0.5, 1.5)), 1),
                };
                if kind == Profile::Fairness {
                    tasks = u64::MAX;
                }
                let joins_late =
                    kind == Profile::Fairness && self.roles > 1 && role_i == self.roles - 1;
                FwPlan {
                    index: i,
                    role: Role::new(format!("r{role_i}")).unwrap_or_else(|_| Role::any()),
                    tasks,
                    duration,
                    gang,
                    subscribe_at: if joins_late {
                        self.duration / 2
                    } else {
                        Duration::ZERO
                    },
                    decline_all: self.decline_all,
                    refuse: self.refuse,
                    seed: self.seed.wrapping_mul(1_000_003).wrapping_add(i as u64),
                }
            })
            .collect()
    }
}

/// Runs the simulation on its own runtime: single-threaded with a paused clock, or (with
/// `processes`) multi-threaded in real time, as the real master runs.
pub fn run_blocking(cfg: SimConfig) -> Result<Report, SimError> {
    let rt = match cfg.processes {
        None => tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build(),
        Some(_) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    }
    .map_err(|e| SimError::Io(format!("cannot start a runtime: {e}")))?;
    rt.block_on(run(cfg))
}

/// The simulated agents: in this process, or in child processes over gRPC.
enum Agents {
    Local(Arc<agents::AgentCounters>),
    Remote(procs::Children),
}

async fn run(cfg: SimConfig) -> Result<Report, SimError> {
    let (agent_res, task_res) = cfg.validate()?;
    let work = std::env::temp_dir().join(format!("tessera-sim-{}", std::process::id()));
    let mut mc = MasterConfig::new(([127, 0, 0, 1], 0).into(), work);
    mc.allocator.interval = cfg.allocation_interval;
    mc.seed = cfg.seed;
    mc.agent_timeout = Duration::from_secs(365 * 86_400);
    mc.agent_heartbeat_interval = Duration::from_secs(3600);
    mc.framework_queue = 1 << 22;
    let (cycles_tx, mut cycles_rx) = tokio::sync::mpsc::unbounded_channel::<AllocationCycle>();
    mc.cycle_observer = Some(cycles_tx);
    let stop = CancellationToken::new();
    // Cancels the master on every early return too (the children die with their handles).
    let _stop_guard = stop.clone().drop_guard();
    let registry = Box::<tessera_master::registry::MemRegistry>::default();
    let master_err = |e: tessera_master::MasterError| SimError::Master(e.to_string());
    let (h, master, listen) = match cfg.processes {
        None => {
            let (h, _id, join) =
                tessera_master::spawn_actor(mc, registry, stop.clone()).map_err(master_err)?;
            (h, join, None)
        }
        Some(_) => {
            let m =
                tessera_master::start_recovering(mc, registry, axum::Router::new(), stop.clone())
                    .await
                    .map_err(master_err)?;
            m.recovery.wait().await.map_err(master_err)?;
            (m.handle, m.join, Some(m.addr))
        }
    };
    for (r, res) in &cfg.quotas {
        if *r >= cfg.roles {
            return Err(invalid(
                "quota",
                format!("role r{r} does not exist (there are {} roles)", cfg.roles),
            ));
        }
        let res = parse_resources(res).map_err(|e| invalid("quota", e.to_string()))?;
        let quota = tessera_allocator::Quota {
            guarantees: res.quantities(),
            limits: Default::default(),
        };
        let role = Role::new(format!("r{r}")).map_err(|e| invalid("quota", e.to_string()))?;
        h.set_quota(role, quota)
            .await
            .map_err(|e| invalid("quota", e.to_string()))?;
    }
    for r in 0..cfg.roles {
        let role = Role::new(format!("r{r}")).map_err(|e| invalid("roles", e.to_string()))?;
        if cfg.weight(r) != 1.0 {
            h.set_weight(role, cfg.weight(r))
                .await
                .map_err(|e| SimError::Master(e.to_string()))?;
        }
    }
    let mut agents = match (cfg.processes, listen) {
        (Some(n), Some(addr)) => {
            let mut c = procs::spawn(
                cfg.agent_exe.as_ref(),
                addr,
                cfg.agents,
                n,
                &cfg.agent_resources,
            )?;
            let timeout = Duration::from_secs(60) + Duration::from_millis(cfg.agents as u64 * 10);
            c.wait_ready(timeout).await?;
            Agents::Remote(c)
        }
        _ => Agents::Local(agents::start(&h, cfg.agents, &agent_res).await?),
    };
    let started_virtual = tokio::time::Instant::now();
    let wall = std::time::Instant::now();
    let live = Arc::new(frameworks::Live::default());
    let fw_stop = CancellationToken::new();
    let plans = cfg.plans();
    let finite = plans.iter().all(|p| p.tasks != u64::MAX && !p.decline_all);
    let total: u64 = plans.iter().map(|p| p.tasks).fold(0, u64::saturating_add);
    let mut joins = Vec::new();
    for p in plans.clone() {
        joins.push(tokio::spawn(frameworks::run(
            h.clone(),
            p,
            task_res.clone(),
            Arc::clone(&live),
            fw_stop.clone(),
        )));
    }
    let mut cycles: Vec<report::Cycle> = Vec::new();
    let mut all_placed_wall = None;
    loop {
        tokio::select! {
            Some(c) = cycles_rx.recv() => {
                cycles.push(report::Cycle {
                    t: started_virtual.elapsed().as_secs_f64(),
                    duration_ms: c.duration.as_secs_f64() * 1e3,
                    offers: c.offers,
                    running: live.running.load(Ordering::Relaxed),
                    shares: c.shares.iter().map(|(r, w, s)| (r.to_string(), *w, *s)).collect(),
                });
            }
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        if let Agents::Remote(c) = &mut agents {
            c.check_alive()?;
        }
        let placed = live.placed.load(Ordering::Relaxed);
        if finite && placed >= total && all_placed_wall.is_none() {
            all_placed_wall = Some(wall.elapsed());
        }
        let done = live.done_frameworks.load(Ordering::Relaxed) as usize >= plans.len();
        let services_done = cfg.profile == Profile::Services && placed >= total;
        if done || services_done || started_virtual.elapsed() >= cfg.duration {
            break;
        }
    }
    let wall_seconds = wall.elapsed().as_secs_f64();
    let virtual_seconds = started_virtual.elapsed().as_secs_f64();
    // The master first (so it does not see frameworks vanish), then the frameworks.
    stop.cancel();
    let _ = master.await;
    fw_stop.cancel();
    let mut stats = Vec::new();
    for j in joins {
        if let Ok(s) = j.await {
            stats.push(s);
        }
    }
    let (overcommits, on_agents) = match agents {
        Agents::Local(c) => (
            c.overcommits.load(Ordering::Relaxed) as u64,
            report::OnAgents {
                tasks_run: c.launched.load(Ordering::Relaxed) as u64,
                tasks_finished: c.finished.load(Ordering::Relaxed) as u64,
                ..Default::default()
            },
        ),
        Agents::Remote(c) => {
            let t = c.finish().await?;
            (
                t.overcommits,
                report::OnAgents {
                    tasks_run: t.tasks_run,
                    tasks_finished: t.tasks_finished,
                    processes: cfg.processes.unwrap_or(0),
                    peak_rss_bytes: Some(t.peak_rss_bytes),
                },
            )
        }
    };
    let join_at = (cfg.profile == Profile::Fairness && cfg.roles > 1)
        .then(|| (cfg.duration / 2).as_secs_f64())
        .map(|t| (t, format!("r{}", cfg.roles - 1)));
    let report = report::build(report::Inputs {
        cfg: &cfg,
        stats: &stats,
        cycles: &cycles,
        wall_seconds,
        virtual_seconds,
        placing_seconds: all_placed_wall.map(|d| d.as_secs_f64()),
        overcommits,
        on_agents,
        join: join_at,
    });
    if let Some(p) = &cfg.trace {
        report::write_trace(p, &cycles)
            .map_err(|e| SimError::Io(format!("{}: {e}", p.display())))?;
    }
    if let Some(p) = &cfg.plot {
        report::plot(p, &cycles, cfg.processes.is_some())
            .map_err(|e| SimError::Io(format!("{}: {e}", p.display())))?;
    }
    Ok(report)
}
