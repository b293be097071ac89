//! LAUNCH_GROUP over the v1 scheduler API (JSON), with a fake agent: a valid group of two
//! tasks reaches the agent as one RunTaskGroup, its updates name the default executor, and
//! `/master/state` and GET_EXECUTORS list the tasks and the executor; the executor's
//! resources come back when its last task ends. Invalid groups end every task TASK_ERROR
//! (REASON_TASK_GROUP_INVALID) with a message naming the problem, and nothing leaks: no
//! task, no executor, nothing used on the agent, the whole agent offered again.

mod common;
#[path = "support/sched.rs"]
mod sched;

use std::time::Duration;

use common::FakeAgent;
use common::http::request;
use sched::{Sched, framework_info, master, operator, scalar};
use serde_json::{Value, json};
use tessera_api::pb;
use tessera_types::{FrameworkId, TaskId, TaskState};

const AGENT: &str = "cpus:2;mem:1024";

fn res(cpus: f64, mem: f64) -> Value {
    json!([
        {"name": "cpus", "type": "SCALAR", "scalar": {"value": cpus}},
        {"name": "mem", "type": "SCALAR", "scalar": {"value": mem}},
    ])
}

fn task(id: &str, agent: &str, cpus: f64) -> Value {
    json!({"name": id, "task_id": {"value": id}, "agent_id": {"value": agent},
           "resources": res(cpus, 64.0), "command": {"value": "sleep 1", "shell": true}})
}

fn executor(id: &str, cpus: f64, mem: f64) -> Value {
    json!({"type": "DEFAULT", "executor_id": {"value": id}, "resources": res(cpus, mem)})
}

fn launch_group(executor: Value, tasks: Vec<Value>) -> Value {
    json!({"type": "LAUNCH_GROUP",
           "launch_group": {"executor": executor, "task_group": {"tasks": tasks}}})
}

fn accept(offer: &Value, ops: Vec<Value>) -> Value {
    json!({"type": "ACCEPT", "accept": {"offer_ids": [offer["id"].clone()], "operations": ops,
           "filters": {"refuse_seconds": 0}}})
}

async fn offer(s: &mut Sched) -> Value {
    s.event_of("OFFERS").await["offers"]["offers"][0].clone()
}

async fn state(addr: &str) -> Value {
    let r = request(addr, "GET", "/master/state", &[], b"").await;
    assert_eq!(r.status, 200);
    serde_json::from_str(&r.body().await).unwrap()
}

/// The next UPDATE's status.
async fn update(s: &mut Sched) -> Value {
    s.event_of("UPDATE").await["update"]["status"].clone()
}

/// Sends a status update for `task` from the fake agent.
async fn report(
    agent: &FakeAgent,
    m: &tessera_master::RunningMaster,
    fw: &str,
    task: &str,
    state: TaskState,
) {
    let fw = FrameworkId::new(fw).unwrap();
    let uuid = uuid::Uuid::new_v4().to_string();
    agent
        .status(&m.handle, &fw, &TaskId::new(task).unwrap(), state, &uuid)
        .await;
}

