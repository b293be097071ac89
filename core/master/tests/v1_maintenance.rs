//! Mesos maintenance primitives: a schedule posted through either API reads back the same
//! through both (JSON and protobuf); invalid schedules and machine lists are a 400 naming
//! the field and change nothing; a framework with a task on a scheduled machine gets an
//! inverse offer with the window's unavailability, which offers from that agent carry too;
//! the maintenance status lists the framework's answer; bringing the machine down removes
//! its agent (its task lost, FAILURE) and keeps it out until the machine is brought up.
//! Over real HTTP; task states and the restart are in `maintenance.rs`, at the actor's
//! interface under a paused clock.

mod common;
#[path = "support/sched.rs"]
mod sched;

use common::FakeAgent;
use common::http::request;
use prost::Message;
use sched::{Sched, framework_info, master, operator};
use serde_json::{Value, json};
use tessera_api::mesos::{maintenance, master as mm, v1};
use tessera_api::pb::master_message::Msg;
use tessera_types::{TaskId, TaskState};

const START_NS: i64 = 1_893_456_000_123_456_789;
const HOUR_NS: i64 = 3_600_000_000_000;

fn window(hosts: &[&str], start_ns: i64) -> Value {
    json!({"machine_ids": hosts.iter().map(|h| json!({"hostname": h})).collect::<Vec<_>>(),
           "unavailability": {"start": {"nanoseconds": start_ns},
                              "duration": {"nanoseconds": HOUR_NS}}})
}

