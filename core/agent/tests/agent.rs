//! The real agent against a fake master: a tonic server on 127.0.0.1:0 that hands each
//! attached stream to the test. Real processes, so real time; every wait is bounded.

mod common;

use common::*;

use std::path::PathBuf;
use std::time::Duration;

use tessera_api::pb;
use tessera_api::pb::agent_message::Msg as AMsg;
use tessera_api::pb::master_message::Msg as MMsg;
use tessera_types::{Reason, TaskState};
use tokio::time::timeout;

/// The (only) run directory of `task`.
fn run_dir(agent: &AgentRun, task: &str) -> PathBuf {
    let runs = agent.work_dir.join(format!(
        "slaves/agent-1/frameworks/fw1/executors/{task}/runs"
    ));
    std::fs::read_dir(runs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
}

/// Waits (bounded) until a task process has created `path`.
async fn wait_for_file(path: &std::path::Path) {
    timeout(WAIT, async {
        while !path.exists() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} appears", path.display()));
}

#[tokio::test]
async fn registers_persists_id_and_reregisters_after_the_stream_drops() {
    let mut m = fake_master().await;
    let agent = start_agent(agent_config(&m.addr, temp_work_dir()));
    let (c, reg) = m.accept_registered("agent-1").await;
    assert_eq!(reg.agent_id, None, "a fresh work dir registers as new");
    assert_eq!(reg.info.unwrap().resources.len(), 2);

    // The id is persisted once Registered is processed: wait for a later round trip.
    c.run_task("t-probe", "true", None);
    let mut c = c;
    let _ = c.acked_status().await;
    assert_eq!(
        std::fs::read_to_string(agent.work_dir.join("agent_id")).unwrap(),
        "agent-1"
    );

    drop(c); // the master drops the stream
    let (mut c2, reg2) = m.accept_registered("agent-1").await;
    assert_eq!(reg2.agent_id.as_deref(), Some("agent-1"));
    assert!(
        reg2.tasks
            .iter()
            .any(|t| t.task.as_ref().unwrap().task_id == "t-probe")
    );
    // Updates not yet acknowledged on the old stream are resent on the new one.
    let s = c2.acked_status().await;
    assert_eq!(s.task_id, "t-probe");
    agent.stop().await;
}

#[tokio::test]
async fn restart_reregisters_with_the_persisted_id() {
    let mut m = fake_master().await;
    let dir = temp_work_dir();
    let agent = start_agent(agent_config(&m.addr, dir.clone()));
    let (c, _) = m.accept_registered("agent-7").await;
    c.send(MMsg::KillTask(pb::KillTask {
        framework_id: "fw1".into(),
        task_id: "nope".into(),
        grace_ms: None,
    }));
    let mut c = c;
    let (_, lost) = c.status().await;
    assert_eq!(state(&lost), TaskState::TaskLost);
    assert_eq!(lost.reason, Some(Reason::ReasonTaskUnknown.as_i32()));
    assert_eq!(lost.source, 1, "agent-generated");
    assert_eq!(lost.message.as_deref(), Some("task unknown to agent"));
    agent.shutdown.cancel();
    timeout(WAIT, agent.handle).await.unwrap().unwrap().unwrap();

    let agent = start_agent(agent_config(&m.addr, dir));
    let (_c, reg) = m.accept_registered("agent-7").await;
    assert_eq!(reg.agent_id.as_deref(), Some("agent-7"));
    agent.stop().await;
}

#[tokio::test]
async fn echo_runs_to_finished_with_sandbox_output_and_env() {
    let mut m = fake_master().await;
    let agent = start_agent(agent_config(&m.addr, temp_work_dir()));
    let (mut c, _) = m.accept_registered("agent-1").await;
    c.run_task(
        "t1",
        "echo hello; echo task=$MESOS_TASK_ID; echo sb=$MESOS_SANDBOX",
        None,
    );

    let s1 = c.acked_status().await;
    let s2 = c.acked_status().await;
    let s3 = c.acked_status().await;
    assert_eq!(
        [state(&s1), state(&s2), state(&s3)],
        [
            TaskState::TaskStarting,
            TaskState::TaskRunning,
            TaskState::TaskFinished
        ]
    );
    assert_eq!(s3.exit_code, Some(0));
    assert_eq!(s3.source, 2, "SOURCE_EXECUTOR");
    assert!(s3.timestamp > 1.6e9);
    let uuids: std::collections::BTreeSet<_> =
        [&s1, &s2, &s3].iter().map(|s| s.uuid.clone()).collect();
    assert_eq!(uuids.len(), 3, "every update has its own uuid");

    let run_dir = run_dir(&agent, "t1");
    let out = std::fs::read_to_string(run_dir.join("stdout")).unwrap();
    assert!(out.contains("hello"), "{out}");
    assert!(out.contains("task=t1"), "{out}");
    assert!(out.contains(&format!("sb={}", run_dir.display())), "{out}");
    agent.stop().await;
}

#[tokio::test]
async fn non_zero_exit_fails_with_the_code_and_invalid_task_errors() {
    let mut m = fake_master().await;
    let agent = start_agent(agent_config(&m.addr, temp_work_dir()));
    let (mut c, _) = m.accept_registered("agent-1").await;
    c.run_task("t3", "exit 3", None);
    let mut last = c.acked_status().await;
    while !state(&last).is_terminal() {
        last = c.acked_status().await;
    }
    assert_eq!(state(&last), TaskState::TaskFailed);
    assert_eq!(last.exit_code, Some(3));
    assert_eq!(
        last.message.as_deref(),
        Some("Command exited with status 3")
    );

    // Invalid: no resources.
    c.send(MMsg::RunTask(pb::RunTask {
        framework_id: "fw1".into(),
        task: Some(pb::TaskInfo {
            task_id: "bad".into(),
            agent_id: "agent-1".into(),
            command: Some(pb::CommandInfo {
                value: "true".into(),
                shell: true,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }));
    let bad = c.acked_status().await;
    assert_eq!(bad.task_id, "bad");
    assert_eq!(state(&bad), TaskState::TaskError);
    assert!(bad.message.unwrap().contains("resources"));
    agent.stop().await;
}

#[tokio::test]
async fn kill_escalates_to_sigkill_after_the_grace() {
    let mut m = fake_master().await;
    let agent = start_agent(agent_config(&m.addr, temp_work_dir()));
    let (mut c, _) = m.accept_registered("agent-1").await;
    c.run_task("stubborn", "trap '' TERM; touch ready; sleep 60", None);
    assert_eq!(state(&c.acked_status().await), TaskState::TaskStarting);
    assert_eq!(state(&c.acked_status().await), TaskState::TaskRunning);
    // Kill only once the shell has installed its trap.
    wait_for_file(&run_dir(&agent, "stubborn").join("ready")).await;
    let started = std::time::Instant::now();
    c.send(MMsg::KillTask(pb::KillTask {
        framework_id: "fw1".into(),
        task_id: "stubborn".into(),
        grace_ms: Some(200),
    }));
    let killed = c.acked_status().await;
    assert_eq!(state(&killed), TaskState::TaskKilled);
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "TERM was ignored, KILL after grace"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    agent.stop().await;
}

#[tokio::test]
async fn frameworks_with_task_killing_state_hear_task_killing_first() {
    let mut m = fake_master().await;
    let agent = start_agent(agent_config(&m.addr, temp_work_dir()));
    let (mut c, _) = m.accept_registered("agent-1").await;
    c.run_task_spec(
        "k",
        "touch ready; sleep 60",
        "cpus:0.1;mem:32",
        Some(200),
        true,
    );
    assert_eq!(state(&c.acked_status().await), TaskState::TaskStarting);
    assert_eq!(state(&c.acked_status().await), TaskState::TaskRunning);
    wait_for_file(&run_dir(&agent, "k").join("ready")).await;
    c.send(MMsg::KillTask(pb::KillTask {
        framework_id: "fw1".into(),
        task_id: "k".into(),
        grace_ms: None,
    }));
    assert_eq!(state(&c.acked_status().await), TaskState::TaskKilling);
    assert_eq!(state(&c.acked_status().await), TaskState::TaskKilled);
    agent.stop().await;
}

#[tokio::test]
async fn unacknowledged_update_is_resent_and_blocks_the_next() {
    let mut m = fake_master().await;
    let mut cfg = agent_config(&m.addr, temp_work_dir());
    cfg.status_retry_base = Duration::from_millis(100);
    cfg.status_retry_cap = Duration::from_millis(200);
    let agent = start_agent(cfg);
    let (mut c, _) = m.accept_registered("agent-1").await;
    c.run_task("t1", "true", None);

    let (fw, first) = c.status().await;
    assert_eq!(state(&first), TaskState::TaskStarting);
    // Not acknowledged: the same update comes again, and nothing else for this task does.
    for _ in 0..2 {
        let (_, again) = c.status().await;
        assert_eq!(again.uuid, first.uuid, "the head is resent, RUNNING waits");
    }
    c.ack(&fw, &first);
    // A stale ack (same uuid again) is ignored; the next update follows.
    c.ack(&fw, &first);
    let running = loop {
        let (_, s) = c.status().await;
        if s.uuid != first.uuid {
            break s;
        }
    };
    assert_eq!(state(&running), TaskState::TaskRunning);
    c.ack(&fw, &running);
    let mut fin = c.acked_status().await;
    while fin.uuid == running.uuid {
        fin = c.acked_status().await;
    }
    assert_eq!(state(&fin), TaskState::TaskFinished);
    agent.stop().await;
}

#[tokio::test]
async fn shutdown_kills_running_tasks_and_reports_them() {
    let mut m = fake_master().await;
    // The task's `$$` is a host pid only outside a pid namespace (`tests/namespaces.rs`
    // covers kills inside one).
    let mut config = agent_config(&m.addr, temp_work_dir());
    config.namespaces = tessera_agent::Namespaces::None;
    let agent = start_agent(config);
    let (mut c, _) = m.accept_registered("agent-1").await;
    c.run_task(
        "long",
        "echo $$ > pid.tmp; mv pid.tmp pid; exec sleep 60",
        None,
    );
    assert_eq!(state(&c.acked_status().await), TaskState::TaskStarting);
    assert_eq!(state(&c.acked_status().await), TaskState::TaskRunning);
    let pid_file = run_dir(&agent, "long").join("pid");
    wait_for_file(&pid_file).await;
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    agent.shutdown.cancel();
    let killed = c.acked_status().await;
    assert_eq!(state(&killed), TaskState::TaskKilled);
    timeout(WAIT, agent.handle).await.unwrap().unwrap().unwrap();
    // The process is gone (reaped, so kill(pid, 0) fails).
    let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
    assert!(!alive, "task process {pid} survived shutdown");
    let _ = std::fs::remove_dir_all(&agent.work_dir);
}

#[tokio::test]
async fn an_agent_with_a_domain_registers_in_it() {
    let mut m = fake_master().await;
    let mut cfg = agent_config(&m.addr, temp_work_dir());
    cfg.domain = Some(("eu-west".into(), "zone-b".into()));
    let agent = start_agent(cfg);
    let mut c = m.accept().await;
    match c.next().await {
        AMsg::RegisterInDomain(r) => {
            let d = r.domain.expect("the domain is sent");
            assert_eq!((d.region.as_str(), d.zone.as_str()), ("eu-west", "zone-b"));
            let info = r
                .register
                .and_then(|r| r.info)
                .expect("the registration inside");
            assert!(!info.resources.is_empty());
        }
        other => panic!("expected RegisterInDomain, got {other:?}"),
    }
    agent.stop().await;
}
