//! `tessera batch …`: the batch scheduler's CLI, a client of its REST API (`/batch/v1`),
//! with Slurm-familiar flags and output, plus `serve` to run the scheduler on its own.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use tessera_batch::JobRequest;
use tessera_batch::schedule::{ConcurrencyPolicy, MissedPolicy, ScheduleSpec};
use tessera_batch::spec::Quantity;

use crate::cli::Output;

pub const BATCH_ABOUT: &str = "\
Batch jobs, the Slurm way: submit, queue, cancel, hold, logs, history and why.

    tessera batch submit --cpus 2 --mem 2G --time 10m -- ./simulate --steps 100
    tessera batch submit --array 0-999%50 --wait -- ./work.sh      (TESSERA_ARRAY_INDEX per task)
    tessera batch submit --dependency afterok:12 --job-name report -- ./report.sh
    tessera batch submit --cron '0 3 * * *' --timezone Europe/Berlin -- ./nightly.sh
    tessera batch submit job.toml                                   (a job file: the same names as the flags)
    tessera batch queue                  tessera batch why 12        tessera batch logs -f 12

The scheduler runs inside `tessera up` and `tessera master` (or `tessera batch serve`);
the CLI talks to it at --server (default: $TESSERA_MASTER, then 127.0.0.1:5050).";

#[derive(Args, Debug)]
pub struct BatchArgs {
    /// Where the batch scheduler's REST API is, HOST:PORT [default: $TESSERA_MASTER, then
    /// 127.0.0.1:5050].
    #[arg(long, global = true, env = "TESSERA_BATCH")]
    pub server: Option<String>,
    /// Output: human tables, or JSON for scripts.
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(subcommand)]
    pub cmd: BatchCmd,
}

