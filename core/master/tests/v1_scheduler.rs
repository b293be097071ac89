//! The Mesos v1 scheduler API over real HTTP: a protobuf-only client drives a whole task
//! lifecycle, JSON bad input gets Mesos' status codes, standby masters redirect.

mod common;

use std::time::Duration;

use common::http::{post_json, request};
use common::*;
use prost::Message;
use tessera_api::mesos::{scheduler, v1};
use tessera_api::pb;
use tessera_master::MasterConfig;
use tessera_types::TaskState;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);

async fn master(standby_of: Option<String>) -> (tessera_master::RunningMaster, CancellationToken) {
    let dir = std::env::temp_dir().join(format!("tessera-v1-{}", uuid::Uuid::new_v4()));
    let mut c = MasterConfig::new("127.0.0.1:0".parse().unwrap(), dir);
    c.allocator.interval = Duration::from_millis(100);
    c.scheduler_heartbeat_interval = Duration::from_millis(300);
    c.standby_of = standby_of;
    let stop = CancellationToken::new();
    let m = tessera_master::start(c, stop.clone()).await.unwrap();
    (m, stop)
}

fn pb_call(c: &scheduler::Call) -> Vec<u8> {
    c.encode_to_vec()
}

async fn post_pb(addr: &str, c: &scheduler::Call, stream: Option<&str>) -> common::http::Response {
    let mut h = vec![
        ("Content-Type", "application/x-protobuf"),
        ("Accept", "application/x-protobuf"),
    ];
    if let Some(s) = stream {
        h.push(("Mesos-Stream-Id", s));
    }
    request(addr, "POST", "/api/v1/scheduler", &h, &pb_call(c)).await
}

async fn next_event(r: &mut common::http::Response) -> scheduler::Event {
    loop {
        let rec = r.record(WAIT).await.expect("an event within 10 s");
        let e = scheduler::Event::decode(rec.as_slice()).expect("a protobuf Event");
        if e.r#type() != scheduler::event::Type::Heartbeat {
            return e;
        }
    }
}

