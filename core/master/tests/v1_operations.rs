//! Operation feedback over the v1 scheduler API: RESERVE / UNRESERVE with an `id` get
//! UPDATE_OPERATION_STATUS (OPERATION_FINISHED with a uuid, re-sent after failover until
//! ACKNOWLEDGE_OPERATION_STATUS), RECONCILE_OPERATIONS answers with the latest status, and
//! bad input gets Mesos' answers (400 naming the field, or OPERATION_ERROR / TASK_ERROR)
//! without changing anything. Operators see the unacknowledged ones with GET_OPERATIONS. A
//! reservation the registry cannot record is OPERATION_DROPPED.

mod common;
#[path = "support/sched.rs"]
mod sched;

use common::FakeAgent;
use sched::{Sched, framework_info, master, operator, scalar};
use serde_json::{Value, json};
use tessera_master::registry::{AgentRecord, MemRegistry, Registry, RegistrySnapshot};
use tessera_master::{Event, Operation, OperationState};
use tessera_types::{AgentId, Filters, FrameworkId, FrameworkInfo, Role};

fn cpus(amount: f64, reserved: bool) -> Value {
    let mut r = json!({"name": "cpus", "type": "SCALAR", "scalar": {"value": amount},
                       "allocation_info": {"role": "eng"}});
    if reserved {
        r["reservations"] = json!([{"type": "DYNAMIC", "role": "eng", "principal": "p"}]);
    }
    r
}

/// A RESERVE or UNRESERVE of `amount` cpus for role `eng`, with an optional id.
fn reservation_op(kind: &str, id: Option<&str>, amount: f64) -> Value {
    let field = kind.to_ascii_lowercase();
    let mut op = json!({"type": kind});
    op[field.as_str()] = json!({"resources": [cpus(amount, true)]});
    if let Some(id) = id {
        op["id"] = json!({"value": id});
    }
    op
}

fn accept(offer: &Value, ops: Vec<Value>) -> Value {
    json!({"type": "ACCEPT", "accept": {"offer_ids": [offer["id"].clone()], "operations": ops,
           "filters": {"refuse_seconds": 0}}})
}

async fn offer(s: &mut Sched) -> Value {
    let ev = s.event_of("OFFERS").await;
    ev["offers"]["offers"][0].clone()
}

