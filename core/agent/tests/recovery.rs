//! Checkpoint and recovery with a real SIGKILL of the agent.
//!
//! The agent runs in a child process: this test binary re-executed to run only the
//! `agent_child` test, which starts the agent when [`CHILD_ENV`] is set (and passes at once
//! otherwise). The fake master runs in the test. Killing the child with SIGKILL gives the
//! agent no chance to clean up; restarting it with the same work dir must find its tasks.
//! Real processes, so real time; every wait is bounded.

mod common;

use common::*;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tessera_agent::{AgentConfig, Isolation, Namespaces};
use tessera_api::pb;
use tessera_api::pb::master_message::Msg as MMsg;
use tessera_types::TaskState;
use tessera_types::parse::parse_resources;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

/// `<master addr>|<work dir>|<cgroups root or empty>|<ns or empty>`: run the agent in this
/// process (with cgroups isolation under that root when one is given, with pid and mount
/// namespaces with `ns`). Without them, a task's `$$` is a host pid the tests can watch.
const CHILD_ENV: &str = "TESSERA_RECOVERY_AGENT_CHILD";

/// Not a test: the agent process the other tests start and SIGKILL.
#[test]
fn agent_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = spec.splitn(4, '|');
    let (addr, dir, root, ns) = (
        parts.next().expect("addr"),
        parts.next().expect("dir"),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let mut c = AgentConfig::new(addr, dir, parse_resources("cpus:2;mem:1024").unwrap());
    c.isolation = Isolation::None;
    c.namespaces = if ns == "ns" {
        Namespaces::Auto
    } else {
        Namespaces::None
    };
    if !root.is_empty() {
        c.isolation = Isolation::Cgroups;
        c.cgroups_root = root.to_string();
    }
    c.reconnect_base = Duration::from_millis(20);
    c.reconnect_cap = Duration::from_millis(200);
    c.default_kill_grace = Duration::from_millis(500);
    // Resends come from (re-)registration only, not from the retry timer.
    c.status_retry_base = Duration::from_secs(60);
    c.status_retry_cap = Duration::from_secs(60);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let launcher = tessera_agent::default_launcher(&c);
        let _ = tessera_agent::run_with_launcher(c, launcher, CancellationToken::new()).await;
    });
}

/// The agent in a child process; SIGKILLed when dropped.
struct ChildAgent(Child);

impl ChildAgent {
    fn start(addr: &str, dir: &Path) -> Self {
        Self::start_with(addr, dir, "", "")
    }

    /// With cgroups isolation under `cgroups_root` (empty: none).
    fn start_in(addr: &str, dir: &Path, cgroups_root: &str) -> Self {
        Self::start_with(addr, dir, cgroups_root, "")
    }

    /// With pid and mount namespaces.
    fn start_namespaced(addr: &str, dir: &Path) -> Self {
        Self::start_with(addr, dir, "", "ns")
    }

    fn start_with(addr: &str, dir: &Path, cgroups_root: &str, ns: &str) -> Self {
        let exe = std::env::current_exe().unwrap();
        let child = Command::new(exe)
            .args(["agent_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(
                CHILD_ENV,
                format!("{addr}|{}|{cgroups_root}|{ns}", dir.display()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start the agent process");
        ChildAgent(child)
    }

    /// SIGKILL, and reap.
    fn sigkill(mut self) {
        self.0.kill().expect("SIGKILL the agent");
        self.0.wait().expect("reap the agent");
    }
}

impl Drop for ChildAgent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn temp_work_dir() -> PathBuf {
    std::env::temp_dir().join(format!("tessera-recovery-test-{}", uuid::Uuid::new_v4()))
}

/// The (only) run directory of `task` under `base` (the work dir, or its `meta`).
fn only_run(base: &Path, task: &str) -> PathBuf {
    let runs = base.join(format!(
        "slaves/agent-1/frameworks/fw1/executors/{task}/runs"
    ));
    std::fs::read_dir(&runs)
        .unwrap_or_else(|e| panic!("{}: {e}", runs.display()))
        .next()
        .expect("one run")
        .unwrap()
        .path()
}

fn sandbox(dir: &Path, task: &str) -> PathBuf {
    only_run(dir, task)
}

fn meta(dir: &Path, task: &str) -> PathBuf {
    only_run(&dir.join("meta"), task)
}

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    timeout(WAIT, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}"));
}

/// The pid a task wrote to `path`, waiting (bounded) for the write to land: the file
/// exists as soon as the shell opens it, before `echo` has written.
fn read_pid(path: &Path) -> i32 {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let Ok(pid) = text.trim().parse() {
            return pid;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} holds no pid: {text:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Running and not a zombie.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .and_then(|(_, r)| r.trim_start().chars().next())
            .is_some_and(|st| st != 'Z' && st != 'X')
    })
}

/// Kills whatever is left of a task's process group.
fn kill_group_of(pid: i32) {
    if let Ok(pgid) = nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid))) {
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
    }
}

