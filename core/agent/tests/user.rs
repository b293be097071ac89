//! Tasks run as their user (Mesos `--switch_user`): the framework's user by default, the
//! command's user when it names one, the agent's user when switching is off; a user that
//! does not exist fails the launch naming it. Needs root (only root can switch users);
//! skipped, saying so, otherwise.

mod common;

use common::*;
use tessera_api::pb;
use tessera_types::{Reason, TaskState};

fn root_or_skip(test: &str) -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    println!("SKIP: {test}: switching users needs the agent to run as root");
    false
}

fn uid_of(name: &str) -> u32 {
    nix::unistd::User::from_name(name)
        .unwrap()
        .unwrap_or_else(|| panic!("user {name} exists on this machine"))
        .uid
        .as_raw()
}

fn stdout_of(agent: &AgentRun, task: &str) -> String {
    std::fs::read_to_string(sandbox_of(&agent.work_dir, task).join("stdout")).unwrap()
}

fn run_as(c: &Conn, id: &str, command: &str, user: Option<&str>) {
    let mut rt = run_task_message(
        id,
        command,
        "cpus:0.1;mem:32",
        None,
        false,
        Vec::new(),
        None,
    );
    if let Some(cmd) = rt.task.as_mut().and_then(|t| t.command.as_mut()) {
        cmd.user = user.map(str::to_string);
    }
    c.send(pb::master_message::Msg::RunTask(rt));
}

#[tokio::test]
async fn tasks_run_as_the_framework_or_command_user() {
    if !root_or_skip("tasks_run_as_the_framework_or_command_user") {
        return;
    }
    let mut m = fake_master().await;
    let agent = start_agent(agent_config(&m.addr, temp_work_dir()));
    let (mut c, _) = m.accept_registered("agent-1").await;

    // The helpers' framework user is `nobody`; the sandbox is the task's to write.
    run_as(&c, "fw-user", "id -u; echo x > mine && echo wrote", None);
    let done = terminal_of(&mut c, "fw-user").await;
    assert_eq!(state(&done), TaskState::TaskFinished, "{done:?}");
    let out = stdout_of(&agent, "fw-user");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [uid_of("nobody").to_string().as_str(), "wrote"]
    );

    run_as(&c, "cmd-user", "id -u; id -G", Some("daemon"));
    let done = terminal_of(&mut c, "cmd-user").await;
    assert_eq!(state(&done), TaskState::TaskFinished, "{done:?}");
    let out = stdout_of(&agent, "cmd-user");
    let mut lines = out.lines();
    assert_eq!(
        lines.next(),
        Some(uid_of("daemon").to_string().as_str()),
        "{out}"
    );
    let groups = lines.next().unwrap_or_default();
    assert!(
        !groups.split(' ').any(|g| g == "0"),
        "root's group leaked into the task: {out}"
    );

    run_as(&c, "ghost", "true", Some("no-such-user-tessera"));
    let failed = terminal_of(&mut c, "ghost").await;
    assert_eq!(state(&failed), TaskState::TaskFailed);
    assert_eq!(
        failed.reason,
        Some(Reason::ReasonContainerLaunchFailed.as_i32())
    );
    let msg = failed.message.unwrap_or_default();
    assert!(
        msg.contains("user 'no-such-user-tessera' does not exist"),
        "{msg}"
    );
    agent.stop().await;
}

#[tokio::test]
async fn without_switching_tasks_run_as_the_agent() {
    let mut m = fake_master().await;
    let mut cfg = agent_config(&m.addr, temp_work_dir());
    cfg.switch_user = false;
    let agent = start_agent(cfg);
    let (mut c, _) = m.accept_registered("agent-1").await;
    run_as(&c, "mine", "id -u", Some("no-such-user-tessera"));
    let done = terminal_of(&mut c, "mine").await;
    assert_eq!(state(&done), TaskState::TaskFinished, "{done:?}");
    let me = nix::unistd::Uid::effective().as_raw().to_string();
    assert_eq!(stdout_of(&agent, "mine").trim(), me);
    agent.stop().await;
}

#[tokio::test]
async fn command_health_checks_run_as_the_tasks_user() {
    if !root_or_skip("command_health_checks_run_as_the_tasks_user") {
        return;
    }
    let mut m = fake_master().await;
    let agent = start_agent(agent_config(&m.addr, temp_work_dir()));
    let (mut c, _) = m.accept_registered("agent-1").await;
    // The helpers' framework user is `nobody`; run as root the check would fail.
    c.run_task_checked(
        "checked",
        "sleep 600",
        pb::HealthCheck {
            probe: Some(pb::health_check::Probe::Command(pb::CommandInfo {
                value: "test \"$(id -un)\" = nobody".into(),
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
    let healthy = tokio::time::timeout(std::time::Duration::from_secs(30), async {
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
    c.send(pb::master_message::Msg::KillTask(pb::KillTask {
        framework_id: "fw1".into(),
        task_id: "checked".into(),
        grace_ms: Some(500),
    }));
    let s = terminal_of(&mut c, "checked").await;
    assert_eq!(state(&s), TaskState::TaskKilled, "{s:?}");
    agent.stop().await;
}
