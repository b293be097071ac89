//! `tessera bench state`: latency of `GET /master/state` (and `/tessera/state`) over real
//! HTTP on loopback, against an in-process master holding N simulated agents and T running
//! tasks launched through the master's normal offer/accept path.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use tessera_master::{Event, MasterConfig, MasterHandle, Operation};
use tessera_types::parse::parse_resources;
use tessera_types::{CommandInfo, Filters, FrameworkInfo, Role, TaskId, TaskInfo, TaskState};
use tokio_util::sync::CancellationToken;

use crate::bench_sim::{get, min_med_max, start_agents};

#[derive(Debug, serde::Serialize)]
pub struct EndpointReport {
    pub path: String,
    pub runs: usize,
    pub min_ms: f64,
    pub median_ms: f64,
    pub max_ms: f64,
    pub bytes: usize,
}

#[derive(Debug, serde::Serialize)]
pub struct StateReport {
    pub agents: usize,
    pub frameworks: usize,
    pub tasks: usize,
    pub populate_seconds: f64,
    /// The master actor's own snapshot (no HTTP, no rendering): min/median/max ms.
    pub snapshot_ms: (f64, f64, f64),
    pub endpoints: Vec<EndpointReport>,
}

/// Shared launch budget and progress of the framework drivers.
struct Budget {
    to_launch: AtomicUsize,
    running: AtomicUsize,
    per_offer: usize,
}

impl Budget {
    /// Takes up to `per_offer` task slots; returns the first task number and the count.
    fn take(&self) -> (usize, usize) {
        let mut cur = self.to_launch.load(Ordering::Relaxed);
        loop {
            let k = cur.min(self.per_offer);
            if k == 0 {
                return (0, 0);
            }
            match self.to_launch.compare_exchange(
                cur,
                cur - k,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return (cur - k, k),
                Err(now) => cur = now,
            }
        }
    }
}

async fn drive_framework(
    h: MasterHandle,
    index: usize,
    budget: Arc<Budget>,
    stop: CancellationToken,
) -> Result<()> {
    let info = FrameworkInfo {
        id: None,
        name: format!("bench-state-{index}"),
        user: "bench".into(),
        roles: vec![Role::new(format!("bench{}", index % 4))?],
        capabilities: vec![],
        failover_timeout_secs: 0.0,
        principal: None,
        hostname: None,
    };
    let mut sub = h.subscribe(info).await?;
    let fw = sub.framework_id.clone();
    let res = parse_resources("cpus:0.01;mem:1")?;
    loop {
        let ev = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            ev = sub.events.recv() => ev,
        };
        let Some(ev) = ev else {
            bail!("framework {index}: the master closed the event stream")
        };
        match ev {
            Event::Offers(offers) => {
                for o in offers {
                    let (first, k) = budget.take();
                    if k == 0 {
                        // Done: keep this agent away from us for the rest of the run.
                        h.decline(
                            fw.clone(),
                            vec![o.id],
                            Filters {
                                refuse_seconds: 3600.0,
                            },
                        )
                        .await?;
                        continue;
                    }
                    let mut ts = Vec::with_capacity(k);
                    for n in first..first + k {
                        let id = TaskId::new(format!("task-{n}"))?;
                        ts.push(TaskInfo {
                            name: format!("bench task {n}"),
                            task_id: id,
                            agent_id: o.agent_id.clone(),
                            resources: res.clone(),
                            command: CommandInfo::shell("sleep 3600"),
                            executor_id: None,
                            kill_grace_ms: None,
                            container: None,
                            health_check: None,
                            executor: None,
                        });
                    }
                    h.accept(
                        fw.clone(),
                        vec![o.id],
                        vec![Operation::Launch(ts)],
                        Filters {
                            refuse_seconds: 0.0,
                        },
                    )
                    .await?;
                }
            }
            Event::Update(s) if s.state == TaskState::TaskRunning => {
                budget.running.fetch_add(1, Ordering::Relaxed);
            }
            Event::Update(s) if s.state.is_terminal() => {
                bail!("task {} ended {}", s.task_id, s.state.name());
            }
            Event::Error(e) => bail!("framework {index}: {e}"),
            _ => {}
        }
    }
}

async fn time_endpoint(addr: &str, path: &str, runs: usize) -> Result<EndpointReport> {
    let mut ms = Vec::with_capacity(runs);
    let mut bytes = 0;
    for _ in 0..runs {
        let t0 = Instant::now();
        let (status, body) = get(addr, path).await?;
        ms.push(t0.elapsed().as_secs_f64() * 1e3);
        if status != 200 {
            bail!("GET {path} answered {status}");
        }
        bytes = body.len();
    }
    let (min_ms, median_ms, max_ms) = min_med_max(&ms);
    Ok(EndpointReport {
        path: path.to_string(),
        runs,
        min_ms,
        median_ms,
        max_ms,
        bytes,
    })
}

