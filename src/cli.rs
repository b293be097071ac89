//! Command-line surface. Every setting is a flag, a `TESSERA_*` environment variable, or a
//! key in the optional TOML file (`--config`), in that order of precedence.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{client, logging, settings, up};

const ABOUT: &str =
    "Tessera: a Mesos-compatible datacenter resource manager with batteries included";

const LONG_ABOUT: &str = "\
Tessera runs a master that offers the resources of its agents to frameworks through weighted
DRF, and speaks the Apache Mesos protocol.

Start a whole cluster on this machine (master + agents, embedded storage):
    tessera up
Start the parts on many machines:
    tessera master --listen 0.0.0.0:5050
    tessera agent --master MASTER_HOST:5050
Look at a running cluster:
    tessera status            (or -o json)
Run batch jobs on it (Slurm-style):
    tessera batch submit --cpus 2 --mem 2G -- ./job.sh
    tessera batch queue
Run an MPI program as a gang (like srun):
    tessera mpi run -n 8 --ppn 4 ./ring";

#[derive(Parser, Debug)]
#[command(name = "tessera", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Cli {
    /// Log filter, e.g. `info` or `tessera_master=debug,info`.
    #[arg(long, global = true, env = "TESSERA_LOG", default_value = "info")]
    pub log: String,
    /// Log format on stderr.
    #[arg(long, global = true, env = "TESSERA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Optional TOML file with `[master]`, `[agent]` and `[up]` tables (same names as the flags).
    #[arg(long, global = true, env = "TESSERA_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub cmd: Cmd,
}

