//! Real resource isolation: the agent with cgroups against a fake master (the harness of
//! `tests/agent.rs`). Real processes and real cgroups; each test uses its own cgroups root
//! nested under the test process's own cgroup in every hierarchy. Skipped, with a printed
//! `SKIPPED:` line, only when not root or cgroups are unusable.

mod common;

use common::*;

use std::path::PathBuf;
use std::time::Duration;

use tessera_agent::cgroups::Cgroups;
use tessera_agent::{AgentConfig, CgroupLauncher, Isolation, run};
use tessera_api::pb;
use tessera_api::pb::master_message::Msg as MMsg;
use tessera_types::parse::parse_resources;
use tessera_types::{Reason, TaskState};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

struct Running {
    work_dir: PathBuf,
    shutdown: CancellationToken,
    handle: JoinHandle<Result<(), tessera_agent::AgentError>>,
    cgroups: Cgroups,
}

impl Running {
    async fn stop(self) {
        self.shutdown.cancel();
        timeout(WAIT, self.handle)
            .await
            .expect("agent stops")
            .unwrap()
            .unwrap();
        let _ = std::fs::remove_dir_all(&self.work_dir);
        for d in self.cgroups.root_dirs() {
            let _ = std::fs::remove_dir(&d);
        }
    }
}

/// A unique cgroups root for this test, or `None` (with a printed reason) when cgroups
/// cannot be used here.
fn cgroups_or_skip(test: &str) -> Option<(String, Cgroups)> {
    let root = format!("tessera-test-{}", uuid::Uuid::new_v4());
    match CgroupLauncher::probe(&root) {
        Ok(l) => Some((root, l.cgroups().clone())),
        Err(e) => {
            eprintln!("SKIPPED: {test}: cgroups isolation unusable here: {e}");
            None
        }
    }
}

fn start(addr: &str, root: &str, cgroups: Cgroups) -> Running {
    let work_dir =
        std::env::temp_dir().join(format!("tessera-isolation-test-{}", uuid::Uuid::new_v4()));
    let mut c = AgentConfig::new(addr, &work_dir, parse_resources("cpus:2;mem:4096").unwrap());
    c.reconnect_base = Duration::from_millis(20);
    c.reconnect_cap = Duration::from_millis(200);
    c.default_kill_grace = Duration::from_millis(500);
    c.isolation = Isolation::Cgroups;
    c.cgroups_root = root.to_string();
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(run(c, shutdown.clone()));
    Running {
        work_dir,
        shutdown,
        handle,
        cgroups,
    }
}

/// Acknowledged statuses of one task until a terminal one, which is returned.
async fn terminal(c: &mut Conn, task: &str) -> pb::TaskStatus {
    loop {
        let s = c.acked_status().await;
        assert_eq!(s.task_id, task, "{s:?}");
        if state(&s).is_terminal() {
            return s;
        }
    }
}

/// Acknowledged statuses until TASK_RUNNING.
async fn running(c: &mut Conn, task: &str) {
    loop {
        let s = c.acked_status().await;
        assert_eq!(s.task_id, task, "{s:?}");
        match state(&s) {
            TaskState::TaskRunning => return,
            TaskState::TaskStarting => continue,
            other => panic!("expected TASK_RUNNING, got {other:?}: {s:?}"),
        }
    }
}

