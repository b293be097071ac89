//! LAUNCH_GROUP on the wire: the v1 JSON and protobuf codecs carry `launch_group`
//! (executor of type DEFAULT, task group) both ways, the conversion to a `TaskGroup`
//! validates it naming the field, and the internal `RunTaskGroup` round-trips it.

use serde_json::json;
use tessera_api::convert::{executor_to_pb, task_group_from_pb, task_to_pb};
use tessera_api::mesos::{convert, json, protobuf, scheduler, v1};
use tessera_types::TaskState;

fn accept(launch_group: serde_json::Value) -> scheduler::Call {
    let body = json!({"type": "ACCEPT", "framework_id": {"value": "fw-1"}, "accept": {
        "offer_ids": [{"value": "o-1"}],
        "operations": [{"type": "LAUNCH_GROUP", "launch_group": launch_group}]}});
    json::decode::<scheduler::Call>(body.to_string().as_bytes()).unwrap()
}

fn resources(cpus: f64, mem: f64) -> serde_json::Value {
    json!([{"name": "cpus", "type": "SCALAR", "scalar": {"value": cpus}},
           {"name": "mem", "type": "SCALAR", "scalar": {"value": mem}}])
}

fn group_json() -> serde_json::Value {
    json!({
        "executor": {"type": "DEFAULT", "executor_id": {"value": "e1"},
                     "framework_id": {"value": "fw-1"}, "resources": resources(0.1, 32.0)},
        "task_group": {"tasks": [
            {"name": "a", "task_id": {"value": "a"}, "agent_id": {"value": "s1"},
             "resources": resources(0.5, 64.0), "command": {"value": "sleep 1"}},
            {"name": "b", "task_id": {"value": "b"}, "agent_id": {"value": "s1"},
             "resources": resources(0.5, 64.0), "command": {"value": "sleep 2"},
             "kill_policy": {"grace_period": {"nanoseconds": 2000000000}}}
        ]}
    })
}

fn launch_group(c: &scheduler::Call) -> &v1::offer::operation::LaunchGroup {
    c.accept.as_ref().unwrap().operations[0]
        .launch_group
        .as_ref()
        .unwrap()
}