impl Cli {
    /// Commands that only talk to a running server.
    pub fn is_client(&self) -> bool {
        match &self.cmd {
            Cmd::Status(_) => true,
            Cmd::Mpi(m) => !matches!(m.cmd, crate::mpi_cli::MpiCmd::Run(_)),
            Cmd::Batch(b) => !matches!(b.cmd, crate::batch_cli::BatchCmd::Serve(_)),
            _ => false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Run a whole cluster in this process: a master and N agents sharing this machine.
    Up(UpArgs),
    /// Run a master.
    Master(MasterArgs),
    /// Run an agent that offers this machine's resources to a master.
    Agent(AgentArgs),
    /// Show a running master's agents, frameworks and tasks.
    Status(StatusArgs),
    /// Batch jobs: submit, queue, show, cancel, hold, release, logs, history, why, serve.
    #[command(long_about = crate::batch_cli::BATCH_ABOUT)]
    Batch(crate::batch_cli::BatchArgs),
    /// MPI programs as gangs: all ranks start together or not at all (like srun/mpirun).
    #[command(long_about = crate::mpi_cli::MPI_ABOUT)]
    Mpi(crate::mpi_cli::MpiArgs),
    /// Simulate a large cluster: the real master with simulated agents and frameworks.
    #[command(long_about = crate::sim_cli::SIM_ABOUT)]
    Sim(crate::sim_cli::SimArgs),
    /// The simulated agents of one `tessera sim --processes N` process (internal).
    #[command(name = "sim-agents", hide = true)]
    SimAgents(crate::sim_cli::SimAgentsArgs),
    /// Measure the cluster (see BENCHMARKS.md).
    #[command(subcommand)]
    Bench(BenchCmd),
}

#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// Process containers launched and destroyed per second by one agent's launchers
    /// (plain processes, and cgroups when usable), without the master.
    Containers {
        /// How many containers to launch.
        #[arg(long, default_value_t = 1000)]
        count: usize,
        /// At most this many alive at once.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// One JSON object per launcher instead of sentences.
        #[arg(long)]
        json: bool,
    },
    /// Offer -> launch -> TASK_RUNNING latency of trivial process tasks on an in-process
    /// cluster (master + one agent over loopback gRPC), or, with `--master`, on a running
    /// cluster through the v1 scheduler HTTP API (a Framework SDK framework, one task per
    /// offer).
    Launch {
        /// How many tasks to run.
        #[arg(long, default_value_t = 1000)]
        tasks: usize,
        /// At most this many tasks launched per offer (in-process mode only; with
        /// `--master` it is always one).
        #[arg(long, default_value_t = 10)]
        batch: usize,
        /// `HOST:PORT` of a running master (e.g. `tessera up`) to measure instead of an
        /// in-process cluster. No environment fallback: without it the in-process mode runs.
        #[arg(long)]
        master: Option<String>,
        /// Print one JSON object instead of a sentence.
        #[arg(long)]
        json: bool,
    },
    /// Latency of `GET /master/state` and `/tessera/state` over loopback HTTP against an
    /// in-process master with simulated agents and running tasks.
    State {
        /// Simulated agents (`cpus:64;mem:65536` each).
        #[arg(long, default_value_t = 10_000)]
        agents: usize,
        /// Running tasks (0.01 cpu / 1 MB each), launched through offers.
        #[arg(long, default_value_t = 100_000)]
        tasks: usize,
        /// Frameworks sharing the tasks.
        #[arg(long, default_value_t = 10)]
        frameworks: usize,
        /// Timed requests per endpoint.
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// Print one JSON object instead of sentences.
        #[arg(long)]
        json: bool,
    },
    /// Events per second delivered to frameworks subscribed over the v1 HTTP API that
    /// decline every offer (refuse_seconds 0) and launch one short task per OFFERS event.
    Fanout {
        /// Frameworks subscribed over HTTP (JSON).
        #[arg(long, default_value_t = 100)]
        frameworks: usize,
        /// Simulated agents.
        #[arg(long, default_value_t = 1000)]
        agents: usize,
        /// How long to count events.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Print one JSON object instead of a sentence.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug, Default, Clone)]
pub struct MasterArgs {
    /// Address to serve agents (gRPC) and HTTP on [default: 127.0.0.1:5050].
    #[arg(long, env = "TESSERA_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory for the registry (SQLite) [default: the user's data directory + /tessera/master].
    #[arg(long, env = "TESSERA_WORK_DIR")]
    pub work_dir: Option<PathBuf>,
    /// The master's fault domain as `REGION/ZONE` (Mesos `--domain`): agents in another
    /// region are remote, offered only to REGION_AWARE frameworks [default: none].
    #[arg(long, env = "TESSERA_DOMAIN")]
    pub domain: Option<String>,
    /// How often agents heartbeat, e.g. `5s` [default: 5s].
    #[arg(long, env = "TESSERA_AGENT_HEARTBEAT_INTERVAL")]
    pub agent_heartbeat_interval: Option<String>,
    /// An agent silent this long is unreachable and its tasks reported lost [default: 75s].
    #[arg(long, env = "TESSERA_AGENT_TIMEOUT")]
    pub agent_timeout: Option<String>,
    /// Rescind offers outstanding this long, e.g. `30s` [default: never].
    #[arg(long, env = "TESSERA_OFFER_TIMEOUT")]
    pub offer_timeout: Option<String>,
    /// Period of batched allocation runs [default: 1s].
    #[arg(long, env = "TESSERA_ALLOCATION_INTERVAL")]
    pub allocation_interval: Option<String>,
    /// How often subscribed schedulers get a HEARTBEAT event [default: 15s, as Mesos].
    #[arg(long, env = "TESSERA_SCHEDULER_HEARTBEAT_INTERVAL")]
    pub scheduler_heartbeat_interval: Option<String>,
    /// Run as a standby of this leader (HOST:PORT): requests are redirected there (307).
    #[arg(long, env = "TESSERA_STANDBY_OF")]
    pub standby_of: Option<String>,
    /// Do not host the batch scheduler (its REST API at /batch/v1 and its framework).
    #[arg(long, env = "TESSERA_NO_BATCH")]
    pub no_batch: bool,
}

#[derive(Args, Debug, Default, Clone)]
pub struct AgentArgs {
    /// The master, HOST:PORT [default: $TESSERA_MASTER, then 127.0.0.1:5050].
    #[arg(long, env = "TESSERA_MASTER")]
    pub master: Option<String>,
    /// Directory for the agent id and task sandboxes.
    #[arg(long, env = "TESSERA_AGENT_WORK_DIR")]
    pub work_dir: Option<PathBuf>,
    /// Resources to offer instead of detected ones, Mesos text or JSON form,
    /// e.g. `cpus:4;mem:8192;ports:[31000-32000];cpus(ml):2`. Names given replace detected ones.
    #[arg(long, env = "TESSERA_RESOURCES")]
    pub resources: Option<String>,
    /// Attributes, `name:value;name:value` (e.g. `rack:r1;zone:a`).
    #[arg(long, env = "TESSERA_ATTRIBUTES")]
    pub attributes: Option<String>,
    /// Hostname to report [default: this machine's].
    #[arg(long, env = "TESSERA_HOSTNAME")]
    pub hostname: Option<String>,
    /// Task isolation: `cgroups` (a cgroup per task with cpu and memory limits; falls back
    /// to `none` with a warning where cgroups are unusable) or `none` [default: cgroups].
    #[arg(long, env = "TESSERA_ISOLATION")]
    pub isolation: Option<String>,
    /// Per-task namespaces: `pid,mount` (own pid namespace and a private /tmp, when the
    /// agent runs as root) or `none` [default: none].
    #[arg(long, env = "TESSERA_NAMESPACES")]
    pub namespaces: Option<String>,
    /// Run each task as its user (`CommandInfo.user`, else the framework's user), as
    /// Mesos' `--switch_user`: `true` needs the agent to run as root (tasks for a user that
    /// does not exist here fail with that reason); `false` runs every task as the agent's
    /// user [default: true].
    #[arg(long, env = "TESSERA_SWITCH_USER")]
    pub switch_user: Option<bool>,
    /// The agent's fault domain as `REGION/ZONE` (Mesos `--domain`); the master treats
    /// agents outside its region as remote [default: none].
    #[arg(long, env = "TESSERA_AGENT_DOMAIN")]
    pub domain: Option<String>,
    /// Address of the agent's own HTTP endpoints (`/files/*`, `/state`, `/api/v1`, ...)
    /// [default: 0.0.0.0:5051]; port 0 lets the OS choose.
    #[arg(long, env = "TESSERA_HTTP_LISTEN")]
    pub http_listen: Option<String>,
    /// The Docker engine for `ContainerInfo.type = DOCKER` tasks
    /// [default: unix:///var/run/docker.sock]; without one, Docker tasks fail with a clear
    /// message and everything else runs.
    #[arg(long, env = "TESSERA_DOCKER_SOCKET")]
    pub docker_socket: Option<String>,
    /// How long a finished task's sandbox is kept (e.g. `168h`, `30m`) [default: 168h];
    /// it goes earlier, oldest first, when the work dir's disk is over 90 % full.
    #[arg(long, env = "TESSERA_GC_DELAY")]
    pub gc_delay: Option<String>,
}

#[derive(Args, Debug, Default, Clone)]
pub struct UpArgs {
    #[command(flatten)]
    pub master: MasterArgs,
    /// Number of agents; each gets an equal share of this machine [default: 2].
    #[arg(long, env = "TESSERA_AGENTS")]
    pub agents: Option<usize>,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The master, HOST:PORT [default: $TESSERA_MASTER, then 127.0.0.1:5050].
    #[arg(long, env = "TESSERA_MASTER")]
    pub master: Option<String>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

pub async fn run(cli: Cli) -> Result<()> {
    let file = settings::FileSettings::load(cli.config.as_deref())?;
    match cli.cmd {
        Cmd::Up(args) => {
            let cfg = settings::up_config(&args, &file)?;
            let _guard = logging::init(&cli.log, cli.log_format, Some(&cfg.log_file))?;
            up::run_up(cfg).await
        }
        Cmd::Master(args) => {
            let cfg = settings::master_config(&args, &file.master)?;
            let batch = settings::master_hosts_batch(&args, &file.master);
            let _guard = logging::init(&cli.log, cli.log_format, None)?;
            up::run_master(cfg, batch).await
        }
        Cmd::Agent(args) => {
            let cfg = settings::agent_config(&args, &file.agent)?;
            let _guard = logging::init(&cli.log, cli.log_format, None)?;
            up::run_agent(cfg).await
        }
        Cmd::Bench(BenchCmd::Containers {
            count,
            concurrency,
            json,
        }) => {
            let filter = std::env::var("TESSERA_LOG").unwrap_or_else(|_| "warn".into());
            let _guard = logging::init(&filter, cli.log_format, None)?;
            crate::bench_containers::containers(count, concurrency, json).await
        }
        Cmd::Bench(BenchCmd::Launch {
            tasks,
            batch,
            master,
            json,
        }) => {
            // Quiet by default so the report is readable; TESSERA_LOG still wins.
            let filter = std::env::var("TESSERA_LOG").unwrap_or_else(|_| "warn".into());
            let _guard = logging::init(&filter, cli.log_format, None)?;
            match master {
                Some(m) => crate::bench_remote::launch(m, tasks, json).await,
                None => crate::bench::launch(tasks, batch, json).await,
            }
        }
        Cmd::Bench(BenchCmd::State {
            agents,
            tasks,
            frameworks,
            runs,
            json,
        }) => {
            let filter = std::env::var("TESSERA_LOG").unwrap_or_else(|_| "warn".into());
            let _guard = logging::init(&filter, cli.log_format, None)?;
            crate::bench_api::state(agents, tasks, frameworks, runs, json).await
        }
        Cmd::Bench(BenchCmd::Fanout {
            frameworks,
            agents,
            seconds,
            json,
        }) => {
            let filter = std::env::var("TESSERA_LOG").unwrap_or_else(|_| "warn".into());
            let _guard = logging::init(&filter, cli.log_format, None)?;
            crate::bench_fanout::fanout(frameworks, agents, seconds, json).await
        }
        Cmd::Status(args) => {
            let master = settings::master_address(args.master.as_deref());
            client::status(&master, args.output).await
        }
        Cmd::Sim(args) => {
            let filter = std::env::var("TESSERA_LOG").unwrap_or_else(|_| "warn".into());
            let _guard = logging::init(&filter, cli.log_format, None)?;
            crate::sim_cli::run(args)
        }
        Cmd::SimAgents(args) => {
            let filter = std::env::var("TESSERA_LOG").unwrap_or_else(|_| "warn".into());
            let _guard = logging::init(&filter, cli.log_format, None)?;
            crate::sim_cli::run_agents(args)
        }
        Cmd::Mpi(args) => {
            let _guard = logging::init("warn", cli.log_format, None)?;
            let default = settings::master_address(std::env::var("TESSERA_MASTER").ok().as_deref());
            let code = crate::mpi_cli::run_cmd(args, default).await?;
            if code != 0 {
                return Err(crate::batch_cli::ExitCode(code).into());
            }
            Ok(())
        }
        Cmd::Batch(args) => {
            if let crate::batch_cli::BatchCmd::Serve(s) = &args.cmd {
                let _guard = logging::init(&cli.log, cli.log_format, None)?;
                return up::run_batch_serve(s).await;
            }
            let default = settings::master_address(std::env::var("TESSERA_MASTER").ok().as_deref());
            crate::batch_cli::run(args, default).await
        }
    }
}