fn reserved_cpus(offer: &Value) -> f64 {
    let r: Vec<Value> = offer["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["reservations"].is_array())
        .cloned()
        .collect();
    scalar(&Value::Array(r), "cpus")
}

fn reconcile_ops(ops: Value) -> Value {
    json!({"type": "RECONCILE_OPERATIONS", "reconcile_operations": {"operations": ops}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserve_and_unreserve_with_ids_get_operation_feedback() {
    let (m, _stop) = master(|_| {}).await;
    let addr = m.addr.to_string();
    let mut agent = FakeAgent::attach(&m.handle, 1).await;
    agent
        .register(&m.handle, "cpus:2;mem:1024", None, vec![])
        .await;
    let aid = agent.id.clone().unwrap().to_string();
    let mut s = Sched::subscribe(&addr, framework_info("ops", "eng", &[])).await;

    let o = offer(&mut s).await;
    let (st, _) = s
        .call(accept(
            &o,
            vec![reservation_op("RESERVE", Some("op-1"), 1.0)],
        ))
        .await;
    assert_eq!(st, 202);
    let ev = s.event_of("UPDATE_OPERATION_STATUS").await;
    let status = &ev["update_operation_status"]["status"];
    assert_eq!(status["state"], "OPERATION_FINISHED", "{ev}");
    assert_eq!(status["operation_id"]["value"], "op-1");
    assert_eq!(status["agent_id"]["value"], aid.as_str());
    let uuid = status["uuid"]["value"]
        .as_str()
        .expect("a uuid to acknowledge");
    assert_eq!(uuid.len(), 24, "16 bytes in base64");
    let converted = &status["converted_resources"];
    assert_eq!(scalar(converted, "cpus"), 1.0);
    assert_eq!(converted[0]["reservations"][0]["role"], "eng");
    assert_eq!(converted[0]["allocation_info"]["role"], "eng");
    let uuid = uuid.to_string();

    // Operators see it (GET_OPERATIONS) with its latest status until it is acknowledged.
    let (st, ops) = operator(&addr, json!({"type": "GET_OPERATIONS"})).await;
    assert_eq!(st, 200);
    assert_eq!(ops["type"], "GET_OPERATIONS");
    let listed = ops["get_operations"]["operations"]
        .as_array()
        .expect("operations");
    assert_eq!(listed.len(), 1, "{ops}");
    let op = &listed[0];
    assert_eq!(op["framework_id"]["value"], s.fw.as_str());
    assert_eq!(op["agent_id"]["value"], aid.as_str());
    assert_eq!(op["info"]["type"], "RESERVE");
    assert_eq!(op["info"]["id"]["value"], "op-1");
    assert_eq!(scalar(&op["info"]["reserve"]["resources"], "cpus"), 1.0);
    assert_eq!(op["latest_status"]["state"], "OPERATION_FINISHED");
    assert_eq!(op["latest_status"]["uuid"]["value"], uuid.as_str());
    assert_eq!(op["statuses"], json!([op["latest_status"].clone()]), "{op}");
    let op_uuid = op["uuid"]["value"].as_str().expect("the operation's uuid");
    assert_eq!(op_uuid.len(), 24, "16 bytes in base64");
    assert_ne!(op_uuid, uuid, "the operation's own uuid, not its status'");

    // The reservation is in force: the next offer holds it.
    let o = offer(&mut s).await;
    assert_eq!(reserved_cpus(&o), 1.0);

    // Reconciliation answers with the latest status, without a uuid.
    let (st, _) = s
        .call(reconcile_ops(json!([{"operation_id": {"value": "op-1"}}])))
        .await;
    assert_eq!(st, 202);
    let ev = s.event_of("UPDATE_OPERATION_STATUS").await;
    let status = &ev["update_operation_status"]["status"];
    assert_eq!(status["state"], "OPERATION_FINISHED");
    assert!(status.get("uuid").is_none(), "{ev}");

    // Not acknowledged: after a failover the status comes again, same uuid.
    let fw = s.fw.clone();
    drop(s);
    let mut info = framework_info("ops", "eng", &[]);
    info["id"] = json!({"value": fw});
    let mut s = Sched::subscribe(&addr, info).await;
    assert_eq!(s.fw, fw);
    let ev = s.event_of("UPDATE_OPERATION_STATUS").await;
    assert_eq!(
        ev["update_operation_status"]["status"]["uuid"]["value"],
        uuid.as_str()
    );

    let (st, body) = s
        .call(
            json!({"type": "ACKNOWLEDGE_OPERATION_STATUS", "acknowledge_operation_status": {
            "agent_id": {"value": aid}, "uuid": uuid, "operation_id": {"value": "op-1"}}}),
        )
        .await;
    assert_eq!(st, 202, "{body}");
    // Acknowledged and terminal: forgotten, by GET_OPERATIONS too. The implicit
    // reconciliation says nothing, so the next answer is the explicit one: unknown.
    let (_, ops) = operator(&addr, json!({"type": "GET_OPERATIONS"})).await;
    assert!(ops["get_operations"].get("operations").is_none(), "{ops}");
    let (st, _) = s.call(reconcile_ops(json!([]))).await;
    assert_eq!(st, 202);
    let (st, _) = s
        .call(reconcile_ops(
            json!([{"operation_id": {"value": "op-1"}, "agent_id": {"value": aid}}]),
        ))
        .await;
    assert_eq!(st, 202);
    let ev = s.event_of("UPDATE_OPERATION_STATUS").await;
    let status = &ev["update_operation_status"]["status"];
    assert_eq!(status["state"], "OPERATION_UNKNOWN", "{ev}");
    assert_eq!(status["agent_id"]["value"], aid.as_str());

    // UNRESERVE with an id gives the cpus back, unreserved.
    let o = loop {
        let o = offer(&mut s).await;
        if reserved_cpus(&o) == 1.0 {
            break o;
        }
    };
    let (st, _) = s
        .call(accept(
            &o,
            vec![reservation_op("UNRESERVE", Some("op-2"), 1.0)],
        ))
        .await;
    assert_eq!(st, 202);
    let ev = s.event_of("UPDATE_OPERATION_STATUS").await;
    let status = &ev["update_operation_status"]["status"];
    assert_eq!(status["state"], "OPERATION_FINISHED", "{ev}");
    assert_eq!(status["operation_id"]["value"], "op-2");
    assert!(status["converted_resources"][0]["reservations"].is_null());
    let o = offer(&mut s).await;
    assert_eq!(reserved_cpus(&o), 0.0);
    assert_eq!(scalar(&o["resources"], "cpus"), 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_operation_input_is_refused_and_changes_nothing() {
    let (m, _stop) = master(|_| {}).await;
    let addr = m.addr.to_string();
    let mut agent = FakeAgent::attach(&m.handle, 1).await;
    agent
        .register(&m.handle, "cpus:2;mem:1024", None, vec![])
        .await;
    let aid = agent.id.clone().unwrap().to_string();
    let mut s = Sched::subscribe(&addr, framework_info("bad", "eng", &[])).await;
    let good_uuid = "AAECAwQFBgcICQoLDA0ODw=="; // 16 bytes

    // Structural problems: 400 naming the field.
    let (st, body) = s
        .call(
            json!({"type": "ACKNOWLEDGE_OPERATION_STATUS", "acknowledge_operation_status": {
            "agent_id": {"value": aid}, "uuid": "AAAA", "operation_id": {"value": "x"}}}),
        )
        .await;
    assert_eq!(st, 400);
    assert!(body.contains("acknowledge_operation_status.uuid"), "{body}");
    let (st, body) = s
        .call(
            json!({"type": "ACKNOWLEDGE_OPERATION_STATUS", "acknowledge_operation_status": {
            "uuid": good_uuid, "operation_id": {"value": "x"}}}),
        )
        .await;
    assert_eq!(st, 400);
    assert!(
        body.contains("Expecting 'agent_id' to be present"),
        "{body}"
    );
    let (st, body) = s
        .call(reconcile_ops(json!([{"operation_id": {"value": ""}}])))
        .await;
    assert_eq!(st, 400);
    assert!(
        body.contains("reconcile_operations.operations[0].operation_id"),
        "{body}"
    );
    // RECONCILE_OPERATIONS negotiates Accept, as in Mesos.
    let mut call = reconcile_ops(json!([]));
    call["framework_id"] = json!({"value": s.fw});
    let r = common::http::request(
        &addr,
        "POST",
        "/api/v1/scheduler",
        &[
            ("Content-Type", "application/json"),
            ("Accept", "text/html"),
            ("Mesos-Stream-Id", &s.sid),
        ],
        call.to_string().as_bytes(),
    )
    .await;
    assert_eq!(r.status, 406);
    // An acknowledgement of an operation the master never saw is accepted and ignored.
    let (st, _) = s
        .call(
            json!({"type": "ACKNOWLEDGE_OPERATION_STATUS", "acknowledge_operation_status": {
            "agent_id": {"value": aid}, "uuid": good_uuid, "operation_id": {"value": "x"}}}),
        )
        .await;
    assert_eq!(st, 202);

    // An unusable operation id refuses the whole ACCEPT; the offer stays valid.
    let o = offer(&mut s).await;
    let (st, body) = s
        .call(accept(&o, vec![reservation_op("RESERVE", Some(""), 1.0)]))
        .await;
    assert_eq!(st, 400);
    assert!(body.contains("accept.operations[0].id.value"), "{body}");

    // Semantic problems: 202, then OPERATION_ERROR (no uuid) or TASK_ERROR naming the field.
    let launch_with_id = json!({"type": "LAUNCH", "id": {"value": "op-launch"}, "launch": {
        "task_infos": [{"name": "t", "task_id": {"value": "t1"}, "agent_id": {"value": aid},
                        "resources": [cpus(0.5, false)], "command": {"value": "true"}}]}});
    let (st, _) = s
        .call(accept(
            &o,
            vec![
                reservation_op("RESERVE", Some("op-big"), 100.0),
                launch_with_id,
            ],
        ))
        .await;
    assert_eq!(st, 202);
    let ev = s
        .expect(&["UPDATE", "UPDATE_OPERATION_STATUS", "OFFERS"])
        .await;
    let (update, opstatus) = if ev["type"] == "UPDATE" {
        (ev, s.event_of("UPDATE_OPERATION_STATUS").await)
    } else {
        let u = s.event_of("UPDATE").await;
        (u, ev)
    };
    let task = &update["update"]["status"];
    assert_eq!(task["state"], "TASK_ERROR", "{update}");
    assert_eq!(task["reason"], "REASON_TASK_INVALID");
    assert!(task["message"].as_str().unwrap().contains("operations.id"));
    let status = &opstatus["update_operation_status"]["status"];
    assert_eq!(status["state"], "OPERATION_ERROR", "{opstatus}");
    assert_eq!(status["operation_id"]["value"], "op-big");
    assert!(status.get("uuid").is_none());
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("reserve.resources"),
        "{opstatus}"
    );
    // Nothing was reserved or launched, and the error is not kept.
    let o2 = offer(&mut s).await;
    assert_eq!(reserved_cpus(&o2), 0.0);
    assert_eq!(scalar(&o2["resources"], "cpus"), 2.0);
    let (st, tasks) = operator(&addr, json!({"type": "GET_TASKS"})).await;
    assert_eq!(st, 200);
    assert!(
        tasks["get_tasks"]["tasks"]
            .as_array()
            .is_none_or(Vec::is_empty)
    );
    let (st, _) = s
        .call(reconcile_ops(
            json!([{"operation_id": {"value": "op-big"}}]),
        ))
        .await;
    assert_eq!(st, 202);
    let ev = s.event_of("UPDATE_OPERATION_STATUS").await;
    assert_eq!(
        ev["update_operation_status"]["status"]["state"],
        "OPERATION_UNKNOWN"
    );

    // The used offer is gone: an operation on it errors, naming the offers.
    let (st, _) = s
        .call(accept(
            &o,
            vec![reservation_op("RESERVE", Some("op-stale"), 1.0)],
        ))
        .await;
    assert_eq!(st, 202);
    let ev = s.event_of("UPDATE_OPERATION_STATUS").await;
    let status = &ev["update_operation_status"]["status"];
    assert_eq!(status["state"], "OPERATION_ERROR");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("invalid offers"),
        "{ev}"
    );

    // An id still in use (status not acknowledged) cannot be given to another operation.
    let (st, _) = s
        .call(accept(
            &o2,
            vec![reservation_op("RESERVE", Some("op-d"), 1.0)],
        ))
        .await;
    assert_eq!(st, 202);
    let ev = s.event_of("UPDATE_OPERATION_STATUS").await;
    assert_eq!(
        ev["update_operation_status"]["status"]["state"],
        "OPERATION_FINISHED"
    );
    let o3 = offer(&mut s).await;
    let (st, _) = s
        .call(accept(
            &o3,
            vec![reservation_op("RESERVE", Some("op-d"), 0.5)],
        ))
        .await;
    assert_eq!(st, 202);
    let ev = s.event_of("UPDATE_OPERATION_STATUS").await;
    let status = &ev["update_operation_status"]["status"];
    assert_eq!(status["state"], "OPERATION_ERROR");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("already in use")
    );
    let o4 = offer(&mut s).await;
    assert_eq!(reserved_cpus(&o4), 1.0, "only the first op-d reserved");
}

/// A registry whose agent writes fail once `fail` is set (a full disk).
#[derive(Default)]
struct Flaky {
    inner: MemRegistry,
    fail: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Registry for Flaky {
    fn load(&mut self) -> tessera_master::Result<RegistrySnapshot> {
        self.inner.load()
    }
    fn put_agent(&mut self, a: &AgentRecord) -> tessera_master::Result<()> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(tessera_master::MasterError::Registry("disk full".into()));
        }
        self.inner.put_agent(a)
    }
    fn remove_agent(&mut self, id: &AgentId) -> tessera_master::Result<()> {
        self.inner.remove_agent(id)
    }
    fn put_framework(&mut self, f: &FrameworkInfo) -> tessera_master::Result<()> {
        self.inner.put_framework(f)
    }
    fn remove_framework(&mut self, id: &FrameworkId) -> tessera_master::Result<()> {
        self.inner.remove_framework(id)
    }
    fn put_weight(&mut self, r: &Role, w: f64) -> tessera_master::Result<()> {
        self.inner.put_weight(r, w)
    }
    fn put_quota(
        &mut self,
        r: &Role,
        q: Option<&tessera_allocator::Quota>,
    ) -> tessera_master::Result<()> {
        self.inner.put_quota(r, q)
    }
    fn put_next_id(&mut self, n: u64) -> tessera_master::Result<()> {
        self.inner.put_next_id(n)
    }
    fn put_maintenance(
        &mut self,
        m: &tessera_master::maintenance::Maintenance,
    ) -> tessera_master::Result<()> {
        self.inner.put_maintenance(m)
    }
}

#[tokio::test(start_paused = true)]
async fn a_reservation_the_registry_cannot_record_is_dropped() {
    let reg = Flaky::default();
    let fail = reg.fail.clone();
    let (h, _stop) = common::start_with(common::config(), Box::new(reg));
    let mut agent = FakeAgent::attach(&h, 1).await;
    agent.register(&h, "cpus:2;mem:1024", None, vec![]).await;
    let mut sub = h
        .subscribe(common::framework("f", "eng", vec![]))
        .await
        .unwrap();
    let offers = common::next_offers(&mut sub).await;
    let reserved = tessera_types::parse::parse_json_resources(
        "resources",
        &json!([{"name": "cpus", "type": "SCALAR", "scalar": {"value": 1.0},
                 "reservations": [{"type": "DYNAMIC", "role": "eng", "principal": "p"}]}]),
    )
    .unwrap();
    fail.store(true, std::sync::atomic::Ordering::SeqCst);
    h.accept(
        sub.framework_id.clone(),
        vec![offers[0].id.clone()],
        vec![Operation::WithId {
            id: "op-1".into(),
            op: Box::new(Operation::Reserve(reserved)),
        }],
        Filters {
            refuse_seconds: 0.0,
        },
    )
    .await
    .unwrap();
    let status = loop {
        if let Event::UpdateOperationStatus(s) = common::next_event(&mut sub).await {
            break s;
        }
    };
    assert_eq!(status.state, OperationState::Dropped);
    assert!(status.uuid.is_some(), "the framework must acknowledge it");
    assert!(status.message.unwrap().contains("disk full"));
    // Nothing was reserved: the whole agent is offered again, unreserved.
    fail.store(false, std::sync::atomic::Ordering::SeqCst);
    let offers = common::next_offers(&mut sub).await;
    assert!(!offers[0].resources.to_string().contains("eng"));
    common::assert_usage_consistent(&h).await;
}
