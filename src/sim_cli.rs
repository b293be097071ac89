//! `tessera sim`: flags → [`tessera_sim::SimConfig`], then the summary or one JSON object;
//! and the hidden `tessera sim-agents`, which hosts the simulated agents of one process when
//! `tessera sim --processes N` runs them out of process.

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use clap::Args;

pub const SIM_ABOUT: &str = "\
Simulate a large cluster: the real master (actor, DRF allocator, offer and framework event
paths) with simulated agents and frameworks, under a virtual clock (an hour of cluster time
costs only the CPU the decisions take; the same --seed gives the same decisions).

    tessera sim --agents 5000 --tasks 1000000 --profile services         # placement throughput
    tessera sim --agents 2000 --frameworks 2000 --decline-all --duration 60s
    tessera sim --profile fairness --roles 4 --weights 1,2,3,4 --frameworks 8 --plot shares.svg
    tessera sim --agents 1000 --tasks 100000 --processes 4 --json        # over loopback gRPC

--processes N runs the agents in N separate processes (this binary, re-executed) that attach
to the master's real gRPC listener on 127.0.0.1, one stream per agent, so the network path
is measured too. A virtual clock cannot span processes: the run is then in REAL TIME
(--duration is wall time, tasks really last their 1-10 s), and its decisions depend on
network timing, so the same seed no longer gives bit-for-bit the same decisions.

Profiles: batch (finite 1-10 s tasks), services (run forever), mpi (gangs of 8 launched
whole), mix (all three), fairness (unending ~1 s tasks; the last role joins half-way).
--json prints one object: tasks_per_second, wall_seconds, alloc_cycle_ms_p50/p99,
offer_to_launch_ms_p99, peak_rss_bytes, jain_index, max_share_gap, convergence_cycles,
starved_roles, overcommits, decisions_digest, processes, agent_processes_peak_rss_bytes,
...";

#[derive(Args, Debug)]
pub struct SimArgs {
    /// Simulated agents.
    #[arg(long, default_value_t = 100)]
    pub agents: usize,
    /// Resources of each agent (Mesos text form).
    #[arg(long, default_value = "cpus:64;mem:262144;disk:1000000")]
    pub agent_resources: String,
    /// Simulated frameworks.
    #[arg(long, default_value_t = 10)]
    pub frameworks: usize,
    /// Tasks in all (split evenly over the frameworks; ignored by `fairness`).
    #[arg(long, default_value_t = 10_000)]
    pub tasks: u64,
    /// Resources of each task.
    #[arg(long, default_value = "cpus:0.1;mem:128")]
    pub task_resources: String,
    /// Roles r0..rN-1; framework i uses role i mod N.
    #[arg(long, default_value_t = 1)]
    pub roles: usize,
    /// Role weights, e.g. 1,2,3,4 (cycled over the roles).
    #[arg(long, value_delimiter = ',')]
    pub weights: Vec<f64>,
    /// Frameworks decline every offer (with --refuse as the filter).
    #[arg(long)]
    pub decline_all: bool,
    /// Refusal filter on declined offers.
    #[arg(long, default_value = "5s")]
    pub refuse: String,
    /// Stop after this much virtual time (wall time with --processes).
    #[arg(long, default_value = "300s")]
    pub duration: String,
    /// Allocation interval.
    #[arg(long, default_value = "1s")]
    pub allocation_interval: String,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// batch, services, mpi, mix or fairness.
    #[arg(long, default_value = "batch")]
    pub profile: String,
    /// Write per-cycle shares and utilisation as CSV.
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Draw role shares over time as SVG.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// A quota guarantee for a role: `r0=cpus:40;mem:40960` (repeat for more roles).
    #[arg(long = "quota")]
    pub quotas: Vec<String>,
    /// Run the agents in N separate processes over loopback gRPC (real time, not the
    /// virtual clock; decisions then depend on network timing).
    #[arg(long, value_name = "N")]
    pub processes: Option<usize>,
    /// One JSON object instead of the summary.
    #[arg(long)]
    pub json: bool,
}

/// `tessera sim-agents` (hidden): what `tessera sim --processes N` starts N times.
#[derive(Args, Debug)]
pub struct SimAgentsArgs {
    /// The master's gRPC listener, HOST:PORT.
    #[arg(long)]
    pub master: String,
    /// Agents this process hosts.
    #[arg(long)]
    pub count: usize,
    /// Index of the first agent in the whole simulation.
    #[arg(long, default_value_t = 0)]
    pub first_index: usize,
    /// Resources of each agent.
    #[arg(long, default_value = "cpus:64;mem:262144;disk:1000000")]
    pub resources: String,
}

/// Hosts the agents until stdin closes (see `tessera_sim::run_agents_blocking`).
pub fn run_agents(a: SimAgentsArgs) -> Result<()> {
    let cfg = tessera_sim::AgentsConfig {
        master: a.master,
        count: a.count,
        first_index: a.first_index,
        resources: a.resources,
    };
    std::thread::spawn(move || tessera_sim::run_agents_blocking(cfg))
        .join()
        .map_err(|_| anyhow!("the simulated agents panicked"))??;
    Ok(())
}

pub fn run(a: SimArgs) -> Result<()> {
    let d = |field: &str, v: &str| {
        crate::settings::parse_duration(field, v).map_err(|e| anyhow!("{e}"))
    };
    let mut quotas = Vec::new();
    for q in &a.quotas {
        let (role, res) = q
            .split_once('=')
            .ok_or_else(|| anyhow!("--quota '{q}': write ROLE=RESOURCES, e.g. r0=cpus:40"))?;
        let idx: usize = role
            .strip_prefix('r')
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| anyhow!("--quota '{q}': roles are named r0, r1, …"))?;
        quotas.push((idx, res.to_string()));
    }
    let cfg = tessera_sim::SimConfig {
        agents: a.agents,
        agent_resources: a.agent_resources,
        frameworks: a.frameworks,
        tasks: a.tasks,
        task_resources: a.task_resources,
        roles: a.roles,
        weights: a.weights,
        decline_all: a.decline_all,
        refuse: d("refuse", &a.refuse)?,
        duration: d("duration", &a.duration)?,
        allocation_interval: d("allocation_interval", &a.allocation_interval)?,
        seed: a.seed,
        profile: tessera_sim::Profile::parse(&a.profile)?,
        trace: a.trace,
        plot: a.plot,
        quotas,
        processes: a.processes,
        agent_exe: None,
    };
    // Its own thread and runtime: single-threaded with a paused clock (or, with --processes,
    // multi-threaded in real time).
    let report = std::thread::spawn(move || tessera_sim::run_blocking(cfg))
        .join()
        .map_err(|_| anyhow!("the simulation panicked"))??;
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{}", report.summary());
    }
    Ok(())
}
