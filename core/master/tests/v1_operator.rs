//! The Mesos v1 operator API (`POST /api/v1`) over real HTTP: state queries after a task
//! runs, weights, quota, reservations, agent actions, the SUBSCRIBE stream, protobuf, and
//! Mesos' status codes for bad input.

mod common;

use std::time::Duration;

use common::http::{Response, request};
use common::*;
use prost::Message;
use serde_json::{Value, json};
use tessera_api::mesos::master;
use tessera_api::pb;
use tessera_master::{MasterHandle, Operation};
use tessera_types::{AgentId, Filters, TaskId, TaskState};

const WAIT: Duration = Duration::from_secs(10);

async fn post(addr: &str, body: &Value) -> Response {
    request(
        addr,
        "POST",
        "/api/v1",
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json"),
        ],
        body.to_string().as_bytes(),
    )
    .await
}

/// A sync call: 200 and its JSON response.
async fn get(addr: &str, t: &str) -> Value {
    let r = post(addr, &json!({ "type": t })).await;
    assert_eq!(r.status, 200, "{t}");
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v: Value = serde_json::from_str(&r.body().await).unwrap();
    assert_eq!(v["type"], t);
    v
}

async fn status_and_body(r: Response) -> (u16, String) {
    let s = r.status;
    (s, r.body().await)
}

/// Subscribes a framework and runs task `t1` (cpus:0.5) on `agent` until TASK_RUNNING.
async fn run_task(h: &MasterHandle, agent: &mut FakeAgent, aid: &AgentId) -> String {
    tokio::time::timeout(WAIT, async {
        let mut sub = h.subscribe(framework("fw", "eng", vec![])).await.unwrap();
        let offers = next_offers(&mut sub).await;
        let o = offers.iter().find(|o| &o.agent_id == aid).unwrap();
        h.accept(
            sub.framework_id.clone(),
            vec![o.id.clone()],
            vec![Operation::Launch(vec![task("t1", aid, "cpus:0.5;mem:64")])],
            Filters::default(),
        )
        .await
        .unwrap();
        loop {
            if let pb::master_message::Msg::RunTask(_) = agent.next().await {
                break;
            }
        }
        let uuid = uuid::Uuid::new_v4().to_string();
        agent
            .status(
                h,
                &sub.framework_id,
                &TaskId::new("t1").unwrap(),
                TaskState::TaskRunning,
                &uuid,
            )
            .await;
        assert_eq!(next_update(&mut sub).await.state, TaskState::TaskRunning);
        // Keep the subscription's channel alive for the test's duration.
        let fw = sub.framework_id.to_string();
        std::mem::forget(sub);
        fw
    })
    .await
    .expect("task running within 10 s")
}

/// A protobuf POST read as raw bytes (status, content type, body); the server closes the
/// connection because of `Connection: close`.
async fn raw_post(addr: &str, path: &str, body: &[u8]) -> (u16, Option<String>, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/x-protobuf\r\nAccept: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut all))
        .await
        .unwrap()
        .unwrap();
    let end = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&all[..end]).to_string();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let header = |n: &str| {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(n))
            .map(|(_, v)| v.trim().to_string())
    };
    assert!(header("transfer-encoding").is_none(), "a sized body");
    (status, header("content-type"), all[end + 4..].to_vec())
}

