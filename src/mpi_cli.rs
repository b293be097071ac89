//! `tessera mpi`: run MPI programs on the cluster as a gang, like `srun`/`mpirun`.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use tessera_batch::spec::{Quantity, parse_megabytes};
use tessera_mpi::mpiexec::Launcher;
use tessera_mpi::runner::{RunConfig, RunEvent, Stream, run};
use tessera_mpi::{GangSpec, Layout, Outcome};
use tokio::sync::mpsc;

pub const MPI_ABOUT: &str = "\
Run MPI programs on the cluster as a gang: all ranks start together or not at all, with no
ssh keys, output prefixed with the rank, and the job ends cleanly when a rank dies.

    tessera mpi run -n 8 --ppn 4 ./ring                 # 8 ranks, 4 per agent
    tessera mpi run -n 16 --spread --time 10m ./solver in.dat
    tessera mpi run -n 4 -o json ./pi                   # summary as JSON on stdout
    tessera mpi submit -n 16 --ppn 8 ./solver           # in the background (like sbatch)
    tessera mpi queue | show ID | why ID | logs -f ID | cancel ID
    seq 10 | tessera mpi run -n 4 ./sum                 # stdin goes to rank 0

`run` forwards its stdin to rank 0 (then EOF), as srun and mpirun do; `submit` keeps rank 0's
stdin closed.