/// Acknowledges updates until the terminal one for `task`, which it returns.
async fn terminal(c: &mut Conn, task: &str) -> pb::TaskStatus {
    loop {
        let s = c.acked_status().await;
        if s.task_id == task && state(&s).is_terminal() {
            return s;
        }
    }
}

fn reported_state(reg: &pb::Register, task: &str) -> TaskState {
    let t = reg
        .tasks
        .iter()
        .find(|t| t.task.as_ref().is_some_and(|i| i.task_id == task))
        .unwrap_or_else(|| panic!("{task} reported in {reg:?}"));
    TaskState::from_i32(t.state).unwrap()
}

/// Launches `task` and acknowledges STARTING and RUNNING.
async fn launch(c: &mut Conn, task: &str, command: &str, grace_ms: Option<u64>) {
    c.run_task(task, command, grace_ms);
    assert_eq!(state(&c.acked_status().await), TaskState::TaskStarting);
    assert_eq!(state(&c.acked_status().await), TaskState::TaskRunning);
}

#[tokio::test]
async fn running_task_survives_sigkill_is_reregistered_and_finishes() {
    let mut m = fake_master().await;
    let dir = temp_work_dir();
    let agent = ChildAgent::start(&m.addr, &dir);
    let (mut c, reg) = m.accept_registered("agent-1").await;
    assert_eq!(reg.agent_id, None);
    launch(
        &mut c,
        "t1",
        "echo $$ > pid; while [ ! -f go ]; do sleep 0.05; done; echo done",
        None,
    )
    .await;
    let sb = sandbox(&dir, "t1");
    until("the task writes its pid", || sb.join("pid").exists()).await;
    let pid = read_pid(&sb.join("pid"));

    agent.sigkill();
    assert!(alive(pid), "the task survives the agent's SIGKILL");

    let agent = ChildAgent::start(&m.addr, &dir);
    let (mut c, reg) = m.accept_registered("agent-1").await;
    assert_eq!(reg.agent_id.as_deref(), Some("agent-1"), "same agent id");
    assert_eq!(reported_state(&reg, "t1"), TaskState::TaskRunning);
    assert!(alive(pid), "still running after the restart");

    std::fs::write(sb.join("go"), "").unwrap();
    let fin = terminal(&mut c, "t1").await;
    assert_eq!(state(&fin), TaskState::TaskFinished, "{fin:?}");
    assert_eq!(fin.exit_code, Some(0));
    assert!(
        std::fs::read_to_string(sb.join("stdout"))
            .unwrap()
            .contains("done")
    );
    // Forgotten once acknowledged: its checkpoints go.
    let meta_dir = dir.join("meta/slaves/agent-1/frameworks/fw1/executors/t1/runs");
    until("the checkpoint is removed", || {
        std::fs::read_dir(&meta_dir).is_ok_and(|mut d| d.next().is_none())
    })
    .await;
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn task_that_ended_while_the_agent_was_down_is_reported_after_restart() {
    let mut m = fake_master().await;
    let dir = temp_work_dir();
    let agent = ChildAgent::start(&m.addr, &dir);
    let (mut c, _) = m.accept_registered("agent-1").await;
    launch(
        &mut c,
        "t2",
        "touch ready; while [ ! -f go ]; do sleep 0.05; done; exit 3",
        None,
    )
    .await;
    let sb = sandbox(&dir, "t2");
    until("the task starts", || sb.join("ready").exists()).await;

    agent.sigkill();
    std::fs::write(sb.join("go"), "").unwrap();
    let status_file = meta(&dir, "t2").join("exit_status");
    until("the supervisor records the exit", || status_file.exists()).await;

    let agent = ChildAgent::start(&m.addr, &dir);
    let (mut c, reg) = m.accept_registered("agent-1").await;
    assert_eq!(
        reported_state(&reg, "t2"),
        TaskState::TaskFailed,
        "the exit is known before re-registering"
    );
    let fin = terminal(&mut c, "t2").await;
    assert_eq!(state(&fin), TaskState::TaskFailed);
    assert_eq!(fin.exit_code, Some(3));
    assert_eq!(fin.message.as_deref(), Some("Command exited with status 3"));
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn unacknowledged_updates_are_resent_after_restart_and_the_task_can_be_killed() {
    let mut m = fake_master().await;
    let dir = temp_work_dir();
    let agent = ChildAgent::start(&m.addr, &dir);
    let (mut c, _) = m.accept_registered("agent-1").await;
    c.run_task("t3", "echo $$ > pid; exec sleep 60", None);
    // STARTING is not acknowledged: RUNNING queues behind it.
    let (_, starting) = c.status().await;
    assert_eq!(state(&starting), TaskState::TaskStarting);
    let status_json = meta(&dir, "t3").join("status.json");
    let queued = || -> Vec<String> {
        std::fs::read(&status_json)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["updates"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .map(|u| u["uuid"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    until("RUNNING is checkpointed behind STARTING", || {
        queued().len() == 2
    })
    .await;
    let uuids = queued();
    assert_eq!(uuids[0], starting.uuid.clone().unwrap());
    let sb = sandbox(&dir, "t3");
    until("the task writes its pid", || sb.join("pid").exists()).await;
    let pid = read_pid(&sb.join("pid"));

    agent.sigkill();
    let agent = ChildAgent::start(&m.addr, &dir);
    let (mut c, reg) = m.accept_registered("agent-1").await;
    assert_eq!(reported_state(&reg, "t3"), TaskState::TaskRunning);
    // The same updates, same uuids, in order.
    let again = c.acked_status().await;
    assert_eq!(again.uuid, starting.uuid, "STARTING resent");
    let running = c.acked_status().await;
    assert_eq!(state(&running), TaskState::TaskRunning);
    assert_eq!(running.uuid.as_deref(), Some(uuids[1].as_str()));

    // A kill reaches the recovered task.
    c.send(MMsg::KillTask(pb::KillTask {
        framework_id: "fw1".into(),
        task_id: "t3".into(),
        grace_ms: Some(2000),
    }));
    let killed = terminal(&mut c, "t3").await;
    assert_eq!(state(&killed), TaskState::TaskKilled, "{killed:?}");
    until("the task process is gone", || !alive(pid)).await;
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn kill_after_recovery_escalates_to_sigkill_on_the_whole_group() {
    let mut m = fake_master().await;
    let dir = temp_work_dir();
    let agent = ChildAgent::start(&m.addr, &dir);
    let (mut c, _) = m.accept_registered("agent-1").await;
    launch(
        &mut c,
        "t5",
        "trap '' TERM; echo $$ > pid; sleep 60 & echo $! > child; wait",
        None,
    )
    .await;
    let sb = sandbox(&dir, "t5");
    until("the task starts", || sb.join("child").exists()).await;
    let (pid, child) = (read_pid(&sb.join("pid")), read_pid(&sb.join("child")));

    agent.sigkill();
    let agent = ChildAgent::start(&m.addr, &dir);
    let (mut c, reg) = m.accept_registered("agent-1").await;
    assert_eq!(reported_state(&reg, "t5"), TaskState::TaskRunning);
    let started = std::time::Instant::now();
    c.send(MMsg::KillTask(pb::KillTask {
        framework_id: "fw1".into(),
        task_id: "t5".into(),
        grace_ms: Some(300),
    }));
    let killed = terminal(&mut c, "t5").await;
    assert_eq!(state(&killed), TaskState::TaskKilled, "{killed:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "TERM ignored"
    );
    until("the task and its child are gone", || {
        !alive(pid) && !alive(child)
    })
    .await;
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn wiped_work_dir_registers_as_a_new_agent() {
    let mut m = fake_master().await;
    let dir = temp_work_dir();
    let agent = ChildAgent::start(&m.addr, &dir);
    let (mut c, _) = m.accept_registered("agent-1").await;
    launch(&mut c, "t4", "echo $$ > pid; exec sleep 60", None).await;
    let sb = sandbox(&dir, "t4");
    until("the task writes its pid", || sb.join("pid").exists()).await;
    let pid = read_pid(&sb.join("pid"));

    agent.sigkill();
    std::fs::remove_dir_all(&dir).unwrap();
    let agent = ChildAgent::start(&m.addr, &dir);
    let (_c, reg) = m.accept_registered("agent-2").await;
    assert_eq!(reg.agent_id, None, "no persisted id: a new agent");
    assert!(reg.tasks.is_empty(), "nothing recovered: {:?}", reg.tasks);
    drop(agent);
    kill_group_of(pid);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn cgroups_task_is_recovered_and_killed_through_its_cgroup() {
    let root = format!("tessera-test-{}", uuid::Uuid::new_v4());
    let cg = match tessera_agent::CgroupLauncher::probe(&root) {
        Ok(l) => l.cgroups().clone(),
        Err(e) => return eprintln!("SKIPPED: cgroups recovery: cgroups unusable here: {e}"),
    };
    let mut m = fake_master().await;
    let dir = temp_work_dir();
    let agent = ChildAgent::start_in(&m.addr, &dir, &root);
    let (mut c, _) = m.accept_registered("agent-1").await;
    launch(
        &mut c,
        "t6",
        "trap '' TERM; echo $$ > pid; sleep 60 & echo $! > child; wait",
        None,
    )
    .await;
    let sb = sandbox(&dir, "t6");
    until("the task starts", || sb.join("child").exists()).await;
    let (pid, child) = (read_pid(&sb.join("pid")), read_pid(&sb.join("child")));
    let ids = cg.container_ids();
    assert_eq!(ids.len(), 1, "one container cgroup: {ids:?}");
    let container = cg.container(&ids[0]);
    assert!(container.procs().unwrap().contains(&child));

    agent.sigkill();
    assert!(
        alive(pid) && alive(child),
        "the task survives in its cgroup"
    );
    let agent = ChildAgent::start_in(&m.addr, &dir, &root);
    let (mut c, reg) = m.accept_registered("agent-1").await;
    assert_eq!(reported_state(&reg, "t6"), TaskState::TaskRunning);
    c.send(MMsg::KillTask(pb::KillTask {
        framework_id: "fw1".into(),
        task_id: "t6".into(),
        grace_ms: Some(200),
    }));
    let killed = terminal(&mut c, "t6").await;
    assert_eq!(state(&killed), TaskState::TaskKilled, "{killed:?}");
    until("every process of the cgroup is gone", || {
        !alive(pid) && !alive(child)
    })
    .await;
    until("the container's cgroups are removed", || {
        cg.container_ids().is_empty()
    })
    .await;
    drop(agent);
    for d in cg.root_dirs() {
        let _ = std::fs::remove_dir(&d);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn namespaced_task_is_recovered_killed_and_its_namespace_emptied() {
    if !namespaces_or_skip("namespaced recovery") {
        return;
    }
    let mut m = fake_master().await;
    let dir = temp_work_dir();
    let agent = ChildAgent::start_namespaced(&m.addr, &dir);
    let (mut c, _) = m.accept_registered("agent-1").await;
    launch(
        &mut c,
        "t7",
        "trap '' TERM; echo $$ > pid; sleep 60 & wait",
        None,
    )
    .await;
    let sb = sandbox(&dir, "t7");
    until("the task starts", || sb.join("pid").exists()).await;
    assert!(read_pid(&sb.join("pid")) < 10, "a low pid in its namespace");
    let supervisor = supervisor_pid(&dir, "t7");
    let ns = pid_ns_for_children(supervisor);
    assert!(pids_in_ns(&ns).len() >= 3, "init, task and sleep run");

    agent.sigkill();
    assert!(
        alive(supervisor as i32),
        "the supervisor survives the agent"
    );
    assert!(pids_in_ns(&ns).len() >= 3, "so does the namespace");
    let agent = ChildAgent::start_namespaced(&m.addr, &dir);
    let (mut c, reg) = m.accept_registered("agent-1").await;
    assert_eq!(reported_state(&reg, "t7"), TaskState::TaskRunning);
    let started = std::time::Instant::now();
    c.send(MMsg::KillTask(pb::KillTask {
        framework_id: "fw1".into(),
        task_id: "t7".into(),
        grace_ms: Some(300),
    }));
    let killed = terminal(&mut c, "t7").await;
    assert_eq!(state(&killed), TaskState::TaskKilled, "{killed:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "TERM ignored: SIGKILL after the grace"
    );
    until("every process of the namespace is gone", || {
        pids_in_ns(&ns).is_empty()
    })
    .await;
    until("the supervisor is gone", || !alive(supervisor as i32)).await;
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn health_checker_restarts_for_a_recovered_task() {
    let mut m = fake_master().await;
    let dir = temp_work_dir();
    let agent = ChildAgent::start(&m.addr, &dir);
    let (mut c, _) = m.accept_registered("agent-1").await;
    let probe = pb::health_check::Probe::Command(pb::CommandInfo {
        value: "test ! -e bad".into(),
        shell: true,
        ..Default::default()
    });
    c.run_task_checked(
        "t1",
        "sleep 60",
        pb::HealthCheck {
            probe: Some(probe),
            delay_ms: 0,
            interval_ms: 200,
            timeout_ms: 5_000,
            grace_period_ms: 0,
            consecutive_failures: 2,
        },
    );
    assert_eq!(state(&c.acked_status().await), TaskState::TaskStarting);
    assert_eq!(state(&c.acked_status().await), TaskState::TaskRunning);
    let before = c.acked_status().await;
    assert_eq!(before.healthy, Some(true));
    agent.sigkill();

    let _agent = ChildAgent::start(&m.addr, &dir);
    let (mut c, _) = m.accept_registered("agent-1").await;
    // A fresh checker reports the health anew (after a resend of the old report, when the
    // SIGKILL beat its acknowledgement), and still kills on failures.
    let mut s = c.acked_status().await;
    if s.uuid == before.uuid {
        s = c.acked_status().await;
    }
    assert_eq!((state(&s), s.healthy), (TaskState::TaskRunning, Some(true)));
    std::fs::write(sandbox(&dir, "t1").join("bad"), "").unwrap();
    let s = c.acked_status().await;
    assert_eq!(
        (state(&s), s.healthy),
        (TaskState::TaskRunning, Some(false))
    );
    let end = terminal(&mut c, "t1").await;
    assert_eq!(
        (state(&end), end.healthy),
        (TaskState::TaskKilled, Some(false))
    );
}

/// The sandbox of `task` of executor `exec`'s (only) run, under `dir`.
fn group_sandbox(dir: &Path, exec: &str, task: &str) -> PathBuf {
    only_run(dir, exec).join("tasks").join(task)
}

fn reported_executor(reg: &pb::Register, task: &str) -> Option<String> {
    reg.tasks
        .iter()
        .find(|t| t.task.as_ref().is_some_and(|i| i.task_id == task))
        .and_then(|t| t.executor.as_ref())
        .map(|e| e.executor_id.clone())
}

/// A group of `a` (sleeps, writing its pid) and `b` (fails with 3 once `fail` appears in
/// its sandbox), running.
async fn launch_failable_group(c: &mut Conn) {
    c.send(MMsg::RunTaskGroup(group(
        "e1",
        &[
            ("a", "echo $$ > pid; exec sleep 60"),
            (
                "b",
                "touch ready; while [ ! -f fail ]; do sleep 0.05; done; exit 3",
            ),
        ],
    )));
    until_all_running(c, &["a", "b"]).await;
}

/// `b` failed, and `a` was killed for it.
fn assert_group_failed(seen: &std::collections::BTreeMap<String, Vec<pb::TaskStatus>>) {
    let b = last(seen, "b");
    assert_eq!(state(&b), TaskState::TaskFailed, "{b:?}");
    assert_eq!(b.exit_code, Some(3));
    let a = last(seen, "a");
    assert_eq!(state(&a), TaskState::TaskKilled, "{a:?}");
    let msg = a.message.unwrap_or_default();
    assert!(msg.contains("task 'b'"), "{msg}");
}

#[tokio::test]
async fn task_group_survives_sigkill_and_a_later_failure_still_ends_the_group() {
    // Under cgroups when this machine allows them (the executor's cgroup and the tasks'
    // nested ones must be found again), else plain processes.
    let root = format!("tessera-test-{}", uuid::Uuid::new_v4());
    let cg = match tessera_agent::CgroupLauncher::probe(&root) {
        Ok(l) => Some(l.cgroups().clone()),
        Err(e) => {
            eprintln!("cgroups unusable here ({e}); the group runs as plain processes");
            None
        }
    };
    let root = if cg.is_some() { root } else { String::new() };
    let mut m = fake_master().await;
    let dir = temp_work_dir();
    let agent = ChildAgent::start_in(&m.addr, &dir, &root);
    let (mut c, _) = m.accept_registered("agent-1").await;
    launch_failable_group(&mut c).await;
    let (sa, sb) = (
        group_sandbox(&dir, "e1", "a"),
        group_sandbox(&dir, "e1", "b"),
    );
    until("the tasks start", || {
        sa.join("pid").exists() && sb.join("ready").exists()
    })
    .await;
    let pid = read_pid(&sa.join("pid"));

    agent.sigkill();
    assert!(alive(pid), "the group survives the agent's SIGKILL");
    let agent = ChildAgent::start_in(&m.addr, &dir, &root);
    let (mut c, reg) = m.accept_registered("agent-1").await;
    for t in ["a", "b"] {
        assert_eq!(reported_state(&reg, t), TaskState::TaskRunning);
        assert_eq!(reported_executor(&reg, t).as_deref(), Some("e1"), "{reg:?}");
    }

    // The group was re-formed: b failing now still kills a.
    std::fs::write(sb.join("fail"), "").unwrap();
    let seen = until_all_terminal(&mut c, &["a", "b"]).await;
    assert_group_failed(&seen);
    until("a's process is gone", || !alive(pid)).await;
    // Acknowledged and ended: the executor and its checkpoints are forgotten.
    let meta_runs = dir.join("meta/slaves/agent-1/frameworks/fw1/executors/e1/runs");
    until("the executor's checkpoint is removed", || {
        std::fs::read_dir(&meta_runs).is_ok_and(|mut d| d.next().is_none())
    })
    .await;
    if let Some(cg) = &cg {
        until("the executor's cgroup is removed", || {
            cg.container_ids().is_empty()
        })
        .await;
        for d in cg.root_dirs() {
            let _ = std::fs::remove_dir(&d);
        }
    }
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_group_task_that_failed_while_the_agent_was_down_ends_its_group_on_restart() {
    let mut m = fake_master().await;
    let dir = temp_work_dir();
    let agent = ChildAgent::start(&m.addr, &dir);
    let (mut c, _) = m.accept_registered("agent-1").await;
    launch_failable_group(&mut c).await;
    let (sa, sb) = (
        group_sandbox(&dir, "e1", "a"),
        group_sandbox(&dir, "e1", "b"),
    );
    until("the tasks start", || {
        sa.join("pid").exists() && sb.join("ready").exists()
    })
    .await;
    let pid = read_pid(&sa.join("pid"));

    agent.sigkill();
    std::fs::write(sb.join("fail"), "").unwrap();
    let status = meta(&dir, "e1").join("tasks/b/exit_status");
    until("b fails while the agent is down", || status.exists()).await;
    assert!(alive(pid), "a still runs");

    let agent = ChildAgent::start(&m.addr, &dir);
    let (mut c, _) = m.accept_registered("agent-1").await;
    let seen = until_all_terminal(&mut c, &["a", "b"]).await;
    assert_group_failed(&seen);
    until("a's process is gone", || !alive(pid)).await;
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}