/// The only container under this test's root.
async fn only_container(cg: &Cgroups) -> tessera_agent::cgroups::ContainerCgroup {
    timeout(WAIT, async {
        loop {
            if let [id] = cg.container_ids().as_slice() {
                return cg.container(id);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "one container cgroup appears under {:?}: {:?}",
            cg.root_dirs(),
            cg.container_ids()
        )
    })
}

fn python3() -> Option<&'static str> {
    ["/usr/bin/python3", "/usr/local/bin/python3"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_hog_is_oom_killed_with_the_memory_reason_and_a_small_task_finishes() {
    let Some((root, cg)) = cgroups_or_skip("memory limit") else {
        return;
    };
    let Some(py) = python3() else {
        eprintln!("SKIPPED: memory limit: python3 not found");
        return;
    };
    let mut m = fake_master().await;
    let agent = start(&m.addr, &root, cg.clone());
    let (mut c, _) = m.accept_registered("agent-1").await;

    c.run_task_spec(
        "hog",
        &format!("{py} -c 'b=[bytearray(1<<20) for _ in range(400)]'"),
        "cpus:0.5;mem:64",
        None,
        false,
    );
    let s = terminal(&mut c, "hog").await;
    assert_eq!(state(&s), TaskState::TaskFailed, "{s:?}");
    assert_eq!(
        s.reason,
        Some(Reason::ReasonContainerLimitationMemory as i32),
        "{s:?}"
    );

    c.run_task_spec(
        "small",
        &format!("{py} -c 'b=[bytearray(1<<20) for _ in range(16)]'"),
        "cpus:0.5;mem:64",
        None,
        false,
    );
    let s = terminal(&mut c, "small").await;
    assert_eq!(state(&s), TaskState::TaskFinished, "{s:?}");
    assert!(cg.container_ids().is_empty(), "cgroups removed after exit");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_loop_limited_to_half_a_cpu_uses_about_half_a_cpu() {
    let Some((root, cg)) = cgroups_or_skip("cpu quota") else {
        return;
    };
    let mut m = fake_master().await;
    let agent = start(&m.addr, &root, cg.clone());
    let (mut c, _) = m.accept_registered("agent-1").await;

    c.run_task_spec(
        "spin",
        "while :; do :; done",
        "cpus:0.5;mem:64",
        None,
        false,
    );
    running(&mut c, "spin").await;
    let container = only_container(&cg).await;
    // Let it settle, then measure over ~2 s of wall time.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (u0, t0) = (container.cpu_usage_ns().unwrap(), std::time::Instant::now());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (u1, t1) = (container.cpu_usage_ns().unwrap(), std::time::Instant::now());
    let cpus = (u1 - u0) as f64 / (t1 - t0).as_nanos() as f64;
    eprintln!("busy loop at cpus:0.5 used {cpus:.3} CPUs");
    assert!((0.3..=0.7).contains(&cpus), "used {cpus:.3} CPUs");

    c.send(MMsg::KillTask(pb::KillTask {
        framework_id: "fw1".into(),
        task_id: "spin".into(),
        grace_ms: Some(100),
    }));
    let s = terminal(&mut c, "spin").await;
    assert_eq!(state(&s), TaskState::TaskKilled, "{s:?}");
    agent.stop().await;
}

fn alive(pid: i32) -> bool {
    // Gone, or a zombie waiting for a reaper that is not ours: no longer running.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(stat) => !matches!(
            stat.rsplit_once(')')
                .and_then(|(_, r)| r.trim_start().chars().next()),
            Some('Z') | Some('X')
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_task_kills_its_escaped_children_and_removes_the_cgroups() {
    let Some((root, cg)) = cgroups_or_skip("kill whole cgroup") else {
        return;
    };
    let mut m = fake_master().await;
    let agent = start(&m.addr, &root, cg.clone());
    let (mut c, _) = m.accept_registered("agent-1").await;

    // Background children, one in its own session (outside the task's process group).
    c.run_task_spec(
        "forker",
        "sleep 1000 & setsid sleep 1000 & (sleep 1000 &); sleep 1000",
        "cpus:0.2;mem:64",
        None,
        false,
    );
    running(&mut c, "forker").await;
    let container = only_container(&cg).await;
    let pids = timeout(WAIT, async {
        loop {
            let pids = container.procs().unwrap();
            if pids.len() >= 5 {
                return pids;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the task and its four children are in the cgroup");

    c.send(MMsg::KillTask(pb::KillTask {
        framework_id: "fw1".into(),
        task_id: "forker".into(),
        grace_ms: Some(100),
    }));
    let s = terminal(&mut c, "forker").await;
    assert_eq!(state(&s), TaskState::TaskKilled, "{s:?}");
    let left: Vec<i32> = pids.iter().copied().filter(|p| alive(*p)).collect();
    assert!(left.is_empty(), "processes left behind: {left:?}");
    for d in container.dirs() {
        assert!(!d.exists(), "{} removed", d.display());
    }
    agent.stop().await;
}
