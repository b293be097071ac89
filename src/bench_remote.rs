//! `tessera bench launch --master HOST:PORT`: offer → launch → TASK_RUNNING latency on a
//! running cluster (e.g. `tessera up`), measured by a framework built on the Framework SDK,
//! so everything goes through the public v1 scheduler HTTP API.
//!
//! The framework launches one `true` task (0.01 cpu, 1 MB) per offer it receives, until
//! `tasks` have been launched, and measures from the OFFERS event that carried the offer to
//! the TASK_RUNNING update of the task launched on it, both as the SDK driver delivers them
//! (its clock has millisecond resolution). Accepted offers' unused resources are refused for
//! 0 s, as are offers left unanswered, so an agent is re-offered as soon as the allocator
//! runs again.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tessera_framework::{Action, Driver, DriverConfig, Scheduler, SchedulerEvent, Time};
use tessera_types::parse::parse_resources;
use tessera_types::{CommandInfo, FrameworkInfo, Resources, Role, TaskId, TaskInfo, TaskState};

use crate::bench::{LaunchReport, percentile};

/// The benchmark's scheduler: pure, as the SDK asks (time comes in as `now`).
struct LaunchBench {
    total: usize,
    per_task: Resources,
    launched: usize,
    finished: usize,
    /// When the offer each launched task went to arrived.
    offered_at: BTreeMap<TaskId, Time>,
    latencies_ms: Vec<f64>,
    /// The first task that did not end TASK_FINISHED, and how it ended.
    failure: Option<String>,
    error: Option<String>,
    first_offer: Option<Time>,
    last_end: Option<Time>,
}

impl Scheduler for LaunchBench {
    fn on_event(&mut self, ev: &SchedulerEvent, now: Time) -> Vec<Action> {
        match ev {
            SchedulerEvent::Offers(offers) => {
                let mut actions = Vec::new();
                for o in offers {
                    if self.launched >= self.total {
                        break; // the driver declines the rest
                    }
                    if !o.resources.contains(&self.per_task) {
                        continue;
                    }
                    self.first_offer.get_or_insert(now);
                    let id = match TaskId::new(format!("bench-{}", self.launched)) {
                        Ok(id) => id,
                        Err(e) => {
                            self.error = Some(format!("task id: {e}"));
                            return vec![Action::Teardown];
                        }
                    };
                    self.launched += 1;
                    self.offered_at.insert(id.clone(), now);
                    actions.push(Action::Launch {
                        offer_ids: vec![o.id.clone()],
                        tasks: vec![TaskInfo {
                            name: id.to_string(),
                            task_id: id,
                            agent_id: o.agent_id.clone(),
                            resources: self.per_task.clone(),
                            command: CommandInfo::shell("true"),
                            executor_id: None,
                            kill_grace_ms: None,
                            container: None,
                            health_check: None,
                            executor: None,
                        }],
                    });
                }
                actions
            }
            SchedulerEvent::Update(s) => {
                if s.state == TaskState::TaskRunning
                    && let Some(t0) = self.offered_at.remove(&s.task_id)
                {
                    self.latencies_ms.push(now.since(t0).as_secs_f64() * 1e3);
                }
                if s.state.is_terminal() {
                    // Every terminal update is delivered at least once; a task ends once.
                    self.offered_at.remove(&s.task_id);
                    self.finished += 1;
                    if s.state != TaskState::TaskFinished && self.failure.is_none() {
                        self.failure = Some(format!(
                            "task {} ended {}: {}",
                            s.task_id,
                            s.state.name(),
                            s.message.as_deref().unwrap_or("")
                        ));
                    }
                    if self.finished >= self.total {
                        self.last_end = Some(now);
                        return vec![Action::Teardown];
                    }
                }
                vec![]
            }
            SchedulerEvent::Error(e) => {
                self.error = Some(e.clone());
                vec![]
            }
            _ => vec![],
        }
    }

    fn wants_offers(&self) -> bool {
        self.launched < self.total
    }
}

/// Runs the benchmark against the master at `master`.
pub async fn launch(master: String, tasks: usize, json: bool) -> Result<()> {
    if tasks == 0 {
        bail!("tasks: must be at least 1");
    }
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
    let mut cfg = DriverConfig::new(master.clone(), info);
    cfg.default_refuse = Duration::ZERO;
    cfg.launch_refuse = Some(Duration::ZERO);
    cfg.max_attempts = Some(5);
    let sched = LaunchBench {
        total: tasks,
        per_task: parse_resources("cpus:0.01;mem:1")?,
        launched: 0,
        finished: 0,
        offered_at: BTreeMap::new(),
        latencies_ms: Vec::with_capacity(tasks),
        failure: None,
        error: None,
        first_offer: None,
        last_end: None,
    };
    let mut driver = Driver::new(cfg, sched);
    // Generous: 1,000 trivial tasks take seconds; this only bounds a wedged cluster.
    let limit = Duration::from_secs(60 + tasks as u64 / 2);
    let run = tokio::time::timeout(limit, driver.run())
        .await
        .with_context(|| format!("benchmark did not finish within {limit:?}"))?;
    run.with_context(|| format!("framework driver against {master}"))?;
    let mut b = driver.into_scheduler();
    if let Some(e) = b.error {
        bail!("the master sent an error: {e}");
    }
    if let Some(f) = b.failure {
        bail!("{f}");
    }
    if b.finished < tasks {
        bail!(
            "the driver stopped after {} of {tasks} tasks ended",
            b.finished
        );
    }
    let wall = match (b.first_offer, b.last_end) {
        (Some(a), Some(z)) => z.since(a).as_secs_f64(),
        _ => 0.0,
    };
    b.latencies_ms.sort_by(f64::total_cmp);
    let l = &b.latencies_ms;
    let report = LaunchReport {
        tasks,
        batch: 1,
        p50_ms: percentile(l, 0.50),
        p90_ms: percentile(l, 0.90),
        p99_ms: percentile(l, 0.99),
        max_ms: l.last().copied().unwrap_or(0.0),
        wall_seconds: wall,
        tasks_per_second: if wall > 0.0 { tasks as f64 / wall } else { 0.0 },
    };
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "offer -> launch -> TASK_RUNNING via the v1 HTTP API on {master} over {} tasks (one per offer, {} measured): p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {:.0} tasks/s",
            report.tasks,
            l.len(),
            report.p50_ms,
            report.p90_ms,
            report.p99_ms,
            report.max_ms,
            report.tasks_per_second
        );
    }
    Ok(())
}
