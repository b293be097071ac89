//! hello-framework: the smallest useful Tessera framework, built on the Framework SDK.
//!
//! Connects to a master (`--master HOST:PORT`, default `127.0.0.1:5050`), launches `--tasks N`
//! (default 3) tasks running `echo hello from $MESOS_TASK_ID`, waits until every one ended,
//! tears the framework down and exits 0 if they all finished (1 otherwise).
//!
//! ```sh
//! cargo run -p tessera -- up --listen 127.0.0.1:5050 &
//! cargo run -p hello-framework -- --master 127.0.0.1:5050 --tasks 3
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use tessera_framework::matching::{Demand, pack};
use tessera_framework::{Action, Driver, DriverConfig, Scheduler, SchedulerEvent, Time};
use tessera_types::parse::parse_resources;
use tessera_types::{CommandInfo, FrameworkInfo, Role, TaskId, TaskInfo, TaskState};

struct Hello {
    pending: Vec<TaskId>,
    ended: BTreeMap<TaskId, TaskState>,
    total: usize,
    demand: Demand,
}

impl Scheduler for Hello {
    fn on_event(&mut self, ev: &SchedulerEvent, _now: Time) -> Vec<Action> {
        match ev {
            SchedulerEvent::Subscribed { framework_id } => {
                println!("subscribed as framework {framework_id}");
                vec![]
            }
            SchedulerEvent::Offers(offers) => {
                let mut actions = Vec::new();
                for o in offers {
                    if self.pending.is_empty() {
                        break; // the driver declines the rest
                    }
                    let demands = vec![self.demand.clone(); self.pending.len()];
                    let (placed, _rest) = pack(&o.resources, &demands, self.pending.len());
                    if placed.is_empty() {
                        continue;
                    }
                    let tasks: Vec<TaskInfo> = placed
                        .into_iter()
                        .map(|p| {
                            let id = self.pending.remove(0);
                            println!("launching {id} on {} ({})", o.hostname, p.resources);
                            TaskInfo {
                                name: format!("hello {id}"),
                                task_id: id,
                                agent_id: o.agent_id.clone(),
                                resources: p.resources,
                                command: CommandInfo::shell("echo hello from $MESOS_TASK_ID"),
                                executor_id: None,
                                kill_grace_ms: None,
                                container: None,
                                health_check: None,
                                executor: None,
                            }
                        })
                        .collect();
                    actions.push(Action::Launch {
                        offer_ids: vec![o.id.clone()],
                        tasks,
                    });
                }
                actions
            }
            SchedulerEvent::Update(s) => {
                println!(
                    "{} {}{}",
                    s.task_id,
                    s.state.name(),
                    s.message
                        .as_deref()
                        .map(|m| format!(" ({m})"))
                        .unwrap_or_default()
                );
                if s.state.is_terminal() && !self.pending.contains(&s.task_id) {
                    self.ended.insert(s.task_id.clone(), s.state);
                }
                if self.ended.len() == self.total {
                    println!("all {} tasks ended; tearing down", self.total);
                    return vec![Action::Teardown];
                }
                vec![]
            }
            SchedulerEvent::Disconnected => {
                println!("disconnected; re-subscribing");
                vec![]
            }
            _ => vec![],
        }
    }

    fn wants_offers(&self) -> bool {
        !self.pending.is_empty()
    }
}

fn usage() -> ! {
    eprintln!("usage: hello-framework [--master HOST:PORT] [--tasks N]");
    std::process::exit(2)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TESSERA_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut master = "127.0.0.1:5050".to_string();
    let mut n = 3usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--master" => master = args.next().unwrap_or_else(|| usage()),
            "--tasks" => {
                n = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage())
            }
            _ => usage(),
        }
    }
    let run_id = std::process::id();
    let sched = Hello {
        pending: (0..n)
            .map(|i| TaskId::new(format!("hello-{run_id}-{i}")).expect("valid task id"))
            .collect(),
        ended: BTreeMap::new(),
        total: n,
        demand: Demand {
            resources: parse_resources("cpus:0.1;mem:32").expect("valid resources"),
            ports: 0,
        },
    };
    let info = FrameworkInfo {
        id: None,
        name: "hello-framework".into(),
        user: std::env::var("USER").unwrap_or_else(|_| "root".into()),
        roles: vec![Role::new("*").expect("the default role")],
        capabilities: vec![],
        failover_timeout_secs: 0.0,
        principal: None,
        hostname: None,
    };
    let mut cfg = DriverConfig::new(master.clone(), info);
    cfg.max_attempts = Some(10);
    cfg.default_refuse = Duration::from_secs(1);
    println!("connecting to {master}");
    let mut driver = Driver::new(cfg, sched);
    if let Err(e) = driver.run().await {
        eprintln!("hello-framework: {e}");
        std::process::exit(1);
    }
    let s = driver.into_scheduler();
    let ok = s.total == 0 || s.ended.values().all(|st| *st == TaskState::TaskFinished);
    println!("done: {} tasks, all finished: {ok}", s.total);
    std::process::exit(if ok { 0 } else { 1 });
}