#[derive(Subcommand, Debug)]
pub enum BatchCmd {
    /// Submit a job (like sbatch). Prints "Submitted batch job ID".
    Submit(Box<SubmitArgs>),
    /// Jobs not yet finished (like squeue).
    Queue(QueueArgs),
    /// One job in detail, with every task (like scontrol show job).
    Show { id: String },
    /// Cancel jobs (like scancel): waiting tasks end, running ones are killed.
    Cancel {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Hold pending jobs: they do not start until released.
    Hold {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Release held jobs.
    Release {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Print a job's output from its agent's sandbox.
    Logs(LogsArgs),
    /// Finished jobs, newest first (like sacct).
    History {
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Only this user's jobs.
        #[arg(long)]
        user: Option<String>,
    },
    /// Why a job is not running: the scheduler's reasons and the allocator's.
    Why { id: String },
    /// Run the batch scheduler on its own against a master.
    Serve(ServeArgs),
}

#[derive(Args, Debug, Default)]
pub struct SubmitArgs {
    /// A job file (TOML) with any of the fields below; flags override it.
    pub file: Option<PathBuf>,
    /// Job name [default: the program's name].
    #[arg(short = 'J', long)]
    pub job_name: Option<String>,
    /// CPUs per task [default: 1].
    #[arg(short = 'c', long, allow_hyphen_values = true)]
    pub cpus: Option<f64>,
    /// Memory per task: megabytes or with a unit (512M, 2G) [default: 128M].
    #[arg(long, allow_hyphen_values = true)]
    pub mem: Option<String>,
    /// Disk per task (sandbox), like --mem.
    #[arg(long)]
    pub disk: Option<String>,
    /// GPUs per task.
    #[arg(long, allow_hyphen_values = true)]
    pub gpus: Option<f64>,
    /// Time limit: 10m, 1h30m, MM:SS, HH:MM:SS or D-HH:MM:SS; past it the task is killed
    /// and the job ends TIMEOUT.
    #[arg(short = 't', long)]
    pub time: Option<String>,
    /// Array job: 0-999%50 (range, % = at most this many at once), 1,3,5-7, 0-15:4.
    #[arg(short = 'a', long)]
    pub array: Option<String>,
    /// afterok:ID[:ID…], afterany:ID, afternotok:ID; several separated by ','.
    #[arg(short = 'd', long)]
    pub dependency: Option<String>,
    /// Higher starts first [default: 0].
    #[arg(long, allow_hyphen_values = true)]
    pub priority: Option<i32>,
    /// Queue (a Mesos role) [default: the scheduler's first queue, `batch`].
    #[arg(short = 'p', long, visible_alias = "partition")]
    pub queue: Option<String>,
    /// Retries of a failed task, with exponential backoff.
    #[arg(long)]
    pub retries: Option<u32>,
    /// First retry delay (doubles each retry) [default: 1s].
    #[arg(long)]
    pub backoff: Option<String>,
    /// Longest retry delay [default: 5m].
    #[arg(long)]
    pub backoff_max: Option<String>,
    /// Environment for the task, KEY=VALUE; repeat for more.
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// A URI to fetch into the sandbox first (file, http); repeat for more.
    #[arg(long = "uri")]
    pub uris: Vec<String>,
    /// Run in this Docker image.
    #[arg(long)]
    pub image: Option<String>,
    /// Submit held; `tessera batch release ID` starts it.
    #[arg(short = 'H', long)]
    pub hold: bool,
    /// A shell command line instead of `-- CMD ARGS` (like sbatch --wrap).
    #[arg(long)]
    pub wrap: Option<String>,
    /// A script file whose text the task runs with `sh`.
    #[arg(long)]
    pub script: Option<PathBuf>,
    /// Run on a cron schedule (5 or 6 fields, or @daily…), starting a job at each fire.
    #[arg(long)]
    pub cron: Option<String>,
    /// Run on an ISO 8601 repeating interval, e.g. R/2026-01-01T00:00:00Z/PT1H.
    #[arg(long)]
    pub every: Option<String>,
    /// Time zone of --cron/--every (IANA, e.g. Europe/Berlin) [default: UTC].
    #[arg(long)]
    pub timezone: Option<String>,
    /// When a fire comes while the previous run is active: allow, forbid or replace.
    #[arg(long)]
    pub concurrency: Option<String>,
    /// Fires missed while the scheduler was down: skip, runonce or runall [default: runonce].
    #[arg(long)]
    pub missed: Option<String>,
    /// Submitting user [default: $USER].
    #[arg(long)]
    pub user: Option<String>,
    /// Wait for the job (or the whole array) to end; exit 0 if it COMPLETED, its exit code
    /// if it FAILED, 124 on TIMEOUT, 125 if CANCELLED.
    #[arg(short = 'W', long)]
    pub wait: bool,
    /// The program and its arguments.
    #[arg(last = true)]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct QueueArgs {
    /// Only these states (comma-separated: PENDING,RUNNING,…); includes finished ones.
    #[arg(short = 't', long)]
    pub state: Option<String>,
    /// Only this user's jobs.
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Only this queue.
    #[arg(short = 'p', long)]
    pub queue: Option<String>,
    /// Include finished jobs.
    #[arg(long)]
    pub all: bool,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    pub id: String,
    /// Keep printing new output until the task ends.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// stderr instead of stdout.
    #[arg(long)]
    pub stderr: bool,
    /// The array index (required for array jobs).
    #[arg(long)]
    pub index: Option<u32>,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The master, HOST:PORT [default: $TESSERA_MASTER, then 127.0.0.1:5050].
    #[arg(long, env = "TESSERA_MASTER")]
    pub master: Option<String>,
    /// Where to serve the REST API.
    #[arg(long, default_value = "127.0.0.1:5060")]
    pub listen: std::net::SocketAddr,
    /// The job store (SQLite) [default: the user's data directory + /tessera/batch/batch.sqlite].
    #[arg(long, env = "TESSERA_BATCH_STORE")]
    pub store: Option<PathBuf>,
    /// Queues served (each a Mesos role), comma-separated; the first is the default.
    #[arg(long, default_value = "batch")]
    pub queues: String,
}

/// Exits the process with this code after printing nothing more.
#[derive(Debug)]
pub struct ExitCode(pub u8);

impl std::fmt::Display for ExitCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}", self.0)
    }
}

impl std::error::Error for ExitCode {}

const BATCH_API: crate::client::Api = crate::client::Api {
    what: "the batch scheduler",
    unreachable: "Is `tessera up` running? Point --server (or TESSERA_BATCH) at it.",
    missing: "is it a Tessera master with batch enabled?",
};

async fn call(server: &str, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
    crate::client::rest(&BATCH_API, server, method, path, body).await
}