async fn legacy(addr: &str, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let body = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    let r = request(
        addr,
        method,
        path,
        &[("Content-Type", "application/json")],
        &body,
    )
    .await;
    let status = r.status;
    let text = r.body().await;
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn schedule_v1(addr: &str) -> Value {
    let (st, body) = operator(addr, json!({"type": "GET_MAINTENANCE_SCHEDULE"})).await;
    assert_eq!(st, 200, "{body}");
    body["get_maintenance_schedule"]["schedule"].clone()
}

async fn status_v1(addr: &str) -> Value {
    let (st, body) = operator(addr, json!({"type": "GET_MAINTENANCE_STATUS"})).await;
    assert_eq!(st, 200, "{body}");
    body["get_maintenance_status"]["status"].clone()
}

fn update(schedule: Value) -> Value {
    json!({"type": "UPDATE_MAINTENANCE_SCHEDULE",
           "update_maintenance_schedule": {"schedule": schedule}})
}

/// A 400 whose body contains every one of `wanted`.
fn refused(st: u16, body: &Value, wanted: &[&str]) {
    assert_eq!(st, 400, "{body}");
    let text = body.as_str().unwrap_or_default();
    for w in wanted {
        assert!(text.contains(w), "{w:?} not in {text:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_read_back_through_both_apis_and_bad_ones_change_nothing() {
    let (m, _stop) = master(|_| {}).await;
    let a = m.addr.to_string();
    assert_eq!(schedule_v1(&a).await, json!({}), "no schedule yet");

    // Legacy POST, read back through both APIs; hostnames compare lowercased.
    let posted = json!({"windows": [window(&["Host1.Example"], START_NS)]});
    let (st, _) = legacy(&a, "POST", "/master/maintenance/schedule", &posted).await;
    assert_eq!(st, 200);
    let want = json!({"windows": [window(&["host1.example"], START_NS)]});
    let (st, got) = legacy(&a, "GET", "/master/maintenance/schedule", &Value::Null).await;
    assert_eq!(st, 200);
    assert_eq!(got, want, "start and duration exact to the nanosecond");
    assert_eq!(schedule_v1(&a).await, want);

    // v1 UPDATE, read back through the legacy endpoint, and in protobuf.
    let good = json!({"windows": [window(&["h1"], START_NS),
                                  window(&["h2", "h3"], START_NS + HOUR_NS)]});
    let (st, body) = operator(&a, update(good.clone())).await;
    assert_eq!(st, 200, "{body}");
    let (_, got) = legacy(&a, "GET", "/maintenance/schedule", &Value::Null).await;
    assert_eq!(got, good);
    let mut call = mm::Call::default();
    call.set_type(mm::call::Type::GetMaintenanceSchedule);
    let r = request(
        &a,
        "POST",
        "/api/v1",
        &[
            ("Content-Type", "application/x-protobuf"),
            ("Accept", "application/x-protobuf"),
        ],
        &call.encode_to_vec(),
    )
    .await;
    assert_eq!(r.status, 200);
    let resp = mm::Response::decode(r.bytes().await.as_slice()).unwrap();
    let sched = resp.get_maintenance_schedule.unwrap().schedule;
    assert_eq!(sched.windows.len(), 2);
    assert_eq!(
        sched.windows[1].machine_ids[1],
        v1::MachineId {
            hostname: Some("h3".into()),
            ip: None
        }
    );
    assert_eq!(
        sched.windows[1].unavailability.start.nanoseconds,
        START_NS + HOUR_NS
    );

    // Each bad request is a 400 naming the field and saying what to do; nothing changes.
    let no_machines = json!({"windows": [{"machine_ids": [],
        "unavailability": {"start": {"nanoseconds": 1}}}]});
    let (st, body) = operator(&a, update(no_machines)).await;
    refused(
        st,
        &body,
        &[
            "update_maintenance_schedule.schedule.windows[0].machine_ids",
            "at least one machine",
        ],
    );
    let no_unavailability = json!({"windows": [{"machine_ids": [{"hostname": "h1"}]}]});
    let (st, body) = legacy(
        &a,
        "POST",
        "/master/maintenance/schedule",
        &no_unavailability,
    )
    .await;
    refused(st, &body, &["windows[0].unavailability", "must be set"]);
    let (st, body) = operator(&a, update(no_unavailability)).await;
    refused(
        st,
        &body,
        &["update_maintenance_schedule.schedule.windows[0].unavailability"],
    );
    let nameless = json!({"windows": [{"machine_ids": [{"hostname": "h1"}, {}],
        "unavailability": {"start": {"nanoseconds": 1}}}]});
    let (st, body) = legacy(&a, "POST", "/master/maintenance/schedule", &nameless).await;
    refused(
        st,
        &body,
        &["windows[0].machine_ids[1]", "'hostname' and 'ip' are empty"],
    );
    let twice = json!({"windows": [window(&["h1"], 1), window(&["h2", "H1"], 2)]});
    let (st, body) = operator(&a, update(twice)).await;
    refused(
        st,
        &body,
        &["windows[1].machine_ids[1]", "appears more than once"],
    );
    let negative = json!({"windows": [{"machine_ids": [{"hostname": "h1"}],
        "unavailability": {"start": {"nanoseconds": 1}, "duration": {"nanoseconds": -5}}}]});
    let (st, body) = operator(&a, update(negative)).await;
    refused(
        st,
        &body,
        &["windows[0].unavailability.duration", "negative"],
    );
    let (st, body) = operator(
        &a,
        json!({"type": "START_MAINTENANCE", "start_maintenance": {"machines": [
            {"hostname": "h1"}, {"hostname": "nowhere"}]}}),
    )
    .await;
    refused(
        st,
        &body,
        &[
            "start_maintenance.machines[1]",
            r#"{"hostname":"nowhere"}"#,
            "not part of a maintenance schedule",
        ],
    );
    let (st, body) = legacy(
        &a,
        "POST",
        "/master/machine/up",
        &json!([{"hostname": "h1"}]),
    )
    .await;
    refused(st, &body, &["[0]", "not in DOWN mode"]);
    let (st, body) = legacy(
        &a,
        "POST",
        "/master/machine/down",
        &json!({"hostname": "h1"}),
    )
    .await;
    refused(st, &body, &["JSON array"]);
    assert_eq!(schedule_v1(&a).await, good, "refused calls changed nothing");
    assert_eq!(
        status_v1(&a).await["draining_machines"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    // A DOWN machine may not be dropped from the schedule until it is brought up.
    let (st, _) = legacy(
        &a,
        "POST",
        "/master/machine/down",
        &json!([{"hostname": "h2"}]),
    )
    .await;
    assert_eq!(st, 200);
    let without_h2 = json!({"windows": [window(&["h1", "h3"], START_NS)]});
    let (st, body) = operator(&a, update(without_h2.clone())).await;
    refused(
        st,
        &body,
        &[r#"{"hostname":"h2"}"#, "is DOWN", "STOP_MAINTENANCE"],
    );
    assert_eq!(schedule_v1(&a).await, good);
    let (st, _) = operator(
        &a,
        json!({"type": "STOP_MAINTENANCE", "stop_maintenance": {"machines": [{"hostname": "h2"}]}}),
    )
    .await;
    assert_eq!(st, 200);
    let (st, body) = operator(&a, update(without_h2.clone())).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(schedule_v1(&a).await, without_h2);
}

/// The offers of `ev` for agent `aid`.
fn offers_for(ev: &Value, aid: &str) -> Vec<Value> {
    ev["offers"]["offers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["agent_id"]["value"] == aid)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_machine_drains_through_inverse_offers_then_goes_down_and_up() {
    let (m, _stop) = master(|_| {}).await;
    let addr = m.addr.to_string();
    let mut agent = FakeAgent::attach(&m.handle, 1).await;
    agent
        .register(&m.handle, "cpus:2;mem:1024", None, vec![])
        .await;
    let aid = agent.id.clone().unwrap().to_string();
    let (_other, other_id) = common::agent_up(&m.handle, 2, "cpus:1;mem:512").await;
    let mut f = Sched::subscribe(&addr, framework_info("f", "eng", &[])).await;

    // A task on host1.
    let o = loop {
        let ev = f.event_of("OFFERS").await;
        if let Some(o) = offers_for(&ev, &aid).pop() {
            break o;
        }
    };
    let launch = json!({"type": "ACCEPT", "accept": {"offer_ids": [o["id"].clone()],
        "operations": [{"type": "LAUNCH", "launch": {"task_infos": [{"name": "t",
            "task_id": {"value": "t1"}, "agent_id": {"value": aid},
            "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.5},
                           "allocation_info": {"role": "eng"}}],
            "command": {"value": "sleep 60"}}]}}],
        "filters": {"refuse_seconds": 0}}});
    assert_eq!(f.call(launch).await.0, 202);
    assert!(matches!(agent.next().await, Msg::RunTask(_)));
    let fw = tessera_types::FrameworkId::new(f.fw.clone()).unwrap();
    let t1 = TaskId::new("t1").unwrap();
    agent
        .status(&m.handle, &fw, &t1, TaskState::TaskRunning, "u-1")
        .await;
    assert_eq!(
        f.event_of("UPDATE").await["update"]["status"]["state"],
        "TASK_RUNNING"
    );

    // host1 is scheduled: the framework is asked to give it back, for that window.
    let (st, body) = operator(
        &addr,
        update(json!({"windows": [window(&["HOST1"], START_NS)]})),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let unavailability = json!({"start": {"nanoseconds": START_NS},
                                "duration": {"nanoseconds": HOUR_NS}});
    let ev = f.event_of("INVERSE_OFFERS").await;
    let io = &ev["inverse_offers"]["inverse_offers"];
    assert_eq!(io.as_array().unwrap().len(), 1, "{ev}");
    assert_eq!(io[0]["agent_id"]["value"], aid.as_str());
    assert_eq!(io[0]["unavailability"], unavailability);
    let io_id = io[0]["id"]["value"].as_str().unwrap().to_string();

    // Offers from host1 carry the window; offers from elsewhere carry none.
    let offered = loop {
        let ev = f.event_of("OFFERS").await;
        for o in offers_for(&ev, other_id.as_str()) {
            assert!(o.get("unavailability").is_none(), "{o}");
        }
        if let Some(o) = offers_for(&ev, &aid)
            .into_iter()
            .find(|o| o.get("unavailability").is_some())
        {
            break o;
        }
    };
    assert_eq!(offered["unavailability"], unavailability);

    // The framework declines; the status shows its answer for the draining machine.
    let (st, _) = f
        .call(
            json!({"type": "DECLINE_INVERSE_OFFERS", "decline_inverse_offers": {
            "inverse_offer_ids": [{"value": io_id}], "filters": {"refuse_seconds": 3600}}}),
        )
        .await;
    assert_eq!(st, 202);
    let status = status_v1(&addr).await;
    let draining = status["draining_machines"].as_array().unwrap();
    assert_eq!(draining.len(), 1, "{status}");
    assert_eq!(draining[0]["id"], json!({"hostname": "host1"}));
    let answers = draining[0]["statuses"].as_array().unwrap();
    assert_eq!(answers.len(), 1, "{status}");
    assert_eq!(answers[0]["status"], "DECLINE");
    assert_eq!(answers[0]["framework_id"]["value"], f.fw.as_str());
    assert!(answers[0]["timestamp"]["nanoseconds"].as_i64().unwrap() > 0);
    assert!(status.get("down_machines").is_none());
    let (_, legacy_status) = legacy(&addr, "GET", "/master/maintenance/status", &Value::Null).await;
    assert_eq!(legacy_status, status);

    // Down: the agent is told to shut down and removed; its task is lost (not
    // PARTITION_AWARE) and the framework told the agent failed.
    let (st, body) = legacy(
        &addr,
        "POST",
        "/master/machine/down",
        &json!([{"hostname": "Host1"}]),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert!(matches!(agent.next().await, Msg::ShutdownFramework(s) if s.framework_id == f.fw));
    let ev = f.event_of("UPDATE").await;
    assert_eq!(ev["update"]["status"]["state"], "TASK_LOST", "{ev}");
    assert_eq!(
        ev["update"]["status"]["reason"],
        "REASON_AGENT_REMOVED_BY_OPERATOR"
    );
    let ev = f.event_of("FAILURE").await;
    assert_eq!(ev["failure"]["agent_id"]["value"], aid.as_str());
    let status = status_v1(&addr).await;
    assert_eq!(status, json!({"down_machines": [{"hostname": "host1"}]}));
    let (_, agents) = operator(&addr, json!({"type": "GET_AGENTS"})).await;
    let listed: Vec<&Value> = agents["get_agents"]["agents"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(listed.len(), 1, "{agents}");
    assert_eq!(listed[0]["agent_info"]["hostname"], "host2");
    let (_, state) = legacy(&addr, "GET", "/master/state", &Value::Null).await;
    let slaves = state["slaves"].as_array().unwrap();
    assert!(slaves.iter().all(|s| s["id"] != aid.as_str()), "{slaves:?}");

    // It may not come back, with its id or as a new agent, while the machine is down.
    for id in [agent.id.clone(), None] {
        let mut again = FakeAgent::attach(&m.handle, 1).await;
        let reply = again
            .register(&m.handle, "cpus:2;mem:1024", id.as_ref(), vec![])
            .await;
        let Msg::Rejected(r) = reply else {
            panic!("registered on a DOWN machine: {reply:?}")
        };
        assert!(r.reason.contains("DOWN for maintenance"), "{}", r.reason);
    }

    // Up: out of the schedule, and the agent registers again (as a new agent).
    let (st, body) = legacy(
        &addr,
        "POST",
        "/master/machine/up",
        &json!([{"hostname": "host1"}]),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(schedule_v1(&addr).await, json!({}));
    assert_eq!(status_v1(&addr).await, json!({}));
    let mut back = FakeAgent::attach(&m.handle, 1).await;
    let reply = back
        .register(&m.handle, "cpus:2;mem:1024", None, vec![])
        .await;
    assert!(matches!(reply, Msg::Registered(_)), "{reply:?}");
    assert_ne!(back.id.as_ref().map(|i| i.to_string()), Some(aid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_calls_speak_protobuf_too() {
    let (m, _stop) = master(|_| {}).await;
    let a = m.addr.to_string();
    let mut call = mm::Call::default();
    call.set_type(mm::call::Type::UpdateMaintenanceSchedule);
    call.update_maintenance_schedule = Some(mm::call::UpdateMaintenanceSchedule {
        schedule: maintenance::Schedule {
            windows: vec![maintenance::Window {
                machine_ids: vec![v1::MachineId {
                    hostname: None,
                    ip: Some("10.0.0.7".into()),
                }],
                unavailability: v1::Unavailability {
                    start: v1::TimeInfo {
                        nanoseconds: START_NS,
                    },
                    duration: None,
                },
            }],
        },
    });
    let post = |body: Vec<u8>| {
        let a = a.clone();
        async move {
            request(
                &a,
                "POST",
                "/api/v1",
                &[
                    ("Content-Type", "application/x-protobuf"),
                    ("Accept", "application/x-protobuf"),
                ],
                &body,
            )
            .await
        }
    };
    let r = post(call.encode_to_vec()).await;
    assert_eq!(r.status, 200);
    let mut get = mm::Call::default();
    get.set_type(mm::call::Type::GetMaintenanceStatus);
    let r = post(get.encode_to_vec()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
    let resp = mm::Response::decode(r.bytes().await.as_slice()).unwrap();
    assert_eq!(resp.r#type(), mm::response::Type::GetMaintenanceStatus);
    let status = resp.get_maintenance_status.unwrap().status;
    assert_eq!(status.draining_machines.len(), 1);
    assert_eq!(
        status.draining_machines[0].id.ip.as_deref(),
        Some("10.0.0.7")
    );
    // A call without its message is refused before anything is looked at.
    let mut bare = mm::Call::default();
    bare.set_type(mm::call::Type::StartMaintenance);
    let r = post(bare.encode_to_vec()).await;
    assert_eq!(r.status, 400);
    assert!(r.body().await.contains("'start_maintenance'"));
}
