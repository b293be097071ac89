//! Disk limits: a task whose sandbox grows past its `disk` resource is killed and reported
//! TASK_FAILED with REASON_CONTAINER_LIMITATION_DISK. The agent against a fake master (the
//! harness of `tests/agent.rs`), real processes writing real files; the sandbox is measured
//! every 200 ms, and every wait is bounded.

mod common;

use common::*;

use std::time::Duration;

use tessera_agent::Namespaces;
use tessera_types::{Reason, TaskState};

const WATCH: Duration = Duration::from_millis(200);

fn agent(addr: &str, namespaces: Namespaces) -> AgentRun {
    let mut c = agent_config(addr, temp_work_dir());
    c.disk_watch_interval = Some(WATCH);
    c.namespaces = namespaces;
    start_agent(c)
}

fn assert_disk_failure(s: &tessera_api::pb::TaskStatus) {
    assert_eq!(state(s), TaskState::TaskFailed, "{s:?}");
    assert_eq!(
        s.reason,
        Some(Reason::ReasonContainerLimitationDisk as i32),
        "{s:?}"
    );
    let msg = s.message.as_deref().unwrap_or_default();
    assert!(msg.contains("10485760 bytes"), "names the limit: {msg}");
    let used: u64 = msg
        .split_once("Disk usage (")
        .and_then(|(_, rest)| rest.split_once(" bytes)"))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("names the usage: {msg}"));
    assert!(used > 10 << 20, "usage past the limit: {msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_past_its_disk_limit_fails_the_task_and_one_within_finishes() {
    let mut m = fake_master().await;
    let agent = agent(&m.addr, Namespaces::None);
    let (mut c, _) = m.accept_registered("agent-1").await;

    c.run_task_spec(
        "big",
        "dd if=/dev/zero of=big bs=1M count=30 2>/dev/null; sleep 60",
        "cpus:0.1;mem:128;disk:10",
        None,
        false,
    );
    let s = terminal_of(&mut c, "big").await;
    assert_disk_failure(&s);

    c.run_task_spec(
        "small",
        "dd if=/dev/zero of=small bs=1M count=2 2>/dev/null; sleep 1",
        "cpus:0.1;mem:128;disk:10",
        None,
        false,
    );
    let s = terminal_of(&mut c, "small").await;
    assert_eq!(state(&s), TaskState::TaskFinished, "{s:?}");

    // Without a disk resource nothing is limited.
    c.run_task_spec(
        "unlimited",
        "dd if=/dev/zero of=big bs=1M count=30 2>/dev/null; sleep 1",
        "cpus:0.1;mem:128",
        None,
        false,
    );
    let s = terminal_of(&mut c, "unlimited").await;
    assert_eq!(state(&s), TaskState::TaskFinished, "{s:?}");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_to_the_private_tmp_count_against_the_disk_limit() {
    if !namespaces_or_skip("disk limit through /tmp") {
        return;
    }
    let mut m = fake_master().await;
    let agent = agent(&m.addr, Namespaces::Auto);
    let (mut c, _) = m.accept_registered("agent-1").await;
    c.run_task_spec(
        "tmp",
        "dd if=/dev/zero of=/tmp/big bs=1M count=30 2>/dev/null; sleep 60",
        "cpus:0.1;mem:128;disk:10",
        None,
        false,
    );
    let s = terminal_of(&mut c, "tmp").await;
    assert_disk_failure(&s);
    agent.stop().await;
}