pub async fn run(args: BatchArgs, default_server: String) -> Result<()> {
    let server = args.server.clone().unwrap_or(default_server);
    let out = args.output;
    match args.cmd {
        BatchCmd::Submit(s) => submit(&server, *s, out).await,
        BatchCmd::Queue(q) => queue(&server, q, out).await,
        BatchCmd::Show { id } => {
            let v = call(
                &server,
                "GET",
                &format!("/batch/v1/jobs/{}", id_arg(&id)?),
                None,
            )
            .await?;
            if out == Output::Json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_detail(&v);
            }
            Ok(())
        }
        BatchCmd::Cancel { ids } => each(&server, &ids, "cancel", out).await,
        BatchCmd::Hold { ids } => each(&server, &ids, "hold", out).await,
        BatchCmd::Release { ids } => each(&server, &ids, "release", out).await,
        BatchCmd::Logs(l) => logs(&server, l).await,
        BatchCmd::History { limit, user } => {
            let mut path = format!("/batch/v1/history?limit={limit}");
            if let Some(u) = user {
                path.push_str(&format!("&user={u}"));
            }
            let v = call(&server, "GET", &path, None).await?;
            print_jobs(&v, out, true)
        }
        BatchCmd::Why { id } => why(&server, &id, out).await,
        BatchCmd::Serve(_) => unreachable!("handled by the caller"),
    }
}

fn id_arg(s: &str) -> Result<u64> {
    s.trim()
        .parse()
        .map_err(|_| anyhow!("'{s}' is not a job id (a positive integer, as `submit` printed)"))
}

fn quantity(s: &Option<String>) -> Option<Quantity> {
    s.as_ref().map(|t| Quantity::Text(t.clone()))
}

/// `$USER`, `$LOGNAME`, else the name of this process's uid from the password database.
fn current_user() -> Option<String> {
    for var in ["USER", "LOGNAME"] {
        if let Ok(u) = std::env::var(var)
            && !u.is_empty()
        {
            return Some(u);
        }
    }
    // SAFETY: getpwuid returns a pointer into static storage or null; the name is copied
    // out at once, before any other call could overwrite it.
    unsafe {
        let pw = libc::getpwuid(libc::getuid());
        if pw.is_null() || (*pw).pw_name.is_null() {
            return None;
        }
        std::ffi::CStr::from_ptr((*pw).pw_name)
            .to_str()
            .ok()
            .map(str::to_string)
    }
}

/// Builds the request: the job file first, then the flags over it.
fn build_request(s: &SubmitArgs) -> Result<JobRequest> {
    let mut r: JobRequest = match &s.file {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read the job file {}", p.display()))?;
            toml::from_str(&text).map_err(|e| anyhow!("job file {}: {e}", p.display()))?
        }
        None => JobRequest::default(),
    };
    if !s.command.is_empty() {
        r.args = s.command.clone();
        r.command = None;
        r.script = None;
    }
    if let Some(w) = &s.wrap {
        r.command = Some(w.clone());
    }
    if let Some(p) = &s.script {
        r.script = Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("cannot read the script {}", p.display()))?,
        );
    }
    macro_rules! set {
        ($field:ident, $v:expr) => {
            if let Some(v) = $v {
                r.$field = Some(v);
            }
        };
    }
    set!(name, s.job_name.clone());
    set!(cpus, s.cpus);
    set!(mem, quantity(&s.mem));
    set!(disk, quantity(&s.disk));
    set!(gpus, s.gpus);
    set!(time, quantity(&s.time));
    set!(array, s.array.clone());
    set!(dependency, s.dependency.clone());
    set!(priority, s.priority);
    set!(queue, s.queue.clone());
    set!(retries, s.retries);
    set!(backoff, quantity(&s.backoff));
    set!(backoff_max, quantity(&s.backoff_max));
    set!(image, s.image.clone());
    set!(user, s.user.clone());
    if r.user.is_none() {
        r.user = current_user();
    }
    r.hold |= s.hold;
    for kv in &s.env {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| anyhow!("--env '{kv}': write KEY=VALUE"))?;
        r.env.insert(k.to_string(), v.to_string());
    }
    r.uris.extend(s.uris.iter().cloned());
    if s.cron.is_some() || s.every.is_some() {
        let mut spec = r.schedule.take().unwrap_or(ScheduleSpec {
            cron: None,
            iso: None,
            timezone: None,
            concurrency: ConcurrencyPolicy::default(),
            missed: MissedPolicy::default(),
        });
        spec.cron = s.cron.clone().or(spec.cron);
        spec.iso = s.every.clone().or(spec.iso);
        r.schedule = Some(spec);
    }
    if let Some(spec) = r.schedule.as_mut() {
        if let Some(tz) = &s.timezone {
            spec.timezone = Some(tz.clone());
        }
        if let Some(c) = &s.concurrency {
            spec.concurrency = serde_json::from_value(json!(c))
                .map_err(|_| anyhow!("--concurrency '{c}': use allow, forbid or replace"))?;
        }
        if let Some(m) = &s.missed {
            spec.missed = serde_json::from_value(json!(m))
                .map_err(|_| anyhow!("--missed '{m}': use skip, runonce or runall"))?;
        }
    } else if s.timezone.is_some() || s.concurrency.is_some() || s.missed.is_some() {
        bail!("--timezone, --concurrency and --missed only apply with --cron or --every");
    }
    Ok(r)
}

