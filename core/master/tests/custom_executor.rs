//! Custom executors in the master under a paused clock: the first task of an executor pays
//! for the executor too, later ones join it, a reused executor id with another
//! `ExecutorInfo` is refused naming the field, the executor's resources stay in use after
//! its tasks ended and come back (with FAILURE to the framework) only when the agent says
//! the executor exited; scheduler MESSAGE reaches the agent, and the executor's message the
//! framework.

mod common;

use std::time::Duration;

use common::*;
use tessera_api::pb;
use tessera_master::custom::ExecutorAction;
use tessera_master::{Event, MasterConfig, MasterHandle, Operation, Subscription};
use tessera_types::parse::parse_resources;
use tessera_types::{
    CommandInfo, ExecutorId, ExecutorInfo, Filters, Reason, TaskInfo, TaskState, TaskStatus,
};

fn cfg() -> MasterConfig {
    let mut c = config();
    c.agent_timeout = Duration::from_secs(3600);
    c
}

fn executor(cmd: &str) -> ExecutorInfo {
    ExecutorInfo {
        executor_id: ExecutorId::new("ex").unwrap(),
        framework_id: None,
        name: None,
        resources: parse_resources("cpus:0.5;mem:64").unwrap(),
        command: Some(CommandInfo::shell(cmd)),
    }
}

fn custom_task(id: &str, agent: &tessera_types::AgentId, e: &ExecutorInfo) -> TaskInfo {
    let mut t = task(id, agent, "cpus:1;mem:32");
    t.command = CommandInfo::default();
    t.executor_id = Some(e.executor_id.clone());
    t.executor = Some(e.clone());
    t
}

fn run_tasks(agent: &mut FakeAgent) -> Vec<pb::RunTask> {
    let mut out = Vec::new();
    while let Ok(m) = agent.rx.try_recv() {
        if let Some(pb::master_message::Msg::RunTask(rt)) = m.msg {
            out.push(rt);
        }
    }
    out
}

/// The cpus of the next offers, which are then declined without a filter (so the next
/// offer holds everything free on the agent).
async fn offered_cpus(h: &MasterHandle, sub: &mut Subscription) -> f64 {
    let offers = next_offers(sub).await;
    let cpus = offers
        .iter()
        .map(|o| o.resources.scalar("cpus").as_f64())
        .sum();
    let ids = offers.into_iter().map(|o| o.id).collect();
    h.decline(
        sub.framework_id.clone(),
        ids,
        Filters {
            refuse_seconds: 0.0,
        },
    )
    .await
    .unwrap();
    cpus
}

async fn error_update(sub: &mut Subscription) -> TaskStatus {
    let s = next_update(sub).await;
    assert_eq!(s.state, TaskState::TaskError, "{s:?}");
    assert_eq!(s.reason, Some(Reason::ReasonTaskInvalid));
    s
}

#[tokio::test(start_paused = true)]
async fn a_custom_executor_holds_its_resources_until_it_exits() {
    let (h, _stop) = start(cfg());
    let (mut agent, aid) = agent_up(&h, 1, "cpus:4;mem:1024").await;
    let mut sub = h.subscribe(framework("f", "r", vec![])).await.unwrap();
    let fw = sub.framework_id.clone();
    let e = executor("./my-executor");

    // Two tasks of one new executor in one ACCEPT: 1 + 1 cpus for the tasks, 0.5 once for
    // the executor; the third task names the same id with another command.
    let offers = next_offers(&mut sub).await;
    let mut other = e.clone();
    other.command = Some(CommandInfo::shell("./another"));
    let ops = vec![Operation::Launch(vec![
        custom_task("t1", &aid, &e),
        custom_task("t2", &aid, &e),
        custom_task("t3", &aid, &other),
    ])];
    let ids = offers.iter().map(|o| o.id.clone()).collect();
    h.accept(
        fw.clone(),
        ids,
        ops,
        Filters {
            refuse_seconds: 0.0,
        },
    )
    .await
    .unwrap();
    let err = error_update(&mut sub).await;
    assert_eq!(err.task_id.as_str(), "t3");
    let msg = err.message.unwrap_or_default();
    assert!(
        msg.contains(".executor: executor 'ex' already runs"),
        "{msg}"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    let sent = run_tasks(&mut agent);
    assert_eq!(sent.len(), 2, "{sent:?}");
    let pb_exec = sent[0]
        .task
        .as_ref()
        .and_then(|t| t.executor.clone())
        .unwrap();
    assert_eq!(pb_exec.command.unwrap().value, "./my-executor");
    assert_eq!(offered_cpus(&h, &mut sub).await, 4.0 - 2.5);

    // Both tasks end; the executor still runs and still holds its 0.5 cpus.
    for t in ["t1", "t2"] {
        let tid = tessera_types::TaskId::new(t).unwrap();
        let uuid = uuid::Uuid::new_v4().to_string();
        agent
            .status(&h, &fw, &tid, TaskState::TaskFinished, &uuid)
            .await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(offered_cpus(&h, &mut sub).await, 3.5);

    // Scheduler MESSAGE goes to the agent; the executor's message comes back.
    h.send_to_executor(
        fw.clone(),
        aid.clone(),
        e.executor_id.clone(),
        ExecutorAction::Message(b"ping".to_vec()),
    )
    .await
    .unwrap();
    let got = loop {
        let m = agent.rx.recv().await.unwrap();
        if let Some(pb::master_message::Msg::FrameworkMessage(m)) = m.msg {
            break m;
        }
    };
    assert_eq!(
        (got.executor_id.as_str(), got.data.as_slice()),
        ("ex", &b"ping"[..])
    );
    agent
        .send(
            &h,
            pb::agent_message::Msg::ExecutorMessage(pb::ExecutorMessage {
                framework_id: fw.to_string(),
                executor_id: "ex".into(),
                data: b"pong".to_vec(),
            }),
        )
        .await;
    loop {
        if let Event::Message {
            executor_id, data, ..
        } = next_event(&mut sub).await
        {
            assert_eq!(
                (executor_id.as_str(), data.as_slice()),
                ("ex", &b"pong"[..])
            );
            break;
        }
    }

    // The executor exits: FAILURE with its status, and its resources come back.
    agent
        .send(
            &h,
            pb::agent_message::Msg::ExecutorExited(pb::ExecutorExited {
                framework_id: fw.to_string(),
                executor_id: "ex".into(),
                exit_code: Some(7),
                message: "Executor exited with status 7".into(),
            }),
        )
        .await;
    loop {
        if let Event::ExecutorFailure {
            executor_id,
            status,
            ..
        } = next_event(&mut sub).await
        {
            assert_eq!((executor_id.as_str(), status), ("ex", Some(7)));
            break;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(offered_cpus(&h, &mut sub).await, 4.0);
}
