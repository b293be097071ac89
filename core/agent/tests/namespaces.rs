//! pid and mount namespaces for process tasks: the agent against a fake master (the harness
//! of `tests/agent.rs`), real processes and real namespaces. Each test prints `SKIP: …` and
//! returns when this machine cannot give tasks namespaces (not root, no util-linux, or a
//! kernel or container runtime that refuses).

mod common;

use common::*;

use std::time::Duration;

use tessera_agent::Namespaces;
use tessera_api::pb;
use tessera_api::pb::master_message::Msg as MMsg;
use tessera_types::TaskState;

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn namespaced_agent(addr: &str) -> AgentRun {
    let mut c = agent_config(addr, temp_work_dir());
    c.namespaces = Namespaces::Auto;
    start_agent(c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_sees_only_its_own_pid_namespace() {
    if !namespaces_or_skip("own pid namespace") {
        return;
    }
    let mut m = fake_master().await;
    let agent = namespaced_agent(&m.addr);
    let (mut c, _) = m.accept_registered("agent-1").await;
    c.run_task(
        "ps",
        "echo $$ > pid; ls /proc | grep -c '^[0-9]' > procs; tr '\\0' ' ' < /proc/1/cmdline > init",
        None,
    );
    let s = terminal_of(&mut c, "ps").await;
    assert_eq!(state(&s), TaskState::TaskFinished, "{s:?}");

    let sb = sandbox_of(&agent.work_dir, "ps");
    let pid: u32 = read(&sb.join("pid")).trim().parse().unwrap();
    let procs: u32 = read(&sb.join("procs")).trim().parse().unwrap();
    let init = read(&sb.join("init"));
    eprintln!("in its namespace the task is pid {pid} and sees {procs} processes");
    assert!(pid < 10, "a low pid in its own namespace, got {pid}");
    assert!(
        procs < 10,
        "/proc shows only the namespace: {procs} processes"
    );
    assert!(
        init.contains("tessera-ns-init"),
        "pid 1 is the task's init, not the machine's: {init}"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tasks_have_their_own_tmp_and_the_host_tmp_is_untouched() {
    if !namespaces_or_skip("private /tmp") {
        return;
    }
    let mut m = fake_master().await;
    let agent = namespaced_agent(&m.addr);
    let (mut c, _) = m.accept_registered("agent-1").await;
    let name = format!("tessera-ns-test-{}", uuid::Uuid::new_v4());
    // Both write the same name, then read it back after the other has written too.
    let cmd = format!(
        "echo $MESOS_TASK_ID > /tmp/{name}; sleep 1; cat /tmp/{name} > seen; \
         test -d \"$MESOS_SANDBOX\" && pwd > where"
    );
    c.run_task("a", &cmd, None);
    c.run_task("b", &cmd, None);
    let mut done = Vec::new();
    while done.len() < 2 {
        let s = c.acked_status().await;
        if state(&s).is_terminal() {
            assert_eq!(state(&s), TaskState::TaskFinished, "{s:?}");
            done.push(s.task_id);
        }
    }
    for task in ["a", "b"] {
        let sb = sandbox_of(&agent.work_dir, task);
        assert_eq!(
            read(&sb.join("seen")).trim(),
            task,
            "{task} reads its own file"
        );
        assert_eq!(read(&sb.join("tmp").join(&name)).trim(), task);
        assert_eq!(
            read(&sb.join("where")).trim(),
            std::fs::canonicalize(&sb).unwrap().display().to_string(),
            "{task} finds its sandbox at its own path"
        );
    }
    assert!(
        !std::path::Path::new("/tmp").join(&name).exists(),
        "the host's /tmp did not get the file"
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_terms_the_task_and_empties_its_namespace() {
    if !namespaces_or_skip("kill in a pid namespace") {
        return;
    }
    let mut m = fake_master().await;
    let agent = namespaced_agent(&m.addr);
    let (mut c, _) = m.accept_registered("agent-1").await;
    // A child that handles TERM, and one that left the process group (TERM misses it; the
    // end of the namespace does not).
    c.run_task(
        "k",
        "sh -c 'trap \"echo term > child_term; exit 0\" TERM; echo ready > child_ready; \
         while :; do sleep 0.1; done' & \
         c=$!; trap 'echo term > got_term; wait $c; exit 0' TERM; \
         setsid sleep 1000 & echo ready > ready; wait",
        Some(10_000),
    );
    running_of(&mut c, "k").await;
    let sb = sandbox_of(&agent.work_dir, "k");
    tokio::time::timeout(WAIT, async {
        // Both shells' TERM traps are set once both files exist.
        while !sb.join("ready").exists() || !sb.join("child_ready").exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the task starts");
    let ns = pid_ns_for_children(supervisor_pid(&agent.work_dir, "k"));
    let members = pids_in_ns(&ns);
    assert!(members.len() >= 4, "init, task, child, sleep: {members:?}");

    let started = std::time::Instant::now();
    c.send(MMsg::KillTask(pb::KillTask {
        framework_id: "fw1".into(),
        task_id: "k".into(),
        grace_ms: None,
    }));
    let s = terminal_of(&mut c, "k").await;
    assert_eq!(state(&s), TaskState::TaskKilled, "{s:?}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "SIGTERM ended it well within the 10 s grace"
    );
    assert_eq!(read(&sb.join("got_term")).trim(), "term");
    assert_eq!(read(&sb.join("child_term")).trim(), "term");
    tokio::time::timeout(WAIT, async {
        while !pids_in_ns(&ns).is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("processes left in the namespace: {:?}", pids_in_ns(&ns)));
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_health_check_runs_in_the_tasks_namespaces() {
    if !namespaces_or_skip("health check in the task's namespaces") {
        return;
    }
    let mut m = fake_master().await;
    let agent = namespaced_agent(&m.addr);
    let (mut c, _) = m.accept_registered("agent-1").await;
    // The marker is in the task's private /tmp only: checked from the host it is missing.
    let marker = format!("/tmp/ready-{}", uuid::Uuid::new_v4());
    c.run_task_checked(
        "checked",
        &format!("touch {marker}; sleep 600"),
        pb::HealthCheck {
            probe: Some(pb::health_check::Probe::Command(pb::CommandInfo {
                value: format!("test -f {marker}"),
                shell: true,
                ..Default::default()
            })),
            delay_ms: 0,
            interval_ms: 200,
            timeout_ms: 5_000,
            grace_period_ms: 10_000,
            consecutive_failures: 3,
        },
    );
    let healthy = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let s = c.acked_status().await;
            assert!(
                !state(&s).is_terminal(),
                "ended before a health report: {s:?}"
            );
            if s.healthy.is_some() {
                return s.healthy;
            }
        }
    })
    .await
    .expect("a health report");
    assert_eq!(healthy, Some(true));
    assert!(
        !std::path::Path::new(&marker).exists(),
        "the marker must not be on the host's /tmp"
    );
    c.send(MMsg::KillTask(pb::KillTask {
        framework_id: "fw1".into(),
        task_id: "checked".into(),
        grace_ms: Some(500),
    }));
    let s = terminal_of(&mut c, "checked").await;
    assert_eq!(state(&s), TaskState::TaskKilled, "{s:?}");
    agent.stop().await;
}
