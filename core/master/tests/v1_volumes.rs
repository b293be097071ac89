//! Persistent volumes over the v1 APIs, in Mesos JSON: CREATE and DESTROY in ACCEPT with
//! operation feedback, offers that show `disk.persistence` and `disk.volume`, a hostile
//! `container_path` refused with the field named, GET_OPERATIONS, and the operator's
//! CREATE_VOLUMES / DESTROY_VOLUMES.

mod common;
#[path = "support/sched.rs"]
mod sched;

use std::collections::BTreeMap;

use common::FakeAgent;
use sched::{Sched, framework_info, master, operator};
use serde_json::{Value, json};

fn disk(amount: f64) -> Value {
    json!({"name": "disk", "type": "SCALAR", "scalar": {"value": amount},
           "reservations": [{"type": "DYNAMIC", "role": "eng", "principal": "p"}]})
}

fn vol(id: &str, path: &str, amount: f64) -> Value {
    let mut r = disk(amount);
    r["disk"] = json!({"persistence": {"id": id, "principal": "p"},
                       "volume": {"container_path": path, "mode": "RW"}});
    r
}

fn op(kind: &str, id: &str, resources: Vec<Value>) -> Value {
    let (field, list) = match kind {
        "RESERVE" => ("reserve", "resources"),
        "CREATE" => ("create", "volumes"),
        _ => ("destroy", "volumes"),
    };
    let mut o = json!({"type": kind, "id": {"value": id}});
    o[field] = json!({ list: resources });
    o
}

fn accept(offer: &Value, ops: Vec<Value>) -> Value {
    json!({"type": "ACCEPT", "accept": {"offer_ids": [offer["id"].clone()], "operations": ops,
           "filters": {"refuse_seconds": 0}}})
}

/// The next `n` operation statuses, by operation id.
async fn statuses(s: &mut Sched, n: usize) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    while out.len() < n {
        let ev = s.event_of("UPDATE_OPERATION_STATUS").await;
        let st = ev["update_operation_status"]["status"].clone();
        out.insert(
            st["operation_id"]["value"].as_str().unwrap().to_string(),
            st,
        );
    }
    out
}