async fn submit(server: &str, s: SubmitArgs, out: Output) -> Result<()> {
    let req = build_request(&s)?;
    let body = serde_json::to_value(&req)?;
    let v = call(server, "POST", "/batch/v1/jobs", Some(&body)).await?;
    let id = v["id"]
        .as_u64()
        .ok_or_else(|| anyhow!("the scheduler answered without a job id: {v}"))?;
    if out == Output::Json && !s.wait {
        println!(
            "{}",
            serde_json::to_string(&json!({ "id": id, "state": v["state"] }))?
        );
        return Ok(());
    }
    if out == Output::Table {
        println!("Submitted batch job {id}");
    }
    if !s.wait {
        return Ok(());
    }
    let end = wait_for(server, id).await?;
    if out == Output::Json {
        println!("{}", serde_json::to_string(&end)?);
    }
    let code = exit_code(&end);
    if code != 0 {
        if out == Output::Table {
            eprintln!(
                "job {id} ended {}{}",
                end["state"].as_str().unwrap_or("?"),
                end["reason"]
                    .as_str()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            );
        }
        return Err(ExitCode(code).into());
    }
    Ok(())
}

/// 0 COMPLETED; the task's exit code (or 1) FAILED; 124 TIMEOUT; 125 CANCELLED.
fn exit_code(job: &Value) -> u8 {
    match job["state"].as_str() {
        Some("COMPLETED") => 0,
        Some("TIMEOUT") => 124,
        Some("CANCELLED") => 125,
        _ => match job["exit_code"].as_i64() {
            Some(c) if (1..=255).contains(&c) => c as u8,
            _ => 1,
        },
    }
}

async fn wait_for(server: &str, id: u64) -> Result<Value> {
    let path = format!("/batch/v1/jobs/{id}");
    let bar = if std::io::stderr().is_terminal() {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} job {msg} [{bar:30}] {pos}/{len} tasks done ({elapsed})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        b.set_message(id.to_string());
        Some(b)
    } else {
        None
    };
    let mut delay = Duration::from_millis(100);
    loop {
        let v = call(server, "GET", &path, None).await?;
        let t = &v["tasks"];
        if let Some(b) = &bar {
            b.set_length(t["total"].as_u64().unwrap_or(0));
            let done = ["completed", "failed", "cancelled"]
                .iter()
                .map(|k| t[*k].as_u64().unwrap_or(0))
                .sum();
            b.set_position(done);
        }
        let state = v["state"].as_str().unwrap_or("");
        if matches!(state, "COMPLETED" | "FAILED" | "CANCELLED" | "TIMEOUT") {
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            return Ok(v);
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(1000));
    }
}

async fn queue(server: &str, q: QueueArgs, out: Output) -> Result<()> {
    let mut params = Vec::new();
    if let Some(s) = &q.state {
        params.push(format!("state={s}"));
    }
    if let Some(u) = &q.user {
        params.push(format!("user={u}"));
    }
    if let Some(p) = &q.queue {
        params.push(format!("queue={p}"));
    }
    if q.all {
        params.push("all=true".into());
    }
    let path = format!("/batch/v1/jobs?{}", params.join("&"));
    let v = call(server, "GET", &path, None).await?;
    print_jobs(&v, out, false)
}