pub async fn state(
    agents: usize,
    tasks: usize,
    frameworks: usize,
    runs: usize,
    json: bool,
) -> Result<()> {
    if agents == 0 || frameworks == 0 || runs == 0 {
        bail!("agents, frameworks and runs: must be at least 1");
    }
    let root = std::env::temp_dir().join(format!("tessera-bench-state-{}", std::process::id()));
    std::fs::create_dir_all(&root)?;
    let stop = CancellationToken::new();
    let mut mc = MasterConfig::new("127.0.0.1:0".parse()?, root.join("master"));
    // Simulated agents do not heartbeat; populating a big cluster takes a while.
    mc.agent_timeout = Duration::from_secs(24 * 3600);
    mc.framework_queue = 1 << 20;
    mc.max_completed_tasks = tasks.max(1);
    let master = tessera_master::start(mc, stop.clone()).await?;
    let h = master.handle.clone();
    let addr = master.addr.to_string();
    let t0 = Instant::now();
    start_agents(&h, agents, "cpus:64;mem:65536;disk:65536", false, !json).await?;

    let per_offer = tasks.div_ceil(agents).max(1);
    let budget = Arc::new(Budget {
        to_launch: AtomicUsize::new(tasks),
        running: AtomicUsize::new(0),
        per_offer,
    });
    let fw_stop = CancellationToken::new();
    let mut drivers = Vec::new();
    for i in 0..frameworks {
        drivers.push(tokio::spawn(drive_framework(
            h.clone(),
            i,
            budget.clone(),
            fw_stop.clone(),
        )));
    }
    let mut last = Instant::now();
    loop {
        let running = budget.running.load(Ordering::Relaxed);
        if running >= tasks {
            break;
        }
        if let Some(d) = drivers.iter_mut().find(|d| d.is_finished()) {
            d.await??;
            bail!("a framework driver stopped early");
        }
        if t0.elapsed() > Duration::from_secs(1800) {
            bail!("only {running}/{tasks} tasks running after 30 minutes");
        }
        if !json && last.elapsed() > Duration::from_millis(500) {
            eprint!(
                "\rtasks: {} launched, {running}/{tasks} running",
                tasks - budget.to_launch.load(Ordering::Relaxed)
            );
            last = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let populate = t0.elapsed().as_secs_f64();
    if !json {
        eprintln!("\rtasks: {tasks}/{tasks} running, cluster populated in {populate:.1} s");
    }

    // Sanity check the content once, untimed.
    let (_, body) = get(&addr, "/master/state").await?;
    let v: serde_json::Value = serde_json::from_slice(&body)?;
    let seen_tasks: usize = v["frameworks"]
        .as_array()
        .map(|fs| {
            fs.iter()
                .map(|f| f["tasks"].as_array().map_or(0, Vec::len))
                .sum()
        })
        .unwrap_or(0);
    let seen_agents = v["slaves"].as_array().map_or(0, Vec::len);
    if seen_tasks != tasks || seen_agents != agents {
        bail!("/master/state shows {seen_agents} agents and {seen_tasks} tasks");
    }

    let mut snaps = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t0 = Instant::now();
        master.handle.state().await?;
        snaps.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    let snapshot_ms = min_med_max(&snaps);
    let mut endpoints = Vec::new();
    for path in ["/master/state", "/tessera/state"] {
        endpoints.push(time_endpoint(&addr, path, runs).await?);
    }
    fw_stop.cancel();
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), master.join).await;
    let _ = std::fs::remove_dir_all(&root);
    let report = StateReport {
        agents,
        frameworks,
        tasks,
        populate_seconds: populate,
        snapshot_ms,
        endpoints,
    };
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        let (a, b, c) = report.snapshot_ms;
        println!(
            "master snapshot (actor, no HTTP): min {a:.1} ms, median {b:.1} ms, max {c:.1} ms"
        );
        for e in &report.endpoints {
            println!(
                "GET {} with {} agents, {} tasks, {} frameworks: min {:.1} ms, median {:.1} ms, max {:.1} ms over {} runs; {:.1} MB",
                e.path,
                agents,
                tasks,
                frameworks,
                e.min_ms,
                e.median_ms,
                e.max_ms,
                e.runs,
                e.bytes as f64 / 1e6
            );
        }
    }
    Ok(())
}
