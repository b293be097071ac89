//! End to end over real gRPC on 127.0.0.1: a master, a real agent running real processes,
//! and a framework driving them through the master's handle. Real time, bounded waits.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tessera_agent::AgentConfig;
use tessera_master::{Event, MasterConfig, Operation, Subscription};
use tessera_types::parse::parse_resources;
use tessera_types::{
    CommandInfo, Filters, FrameworkInfo, Resources, Role, TaskId, TaskInfo, TaskState, TaskStatus,
};
use tokio_util::sync::CancellationToken;

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tessera-e2e-{tag}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

async fn next_event(sub: &mut Subscription) -> Event {
    tokio::time::timeout(Duration::from_secs(20), sub.events.recv())
        .await
        .expect("no event within 20 s")
        .expect("event stream closed")
}

/// Waits for the task's next update and acknowledges it, as a framework must. Offers that
/// arrive meanwhile are added to `offered`.
async fn next_update(
    h: &tessera_master::MasterHandle,
    sub: &mut Subscription,
    offered: &mut Resources,
) -> TaskStatus {
    loop {
        let event = next_event(sub).await;
        if let Event::Offers(o) = &event {
            for offer in o {
                offered.add_assign(&offer.resources).unwrap();
            }
        }
        if let Event::Update(s) = event {
            if let (Some(uuid), Some(agent)) = (&s.uuid, &s.agent_id) {
                h.acknowledge(
                    sub.framework_id.clone(),
                    agent.clone(),
                    s.task_id.clone(),
                    uuid.clone(),
                )
                .await
                .unwrap();
            }
            return s;
        }
    }
}

fn find_files(root: &Path, name: &str, out: &mut Vec<PathBuf>) {
    let Ok(dir) = std::fs::read_dir(root) else {
        return;
    };
    for e in dir.flatten() {
        let p = e.path();
        if p.is_dir() {
            find_files(&p, name, out);
        } else if p.file_name().is_some_and(|n| n == name) {
            out.push(p);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_runs_on_a_real_agent_and_its_output_lands_in_the_sandbox() {
    let stop = CancellationToken::new();
    let master_dir = temp_dir("master");
    let mut mc = MasterConfig::new("127.0.0.1:0".parse().unwrap(), master_dir.clone());
    mc.allocator.interval = Duration::from_millis(100);
    let master = tessera_master::start(mc, stop.clone()).await.unwrap();
    let h = master.handle.clone();

    let agent_dir = temp_dir("agent");
    let mut ac = AgentConfig::new(
        master.addr.to_string(),
        agent_dir.clone(),
        parse_resources("cpus:2;mem:1024;disk:1024").unwrap(),
    );
    ac.hostname = "e2e-agent".into();
    let agent_stop = CancellationToken::new();
    let agent = tokio::spawn(tessera_agent::run(ac, agent_stop.clone()));

    let info = FrameworkInfo {
        id: None,
        name: "e2e".into(),
        user: "root".into(),
        roles: vec![Role::new("eng").unwrap()],
        capabilities: vec![],
        failover_timeout_secs: 0.0,
        principal: None,
        hostname: None,
    };
    let mut sub = h.subscribe(info).await.unwrap();
    let offers = loop {
        if let Event::Offers(o) = next_event(&mut sub).await {
            break o;
        }
    };
    let o = &offers[0];
    assert_eq!(o.hostname, "e2e-agent");
    let ok = TaskInfo {
        name: "hello".into(),
        task_id: TaskId::new("hello").unwrap(),
        agent_id: o.agent_id.clone(),
        resources: parse_resources("cpus:0.5;mem:64").unwrap(),
        command: CommandInfo::shell("echo hello from $MESOS_TASK_ID"),
        executor_id: None,
        kill_grace_ms: None,
        container: None,
        health_check: None,
        executor: None,
    };
    let mut failing = ok.clone();
    failing.task_id = TaskId::new("fails").unwrap();
    failing.command = CommandInfo::shell("exit 3");
    h.accept(
        sub.framework_id.clone(),
        vec![o.id.clone()],
        vec![Operation::Launch(vec![ok, failing])],
        Filters::default(),
    )
    .await
    .unwrap();

    let mut offered = Resources::default();
    let mut seen: std::collections::BTreeMap<String, Vec<TaskState>> = Default::default();
    let mut exit_codes = std::collections::BTreeMap::new();
    while seen
        .values()
        .filter(|v| v.last().is_some_and(|s| s.is_terminal()))
        .count()
        < 2
    {
        let s = next_update(&h, &mut sub, &mut offered).await;
        if let Some(c) = s.exit_code {
            exit_codes.insert(s.task_id.to_string(), c);
        }
        seen.entry(s.task_id.to_string()).or_default().push(s.state);
    }
    assert_eq!(
        seen["hello"].last(),
        Some(&TaskState::TaskFinished),
        "{seen:?}"
    );
    assert!(seen["hello"].contains(&TaskState::TaskRunning), "{seen:?}");
    assert_eq!(
        seen["fails"].last(),
        Some(&TaskState::TaskFailed),
        "{seen:?}"
    );
    assert_eq!(exit_codes.get("fails"), Some(&3));

    let mut files = Vec::new();
    find_files(&agent_dir.join("slaves"), "stdout", &mut files);
    assert_eq!(files.len(), 2, "one sandbox per task: {files:?}");
    let mut found = false;
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        found |= text.contains("hello from hello");
    }
    assert!(found, "the task's stdout is in its sandbox");

    // Finished tasks give their resources back: the offers that follow add up to the whole
    // agent again. Recovered resources may arrive in more than one offer (each task's share
    // is recovered when its terminal update lands), so sum them rather than expect one.
    let whole = parse_resources("cpus:2;mem:1024;disk:1024").unwrap();
    while offered != whole {
        if let Event::Offers(o) = next_event(&mut sub).await {
            for offer in o {
                offered.add_assign(&offer.resources).unwrap();
            }
        }
        assert!(
            whole.contains(&offered),
            "offers exceed the agent: {offered:?}"
        );
    }

    agent_stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), agent)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    stop.cancel();
    let _ = std::fs::remove_dir_all(master_dir);
    let _ = std::fs::remove_dir_all(agent_dir);
}