fn elapsed(j: &Value) -> String {
    let (Some(start), end) = (j["started_at"].as_i64(), j["ended_at"].as_i64()) else {
        return "0:00".into();
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(start);
    let secs = (end.unwrap_or(now) - start).max(0) / 1000;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

fn print_jobs(v: &Value, out: Output, finished: bool) -> Result<()> {
    if out == Output::Json {
        println!("{}", serde_json::to_string_pretty(v)?);
        return Ok(());
    }
    let jobs = v["jobs"].as_array().cloned().unwrap_or_default();
    let s = |j: &Value, k: &str| j[k].as_str().unwrap_or("").to_string();
    println!(
        "{:>7} {:<8} {:<16} {:<10} {:<10} {:>9} {:>13} REASON",
        "JOBID",
        "QUEUE",
        "NAME",
        "USER",
        "STATE",
        "TIME",
        if finished { "EXIT" } else { "TASKS R/P/D" },
    );
    for j in &jobs {
        let t = &j["tasks"];
        let n = |k: &str| t[k].as_u64().unwrap_or(0);
        let tasks = if finished {
            j["exit_code"]
                .as_i64()
                .map(|c| c.to_string())
                .unwrap_or_else(|| "-".into())
        } else {
            format!(
                "{}/{}/{}",
                n("running"),
                n("pending"),
                n("completed") + n("failed") + n("cancelled")
            )
        };
        let mut reason = s(j, "reason");
        if j["held"].as_bool() == Some(true) && j["state"].as_str() == Some("PENDING") {
            reason = "held".into();
        }
        let mut name = s(j, "name");
        if let Some(a) = j["array"].as_str() {
            name = format!("{name}[{a}]");
        }
        println!(
            "{:>7} {:<8} {:<16} {:<10} {:<10} {:>9} {:>13} {}",
            j["id"].as_u64().unwrap_or(0),
            truncate(&s(j, "queue"), 8),
            truncate(&name, 16),
            truncate(&s(j, "user"), 10),
            s(j, "state"),
            elapsed(j),
            tasks,
            reason
        );
    }
    Ok(())
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

fn print_detail(v: &Value) {
    let s = |k: &str| match &v[k] {
        Value::Null => "-".to_string(),
        Value::String(x) => x.clone(),
        x => x.to_string(),
    };
    println!(
        "JobId={} JobName={} UserId={}",
        s("id"),
        s("name"),
        s("user")
    );
    println!(
        "   JobState={} Reason={} Priority={} Queue={}",
        s("state"),
        s("reason"),
        s("priority"),
        s("queue")
    );
    println!(
        "   Array={} Dependency={} Held={} ExitCode={}",
        s("array"),
        s("dependency"),
        s("held"),
        s("exit_code")
    );
    let spec = &v["spec"];
    println!(
        "   Cpus={} Mem={}M Time={} Retries={} Command={}",
        spec["cpus"],
        spec["mem_mb"],
        spec["time_limit_ms"]
            .as_u64()
            .map(|ms| format!("{}s", ms / 1000))
            .unwrap_or_else(|| "UNLIMITED".into()),
        spec["retries"],
        spec["command"]
    );
    let tasks = v["task_list"].as_array().cloned().unwrap_or_default();
    println!(
        "   {:>6} {:<10} {:>7} {:>5} {:<24} MESSAGE",
        "INDEX", "STATE", "ATTEMPT", "EXIT", "TASK ID"
    );
    for t in tasks.iter().take(200) {
        println!(
            "   {:>6} {:<10} {:>7} {:>5} {:<24} {}",
            t["index"],
            t["state"].as_str().unwrap_or(""),
            t["attempt"],
            t["exit_code"]
                .as_i64()
                .map(|c| c.to_string())
                .unwrap_or_else(|| "-".into()),
            t["task_id"].as_str().unwrap_or("-"),
            t["message"].as_str().unwrap_or("")
        );
    }
    if tasks.len() > 200 {
        println!("   … {} more tasks (-o json shows all)", tasks.len() - 200);
    }
}

async fn each(server: &str, ids: &[String], verb: &str, out: Output) -> Result<()> {
    let mut failed = 0;
    let mut results = Vec::new();
    for raw in ids {
        let r = match id_arg(raw) {
            Ok(id) => call(server, "POST", &format!("/batch/v1/jobs/{id}/{verb}"), None).await,
            Err(e) => Err(e),
        };
        match r {
            Ok(v) => {
                if out == Output::Table {
                    println!("job {}: {}", v["id"], v["state"].as_str().unwrap_or(""));
                }
                results.push(v);
            }
            Err(e) => {
                failed += 1;
                eprintln!("error: {verb} {raw}: {e}");
            }
        }
    }
    if out == Output::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "jobs": results }))?
        );
    }
    if failed > 0 {
        return Err(ExitCode(1).into());
    }
    Ok(())
}