fn call(t: scheduler::call::Type, fw: Option<&str>) -> scheduler::Call {
    let mut c = scheduler::Call {
        framework_id: fw.map(|f| v1::FrameworkId { value: f.into() }),
        ..Default::default()
    };
    c.set_type(t);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protobuf_client_runs_a_task_end_to_end() {
    let (m, _stop) = master(None).await;
    let addr = m.addr.to_string();
    let mut agent = FakeAgent::attach(&m.handle, 1).await;
    agent
        .register(&m.handle, "cpus:2;mem:1024", None, vec![])
        .await;

    let mut sub = call(scheduler::call::Type::Subscribe, None);
    sub.subscribe = Some(scheduler::call::Subscribe {
        framework_info: v1::FrameworkInfo {
            user: "u".into(),
            name: "pb-client".into(),
            roles: vec!["eng".into()],
            capabilities: vec![v1::framework_info::Capability {
                r#type: Some(v1::framework_info::capability::Type::MultiRole as i32),
            }],
            ..Default::default()
        },
        ..Default::default()
    });
    let mut stream = post_pb(&addr, &sub, None).await;
    assert_eq!(stream.status, 200);
    assert_eq!(
        stream.header("content-type"),
        Some("application/x-protobuf")
    );
    let sid = stream
        .header("mesos-stream-id")
        .expect("Mesos-Stream-Id")
        .to_string();
    let ev = next_event(&mut stream).await;
    assert_eq!(ev.r#type(), scheduler::event::Type::Subscribed);
    let s = ev.subscribed.unwrap();
    let fw = s.framework_id.value.clone();
    assert!(s.master_info.unwrap().version.unwrap().starts_with("1."));

    let ev = next_event(&mut stream).await;
    assert_eq!(ev.r#type(), scheduler::event::Type::Offers);
    let offer = ev.offers.unwrap().offers.remove(0);
    assert_eq!(
        offer
            .allocation_info
            .as_ref()
            .and_then(|a| a.role.as_deref()),
        Some("eng")
    );
    assert!(
        offer.url.is_some(),
        "offers carry url for clients that read it"
    );

    let mut accept = call(scheduler::call::Type::Accept, Some(&fw));
    let mut op = v1::offer::Operation::default();
    op.set_type(v1::offer::operation::Type::Launch);
    op.launch = Some(v1::offer::operation::Launch {
        task_infos: vec![v1::TaskInfo {
            name: "t".into(),
            task_id: v1::TaskId { value: "t1".into() },
            agent_id: offer.agent_id.clone(),
            resources: offer
                .resources
                .iter()
                .filter(|r| &*r.name == "cpus")
                .map(|r| v1::Resource {
                    scalar: Some(v1::value::Scalar { value: 0.5 }),
                    ..r.clone()
                })
                .collect(),
            command: Some(v1::CommandInfo {
                value: Some("true".into()),
                ..Default::default()
            }),
            ..Default::default()
        }],
    });
    accept.accept = Some(scheduler::call::Accept {
        offer_ids: vec![offer.id.clone()],
        operations: vec![op],
        filters: None,
    });
    assert_eq!(post_pb(&addr, &accept, Some(&sid)).await.status, 202);
    let pb::master_message::Msg::RunTask(run) = agent.next().await else {
        panic!("RunTask")
    };
    let fwid = tessera_types::FrameworkId::new(run.framework_id.clone()).unwrap();
    let uuid = uuid::Uuid::new_v4().to_string();
    agent
        .status(
            &m.handle,
            &fwid,
            &tessera_types::TaskId::new("t1").unwrap(),
            TaskState::TaskRunning,
            &uuid,
        )
        .await;
    let ev = next_event(&mut stream).await;
    assert_eq!(ev.r#type(), scheduler::event::Type::Update);
    let st = ev.update.unwrap().status;
    assert_eq!(st.state(), v1::TaskState::TaskRunning);
    assert_eq!(
        st.uuid.as_ref().map(|u| u.len()),
        Some(16),
        "uuid is 16 raw bytes"
    );
    assert_eq!(
        st.agent_id.as_ref().map(|a| a.value.as_str()),
        Some(offer.agent_id.value.as_str())
    );

    let mut ack = call(scheduler::call::Type::Acknowledge, Some(&fw));
    ack.acknowledge = Some(scheduler::call::Acknowledge {
        agent_id: offer.agent_id.clone(),
        task_id: v1::TaskId { value: "t1".into() },
        uuid: st.uuid.clone().unwrap(),
    });
    assert_eq!(post_pb(&addr, &ack, Some(&sid)).await.status, 202);
    let pb::master_message::Msg::Acknowledge(a) = agent.next().await else {
        panic!("Acknowledge")
    };
    assert_eq!(a.uuid, uuid, "the agent gets back exactly the uuid it sent");

    // Heartbeats keep flowing on an idle stream.
    let rec = stream.record(WAIT).await.unwrap();
    let e = scheduler::Event::decode(rec.as_slice()).unwrap();
    assert!(matches!(
        e.r#type(),
        scheduler::event::Type::Heartbeat | scheduler::event::Type::Offers
    ));

    let teardown = call(scheduler::call::Type::Teardown, Some(&fw));
    assert_eq!(post_pb(&addr, &teardown, Some(&sid)).await.status, 202);
    let pb::master_message::Msg::ShutdownFramework(_) = agent.next().await else {
        panic!("ShutdownFramework")
    };
}

const SUBSCRIBE: &str = r#"{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"u","name":"json","role":null,"capabilities":null}}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_mesos_status_codes() {
    let (m, _stop) = master(None).await;
    let a = m.addr.to_string();
    let p = "/api/v1/scheduler";
    assert_eq!(
        request(&a, "POST", p, &[], SUBSCRIBE.as_bytes())
            .await
            .status,
        400,
        "no Content-Type"
    );
    assert_eq!(
        request(&a, "POST", p, &[("Content-Type", "text/plain")], b"x")
            .await
            .status,
        415
    );
    let r = post_json(&a, "{not json", &[]).await;
    assert_eq!(r.status, 400);
    assert!(r.body().await.contains("Failed to parse"));
    assert_eq!(
        post_json(&a, r#"{"type":3}"#, &[]).await.status,
        400,
        "enum as a number"
    );
    assert_eq!(
        post_json(&a, r#"{"type":"SUBSCRIBE"}"#, &[]).await.status,
        400,
        "subscribe missing"
    );
    let r = request(&a, "GET", p, &[], b"").await;
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
    let r = request(
        &a,
        "POST",
        p,
        &[
            ("Content-Type", "application/json"),
            ("Accept", "text/html"),
        ],
        SUBSCRIBE.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 406);
    assert_eq!(
        post_json(&a, SUBSCRIBE, &[("Mesos-Stream-Id", "x")])
            .await
            .status,
        400
    );

    // A real subscription, then calls with a missing or wrong stream id.
    let mut s = post_json(&a, SUBSCRIBE, &[]).await;
    assert_eq!(s.status, 200);
    assert_eq!(s.header("content-type"), Some("application/json"));
    let sid = s.header("mesos-stream-id").unwrap().to_string();
    let first: serde_json::Value = serde_json::from_slice(&s.record(WAIT).await.unwrap()).unwrap();
    assert_eq!(first["type"], "SUBSCRIBED");
    let fw = first["subscribed"]["framework_id"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    let revive = format!(r#"{{"type":"REVIVE","framework_id":{{"value":"{fw}"}}}}"#);
    assert_eq!(
        post_json(&a, &revive, &[]).await.status,
        400,
        "missing stream id"
    );
    assert_eq!(
        post_json(&a, &revive, &[("Mesos-Stream-Id", "other")])
            .await
            .status,
        400,
        "wrong stream id"
    );
    assert_eq!(
        post_json(&a, &revive, &[("Mesos-Stream-Id", &sid)])
            .await
            .status,
        202
    );
    let other = r#"{"type":"REVIVE","framework_id":{"value":"nobody"}}"#;
    assert_eq!(
        post_json(&a, other, &[("Mesos-Stream-Id", &sid)])
            .await
            .status,
        400,
        "unknown framework"
    );
    // ACCEPT of an unknown offer: 202, then the task is reported lost with a reason.
    let accept = format!(
        r#"{{"type":"ACCEPT","framework_id":{{"value":"{fw}"}},"accept":{{"offer_ids":[{{"value":"nope"}}],"operations":[{{"type":"LAUNCH","launch":{{"task_infos":[{{"name":"x","task_id":{{"value":"x1"}},"agent_id":{{"value":"a"}},"slave_id":{{"value":"a"}},"resources":[{{"name":"cpus","type":"SCALAR","scalar":{{"value":0.1}}}}],"command":{{"value":"true"}}}}]}}}}]}}}}"#
    );
    assert_eq!(
        post_json(&a, &accept, &[("Mesos-Stream-Id", &sid)])
            .await
            .status,
        202
    );
    loop {
        let e: serde_json::Value =
            serde_json::from_slice(&s.record(WAIT).await.expect("update")).unwrap();
        if e["type"] == "UPDATE" {
            assert_eq!(e["update"]["status"]["state"], "TASK_LOST");
            assert_eq!(e["update"]["status"]["reason"], "REASON_INVALID_OFFERS");
            break;
        }
    }
    // Bad uuid in ACKNOWLEDGE is a 400 naming the field.
    let ack = format!(
        r#"{{"type":"ACKNOWLEDGE","framework_id":{{"value":"{fw}"}},"acknowledge":{{"agent_id":{{"value":"a"}},"task_id":{{"value":"x"}},"uuid":"AAAA"}}}}"#
    );
    let r = post_json(&a, &ack, &[("Mesos-Stream-Id", &sid)]).await;
    assert_eq!(r.status, 400);
    assert!(r.body().await.contains("uuid"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tooling_endpoints_and_standby_redirects() {
    let (leader, _s1) = master(None).await;
    let la = leader.addr.to_string();
    let v: serde_json::Value =
        serde_json::from_str(&request(&la, "GET", "/version", &[], b"").await.body().await)
            .unwrap();
    let parts: Vec<u32> = v["version"]
        .as_str()
        .unwrap()
        .split('.')
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(parts.len(), 3);
    assert!(parts[0] >= 1);
    assert_eq!(
        request(&la, "GET", "/master/health", &[], b"").await.status,
        200
    );
    assert_eq!(request(&la, "GET", "/", &[], b"").await.status, 200);
    assert_eq!(
        request(&la, "GET", "/nonexistent", &[], b"").await.status,
        404
    );
    let st: serde_json::Value = serde_json::from_str(
        &request(&la, "GET", "/master/state", &[], b"")
            .await
            .body()
            .await,
    )
    .unwrap();
    assert_eq!(st["version"], "1.11.0");
    assert!(st["slaves"].is_array() && st["frameworks"].is_array());
    let snap: serde_json::Value = serde_json::from_str(
        &request(&la, "GET", "/metrics/snapshot", &[], b"")
            .await
            .body()
            .await,
    )
    .unwrap();
    assert_eq!(snap["master/elected"], 1.0);

    let (standby, _s2) = master(Some(la.clone())).await;
    let sa = standby.addr.to_string();
    let r = post_json(&sa, SUBSCRIBE, &[]).await;
    assert_eq!(r.status, 307);
    assert_eq!(
        r.header("location"),
        Some(format!("//{la}/api/v1/scheduler").as_str())
    );
    let r = request(&sa, "GET", "/master/redirect", &[], b"").await;
    assert_eq!(
        (r.status, r.header("location")),
        (307, Some(format!("//{la}").as_str()))
    );
    assert_eq!(
        request(&sa, "GET", "/health", &[], b"").await.status,
        200,
        "health is answered locally"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suppressed_subscribe_update_framework_and_kill_policy() {
    let (m, _stop) = master(None).await;
    let a = m.addr.to_string();
    let mut agent = FakeAgent::attach(&m.handle, 1).await;
    agent
        .register(&m.handle, "cpus:2;mem:1024", None, vec![])
        .await;
    let sub = r#"{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"u","name":"sup","roles":["a"],"capabilities":[{"type":"MULTI_ROLE"}]},"suppressed_roles":["a"]}}"#;
    let mut s = post_json(&a, sub, &[]).await;
    assert_eq!(s.status, 200);
    let sid = s.header("mesos-stream-id").unwrap().to_string();
    let first: serde_json::Value = serde_json::from_slice(&s.record(WAIT).await.unwrap()).unwrap();
    let fw = first["subscribed"]["framework_id"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    // Suppressed: only heartbeats for a while (allocation runs every 100 ms).
    for _ in 0..3 {
        let e: serde_json::Value = serde_json::from_slice(&s.record(WAIT).await.unwrap()).unwrap();
        assert_eq!(e["type"], "HEARTBEAT", "no offers while suppressed: {e}");
    }
    // UPDATE_FRAMEWORK to role b, not suppressed: offers arrive, allocated to b.
    let upd = format!(
        r#"{{"type":"UPDATE_FRAMEWORK","framework_id":{{"value":"{fw}"}},"update_framework":{{"framework_info":{{"user":"u","name":"sup","roles":["b"],"capabilities":[{{"type":"MULTI_ROLE"}}]}}}}}}"#
    );
    let r = post_json(&a, &upd, &[("Mesos-Stream-Id", &sid)]).await;
    let status = r.status;
    assert_eq!(status, 200, "{}", r.body().await);
    let offer = loop {
        let e: serde_json::Value = serde_json::from_slice(&s.record(WAIT).await.unwrap()).unwrap();
        if e["type"] == "OFFERS" {
            break e["offers"]["offers"][0].clone();
        }
    };
    assert_eq!(offer["allocation_info"]["role"], "b");
    // Launch, then KILL with a kill policy: the agent gets that grace period.
    let agent_id = offer["agent_id"]["value"].as_str().unwrap();
    let oid = offer["id"]["value"].as_str().unwrap();
    let accept = format!(
        r#"{{"type":"ACCEPT","framework_id":{{"value":"{fw}"}},"accept":{{"offer_ids":[{{"value":"{oid}"}}],"operations":[{{"type":"LAUNCH","launch":{{"task_infos":[{{"name":"k","task_id":{{"value":"k"}},"agent_id":{{"value":"{agent_id}"}},"resources":[{{"name":"cpus","type":"SCALAR","scalar":{{"value":0.5}},"allocation_info":{{"role":"b"}}}}],"command":{{"value":"sleep 100"}}}}]}}}}]}}}}"#
    );
    assert_eq!(
        post_json(&a, &accept, &[("Mesos-Stream-Id", &sid)])
            .await
            .status,
        202
    );
    assert!(matches!(
        agent.next().await,
        pb::master_message::Msg::RunTask(_)
    ));
    let kill = format!(
        r#"{{"type":"KILL","framework_id":{{"value":"{fw}"}},"kill":{{"task_id":{{"value":"k"}},"kill_policy":{{"grace_period":{{"nanoseconds":2500000000}}}}}}}}"#
    );
    assert_eq!(
        post_json(&a, &kill, &[("Mesos-Stream-Id", &sid)])
            .await
            .status,
        202
    );
    let pb::master_message::Msg::KillTask(k) = agent.next().await else {
        panic!("KillTask")
    };
    assert_eq!(k.grace_ms, Some(2500));
    // UPDATE_FRAMEWORK with a bad role is a 400 naming it, and changes nothing.
    let bad = upd.replace(r#""roles":["b"]"#, r#""roles":["b/"]"#);
    let r = post_json(&a, &bad, &[("Mesos-Stream-Id", &sid)]).await;
    assert_eq!(r.status, 400);
    assert!(r.body().await.contains("b/"));
}
