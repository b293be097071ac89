//! Health checks against real processes: the real agent, a fake master, COMMAND, HTTP and
//! TCP probes with short intervals. Real time; every wait is bounded.

mod common;

use common::*;

use std::time::Duration;

use tessera_api::pb;
use tessera_api::pb::master_message::Msg as MMsg;
use tessera_types::{Reason, TaskState};
use tokio::time::timeout;

/// A check with the given probe, no delay, a 0.2 s interval and a 5 s timeout.
fn check(
    probe: pb::health_check::Probe,
    grace_ms: u64,
    consecutive_failures: u32,
) -> pb::HealthCheck {
    pb::HealthCheck {
        probe: Some(probe),
        delay_ms: 0,
        interval_ms: 200,
        timeout_ms: 5_000,
        grace_period_ms: grace_ms,
        consecutive_failures,
    }
}

fn command(cmd: &str) -> pb::health_check::Probe {
    pb::health_check::Probe::Command(pb::CommandInfo {
        value: cmd.into(),
        shell: true,
        ..Default::default()
    })
}

/// A port nothing listens on (bound and released).
fn free_port() -> u32 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    u32::from(l.local_addr().unwrap().port())
}

const HEALTH_UPDATED: i32 = Reason::ReasonTaskHealthCheckStatusUpdated as i32;

/// STARTING then RUNNING (neither carries health yet).
async fn expect_running(c: &mut Conn) {
    let s = c.acked_status().await;
    assert_eq!(state(&s), TaskState::TaskStarting);
    let s = c.acked_status().await;
    assert_eq!(state(&s), TaskState::TaskRunning);
    assert_eq!(s.healthy, None);
}

/// The next update is a health-only TASK_RUNNING with `healthy`.
async fn expect_health(c: &mut Conn, healthy: bool) -> pb::TaskStatus {
    let s = c.acked_status().await;
    assert_eq!(state(&s), TaskState::TaskRunning, "{s:?}");
    assert_eq!(s.reason, Some(HEALTH_UPDATED), "{s:?}");
    assert_eq!(s.healthy, Some(healthy), "{s:?}");
    s
}

/// No update arrives for `d`.
async fn expect_quiet(c: &mut Conn, d: Duration) {
    if let Ok(m) = timeout(d, c.next()).await {
        panic!("expected no update, got {m:?}");
    }
}

fn kill(c: &Conn, id: &str) {
    c.send(MMsg::KillTask(pb::KillTask {
        framework_id: "fw1".into(),
        task_id: id.into(),
        grace_ms: None,
    }));
}

#[tokio::test]
async fn failing_command_check_kills_the_task_after_consecutive_failures() {
    let mut m = fake_master().await;
    let agent = start_agent(agent_config(&m.addr, temp_work_dir()));
    let (mut c, _) = m.accept_registered("agent-1").await;
    let started = tokio::time::Instant::now();
    c.run_task_checked(
        "t1",
        "sleep 60",
        check(command("test -e $MESOS_SANDBOX/ok"), 0, 3),
    );
    expect_running(&mut c).await;

    let s = expect_health(&mut c, false).await;
    assert!(
        s.message
            .as_deref()
            .unwrap()
            .contains("COMMAND health check failed"),
        "{s:?}"
    );
    // One unhealthy report (a change), then the kill after the third failure.
    let end = c.acked_status().await;
    assert_eq!(state(&end), TaskState::TaskKilled, "{end:?}");
    assert_eq!(end.healthy, Some(false));
    let msg = end.message.as_deref().unwrap();
    assert!(msg.contains("3 consecutive times"), "{msg}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "killed promptly"
    );
    agent.stop().await;
}