fn agent_entry<'a>(agents: &'a Value, id: &AgentId) -> &'a Value {
    agents["get_agents"]["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["agent_info"]["id"]["value"] == id.as_str())
        .unwrap_or_else(|| panic!("agent {id} in {agents}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_agents_tasks_and_simple_queries_have_mesos_shapes() {
    let (m, _stop) = master_up().await;
    let a = m.addr.to_string();
    let (mut agent, aid) = agent_up(&m.handle, 1, "cpus:2;mem:1024").await;
    let fw = run_task(&m.handle, &mut agent, &aid).await;

    let agents = get(&a, "GET_AGENTS").await;
    let ag = agent_entry(&agents, &aid);
    assert_eq!(ag["agent_info"]["hostname"], "host1");
    assert_eq!(ag["active"], true);
    assert_eq!(ag["version"], "1.11.0");
    assert!(ag["pid"].as_str().unwrap().starts_with("slave(1)@"));
    assert!(ag["registered_time"]["nanoseconds"].as_i64().unwrap() > 0);
    let cpus = |rs: &Value| {
        rs.as_array()
            .unwrap()
            .iter()
            .filter(|r| r["name"] == "cpus")
            .map(|r| r["scalar"]["value"].as_f64().unwrap())
            .sum::<f64>()
    };
    assert_eq!(cpus(&ag["total_resources"]), 2.0);
    assert_eq!(cpus(&ag["allocated_resources"]), 0.5);
    assert_eq!(ag["agent_info"]["attributes"][0]["name"], "rack");

    let tasks = get(&a, "GET_TASKS").await;
    let t = &tasks["get_tasks"]["tasks"][0];
    assert_eq!(t["task_id"]["value"], "t1");
    assert_eq!(t["framework_id"]["value"], fw.as_str());
    assert_eq!(t["agent_id"]["value"], aid.as_str());
    assert_eq!(t["state"], "TASK_RUNNING");
    assert_eq!(t["statuses"][0]["state"], "TASK_RUNNING");
    assert_eq!(cpus(&t["resources"]), 0.5);

    let state = get(&a, "GET_STATE").await;
    let gs = &state["get_state"];
    assert_eq!(gs["get_tasks"]["tasks"][0]["task_id"]["value"], "t1");
    assert_eq!(
        gs["get_agents"]["agents"][0]["agent_info"]["id"]["value"],
        aid.as_str()
    );
    let f = &gs["get_frameworks"]["frameworks"][0];
    assert_eq!(f["framework_info"]["id"]["value"], fw.as_str());
    assert_eq!(f["framework_info"]["name"], "fw");
    assert_eq!(f["active"], true);
    assert_eq!(cpus(&f["allocated_resources"]), 0.5);

    let fws = get(&a, "GET_FRAMEWORKS").await;
    assert_eq!(
        fws["get_frameworks"]["frameworks"][0]["framework_info"]["id"]["value"],
        fw.as_str()
    );
    assert_eq!(get(&a, "GET_HEALTH").await["get_health"]["healthy"], true);
    assert_eq!(
        get(&a, "GET_VERSION").await["get_version"]["version_info"]["version"],
        "1.11.0"
    );
    let flags = get(&a, "GET_FLAGS").await;
    assert!(
        flags["get_flags"]["flags"]
            .as_array()
            .is_some_and(|f| !f.is_empty())
    );
    let metrics = get(&a, "GET_METRICS").await;
    let elected = metrics["get_metrics"]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "master/elected")
        .unwrap();
    assert_eq!(elected["value"], 1.0);
    let mi = get(&a, "GET_MASTER").await;
    assert_eq!(mi["get_master"]["master_info"]["id"], m.master_id.as_str());
    assert!(get(&a, "GET_EXECUTORS").await["get_executors"].is_object());
    let roles = get(&a, "GET_ROLES").await;
    assert!(
        roles["get_roles"]["roles"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "eng")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_and_quota_updates() {
    let (m, _stop) = master_up().await;
    let a = m.addr.to_string();
    let r = post(
        &a,
        &json!({"type":"UPDATE_WEIGHTS","update_weights":{"weight_infos":[{"role":"eng","weight":2.5},{"role":"ops","weight":0.5}]}}),
    )
    .await;
    assert_eq!(r.status, 200);
    let w = get(&a, "GET_WEIGHTS").await;
    let infos = w["get_weights"]["weight_infos"].as_array().unwrap();
    assert!(
        infos
            .iter()
            .any(|i| i["role"] == "eng" && i["weight"] == 2.5)
    );
    assert!(
        infos
            .iter()
            .any(|i| i["role"] == "ops" && i["weight"] == 0.5)
    );

    // All-or-nothing: one bad entry and nothing changes.
    let (s, body) = status_and_body(
        post(
            &a,
            &json!({"type":"UPDATE_WEIGHTS","update_weights":{"weight_infos":[{"role":"eng","weight":9.0},{"role":"ops","weight":-1.0}]}}),
        )
        .await,
    )
    .await;
    assert_eq!(s, 400);
    assert!(body.contains("weight_infos[1].weight"), "{body}");
    let w = get(&a, "GET_WEIGHTS").await;
    assert!(
        w["get_weights"]["weight_infos"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["role"] == "eng" && i["weight"] == 2.5)
    );

    // v0 PUT /weights.
    let r = request(
        &a,
        "PUT",
        "/master/weights",
        &[("Content-Type", "application/json")],
        br#"[{"role":"dev","weight":3.0}]"#,
    )
    .await;
    assert_eq!(r.status, 200);
    let v0: Value =
        serde_json::from_str(&request(&a, "GET", "/weights", &[], b"").await.body().await).unwrap();
    assert!(
        v0.as_array()
            .unwrap()
            .iter()
            .any(|i| i["role"] == "dev" && i["weight"] == 3.0)
    );
    let r = request(
        &a,
        "PUT",
        "/weights",
        &[],
        br#"[{"role":"dev","weight":0}]"#,
    )
    .await;
    assert_eq!(r.status, 400);

    // Quota: a role consuming cpus:0.5 cannot get a lower limit without force.
    let (mut agent, aid) = agent_up(&m.handle, 1, "cpus:2;mem:1024").await;
    run_task(&m.handle, &mut agent, &aid).await;
    let q = |limit: f64, force: bool| {
        json!({"type":"UPDATE_QUOTA","update_quota":{"force":force,"quota_configs":[
            {"role":"ops","guarantees":{"cpus":{"value":1.0}}},
            {"role":"eng","limits":{"cpus":{"value":limit}}}]}})
    };
    let (s, body) = status_and_body(post(&a, &q(0.25, false)).await).await;
    assert_eq!(s, 400);
    assert!(body.contains("force"), "{body}");
    let quota = get(&a, "GET_QUOTA").await;
    assert!(
        quota["get_quota"]["status"]["configs"].is_null(),
        "nothing applied: {quota}"
    );
    assert_eq!(post(&a, &q(0.25, true)).await.status, 200);
    let quota = get(&a, "GET_QUOTA").await;
    let configs = quota["get_quota"]["status"]["configs"].as_array().unwrap();
    let eng = configs.iter().find(|c| c["role"] == "eng").unwrap();
    assert_eq!(eng["limits"]["cpus"]["value"], 0.25);
    let ops = configs.iter().find(|c| c["role"] == "ops").unwrap();
    assert_eq!(ops["guarantees"]["cpus"]["value"], 1.0);
    assert_eq!(post(&a, &q(4.0, false)).await.status, 200);

    // Guarantee above limit, nested role: 400.
    let bad = json!({"type":"UPDATE_QUOTA","update_quota":{"quota_configs":[
        {"role":"x","guarantees":{"cpus":{"value":2.0}},"limits":{"cpus":{"value":1.0}}}]}});
    assert_eq!(post(&a, &bad).await.status, 400);
    let bad = json!({"type":"UPDATE_QUOTA","update_quota":{"quota_configs":[{"role":"a/b"}]}});
    assert_eq!(post(&a, &bad).await.status, 400);

    // v0 GET /quota.
    let v0: Value =
        serde_json::from_str(&request(&a, "GET", "/quota", &[], b"").await.body().await).unwrap();
    assert!(
        v0["configs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["role"] == "eng")
    );
}

fn reserve_body(t: &str, field: &str, agent: &AgentId, cpus: f64) -> Value {
    json!({"type": t, field: {"agent_id": {"value": agent.as_str()}, "resources": [
        {"name":"cpus","type":"SCALAR","scalar":{"value":cpus},
         "reservations":[{"type":"DYNAMIC","role":"eng","principal":"ops"}]}]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_and_agent_actions() {
    let (m, _stop) = master_up().await;
    let a = m.addr.to_string();
    let (_agent, aid) = agent_up(&m.handle, 1, "cpus:4;mem:1024").await;

    let r = post(
        &a,
        &reserve_body("RESERVE_RESOURCES", "reserve_resources", &aid, 2.0),
    )
    .await;
    assert_eq!(r.status, 202);
    let agents = get(&a, "GET_AGENTS").await;
    let reserved: Vec<&Value> = agent_entry(&agents, &aid)["total_resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["reservations"][0]["role"] == "eng")
        .collect();
    assert_eq!(reserved.len(), 1, "{agents}");
    assert_eq!(reserved[0]["scalar"]["value"], 2.0);

    // Too much: 409. Unreserving what is not reserved: 409.
    let r = post(
        &a,
        &reserve_body("RESERVE_RESOURCES", "reserve_resources", &aid, 9.0),
    )
    .await;
    assert_eq!(r.status, 409);
    let r = post(
        &a,
        &reserve_body("UNRESERVE_RESOURCES", "unreserve_resources", &aid, 3.0),
    )
    .await;
    assert_eq!(r.status, 409);
    // Bad resources: 400 naming the field.
    let bad = json!({"type":"RESERVE_RESOURCES","reserve_resources":{"agent_id":{"value":aid.as_str()},
        "resources":[{"name":"cpus","type":"SCALAR","scalar":{"value":-1.0}}]}});
    let (s, body) = status_and_body(post(&a, &bad).await).await;
    assert_eq!(s, 400);
    assert!(body.contains("reserve_resources.resources[0]"), "{body}");
    // Unknown agent: 400 naming it.
    let other = AgentId::new("nope").unwrap();
    let (s, body) = status_and_body(
        post(
            &a,
            &reserve_body("RESERVE_RESOURCES", "reserve_resources", &other, 1.0),
        )
        .await,
    )
    .await;
    assert_eq!(s, 400);
    assert!(body.contains("nope"), "{body}");
    let r = post(
        &a,
        &reserve_body("UNRESERVE_RESOURCES", "unreserve_resources", &aid, 2.0),
    )
    .await;
    assert_eq!(r.status, 202);

    let action = |t: &str, field: &str, id: &AgentId| json!({"type": t, field: {"agent_id": {"value": id.as_str()}}});
    assert_eq!(
        post(&a, &action("DEACTIVATE_AGENT", "deactivate_agent", &aid))
            .await
            .status,
        200
    );
    let ag = get(&a, "GET_AGENTS").await;
    assert_eq!(agent_entry(&ag, &aid)["deactivated"], true);
    assert_eq!(agent_entry(&ag, &aid)["active"], false);
    assert_eq!(
        post(&a, &action("REACTIVATE_AGENT", "reactivate_agent", &aid))
            .await
            .status,
        200
    );
    let ag = get(&a, "GET_AGENTS").await;
    assert_eq!(agent_entry(&ag, &aid)["deactivated"], false);
    assert_eq!(agent_entry(&ag, &aid)["active"], true);

    let drain = json!({"type":"DRAIN_AGENT","drain_agent":{"agent_id":{"value":aid.as_str()},"max_grace_period":{"seconds":5}}});
    assert_eq!(post(&a, &drain).await.status, 200);
    let ag = get(&a, "GET_AGENTS").await;
    assert_eq!(agent_entry(&ag, &aid)["deactivated"], true);

    let (s, body) =
        status_and_body(post(&a, &action("DEACTIVATE_AGENT", "deactivate_agent", &other)).await)
            .await;
    assert_eq!(s, 400);
    assert!(body.contains("nope"), "{body}");

    assert_eq!(
        post(&a, &action("MARK_AGENT_GONE", "mark_agent_gone", &aid))
            .await
            .status,
        200
    );
    let ag = get(&a, "GET_AGENTS").await;
    assert!(
        ag["get_agents"]["agents"].is_null(),
        "a gone agent is no longer listed: {ag}"
    );

    let td = json!({"type":"TEARDOWN","teardown":{"framework_id":{"value":"nobody"}}});
    let (s, body) = status_and_body(post(&a, &td).await).await;
    assert_eq!(s, 400);
    assert!(body.contains("nobody"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_streams_state_then_agent_and_task_events() {
    let (m, _stop) = master_up().await;
    let a = m.addr.to_string();
    let mut s = post(&a, &json!({"type":"SUBSCRIBE"})).await;
    assert_eq!(s.status, 200);
    assert_eq!(s.header("content-type"), Some("application/json"));
    let first: Value = serde_json::from_slice(&s.record(WAIT).await.unwrap()).unwrap();
    assert_eq!(first["type"], "SUBSCRIBED");
    assert_eq!(first["subscribed"]["heartbeat_interval_seconds"], 0.3);
    assert!(first["subscribed"]["get_state"].is_object());

    let (mut agent, aid) = agent_up(&m.handle, 1, "cpus:2;mem:1024").await;
    let h = m.handle.clone();
    let runner = tokio::spawn(async move {
        run_task(&h, &mut agent, &aid).await;
        (agent, aid)
    });
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !(seen.contains(&"AGENT_ADDED".to_string())
        && seen.contains(&"TASK_ADDED".to_string())
        && seen.contains(&"TASK_UPDATED".to_string()))
    {
        assert!(tokio::time::Instant::now() < deadline, "saw only {seen:?}");
        let rec = s.record(WAIT).await.expect("an operator event");
        let e: Value = serde_json::from_slice(&rec).unwrap();
        let t = e["type"].as_str().unwrap().to_string();
        match t.as_str() {
            "AGENT_ADDED" => {
                assert_eq!(e["agent_added"]["agent"]["agent_info"]["hostname"], "host1")
            }
            "TASK_ADDED" => assert_eq!(e["task_added"]["task"]["task_id"]["value"], "t1"),
            "TASK_UPDATED" => {
                assert_eq!(e["task_updated"]["state"], "TASK_RUNNING");
                assert_eq!(e["task_updated"]["status"]["task_id"]["value"], "t1");
            }
            _ => {}
        }
        seen.push(t);
    }
    let (_agent, _aid) = runner.await.unwrap();
    // Heartbeats keep flowing on an idle stream.
    loop {
        let e: Value = serde_json::from_slice(&s.record(WAIT).await.unwrap()).unwrap();
        if e["type"] == "HEARTBEAT" {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_round_trip_and_bad_input_codes() {
    let (m, _stop) = master_up().await;
    let a = m.addr.to_string();
    let (_agent, aid) = agent_up(&m.handle, 1, "cpus:2;mem:1024").await;
    let mut call = master::Call::default();
    call.set_type(master::call::Type::GetAgents);
    for path in ["/api/v1", "/master/api/v1", "/api/v1/operator"] {
        let (status, ctype, body) = raw_post(&a, path, &call.encode_to_vec()).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(ctype.as_deref(), Some("application/x-protobuf"));
        let resp = master::Response::decode(body.as_slice()).unwrap();
        assert_eq!(resp.r#type(), master::response::Type::GetAgents);
        let agents = resp.get_agents.unwrap().agents;
        assert_eq!(
            agents[0].agent_info.id.as_ref().unwrap().value,
            aid.as_str()
        );
    }

    let p = "/api/v1";
    let body = br#"{"type":"GET_HEALTH"}"#;
    assert_eq!(request(&a, "POST", p, &[], body).await.status, 400);
    assert_eq!(
        request(&a, "POST", p, &[("Content-Type", "text/plain")], body)
            .await
            .status,
        415
    );
    assert_eq!(
        request(
            &a,
            "POST",
            p,
            &[
                ("Content-Type", "application/json"),
                ("Accept", "text/html")
            ],
            body
        )
        .await
        .status,
        406
    );
    let r = request(&a, "GET", p, &[], b"").await;
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
    let (s, b) = status_and_body(post(&a, &json!({"type":"NOPE"})).await).await;
    assert_eq!(s, 400, "{b}");
    let (s, b) = status_and_body(post(&a, &json!({"type":"UPDATE_WEIGHTS"})).await).await;
    assert_eq!(s, 400);
    assert!(b.contains("update_weights"), "{b}");
    let (s, b) =
        status_and_body(post(&a, &json!({"type":"DRAIN_AGENT","drain_agent":{}})).await).await;
    assert_eq!(s, 400);
    assert!(b.contains("agent_id"), "{b}");
    let r = request(
        &a,
        "POST",
        p,
        &[("Content-Type", "application/json")],
        b"{x",
    )
    .await;
    assert_eq!(r.status, 400);
}