`run` exits with the job's status: 0 when every rank finished, the failing rank's exit code
(or MPI_Abort's) otherwise, 124 when the time limit killed it, 125 when cancelled (Ctrl-C).
Launch modes: MPICH programs are launched directly by default (--launch pmi: Tessera serves
PMI-1 to the ranks, no mpiexec); --launch hydra runs mpiexec.hydra with its proxies started as
Tessera tasks; --impl openmpi runs Open MPI's mpirun with its orted daemons started as tasks
(--launch orted). No ssh anywhere.";

#[derive(Args, Debug)]
pub struct MpiArgs {
    /// The master, HOST:PORT [default: $TESSERA_MASTER, then 127.0.0.1:5050].
    #[arg(long, global = true)]
    pub master: Option<String>,
    #[command(subcommand)]
    pub cmd: MpiCmd,
}

#[derive(Subcommand, Debug)]
pub enum MpiCmd {
    /// Run an MPI program in the foreground (like srun / mpirun).
    Run(Box<RunArgs>),
    /// Queue an MPI program on the cluster's MPI service and return (like sbatch); prints
    /// the job id. Same flags as `run`.
    Submit(Box<RunArgs>),
    /// The MPI service's jobs: pending (with why), running (with their agents), ended.
    Queue {
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// One job, as JSON.
    Show { id: u64 },
    /// Cancel a job; its ranks are killed.
    Cancel { id: u64 },
    /// A job's output, every rank's lines prefixed with the rank.
    Logs {
        id: u64,
        /// Keep printing as the job runs, until it ends.
        #[arg(short, long)]
        follow: bool,
    },
    /// Why a job is not running.
    Why { id: u64 },
    /// (internal) A node task of `--launch hydra|orted`: waits for its daemon's command
    /// from `tessera mpi run` and becomes it.
    #[command(hide = true)]
    Proxy {
        #[arg(long)]
        control: String,
    },
    /// (internal) Runs one rank: under Hydra it reports a non-zero exit to the control
    /// server, which then ends the job (Hydra would leave the other ranks waiting); with
    /// --stdin, rank 0's stdin is what the job's stdin relay sends.
    #[command(hide = true)]
    RankExec {
        #[arg(long)]
        control: Option<String>,
        #[arg(long, value_name = "ADDR")]
        stdin: Option<String>,
        #[arg(long, requires = "stdin")]
        stdin_token: Option<String>,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        program: Vec<String>,
    },
    /// (internal) The ssh/rsh stand-in mpiexec and mpirun call: starts the daemon command
    /// in the named node's task and exits with its status.
    #[command(hide = true)]
    LaunchAgent {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Impl {
    Mpich,
    Openmpi,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Launch {
    /// MPICH direct launch: Tessera serves PMI-1 over TCP, every rank is a task.
    Pmi,
    /// MPICH's mpiexec.hydra with its proxies started as tasks.
    Hydra,
    /// Open MPI's mpirun with its orted daemons started as tasks.
    Orted,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Number of ranks.
    #[arg(short = 'n', long = "ranks", value_name = "N")]
    pub ranks: u32,
    /// Ranks per node (agent), like Slurm's --ntasks-per-node.
    #[arg(long, value_name = "N", conflicts_with_all = ["spread", "pack"])]
    pub ppn: Option<u32>,
    /// Spread ranks over as many agents as possible.
    #[arg(long, conflicts_with = "pack")]
    pub spread: bool,
    /// Pack ranks onto as few agents as possible (the default).
    #[arg(long)]
    pub pack: bool,
    /// CPUs per rank.
    #[arg(long, default_value = "1", value_name = "CPUS")]
    pub cpus_per_rank: f64,
    /// Memory per rank: megabytes or with a unit (512M, 2G).
    #[arg(long, default_value = "256M", value_name = "SIZE")]
    pub mem_per_rank: String,
    /// The MPI implementation the program was built with.
    #[arg(long = "impl", value_enum, default_value_t = Impl::Mpich)]
    pub mpi_impl: Impl,
    /// How ranks are started [default: pmi for MPICH, orted for Open MPI].
    #[arg(long, value_enum)]
    pub launch: Option<Launch>,
    /// Time limit from the launch (10m, 1h30m, MM:SS); the job is killed at the limit.
    #[arg(short = 't', long, value_name = "TIME")]
    pub time: Option<String>,
    /// Role (queue) whose offers the gang uses.
    #[arg(long, default_value = "*")]
    pub role: String,
    /// Higher priorities are placed first.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub priority: i32,
    /// Extra environment for every rank, KEY=VALUE (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Address the PMI server listens on [default: the one used to reach the master].
    #[arg(long, value_name = "IP")]
    pub pmi_bind: Option<std::net::IpAddr>,
    /// Longest time offers are held while the gang accumulates (seconds).
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    pub hold: f64,
    /// `json`: rank output goes to stderr and a summary object to stdout.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// No progress messages, only the ranks' output.
    #[arg(short, long)]
    pub quiet: bool,
    /// The MPI program and its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "PROGRAM ARGS"
    )]
    pub program: Vec<String>,
}

pub async fn run_cmd(args: MpiArgs, default_master: String) -> Result<u8> {
    let master = args.master.unwrap_or(default_master);
    match args.cmd {
        MpiCmd::Run(r) => run_job(*r, master).await,
        MpiCmd::Submit(r) => submit_job(*r, &master).await,
        MpiCmd::Queue { output } => queue(&master, output).await,
        MpiCmd::Show { id } => {
            println!(
                "{:#}",
                rest(&master, "GET", &format!("/mpi/v1/jobs/{id}"), None).await?
            );
            Ok(0)
        }
        MpiCmd::Cancel { id } => {
            rest(&master, "DELETE", &format!("/mpi/v1/jobs/{id}"), None).await?;
            eprintln!("tessera mpi: job {id} cancelled; its ranks are being killed");
            Ok(0)
        }
        MpiCmd::Logs { id, follow } => logs(&master, id, follow).await,
        MpiCmd::Why { id } => {
            let v = rest(&master, "GET", &format!("/mpi/v1/jobs/{id}/why"), None).await?;
            println!(
                "job {id} {}: {}",
                v["state"].as_str().unwrap_or("?"),
                v["why"].as_str().unwrap_or("")
            );
            Ok(0)
        }
        MpiCmd::Proxy { control } => crate::mpi_node::proxy(&control),
        MpiCmd::LaunchAgent { args } => crate::mpi_node::launch_agent(&args),
        MpiCmd::RankExec {
            control,
            stdin,
            stdin_token,
            program,
        } => {
            let from = stdin.as_deref().map(|addr| crate::mpi_node::StdinFrom {
                addr,
                token: stdin_token.as_deref().unwrap_or(""),
            });
            crate::mpi_node::rank_exec(control.as_deref(), from, &program)
        }
    }
}

const MPI_API: crate::client::Api = crate::client::Api {
    what: "the MPI service",
    unreachable: "Is `tessera up` (or `tessera master`) running? Set --master or TESSERA_MASTER.",
    missing: "is it a Tessera master?",
};

/// One request to the MPI service's REST API on the master's port.
async fn rest(
    master: &str,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<serde_json::Value> {
    crate::client::rest(&MPI_API, master, method, path, body.as_ref()).await
}

/// The MPI service's job for these arguments.
fn submit_body(
    args: &RunArgs,
    launcher: Option<Launcher>,
    program: &Path,
    spec: &GangSpec,
    time_limit: Option<Duration>,
    stdin: bool,
) -> Result<serde_json::Value> {
    let mut body = serde_json::json!({
        "ranks": spec.ranks,
        "ppn": match spec.layout { Layout::Ppn(n) => Some(n), _ => None },
        "layout": match spec.layout { Layout::Spread => Some("spread"), Layout::Pack => Some("pack"), Layout::Ppn(_) => None },
        "cpus_per_rank": args.cpus_per_rank,
        "mem_per_rank_mb": parse_megabytes("--mem-per-rank", &Quantity::Text(args.mem_per_rank.clone()))?,
        "argv": spec.command.arguments,
        "env": spec.command.environment,
        "launch": match launcher { None => "pmi", Some(Launcher::Hydra) => "hydra", Some(Launcher::Orted) => "orted" },
        "time_limit_seconds": time_limit.map(|d| d.as_secs_f64()),
        "priority": spec.priority,
        "role": spec.role.as_str(),
        "name": program.file_name().map(|f| f.to_string_lossy().into_owned()),
    });
    if stdin {
        // Only when set: a service from before stdin forwarding refuses unknown fields.
        body["stdin"] = serde_json::json!(true);
    }
    Ok(body)
}

/// Submits to the hosted MPI service: the job's id and stdin token, or `None` when the
/// master hosts none.
async fn try_submit(
    master: &str,
    req: &serde_json::Value,
) -> Result<Option<(u64, Option<String>)>> {
    let body = req.to_string().into_bytes();
    let (status, out) =
        match tessera_framework::http::call("POST", master, "/mpi/v1/jobs", Some(&body)).await {
            Ok(r) => r,
            Err(_) => return Ok(None),
        };
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap_or(serde_json::Value::Null);
    match status {
        201 => Ok(v["id"]
            .as_u64()
            .map(|id| (id, v["stdin_token"].as_str().map(str::to_string)))),
        404 if v["error"].is_null() => Ok(None),
        _ => bail!(
            "{}",
            v["error"]
                .as_str()
                .unwrap_or("the MPI service refused the job")
        ),
    }
}

/// Follows a job on the hosted service like a foreground run: this process's stdin to
/// rank 0 (with a token), progress, every rank's output, Ctrl-C cancels, the job's exit
/// status.
async fn follow_hosted(
    master: &str,
    id: u64,
    stdin_token: Option<String>,
    args: &RunArgs,
) -> Result<u8> {
    let json = args.output == Output::Json;
    let (quiet, ranks) = (args.quiet, args.ranks);
    if let Some(token) = stdin_token {
        let master = master.to_string();
        tokio::spawn(async move {
            let input = crate::mpi_stdin::read_stdin();
            if let Err(e) = crate::mpi_stdin::stream(&master, id, &token, input).await
                && e.reason.as_deref() != Some("ended")
                && !quiet
            {
                eprintln!("tessera mpi: stdin not forwarded to rank 0: {}", e.message);
            }
        });
    }
    let mut from = 0u64;
    let mut last = String::new();
    let mut cancel = std::pin::pin!(cancel_signal());
    let mut cancelled = false;
    loop {
        let out = rest(
            master,
            "GET",
            &format!("/mpi/v1/jobs/{id}/output?from={from}"),
            None,
        )
        .await?;
        for l in out["lines"].as_array().into_iter().flatten() {
            let text = l["line"].as_str().unwrap_or("");
            let line = match l["rank"].as_u64() {
                Some(r) => format!("[{r}] {text}"),
                None => text.to_string(),
            };
            if l["stream"] == "stderr" || json {
                eprintln!("{line}");
            } else {
                println!("{line}");
            }
        }
        from = out["next"].as_u64().unwrap_or(from);
        // After the output: once the output says the job ended, this shows how.
        let job = rest(master, "GET", &format!("/mpi/v1/jobs/{id}"), None).await?;
        let state = job["state"].as_str().unwrap_or("");
        let progress = match state {
            "PENDING" => format!(
                "tessera mpi: {ranks} ranks waiting: {}",
                job["reason"].as_str().unwrap_or("")
            ),
            "RUNNING" => {
                let nodes: Vec<String> = job["nodes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|n| format!("{}:{}", n["agent"].as_str().unwrap_or("?"), n["ranks"]))
                    .collect();
                format!(
                    "tessera mpi: launched {ranks} ranks on {} agents ({})",
                    nodes.len(),
                    nodes.join(", ")
                )
            }
            _ => String::new(),
        };
        if !quiet && !progress.is_empty() && progress != last {
            eprintln!("{progress}");
            last = progress;
        }
        if out["ended"].as_bool() == Some(true)
            && out["lines"].as_array().is_none_or(|l| l.is_empty())
        {
            let code = job["exit_code"].as_i64().unwrap_or(1) as i32;
            if json {
                let mut summary = job.clone();
                summary["gang"] = job["id"].clone();
                println!("{summary}");
            } else if !quiet || code != 0 {
                let msg = match state {
                    "COMPLETED" => format!(
                        "every rank finished ({:.2}s)",
                        job["total_seconds"].as_f64().unwrap_or(0.0)
                    ),
                    "CANCELLED" => "cancelled; every rank was killed".into(),
                    _ => format!(
                        "job failed: {}; the other ranks were killed",
                        job["message"].as_str().unwrap_or("")
                    ),
                };
                eprintln!("tessera mpi: {msg}");
            }
            return Ok(u8::try_from(code.clamp(0, 255)).unwrap_or(1));
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(150)) => {}
            _ = &mut cancel, if !cancelled => {
                cancelled = true;
                // Already ended is fine: the next poll reports how.
                let _ = rest(master, "DELETE", &format!("/mpi/v1/jobs/{id}"), None).await;
            }
        }
    }
}

/// Ctrl-C or SIGTERM.
async fn cancel_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match term.as_mut() {
                Some(t) => { t.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}

async fn submit_job(args: RunArgs, master: &str) -> Result<u8> {
    let (launcher, program, spec, time_limit) = crate::mpi_prepare::prepare(&args)?;
    // A background job keeps stdin closed (like sbatch).
    let req = submit_body(&args, launcher, &program, &spec, time_limit, false)?;
    let v = rest(master, "POST", "/mpi/v1/jobs", Some(req)).await?;
    let id = v["id"].as_u64().unwrap_or(0);
    if args.output == Output::Json {
        println!("{v}");
    } else {
        println!("Submitted MPI job {id}");
    }
    Ok(0)
}

async fn queue(master: &str, output: Output) -> Result<u8> {
    let v = rest(master, "GET", "/mpi/v1/jobs", None).await?;
    if output == Output::Json {
        println!("{v:#}");
        return Ok(0);
    }
    println!(
        "{:>6} {:<16} {:>5} {:<8} {:<6} {:<10} DETAIL",
        "JOBID", "NAME", "RANKS", "LAYOUT", "LAUNCH", "STATE"
    );
    for j in v["jobs"].as_array().into_iter().flatten() {
        let detail = match j["state"].as_str() {
            Some("PENDING") => j["reason"].as_str().unwrap_or("").to_string(),
            Some("RUNNING") => j["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|n| format!("{}:{}", n["agent"].as_str().unwrap_or("?"), n["ranks"]))
                .collect::<Vec<_>>()
                .join(","),
            _ => j["message"].as_str().unwrap_or("").to_string(),
        };
        let name: String = j["name"].as_str().unwrap_or("").chars().take(16).collect();
        println!(
            "{:>6} {:<16} {:>5} {:<8} {:<6} {:<10} {}",
            j["id"].to_string(),
            name,
            j["ranks"].to_string(),
            j["layout"].as_str().unwrap_or(""),
            j["launch"].as_str().unwrap_or(""),
            j["state"].as_str().unwrap_or(""),
            detail
        );
    }
    Ok(0)
}

async fn logs(master: &str, id: u64, follow: bool) -> Result<u8> {
    let mut from = 0u64;
    loop {
        let v = rest(
            master,
            "GET",
            &format!("/mpi/v1/jobs/{id}/output?from={from}"),
            None,
        )
        .await?;
        for l in v["lines"].as_array().into_iter().flatten() {
            let text = l["line"].as_str().unwrap_or("");
            let line = match l["rank"].as_u64() {
                Some(r) => format!("[{r}] {text}"),
                None => text.to_string(),
            };
            if l["stream"] == "stderr" {
                eprintln!("{line}");
            } else {
                println!("{line}");
            }
        }
        let next = v["next"].as_u64().unwrap_or(from);
        let ended = v["ended"].as_bool().unwrap_or(true);
        if !follow || (ended && next == from) {
            return Ok(0);
        }
        if next == from {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        from = next;
    }
}

async fn run_job(args: RunArgs, master: String) -> Result<u8> {
    let (launcher, program, spec, time_limit) = crate::mpi_prepare::prepare(&args)?;
    // Through the cluster's MPI service when there is one: one queue for every gang, so
    // jobs that cannot run together take turns instead of each holding part of the cluster.
    // Stdin goes to rank 0, as with srun and mpirun; with nothing to read (/dev/null, or
    // closed) rank 0 just keeps its stdin closed.
    let forward_stdin = crate::mpi_stdin::stdin_has_input();
    let req = submit_body(&args, launcher, &program, &spec, time_limit, forward_stdin)?;
    match try_submit(&master, &req).await? {
        Some((id, token)) => return follow_hosted(&master, id, token, &args).await,
        None => tracing::info!("no MPI service at {master}; running the job as its own framework"),
    }
    let cfg = RunConfig {
        master,
        spec,
        time_limit,
        pmi_bind: args.pmi_bind,
        framework_name: format!(
            "tessera-mpi: {}",
            program.file_name().unwrap_or_default().to_string_lossy()
        ),
        user: std::env::var("USER").unwrap_or_else(|_| "root".into()),
        hold: Duration::from_secs_f64(args.hold),
        launcher,
        tessera_exe: std::env::current_exe()?,
        stdin: forward_stdin.then(crate::mpi_stdin::read_stdin),
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let json = args.output == Output::Json;
    let quiet = args.quiet;
    let ranks = args.ranks;
    let printer = tokio::spawn(async move {
        let mut out = std::io::stdout();
        let mut err = std::io::stderr();
        while let Some(ev) = rx.recv().await {
            match ev {
                RunEvent::Output { rank, stream, line } => {
                    let to_stdout = stream == Stream::Stdout && !json;
                    let w: &mut dyn Write = if to_stdout { &mut out } else { &mut err };
                    let _ = match rank {
                        Some(r) => writeln!(w, "[{r}] {line}"),
                        None => writeln!(w, "{line}"),
                    };
                }
                RunEvent::Waiting(why) if !quiet => {
                    let _ = writeln!(err, "tessera mpi: {ranks} ranks waiting: {why}");
                }
                RunEvent::Launched(nodes) if !quiet => {
                    let list: Vec<String> = nodes.iter().map(|(a, n)| format!("{a}:{n}")).collect();
                    let _ = writeln!(
                        err,
                        "tessera mpi: launched {ranks} ranks on {} agents ({})",
                        nodes.len(),
                        list.join(", ")
                    );
                }
                _ => {}
            }
        }
    });
    let cancel = cancel_signal();
    let report = run(cfg, cancel, tx).await;
    let _ = printer.await;
    let report = report?;
    let code = report.outcome.exit_code();
    if json {
        let v = serde_json::json!({
            "gang": report.gang.0,
            "ranks": ranks,
            "outcome": report.outcome.name(),
            "message": report.outcome.to_string(),
            "exit_code": code,
            "waited_seconds": report.waited.map(|d| d.as_secs_f64()),
            "initialized_seconds": report.initialized.map(|d| d.as_secs_f64()),
            "total_seconds": report.total.as_secs_f64(),
        });
        println!("{v}");
    } else if !quiet || code != 0 {
        let msg = match &report.outcome {
            Outcome::Succeeded => {
                format!("every rank finished ({:.2}s)", report.total.as_secs_f64())
            }
            Outcome::Cancelled => "cancelled; every rank was killed".into(),
            o => format!("job failed: {o}; the other ranks were killed"),
        };
        eprintln!("tessera mpi: {msg}");
    }
    Ok(u8::try_from(code.clamp(0, 255)).unwrap_or(1))
}