#[tokio::test]
async fn passing_command_check_reports_healthy_once() {
    let mut m = fake_master().await;
    let agent = start_agent(agent_config(&m.addr, temp_work_dir()));
    let (mut c, _) = m.accept_registered("agent-1").await;
    // The check runs in the sandbox with the task's environment.
    c.run_task_checked(
        "t1",
        "touch ok && sleep 60",
        check(
            command("test -e ok && test \"$MESOS_TASK_ID\" = t1"),
            5_000,
            1,
        ),
    );
    expect_running(&mut c).await;
    expect_health(&mut c, true).await;
    expect_quiet(&mut c, Duration::from_millis(1200)).await;

    kill(&c, "t1");
    let end = c.acked_status().await;
    assert_eq!(state(&end), TaskState::TaskKilled);
    assert_eq!(
        end.healthy, None,
        "only a health kill marks the end unhealthy"
    );
    agent.stop().await;
}

#[tokio::test]
async fn http_check_against_the_tasks_own_server_becomes_healthy() {
    let mut m = fake_master().await;
    let agent = start_agent(agent_config(&m.addr, temp_work_dir()));
    let (mut c, _) = m.accept_registered("agent-1").await;
    let port = free_port();
    let http = pb::health_check::Probe::Http(pb::HttpCheck {
        port,
        path: Some("/".into()),
        scheme: None,
    });
    c.run_task_checked(
        "web",
        &format!("exec python3 -m http.server {port} --bind 127.0.0.1"),
        check(http, 10_000, 3),
    );
    expect_running(&mut c).await;
    let s = expect_health(&mut c, true).await;
    assert_eq!(s.message.as_deref(), Some("HTTP health check passed"));

    kill(&c, "web");
    let end = c.acked_status().await;
    assert_eq!(state(&end), TaskState::TaskKilled);
    agent.stop().await;
}

#[tokio::test]
async fn tcp_check_on_a_closed_port_fails_and_kills() {
    let mut m = fake_master().await;
    let agent = start_agent(agent_config(&m.addr, temp_work_dir()));
    let (mut c, _) = m.accept_registered("agent-1").await;
    let port = free_port();
    c.run_task_checked(
        "t1",
        "sleep 60",
        check(pb::health_check::Probe::Tcp(pb::TcpCheck { port }), 0, 2),
    );
    expect_running(&mut c).await;
    let s = expect_health(&mut c, false).await;
    assert!(
        s.message
            .as_deref()
            .unwrap()
            .contains("TCP health check failed"),
        "{s:?}"
    );
    let end = c.acked_status().await;
    assert_eq!(state(&end), TaskState::TaskKilled);
    assert_eq!(end.healthy, Some(false));
    agent.stop().await;
}

#[tokio::test]
async fn grace_period_suppresses_early_failures() {
    let mut m = fake_master().await;
    let agent = start_agent(agent_config(&m.addr, temp_work_dir()));
    let (mut c, _) = m.accept_registered("agent-1").await;
    // The check fails for the first second; a single counted failure would kill the task.
    c.run_task_checked(
        "t1",
        "sleep 1 && touch ok && sleep 60",
        check(command("test -e ok"), 5_000, 1),
    );
    expect_running(&mut c).await;
    expect_health(&mut c, true).await;

    kill(&c, "t1");
    let end = c.acked_status().await;
    assert_eq!(state(&end), TaskState::TaskKilled);
    agent.stop().await;
}

#[tokio::test]
async fn health_recovers_and_is_reported_on_each_change() {
    let mut m = fake_master().await;
    let agent = start_agent(agent_config(&m.addr, temp_work_dir()));
    let (mut c, _) = m.accept_registered("agent-1").await;
    // Healthy, then unhealthy while `bad` exists, then healthy again; never killed (the
    // failure count needed is out of reach).
    c.run_task_checked(
        "t1",
        "sleep 1 && touch bad && sleep 1 && rm bad && sleep 60",
        check(command("test ! -e bad"), 0, 1000),
    );
    expect_running(&mut c).await;
    expect_health(&mut c, true).await;
    expect_health(&mut c, false).await;
    expect_health(&mut c, true).await;

    kill(&c, "t1");
    let end = c.acked_status().await;
    assert_eq!(state(&end), TaskState::TaskKilled);
    assert_eq!(end.healthy, None);
    agent.stop().await;
}