/// Nothing of a rejected group is left: no tasks, no executors, nothing used, and the
/// agent's whole resources are offered again.
async fn assert_nothing_leaked(addr: &str, s: &mut Sched) {
    let st = state(addr).await;
    let f = &st["frameworks"][0];
    assert_eq!(f["tasks"], json!([]), "{st}");
    assert_eq!(f["executors"], json!([]), "{st}");
    assert_eq!(st["slaves"][0]["used_resources"]["cpus"], 0.0, "{st}");
    assert_eq!(st["slaves"][0]["used_resources"]["mem"], 0.0, "{st}");
    let o = offer(s).await;
    assert_eq!(scalar(&o["resources"], "cpus"), 2.0, "{o}");
    assert_eq!(scalar(&o["resources"], "mem"), 1024.0, "{o}");
    s.call(
        json!({"type": "DECLINE", "decline": {"offer_ids": [o["id"].clone()],
        "filters": {"refuse_seconds": 0}}}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_group_of_two_reaches_the_agent_as_one_message_and_runs() {
    let (m, _stop) = master(|_| {}).await;
    let addr = m.addr.to_string();
    let mut agent = FakeAgent::attach(&m.handle, 1).await;
    agent.register(&m.handle, AGENT, None, vec![]).await;
    let aid = agent.id.clone().unwrap().to_string();
    let mut s = Sched::subscribe(&addr, framework_info("group", "eng", &[])).await;

    let o = offer(&mut s).await;
    let group = launch_group(
        executor("exec-1", 0.1, 32.0),
        vec![task("t1", &aid, 0.5), task("t2", &aid, 0.25)],
    );
    let (st, body) = s.call(accept(&o, vec![group])).await;
    assert_eq!(st, 202, "{body}");

    // One message carries the whole group.
    let pb::master_message::Msg::RunTaskGroup(run) = agent.next().await else {
        panic!("expected RunTaskGroup")
    };
    assert_eq!(run.framework_id, s.fw);
    let e = run.executor.as_ref().expect("the executor");
    assert_eq!(e.executor_id, "exec-1");
    assert_eq!(e.framework_id.as_deref(), Some(s.fw.as_str()));
    let ids: Vec<&str> = run.tasks.iter().map(|t| t.task_id.as_str()).collect();
    assert_eq!(ids, ["t1", "t2"]);
    assert!(
        run.tasks
            .iter()
            .all(|t| t.executor_id.as_deref() == Some("exec-1"))
    );

    // The master lists the tasks under the executor, and counts the executor as used.
    let st = state(&addr).await;
    let f = &st["frameworks"][0];
    let tasks = f["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2, "{st}");
    assert!(tasks.iter().all(|t| t["executor_id"] == "exec-1"), "{st}");
    assert!(tasks.iter().all(|t| t["state"] == "TASK_STAGING"), "{st}");
    let execs = f["executors"].as_array().unwrap();
    assert_eq!(execs.len(), 1, "{st}");
    assert_eq!(execs[0]["executor_id"], "exec-1");
    assert_eq!(execs[0]["type"], "DEFAULT");
    assert_eq!(execs[0]["slave_id"], aid.as_str());
    assert_eq!(execs[0]["resources"]["cpus"], 0.1);
    assert_eq!(st["slaves"][0]["used_resources"]["cpus"], 0.85, "{st}");
    assert_eq!(st["slaves"][0]["used_resources"]["mem"], 160.0, "{st}");
    let (code, ex) = operator(&addr, json!({"type": "GET_EXECUTORS"})).await;
    assert_eq!(code, 200);
    let list = ex["get_executors"]["executors"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{ex}");
    assert_eq!(list[0]["executor_info"]["executor_id"]["value"], "exec-1");
    assert_eq!(list[0]["executor_info"]["type"], "DEFAULT");
    assert_eq!(list[0]["agent_id"]["value"], aid.as_str());

    // Updates name the executor.
    for t in ["t1", "t2"] {
        report(&agent, &m, &s.fw, t, TaskState::TaskRunning).await;
        let u = update(&mut s).await;
        assert_eq!(u["task_id"]["value"], t);
        assert_eq!(u["state"], "TASK_RUNNING");
        assert_eq!(u["executor_id"]["value"], "exec-1", "{u}");
    }
    // The executor holds its resources until its last task ends.
    report(&agent, &m, &s.fw, "t1", TaskState::TaskFinished).await;
    assert_eq!(update(&mut s).await["state"], "TASK_FINISHED");
    let st = state(&addr).await;
    assert_eq!(
        st["frameworks"][0]["executors"].as_array().unwrap().len(),
        1
    );
    assert_eq!(st["slaves"][0]["used_resources"]["cpus"], 0.35, "{st}");
    report(&agent, &m, &s.fw, "t2", TaskState::TaskFinished).await;
    let u = update(&mut s).await;
    assert_eq!(
        (u["state"].as_str(), u["executor_id"]["value"].as_str()),
        (Some("TASK_FINISHED"), Some("exec-1"))
    );
    let st = state(&addr).await;
    assert_eq!(st["frameworks"][0]["executors"], json!([]), "{st}");
    assert_eq!(st["slaves"][0]["used_resources"]["cpus"], 0.0, "{st}");
    let done = st["frameworks"][0]["completed_tasks"].as_array().unwrap();
    assert!(done.iter().all(|t| t["executor_id"] == "exec-1"), "{st}");
    // Everything is offered again.
    let o = offer(&mut s).await;
    assert_eq!(scalar(&o["resources"], "cpus"), 2.0, "{o}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_groups_end_task_error_naming_the_problem_and_leak_nothing() {
    let (m, _stop) = master(|_| {}).await;
    let addr = m.addr.to_string();
    let mut agent = FakeAgent::attach(&m.handle, 1).await;
    agent.register(&m.handle, AGENT, None, vec![]).await;
    let aid = agent.id.clone().unwrap().to_string();
    let mut s = Sched::subscribe(&addr, framework_info("bad-groups", "eng", &[])).await;

    let other_agent = format!("{aid}-other");
    let mut custom = executor("e", 0.1, 32.0);
    custom["type"] = json!("CUSTOM");
    let mut untyped = executor("e", 0.1, 32.0);
    untyped.as_object_mut().unwrap().remove("type");
    let mut with_command = executor("e", 0.1, 32.0);
    with_command["command"] = json!({"value": "my-executor"});
    let mut task_with_executor = task("b", &aid, 0.1);
    task_with_executor["executor"] = executor("x", 0.1, 32.0);
    let mut task_without_command = task("b", &aid, 0.1);
    task_without_command
        .as_object_mut()
        .unwrap()
        .remove("command");
    let cases: Vec<(Value, Vec<&str>, &str)> = vec![
        (
            launch_group(custom, vec![task("a", &aid, 0.1)]),
            vec!["a"],
            "launch_group.executor.type",
        ),
        (
            launch_group(untyped, vec![task("a", &aid, 0.1), task("b", &aid, 0.1)]),
            vec!["a", "b"],
            "launch_group.executor.type",
        ),
        (
            launch_group(with_command, vec![task("a", &aid, 0.1)]),
            vec!["a"],
            "launch_group.executor.command",
        ),
        (
            launch_group(executor("e", 0.001, 32.0), vec![task("a", &aid, 0.1)]),
            vec!["a"],
            "launch_group.executor.resources",
        ),
        (
            launch_group(executor("e", 0.1, 8.0), vec![task("a", &aid, 0.1)]),
            vec!["a"],
            "launch_group.executor.resources",
        ),
        (
            launch_group(
                executor("e", 0.1, 32.0),
                vec![task("a", &aid, 0.1), task("a", &aid, 0.1)],
            ),
            vec!["a", "a"],
            "launch_group.task_group.tasks[1].task_id",
        ),
        (
            launch_group(
                executor("e", 0.1, 32.0),
                vec![task("a", &aid, 0.1), task("b", &other_agent, 0.1)],
            ),
            vec!["a", "b"],
            "launch_group.task_group.tasks[1].agent_id",
        ),
        (
            launch_group(executor("e", 0.1, 32.0), vec![task("a", &other_agent, 0.1)]),
            vec!["a"],
            "launch_group.task_group.tasks[0].agent_id",
        ),
        (
            launch_group(
                executor("e", 0.1, 32.0),
                vec![task("a", &aid, 1.0), task("b", &aid, 1.0)],
            ),
            vec!["a", "b"],
            "more than what is left of the offers",
        ),
        (
            launch_group(
                executor("e", 0.1, 32.0),
                vec![task("a", &aid, 0.1), task_with_executor],
            ),
            vec!["a", "b"],
            "launch_group.task_group.tasks[1].executor",
        ),
        (
            launch_group(
                executor("e", 0.1, 32.0),
                vec![task("a", &aid, 0.1), task_without_command],
            ),
            vec!["a", "b"],
            "launch_group.task_group.tasks[1].command",
        ),
    ];
    for (op, ids, problem) in cases {
        let o = offer(&mut s).await;
        let (st, body) = s.call(accept(&o, vec![op.clone()])).await;
        assert_eq!(st, 202, "{body}");
        for id in &ids {
            let u = update(&mut s).await;
            assert_eq!(u["task_id"]["value"], *id, "{u}");
            assert_eq!(u["state"], "TASK_ERROR", "{op}: {u}");
            assert_eq!(u["reason"], "REASON_TASK_GROUP_INVALID", "{u}");
            assert_eq!(u["source"], "SOURCE_MASTER", "{u}");
            let msg = u["message"].as_str().unwrap_or_default();
            assert!(msg.contains(problem), "{problem} not in '{msg}'");
        }
        assert_nothing_leaked(&addr, &mut s).await;
    }

    // An empty group launches nothing and takes nothing.
    let o = offer(&mut s).await;
    let (st, _) = s
        .call(accept(
            &o,
            vec![launch_group(executor("e", 0.1, 32.0), vec![])],
        ))
        .await;
    assert_eq!(st, 202);
    assert_nothing_leaked(&addr, &mut s).await;

    // A LAUNCH_GROUP with an operation id fails its tasks, as LAUNCH does.
    let o = offer(&mut s).await;
    let mut op = launch_group(executor("e", 0.1, 32.0), vec![task("a", &aid, 0.1)]);
    op["id"] = json!({"value": "op-1"});
    s.call(accept(&o, vec![op])).await;
    let u = update(&mut s).await;
    assert_eq!(u["state"], "TASK_ERROR");
    assert!(
        u["message"].as_str().unwrap().contains("operations.id"),
        "{u}"
    );
    assert_nothing_leaked(&addr, &mut s).await;

    assert!(agent.rx.try_recv().is_err(), "nothing reached the agent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_executor_id_needs_the_same_executor_info_and_is_paid_for_once() {
    let (m, _stop) = master(|_| {}).await;
    let addr = m.addr.to_string();
    let mut agent = FakeAgent::attach(&m.handle, 1).await;
    agent.register(&m.handle, AGENT, None, vec![]).await;
    let aid = agent.id.clone().unwrap().to_string();
    let mut s = Sched::subscribe(&addr, framework_info("reuse", "eng", &[])).await;

    let o = offer(&mut s).await;
    let g = launch_group(executor("e", 0.1, 32.0), vec![task("a", &aid, 0.5)]);
    s.call(accept(&o, vec![g])).await;
    let pb::master_message::Msg::RunTaskGroup(_) = agent.next().await else {
        panic!("expected RunTaskGroup")
    };

    // Another ExecutorInfo under the same id: every task of the group fails.
    let o = offer(&mut s).await;
    let g = launch_group(executor("e", 0.2, 32.0), vec![task("b", &aid, 0.5)]);
    s.call(accept(&o, vec![g])).await;
    let u = update(&mut s).await;
    assert_eq!(
        (u["task_id"]["value"].as_str(), u["state"].as_str()),
        (Some("b"), Some("TASK_ERROR"))
    );
    let msg = u["message"].as_str().unwrap();
    assert!(
        msg.contains("launch_group.executor") && msg.contains("same ExecutorInfo"),
        "{msg}"
    );

    // The same ExecutorInfo: the tasks join the running executor, which is not paid twice.
    let o = offer(&mut s).await;
    assert_eq!(scalar(&o["resources"], "cpus"), 1.4, "{o}");
    let g = launch_group(executor("e", 0.1, 32.0), vec![task("c", &aid, 0.5)]);
    s.call(accept(&o, vec![g])).await;
    let pb::master_message::Msg::RunTaskGroup(run) = agent.next().await else {
        panic!("expected RunTaskGroup")
    };
    assert_eq!(run.tasks[0].task_id, "c");
    let st = state(&addr).await;
    assert_eq!(st["slaves"][0]["used_resources"]["cpus"], 1.1, "{st}");
    assert_eq!(
        st["frameworks"][0]["executors"].as_array().unwrap().len(),
        1,
        "{st}"
    );

    // A kill of one task goes to the agent (whose default executor ends the group).
    s.call(json!({"type": "KILL", "kill": {"task_id": {"value": "a"}}}))
        .await;
    let pb::master_message::Msg::KillTask(k) = agent.next().await else {
        panic!("expected KillTask")
    };
    assert_eq!(k.task_id, "a");
    for t in ["a", "c"] {
        report(&agent, &m, &s.fw, t, TaskState::TaskKilled).await;
        assert_eq!(update(&mut s).await["state"], "TASK_KILLED");
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let st = state(&addr).await;
    assert_eq!(st["frameworks"][0]["executors"], json!([]), "{st}");
    assert_eq!(st["slaves"][0]["used_resources"]["cpus"], 0.0, "{st}");
}

/// A running task `id` of group executor `e1` (0.1 cpus / 32 MB) of framework `fw-x`, as
/// an agent reports it when it re-registers.
fn reported(id: &str, agent: &str) -> pb::RunningTask {
    use tessera_types::parse::parse_resources;
    let exec = tessera_types::ExecutorId::new("e1").unwrap();
    let task = tessera_types::TaskInfo {
        name: id.into(),
        task_id: TaskId::new(id).unwrap(),
        agent_id: tessera_types::AgentId::new(agent).unwrap(),
        resources: parse_resources("cpus:0.5;mem:64").unwrap(),
        command: tessera_types::CommandInfo::shell("sleep 60"),
        executor_id: Some(exec.clone()),
        kill_grace_ms: None,
        container: None,
        health_check: None,
        executor: None,
    };
    let executor = tessera_types::ExecutorInfo {
        executor_id: exec,
        framework_id: Some(FrameworkId::new("fw-x").unwrap()),
        name: None,
        resources: parse_resources("cpus:0.1;mem:32").unwrap(),
        command: None,
    };
    pb::RunningTask {
        framework_id: "fw-x".into(),
        task: Some(tessera_api::convert::task_to_pb(&task)),
        state: TaskState::TaskRunning.as_i32(),
        executor: Some(tessera_api::convert::executor_to_pb(&executor)),
    }
}

async fn executors_and_used_cpus(addr: &str) -> (Vec<Value>, f64) {
    let (code, ex) = operator(addr, json!({"type": "GET_EXECUTORS"})).await;
    assert_eq!(code, 200);
    let list = ex["get_executors"]["executors"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let st = state(addr).await;
    let used = st["slaves"][0]["used_resources"]["cpus"].as_f64().unwrap();
    (list, used)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executors_come_back_with_their_agent_and_are_counted_once() {
    let (m, _stop) = master(|_| {}).await;
    let addr = m.addr.to_string();
    let mut agent = FakeAgent::attach(&m.handle, 1).await;
    agent.register(&m.handle, AGENT, None, vec![]).await;
    let aid = agent.id.clone().unwrap();

    // The agent comes back (as after a master restart) with a group the master did not
    // know: its executor is rebuilt and counted with its tasks.
    let tasks = || vec![reported("a", aid.as_str()), reported("b", aid.as_str())];
    let mut back = FakeAgent::attach(&m.handle, 2).await;
    let reply = back.register(&m.handle, AGENT, Some(&aid), tasks()).await;
    assert!(matches!(reply, pb::master_message::Msg::Registered(_)));
    let (list, used) = executors_and_used_cpus(&addr).await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["executor_info"]["executor_id"]["value"], "e1");
    assert_eq!(list[0]["agent_id"]["value"], aid.as_str());
    assert_eq!(used, 1.1);

    // Again (a reconnect): nothing is counted twice.
    let mut again = FakeAgent::attach(&m.handle, 3).await;
    again.register(&m.handle, AGENT, Some(&aid), tasks()).await;
    let (list, used) = executors_and_used_cpus(&addr).await;
    assert_eq!((list.len(), used), (1, 1.1));

    // Back without the tasks: they are gone, and so is their executor.
    let mut empty = FakeAgent::attach(&m.handle, 4).await;
    empty.register(&m.handle, AGENT, Some(&aid), vec![]).await;
    let (list, used) = executors_and_used_cpus(&addr).await;
    assert_eq!((list.len(), used), (0, 0.0));
    // The whole agent is offered.
    let mut s = Sched::subscribe(&addr, framework_info("after", "eng", &[])).await;
    let o = offer(&mut s).await;
    assert_eq!(scalar(&o["resources"], "cpus"), 2.0, "{o}");
}
