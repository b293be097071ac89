//! Task groups run by the agent's default executor, with real processes (and real cgroups
//! where the agent can use them), against the fake master of `tests/common`: a group whose
//! tasks all finish ends normally; a task exiting non-zero fails and has the rest killed
//! promptly, with a message naming it; killing one task kills the group. The tasks share
//! one executor sandbox (`tasks/<task_id>` each) and, under cgroups, one executor cgroup
//! limited to the executor's and the tasks' resources.

mod common;

use common::*;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tessera_agent::cgroups::Cgroups;
use tessera_api::pb;
use tessera_api::pb::master_message::Msg as MMsg;
use tessera_types::{Reason, TaskState};

/// The (only) run directory of executor `exec` under the work dir `dir`.
fn executor_sandbox(dir: &Path, exec: &str) -> PathBuf {
    sandbox_of(dir, exec)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_whose_tasks_all_finish_ends_normally_in_one_sandbox() {
    let mut m = fake_master().await;
    let agent = start_agent(agent_config(&m.addr, temp_work_dir()));
    let (mut c, _) = m.accept_registered("agent-1").await;

    let cmd = "echo \"$MESOS_TASK_ID $MESOS_EXECUTOR_ID $MESOS_SANDBOX\" > out; sleep 0.2";
    c.send(MMsg::RunTaskGroup(group(
        "e1",
        &[("a", cmd), ("b", cmd), ("c", cmd)],
    )));
    let seen = until_all_terminal(&mut c, &["a", "b", "c"]).await;
    let exec = executor_sandbox(&agent.work_dir, "e1");
    for t in ["a", "b", "c"] {
        let states: Vec<TaskState> = seen[t].iter().map(state).collect();
        assert_eq!(
            states,
            [
                TaskState::TaskStarting,
                TaskState::TaskRunning,
                TaskState::TaskFinished
            ],
            "{t}: {:?}",
            seen[t]
        );
        // Each task has its own sandbox under the executor's `tasks/`.
        let sandbox = exec.join("tasks").join(t);
        let out = std::fs::read_to_string(sandbox.join("out")).unwrap();
        assert_eq!(out.trim(), format!("{t} e1 {}", sandbox.display()));
    }
    // One executor run for the whole group.
    let runs = agent
        .work_dir
        .join("slaves/agent-1/frameworks/fw1/executors/e1/runs");
    assert_eq!(std::fs::read_dir(&runs).unwrap().count(), 1);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_task_fails_and_the_rest_of_its_group_is_killed_promptly() {
    let mut m = fake_master().await;
    let agent = start_agent(agent_config(&m.addr, temp_work_dir()));
    let (mut c, _) = m.accept_registered("agent-1").await;

    let started = Instant::now();
    c.send(MMsg::RunTaskGroup(group(
        "e1",
        &[
            ("a", "sleep 60"),
            ("b", "sleep 0.5; exit 3"),
            ("c", "sleep 60"),
        ],
    )));
    let seen = until_all_terminal(&mut c, &["a", "b", "c"]).await;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the group ended promptly: {:?}",
        started.elapsed()
    );
    let b = last(&seen, "b");
    assert_eq!(state(&b), TaskState::TaskFailed, "{b:?}");
    assert_eq!(b.exit_code, Some(3));
    assert_eq!(b.message.as_deref(), Some("Command exited with status 3"));
    for t in ["a", "c"] {
        let s = last(&seen, t);
        assert_eq!(state(&s), TaskState::TaskKilled, "{s:?}");
        let msg = s.message.clone().unwrap_or_default();
        assert!(
            msg.contains("task 'b'") && msg.contains("TASK_FAILED"),
            "{t}: {msg}"
        );
    }
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_task_of_a_group_kills_the_group() {
    let mut m = fake_master().await;
    let agent = start_agent(agent_config(&m.addr, temp_work_dir()));
    let (mut c, _) = m.accept_registered("agent-1").await;

    c.send(MMsg::RunTaskGroup(group(
        "e1",
        &[("a", "sleep 60"), ("b", "sleep 60")],
    )));
    until_all_running(&mut c, &["a", "b"]).await;
    let started = Instant::now();
    c.send(MMsg::KillTask(pb::KillTask {
        framework_id: "fw1".into(),
        task_id: "a".into(),
        grace_ms: None,
    }));
    let seen = until_all_terminal(&mut c, &["a", "b"]).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    let a = last(&seen, "a");
    assert_eq!(state(&a), TaskState::TaskKilled, "{a:?}");
    let b = last(&seen, "b");
    assert_eq!(state(&b), TaskState::TaskKilled, "{b:?}");
    let msg = b.message.unwrap_or_default();
    assert!(msg.contains("task 'a'") && msg.contains("killed"), "{msg}");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_on_one_executor_fail_on_their_own_and_a_bad_group_is_refused() {
    let mut m = fake_master().await;
    let agent = start_agent(agent_config(&m.addr, temp_work_dir()));
    let (mut c, _) = m.accept_registered("agent-1").await;

    c.send(MMsg::RunTaskGroup(group("e1", &[("a", "sleep 60")])));
    until_all_running(&mut c, &["a"]).await;
    // A second group joins the same executor run; its failure does not end the first.
    c.send(MMsg::RunTaskGroup(group(
        "e1",
        &[("b", "sleep 60"), ("c", "exit 2")],
    )));
    let seen = until_all_terminal(&mut c, &["b", "c"]).await;
    assert_eq!(state(&last(&seen, "c")), TaskState::TaskFailed);
    let b = last(&seen, "b");
    assert_eq!(state(&b), TaskState::TaskKilled, "{:?}", seen["b"]);
    assert!(b.message.unwrap().contains("task 'c'"));
    let runs = agent
        .work_dir
        .join("slaves/agent-1/frameworks/fw1/executors/e1/runs");
    assert_eq!(
        std::fs::read_dir(&runs).unwrap().count(),
        1,
        "one executor run"
    );

    // The same executor id with another ExecutorInfo: every task of the group errs.
    let mut bad = group("e1", &[("d", "true"), ("e", "true")]);
    bad.executor.as_mut().unwrap().resources = pb_resources("cpus:0.5;mem:64");
    c.send(MMsg::RunTaskGroup(bad));
    // An invalid group (a task of another executor): likewise.
    let mut bad = group("e2", &[("f", "true")]);
    bad.tasks[0].executor_id = Some("other".into());
    c.send(MMsg::RunTaskGroup(bad));
    let seen = until_all_terminal(&mut c, &["d", "e", "f"]).await;
    for t in ["d", "e", "f"] {
        let s = last(&seen, t);
        assert_eq!(state(&s), TaskState::TaskError, "{s:?}");
        assert_eq!(s.reason, Some(Reason::ReasonTaskGroupInvalid.as_i32()));
    }
    assert!(
        last(&seen, "d")
            .message
            .unwrap()
            .contains("different ExecutorInfo")
    );
    // The first group still runs.
    c.send(MMsg::KillTask(pb::KillTask {
        framework_id: "fw1".into(),
        task_id: "a".into(),
        grace_ms: None,
    }));
    let seen = until_all_terminal(&mut c, &["a"]).await;
    assert_eq!(state(&last(&seen, "a")), TaskState::TaskKilled);
    agent.stop().await;
}

/// The executor's cgroup, found through a task's checkpointed container record.
fn executor_cgroup_dirs(work_dir: &Path, exec: &str, task: &str) -> Vec<PathBuf> {
    let meta = sandbox_of(&work_dir.join("meta"), exec)
        .join("tasks")
        .join(task)
        .join("container.json");
    let v: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&meta).unwrap_or_else(|e| panic!("{}: {e}", meta.display())),
    )
    .unwrap();
    assert_eq!(v["kind"], "cgroups", "{v}");
    let nested = v["cgroup"].as_str().expect("a nested cgroup name");
    assert_eq!(nested.split('/').count(), 2, "{nested}");
    v["cgroups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            PathBuf::from(d.as_str().unwrap())
                .parent()
                .unwrap()
                .to_path_buf()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_shares_its_executors_cgroup_limits() {
    let root = format!("tessera-group-test-{}", uuid::Uuid::new_v4());
    if let Err(e) = tessera_agent::CgroupLauncher::probe(&root) {
        println!("SKIP: a_group_shares_its_executors_cgroup_limits: cgroups unusable: {e}");
        return;
    }
    let cgroups = Cgroups::detect(&root).unwrap();
    let mut m = fake_master().await;
    let mut cfg = agent_config(&m.addr, temp_work_dir());
    cfg.isolation = tessera_agent::Isolation::Cgroups;
    cfg.cgroups_root = root.clone();
    let agent = start_agent(cfg);
    let (mut c, _) = m.accept_registered("agent-1").await;

    c.send(MMsg::RunTaskGroup(group(
        "e1",
        &[("a", "sleep 60"), ("b", "sleep 60")],
    )));
    until_all_running(&mut c, &["a", "b"]).await;
    let dirs_a = executor_cgroup_dirs(&agent.work_dir, "e1", "a");
    let dirs_b = executor_cgroup_dirs(&agent.work_dir, "e1", "b");
    assert_eq!(dirs_a, dirs_b, "both tasks nest in one executor cgroup");
    // executor 32 MB + 2 tasks × 32 MB; 0.3 cpus.
    let want_mem = 96u64 << 20;
    let mem = dirs_a
        .iter()
        .find_map(|d| {
            ["memory.limit_in_bytes", "memory.max"]
                .iter()
                .find_map(|f| std::fs::read_to_string(d.join(f)).ok())
        })
        .expect("a memory limit file");
    assert_eq!(mem.trim().parse::<u64>().unwrap(), want_mem);
    let executor_ids = cgroups.container_ids();
    assert_eq!(
        executor_ids.len(),
        1,
        "one executor container: {executor_ids:?}"
    );

    c.send(MMsg::KillTask(pb::KillTask {
        framework_id: "fw1".into(),
        task_id: "a".into(),
        grace_ms: None,
    }));
    until_all_terminal(&mut c, &["a", "b"]).await;
    // The executor's cgroup goes once its tasks are gone.
    let deadline = Instant::now() + WAIT;
    while !cgroups.container_ids().is_empty() {
        assert!(
            Instant::now() < deadline,
            "executor cgroup removed: {:?}",
            cgroups.container_ids()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    agent.stop().await;
    for d in cgroups.root_dirs() {
        let _ = std::fs::remove_dir(&d);
    }
}

/// GET `path` from the agent's HTTP endpoints on `port` (HTTP/1.0): the JSON body.
async fn get_json(port: u16, path: &str) -> serde_json::Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let req = format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
        .await
        .expect("response in time")
        .unwrap();
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("headers end");
    assert!(buf.starts_with(b"HTTP/1.0 200") || buf.starts_with(b"HTTP/1.1 200"));
    serde_json::from_slice(&buf[split + 4..]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_state_shows_one_default_executor_with_the_groups_tasks() {
    let mut m = fake_master().await;
    let mut cfg = agent_config(&m.addr, temp_work_dir());
    cfg.http_listen = Some("127.0.0.1:0".parse().unwrap());
    let agent = start_agent(cfg);
    let (mut c, reg) = m.accept_registered("agent-1").await;
    let port = u16::try_from(reg.info.as_ref().unwrap().http_port).unwrap();

    c.send(MMsg::RunTaskGroup(group(
        "e1",
        &[("a", "echo from-a; sleep 60"), ("b", "sleep 60")],
    )));
    until_all_running(&mut c, &["a", "b"]).await;
    let st = get_json(port, "/state").await;
    let execs = st["frameworks"][0]["executors"].as_array().unwrap();
    assert_eq!(execs.len(), 1, "{st}");
    let e = &execs[0];
    assert_eq!(e["id"], "e1");
    assert_eq!(e["type"], "DEFAULT");
    let mut ids: Vec<&str> = e["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["a", "b"]);
    let dir = e["directory"].as_str().unwrap();
    assert_eq!(
        Path::new(dir),
        executor_sandbox(&agent.work_dir, "e1"),
        "the executor's sandbox"
    );
    // Each task's files are in `tasks/<id>` of the executor's sandbox.
    let stdout = format!("{dir}/tasks/a/stdout");
    let mut text = String::new();
    for _ in 0..50 {
        let r = get_json(port, &format!("/files/read?path={stdout}&offset=0")).await;
        text = r["data"].as_str().unwrap_or_default().to_string();
        if !text.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(text, "from-a\n");

    c.send(MMsg::KillTask(pb::KillTask {
        framework_id: "fw1".into(),
        task_id: "b".into(),
        grace_ms: None,
    }));
    until_all_terminal(&mut c, &["a", "b"]).await;
    agent.stop().await;
}