async fn logs(server: &str, l: LogsArgs) -> Result<()> {
    let id = id_arg(&l.id)?;
    let stream = if l.stderr { "stderr" } else { "stdout" };
    let mut offset = 0u64;
    let mut stdout = std::io::stdout();
    if l.follow {
        // Following a job that has not started yet waits for it to start (or end).
        loop {
            let job = call(server, "GET", &format!("/batch/v1/jobs/{id}"), None).await?;
            let started = job["task_list"].as_array().is_some_and(|ts| {
                ts.iter()
                    .filter(|t| {
                        l.index
                            .is_none_or(|i| t["index"].as_u64() == Some(i as u64))
                    })
                    .any(|t| t["attempt"].as_u64().unwrap_or(0) > 0)
            });
            let state = job["state"].as_str().unwrap_or("");
            if started || matches!(state, "COMPLETED" | "FAILED" | "CANCELLED" | "TIMEOUT") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    loop {
        let mut path = format!("/batch/v1/jobs/{id}/logs?stream={stream}&offset={offset}");
        if let Some(i) = l.index {
            path.push_str(&format!("&index={i}"));
        }
        let v = call(server, "GET", &path, None).await?;
        let data = v["data"].as_str().unwrap_or("");
        if !data.is_empty() {
            stdout.write_all(data.as_bytes())?;
            stdout.flush()?;
            offset = v["offset"].as_u64().unwrap_or(offset) + data.len() as u64;
            continue;
        }
        if !l.follow {
            return Ok(());
        }
        let job = call(server, "GET", &format!("/batch/v1/jobs/{id}"), None).await?;
        let ended = match l.index {
            Some(i) => job["task_list"]
                .as_array()
                .and_then(|ts| ts.iter().find(|t| t["index"].as_u64() == Some(i as u64)))
                .is_some_and(|t| {
                    matches!(
                        t["state"].as_str(),
                        Some("COMPLETED" | "FAILED" | "CANCELLED" | "TIMEOUT")
                    )
                }),
            None => matches!(
                job["state"].as_str(),
                Some("COMPLETED" | "FAILED" | "CANCELLED" | "TIMEOUT")
            ),
        };
        if ended {
            // One last read: output written just before the end.
            let v = call(server, "GET", &path, None).await?;
            stdout.write_all(v["data"].as_str().unwrap_or("").as_bytes())?;
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn why(server: &str, raw: &str, out: Output) -> Result<()> {
    let id = id_arg(raw)?;
    let mut v = call(server, "GET", &format!("/batch/v1/jobs/{id}/why"), None).await?;
    // The allocator's view of the job's queue (role), from the master.
    let queue = v["queue"].as_str().unwrap_or("").to_string();
    let allocator = match call(server, "GET", "/master/roles", None).await {
        Ok(roles) => roles["roles"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["name"].as_str() == Some(&queue)))
            .map(|r| r["tessera_last_unmet"].clone())
            .unwrap_or(Value::Null),
        Err(_) => Value::Null,
    };
    v["allocator"] = allocator.clone();
    if out == Output::Json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("job {id} is {}", v["state"].as_str().unwrap_or("?"));
    let reasons = v["reasons"].as_array().cloned().unwrap_or_default();
    if reasons.is_empty() {
        println!("  nothing holds it back");
    }
    for r in reasons {
        println!(
            "  {}: {}",
            r["code"].as_str().unwrap_or(""),
            r["message"].as_str().unwrap_or("")
        );
    }
    let mut shown = BTreeMap::new();
    for u in allocator.as_array().into_iter().flatten() {
        let line = format!(
            "  allocator, role {queue}: {} — {}",
            u["reason"].as_str().unwrap_or(""),
            u["detail"].as_str().unwrap_or("")
        );
        shown.insert(line, ());
    }
    if let Some(u) = allocator.as_object() {
        shown.insert(
            format!(
                "  allocator, role {queue}: {} — {}",
                u.get("reason").and_then(Value::as_str).unwrap_or(""),
                u.get("detail").and_then(Value::as_str).unwrap_or("")
            ),
            (),
        );
    }
    for line in shown.keys() {
        println!("{line}");
    }
    Ok(())
}