#[test]
fn json_launch_group_becomes_a_task_group() {
    let c = accept(group_json());
    let op = &c.accept.as_ref().unwrap().operations[0];
    assert_eq!(op.r#type(), v1::offer::operation::Type::LaunchGroup);
    let g = convert::task_group_from_v1("operations[0].launch_group", launch_group(&c)).unwrap();
    assert_eq!(g.executor.executor_id.as_str(), "e1");
    assert_eq!(g.executor.framework_id.as_ref().unwrap().as_str(), "fw-1");
    assert_eq!(g.executor.resources.scalar("mem").as_f64(), 32.0);
    let ids: Vec<&str> = g.tasks.iter().map(|t| t.task_id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    assert!(
        g.tasks
            .iter()
            .all(|t| t.executor_id.as_ref().map(|e| e.as_str()) == Some("e1"))
    );
    assert_eq!(g.tasks[1].kill_grace_ms, Some(2000));
    assert_eq!(g.total_resources().unwrap().scalar("cpus").as_f64(), 1.1);
}

#[test]
fn json_and_protobuf_round_trip_the_operation() {
    let c = accept(group_json());
    let bytes = protobuf::encode(&c);
    let back = protobuf::decode::<scheduler::Call>(&bytes).unwrap();
    assert_eq!(back, c);
    let printed = json::to_value(&c);
    let lg = &printed["accept"]["operations"][0]["launch_group"];
    assert_eq!(lg["executor"]["type"], "DEFAULT");
    assert_eq!(lg["executor"]["executor_id"]["value"], "e1");
    assert_eq!(lg["task_group"]["tasks"][1]["task_id"]["value"], "b");
    // The printer adds documented defaults (`shell: true`), so compare printed forms.
    let reparsed = json::from_value::<scheduler::Call>(&printed).unwrap();
    assert_eq!(json::to_value(&reparsed), printed);

    // Ours → v1 → ours.
    let g = convert::task_group_from_v1("lg", launch_group(&c)).unwrap();
    let op = convert::launch_group_to_v1(&g, None);
    let again = convert::task_group_from_v1("lg", op.launch_group.as_ref().unwrap()).unwrap();
    assert_eq!(again, g);
}

#[test]
fn invalid_groups_name_the_field() {
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|g| g["executor"]["type"] = json!("CUSTOM")),
            "lg.executor.type",
        ),
        (
            Box::new(|g| {
                g["executor"].as_object_mut().unwrap().remove("type");
            }),
            "lg.executor.type",
        ),
        (
            Box::new(|g| g["executor"]["command"] = json!({"value": "x"})),
            "lg.executor.command",
        ),
        (
            Box::new(|g| g["executor"]["resources"] = resources(0.1, 1.0)),
            "lg.executor.resources",
        ),
        (
            Box::new(|g| {
                g["executor"]["container"] = json!({"type": "DOCKER",
                "docker": {"image": "alpine"}})
            }),
            "lg.executor.container.type",
        ),
        (
            Box::new(|g| g["task_group"]["tasks"] = json!([])),
            "lg.task_group.tasks",
        ),
        (
            Box::new(|g| g["task_group"]["tasks"][1]["task_id"] = json!({"value": "a"})),
            "lg.task_group.tasks[1].task_id",
        ),
        (
            Box::new(|g| g["task_group"]["tasks"][1]["agent_id"] = json!({"value": "s2"})),
            "lg.task_group.tasks[1].agent_id",
        ),
        (
            Box::new(|g| {
                g["task_group"]["tasks"][0]["executor"] = json!({"type": "DEFAULT",
                    "executor_id": {"value": "x"}})
            }),
            "lg.task_group.tasks[0].executor",
        ),
        (
            Box::new(|g| {
                g["task_group"]["tasks"][0]["container"] = json!({"type": "DOCKER",
                    "docker": {"image": "alpine"}})
            }),
            "lg.task_group.tasks[0].container.type",
        ),
        (
            Box::new(|g| g["task_group"]["tasks"][0]["resources"] = json!([])),
            "lg.task_group.tasks[0].resources",
        ),
    ];
    for (edit, field) in cases {
        let mut g = group_json();
        edit(&mut g);
        let c = accept(g);
        let e = convert::task_group_from_v1("lg", launch_group(&c)).unwrap_err();
        assert!(e.to_string().starts_with(field), "{field}: {e}");
    }
}

#[test]
fn a_group_without_its_required_parts_is_not_initialized() {
    let body = json!({"type": "ACCEPT", "framework_id": {"value": "fw-1"}, "accept": {
        "offer_ids": [{"value": "o-1"}],
        "operations": [{"type": "LAUNCH_GROUP", "launch_group": {"task_group": {"tasks": []}}}]}});
    let e = json::decode::<scheduler::Call>(body.to_string().as_bytes()).unwrap_err();
    assert!(e.to_string().contains("executor"), "{e}");
}

#[test]
fn the_agent_message_round_trips_the_group() {
    let c = accept(group_json());
    let g = convert::task_group_from_v1("lg", launch_group(&c)).unwrap();
    let tasks: Vec<_> = g.tasks.iter().map(task_to_pb).collect();
    let back = task_group_from_pb("run", Some(&executor_to_pb(&g.executor)), &tasks).unwrap();
    assert_eq!(back, g);
    let e = task_group_from_pb("run", None, &tasks).unwrap_err();
    assert_eq!(e.to_string(), "run.executor: is required");
    let mut other = tasks.clone();
    other[0].executor_id = Some("zz".into());
    let e = task_group_from_pb("run", Some(&executor_to_pb(&g.executor)), &other).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("run.task_group.tasks[0].executor"),
        "{e}"
    );
}

#[test]
fn updates_of_group_tasks_name_the_executor() {
    let status = tessera_types::TaskStatus {
        task_id: tessera_types::TaskId::new("a").unwrap(),
        state: TaskState::TaskRunning,
        reason: None,
        message: None,
        source: tessera_types::UpdateSource::SourceExecutor,
        agent_id: None,
        framework_id: None,
        uuid: None,
        timestamp: 1.0,
        exit_code: None,
        healthy: None,
    };
    let e1 = tessera_types::ExecutorId::new("e1").unwrap();
    let v = convert::task_status_to_v1_in(&status, Some(&e1));
    assert_eq!(v.executor_id.unwrap().value, "e1");
    let v = convert::task_status_to_v1(&status);
    assert_eq!(v.executor_id.unwrap().value, "a");
}