/// The volume resources of the next offer that has any, with the offer.
async fn offer_with_volume(s: &mut Sched) -> (Value, Vec<Value>) {
    loop {
        let ev = s.event_of("OFFERS").await;
        let o = ev["offers"]["offers"][0].clone();
        let vols: Vec<Value> = o["resources"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r.get("disk").is_some())
            .cloned()
            .collect();
        if !vols.is_empty() {
            return (o, vols);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_over_the_v1_scheduler_and_operator_apis() {
    let (m, _stop) = master(|_| {}).await;
    let addr = m.addr.to_string();
    let mut agent = FakeAgent::attach(&m.handle, 1).await;
    agent
        .register(&m.handle, "cpus:2;mem:1024;disk:1000", None, vec![])
        .await;
    let aid = agent.id.clone().unwrap().to_string();
    let mut s = Sched::subscribe(&addr, framework_info("vols", "eng", &[])).await;

    // RESERVE works; a CREATE whose path leaves the sandbox is an error naming the field.
    let o = s.event_of("OFFERS").await["offers"]["offers"][0].clone();
    let (st, body) = s
        .call(accept(
            &o,
            vec![
                op("RESERVE", "r1", vec![disk(100.0)]),
                op("CREATE", "bad", vec![vol("vol-1", "../x", 64.0)]),
            ],
        ))
        .await;
    assert_eq!(st, 202, "{body}");
    let got = statuses(&mut s, 2).await;
    assert_eq!(got["r1"]["state"], "OPERATION_FINISHED");
    assert_eq!(got["bad"]["state"], "OPERATION_ERROR", "{got:?}");
    let msg = got["bad"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("operations[1].create.volumes[0].disk.volume.container_path"),
        "{msg}"
    );

    // CREATE: the next offers show the volume with its disk info.
    let o = loop {
        let o = s.event_of("OFFERS").await["offers"]["offers"][0].clone();
        if sched::scalar(&o["resources"], "disk") == 1000.0 {
            break o;
        }
    };
    let (st, _) = s
        .call(accept(
            &o,
            vec![op("CREATE", "c1", vec![vol("vol-1", "data", 64.0)])],
        ))
        .await;
    assert_eq!(st, 202);
    let got = statuses(&mut s, 1).await;
    assert_eq!(got["c1"]["state"], "OPERATION_FINISHED", "{got:?}");
    let converted = &got["c1"]["converted_resources"][0];
    assert_eq!(converted["disk"]["persistence"]["id"], "vol-1");
    let (o, vols) = offer_with_volume(&mut s).await;
    assert_eq!(vols.len(), 1);
    let v = &vols[0];
    assert_eq!(v["disk"]["persistence"]["id"], "vol-1");
    assert_eq!(v["disk"]["persistence"]["principal"], "p");
    assert_eq!(v["disk"]["volume"]["container_path"], "data");
    assert_eq!(v["disk"]["volume"]["mode"], "RW");
    assert_eq!(v["scalar"]["value"], 64.0);
    assert_eq!(v["reservations"][0]["role"], "eng");
    assert_eq!(v["allocation_info"]["role"], "eng");

    // Operators see the CREATE until it is acknowledged.
    let (st, ops) = operator(&addr, json!({"type": "GET_OPERATIONS"})).await;
    assert_eq!(st, 200);
    let listed = ops["get_operations"]["operations"].as_array().unwrap();
    let create = listed
        .iter()
        .find(|o| o["info"]["id"]["value"] == "c1")
        .expect("the CREATE");
    assert_eq!(create["info"]["type"], "CREATE");
    assert_eq!(
        create["info"]["create"]["volumes"][0]["disk"]["persistence"]["id"],
        "vol-1"
    );

    // DESTROY, with the volume exactly as offered.
    let (st, _) = s
        .call(accept(&o, vec![op("DESTROY", "d1", vec![v.clone()])]))
        .await;
    assert_eq!(st, 202);
    let got = statuses(&mut s, 1).await;
    assert_eq!(got["d1"]["state"], "OPERATION_FINISHED", "{got:?}");
    assert!(got["d1"]["converted_resources"][0].get("disk").is_none());
    loop {
        if let tessera_api::pb::master_message::Msg::DestroyVolume(d) = agent.next().await {
            assert_eq!(d.persistence_id, "vol-1");
            break;
        }
    }

    // The operator API: CREATE_VOLUMES on free reserved disk (offers are rescinded first),
    // a second time is refused naming the id, DESTROY_VOLUMES gives it back.
    let create = json!({"type": "CREATE_VOLUMES", "create_volumes": {
        "agent_id": {"value": aid}, "volumes": [vol("vol-op", "state", 100.0)]}});
    let (st, body) = operator(&addr, create.clone()).await;
    assert_eq!(st, 202, "{body}");
    let (st, body) = operator(&addr, create).await;
    assert_eq!(st, 400, "{body}");
    assert!(
        body.to_string()
            .contains("create_volumes.volumes[0].disk.persistence.id"),
        "{body}"
    );
    let (st, body) = operator(
        &addr,
        json!({"type": "CREATE_VOLUMES", "create_volumes": {
            "agent_id": {"value": aid}, "volumes": [vol("v2", "/abs", 1.0)]}}),
    )
    .await;
    assert_eq!(st, 400, "{body}");
    assert!(
        body.to_string()
            .contains("create_volumes.volumes[0].disk.volume.container_path"),
        "{body}"
    );
    let (st, body) = operator(
        &addr,
        json!({"type": "DESTROY_VOLUMES", "destroy_volumes": {
            "agent_id": {"value": aid}, "volumes": [vol("vol-op", "state", 100.0)]}}),
    )
    .await;
    assert_eq!(st, 202, "{body}");
}
