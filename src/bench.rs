//! `tessera bench launch`: offer → launch → TASK_RUNNING latency on a real in-process cluster
//! (master and one agent over loopback gRPC, real processes), measured by a framework that
//! launches trivial tasks as fast as offers come.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tessera_agent::AgentConfig;
use tessera_master::{Event, MasterConfig, Operation};
use tessera_types::parse::parse_resources;
use tessera_types::{CommandInfo, Filters, FrameworkInfo, Role, TaskId, TaskInfo, TaskState};
use tokio_util::sync::CancellationToken;

#[derive(Debug, serde::Serialize)]
pub struct LaunchReport {
    pub tasks: usize,
    pub batch: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub wall_seconds: f64,
    pub tasks_per_second: f64,
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub async fn launch(tasks: usize, batch: usize, json: bool) -> Result<()> {
    if tasks == 0 || batch == 0 {
        bail!("tasks and batch: must be at least 1");
    }
    let root = std::env::temp_dir().join(format!("tessera-bench-{}", std::process::id()));
    std::fs::create_dir_all(&root)?;
    let stop = CancellationToken::new();
    let mc = MasterConfig::new("127.0.0.1:0".parse()?, root.join("master"));
    let master = tessera_master::start(mc, stop.clone()).await?;
    let h = master.handle.clone();
    let ac = AgentConfig::new(
        master.addr.to_string(),
        root.join("agent"),
        parse_resources("cpus:64;mem:65536;disk:1024")?,
    );
    let agent_stop = CancellationToken::new();
    let agent = tokio::spawn(tessera_agent::run(ac, agent_stop.clone()));

    let info = FrameworkInfo {
        id: None,
        name: "bench-launch".into(),
        user: "bench".into(),
        roles: vec![Role::new("bench")?],
        capabilities: vec![],
        failover_timeout_secs: 0.0,
        principal: None,
        hostname: None,
    };
    let mut sub = h.subscribe(info).await?;
    let fw = sub.framework_id.clone();
    let started = Instant::now();
    let mut offered_at: BTreeMap<TaskId, Instant> = BTreeMap::new();
    let mut latencies: Vec<f64> = Vec::with_capacity(tasks);
    let mut launched = 0usize;
    let mut finished = 0usize;
    while finished < tasks {
        let ev = tokio::time::timeout(Duration::from_secs(60), sub.events.recv())
            .await
            .context("no event from the master for 60 s")?
            .context("the master closed the event stream")?;
        match ev {
            Event::Offers(offers) => {
                for o in offers {
                    let t0 = Instant::now();
                    // Only as many tasks as the offer holds: a small offer (resources of
                    // tasks that just finished, while the rest is offered separately) must
                    // not get a whole batch.
                    let per_task = parse_resources("cpus:0.01;mem:1")?;
                    let mut left = o.resources.clone();
                    let mut n = 0;
                    while n < batch.min(tasks - launched) && left.contains(&per_task) {
                        left.sub_assign(&per_task)?;
                        n += 1;
                    }
                    let mut ts = Vec::with_capacity(n);
                    for _ in 0..n {
                        let id = TaskId::new(format!("t{launched}"))?;
                        launched += 1;
                        offered_at.insert(id.clone(), t0);
                        ts.push(TaskInfo {
                            name: id.to_string(),
                            task_id: id,
                            agent_id: o.agent_id.clone(),
                            resources: parse_resources("cpus:0.01;mem:1")?,
                            command: CommandInfo::shell("true"),
                            executor_id: None,
                            kill_grace_ms: None,
                            container: None,
                            health_check: None,
                            executor: None,
                        });
                    }
                    let ops = if ts.is_empty() {
                        vec![]
                    } else {
                        vec![Operation::Launch(ts)]
                    };
                    h.accept(
                        fw.clone(),
                        vec![o.id],
                        ops,
                        Filters {
                            refuse_seconds: 0.0,
                        },
                    )
                    .await?;
                }
            }
            Event::Update(s) => {
                if let (Some(uuid), Some(agent)) = (&s.uuid, &s.agent_id) {
                    h.acknowledge(fw.clone(), agent.clone(), s.task_id.clone(), uuid.clone())
                        .await?;
                }
                if s.state == TaskState::TaskRunning
                    && let Some(t0) = offered_at.remove(&s.task_id)
                {
                    latencies.push(t0.elapsed().as_secs_f64() * 1e3);
                }
                if s.state.is_terminal() {
                    finished += 1;
                    if s.state != TaskState::TaskFinished {
                        bail!(
                            "task {} ended {}: {:?}",
                            s.task_id,
                            s.state.name(),
                            s.message
                        );
                    }
                    if !json && finished.is_multiple_of(100) {
                        eprint!("\r{finished}/{tasks} tasks finished");
                    }
                }
            }
            _ => {}
        }
    }
    let wall = started.elapsed().as_secs_f64();
    if !json {
        eprintln!();
    }
    latencies.sort_by(f64::total_cmp);
    let report = LaunchReport {
        tasks,
        batch,
        p50_ms: percentile(&latencies, 0.50),
        p90_ms: percentile(&latencies, 0.90),
        p99_ms: percentile(&latencies, 0.99),
        max_ms: latencies.last().copied().unwrap_or(0.0),
        wall_seconds: wall,
        tasks_per_second: tasks as f64 / wall,
    };
    agent_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), agent).await;
    stop.cancel();
    let _ = std::fs::remove_dir_all(&root);
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "offer -> launch -> TASK_RUNNING over {} tasks (batch {}): p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {:.0} tasks/s",
            report.tasks,
            report.batch,
            report.p50_ms,
            report.p90_ms,
            report.p99_ms,
            report.max_ms,
            report.tasks_per_second
        );
    }
    Ok(())
}
