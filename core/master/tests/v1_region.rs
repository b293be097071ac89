//! Fault domains and REGION_AWARE: agents register with a domain, operators and offers show
//! it, and agents in a region other than the master's are offered only to REGION_AWARE
//! frameworks (without a master domain every agent is local). Bad domains are refused,
//! naming the field, and change nothing.

mod common;
#[path = "support/sched.rs"]
mod sched;

use std::time::Duration;

use common::FakeAgent;
use common::http::request;
use sched::{Sched, framework_info, master, operator};
use serde_json::{Value, json};
use tessera_api::convert::resources_to_pb;
use tessera_api::pb;
use tessera_master::{FaultDomain, MasterConfig, MasterHandle};
use tessera_types::AgentId;
use tessera_types::parse::parse_resources;

fn domain(region: &str, zone: &str) -> FaultDomain {
    FaultDomain {
        region: region.into(),
        zone: zone.into(),
    }
}

/// Registers a fake agent with a fault domain; the master's answer.
async fn register_in(
    h: &MasterHandle,
    agent: &mut FakeAgent,
    region: Option<&str>,
    zone: &str,
) -> pb::master_message::Msg {
    let info = pb::AgentInfo {
        hostname: format!("host{}", agent.conn),
        http_port: 0,
        resources: resources_to_pb(&parse_resources("cpus:2;mem:1024").unwrap()),
        attributes: vec![],
        version: "test".into(),
    };
    let reg = pb::Register {
        info: Some(info),
        agent_id: None,
        tasks: vec![],
    };
    agent
        .send(
            h,
            pb::agent_message::Msg::RegisterInDomain(pb::RegisterInDomain {
                register: Some(reg),
                domain: region.map(|r| pb::FaultDomain {
                    region: r.into(),
                    zone: zone.into(),
                }),
            }),
        )
        .await;
    let m = agent.next().await;
    if let pb::master_message::Msg::Registered(r) = &m {
        agent.id = Some(AgentId::new(r.agent_id.clone()).unwrap());
    }
    m
}

fn region_of(offer: &Value) -> &str {
    offer["domain"]["fault_domain"]["region"]["name"]
        .as_str()
        .unwrap_or("")
}

/// Offers `s` receives within `d` (each declined with a short filter so more come).
async fn offers_within(s: &mut Sched, d: Duration) -> Vec<Value> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + d;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(ev) = s.quiet_for(left).await else {
            return seen;
        };
        if ev["type"] != "OFFERS" {
            continue;
        }
        for o in ev["offers"]["offers"].as_array().unwrap() {
            let decline = json!({"type": "DECLINE", "decline": {"offer_ids": [o["id"].clone()],
                                 "filters": {"refuse_seconds": 0.1}}});
            assert_eq!(s.call(decline).await.0, 202);
            seen.push(o.clone());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_agents_are_offered_only_to_region_aware_frameworks() {
    let (m, _stop) = master(|c| c.domain = Some(domain("us-east", "a"))).await;
    let addr = m.addr.to_string();
    let mut near = FakeAgent::attach(&m.handle, 1).await;
    let reply = register_in(&m.handle, &mut near, Some("us-east"), "c").await;
    assert!(
        matches!(reply, pb::master_message::Msg::Registered(_)),
        "{reply:?}"
    );
    let mut far = FakeAgent::attach(&m.handle, 2).await;
    register_in(&m.handle, &mut far, Some("eu-west"), "b").await;
    let (near_id, far_id) = (
        near.id.clone().unwrap().to_string(),
        far.id.clone().unwrap().to_string(),
    );

    // Bad domains are refused, naming the field; nothing is admitted.
    let mut bad = FakeAgent::attach(&m.handle, 3).await;
    let reply = register_in(&m.handle, &mut bad, Some(""), "z").await;
    let pb::master_message::Msg::Rejected(r) = reply else {
        panic!("{reply:?}")
    };
    assert!(
        r.reason.contains("register_in_domain.domain.region"),
        "{r:?}"
    );
    let mut bad = FakeAgent::attach(&m.handle, 4).await;
    let reply = register_in(&m.handle, &mut bad, None, "z").await;
    let pb::master_message::Msg::Rejected(r) = reply else {
        panic!("{reply:?}")
    };
    assert!(r.reason.contains("register_in_domain.domain"), "{r:?}");
    assert_eq!(m.handle.state().await.unwrap().agents.len(), 2);

    // Operators see the domains.
    let (st, body) = operator(&addr, json!({"type": "GET_AGENTS"})).await;
    assert_eq!(st, 200);
    for a in body["get_agents"]["agents"].as_array().unwrap() {
        let want = if a["agent_info"]["id"]["value"] == far_id.as_str() {
            "eu-west"
        } else {
            "us-east"
        };
        assert_eq!(
            a["agent_info"]["domain"]["fault_domain"]["region"]["name"],
            want
        );
    }
    let r = request(&addr, "GET", "/master/state", &[], b"").await;
    let state: Value = serde_json::from_str(&r.body().await).unwrap();
    assert_eq!(state["domain"]["fault_domain"]["region"]["name"], "us-east");
    assert!(
        state["slaves"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["domain"]["fault_domain"]["zone"]["name"] == "b")
    );

    // A framework without REGION_AWARE is offered the local agent only.
    let mut local = Sched::subscribe(&addr, framework_info("local", "eng", &[])).await;
    let seen = offers_within(&mut local, Duration::from_millis(1500)).await;
    assert!(!seen.is_empty(), "the local agent is offered");
    for o in &seen {
        assert_eq!(o["agent_id"]["value"], near_id.as_str(), "{o}");
        assert_eq!(region_of(o), "us-east", "offers carry the agent's domain");
    }
    // A REGION_AWARE framework gets the remote one.
    let mut aware =
        Sched::subscribe(&addr, framework_info("aware", "eng", &["REGION_AWARE"])).await;
    let o = loop {
        let ev = aware.event_of("OFFERS").await;
        if let Some(o) = ev["offers"]["offers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["agent_id"]["value"] == far_id.as_str())
        {
            break o.clone();
        }
    };
    assert_eq!(region_of(&o), "eu-west");
    assert_eq!(o["domain"]["fault_domain"]["zone"]["name"], "b", "{o}");
    let decline = json!({"type": "DECLINE", "decline": {"offer_ids": [o["id"].clone()],
                         "filters": {"refuse_seconds": 3600}}});
    assert_eq!(aware.call(decline).await.0, 202);

    // UPDATE_FRAMEWORK adding REGION_AWARE opens the remote agent to `local` too.
    let mut info = framework_info("local", "eng", &["REGION_AWARE"]);
    info["id"] = json!({"value": local.fw});
    let (st, body) = local
        .call(json!({"type": "UPDATE_FRAMEWORK", "update_framework": {"framework_info": info}}))
        .await;
    assert_eq!(st, 200, "{body}");
    let got_far = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let ev = local.event_of("OFFERS").await;
            for o in ev["offers"]["offers"].as_array().unwrap() {
                if o["agent_id"]["value"] == far_id.as_str() {
                    return;
                }
                let decline = json!({"type": "DECLINE", "decline": {"offer_ids": [o["id"].clone()],
                                     "filters": {"refuse_seconds": 3600}}});
                assert_eq!(local.call(decline).await.0, 202);
            }
        }
    })
    .await;
    assert!(
        got_far.is_ok(),
        "offered the remote agent once REGION_AWARE"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_master_domain_every_agent_is_local() {
    let (m, _stop) = master(|_| {}).await;
    let addr = m.addr.to_string();
    let mut far = FakeAgent::attach(&m.handle, 1).await;
    register_in(&m.handle, &mut far, Some("eu-west"), "b").await;
    let mut local = Sched::subscribe(&addr, framework_info("local", "eng", &[])).await;
    let ev = local.event_of("OFFERS").await;
    let o = &ev["offers"]["offers"][0];
    assert_eq!(o["agent_id"]["value"], far.id.clone().unwrap().as_str());
    assert_eq!(region_of(o), "eu-west");
    let r = request(&addr, "GET", "/master/state", &[], b"").await;
    let state: Value = serde_json::from_str(&r.body().await).unwrap();
    assert!(state.get("domain").is_none());
}

#[test]
fn a_master_domain_must_name_region_and_zone() {
    let mut c = MasterConfig::new("127.0.0.1:0".parse().unwrap(), std::env::temp_dir());
    c.domain = Some(domain("", "a"));
    let e = c.validate().unwrap_err();
    assert!(e.to_string().starts_with("domain.region:"), "{e}");
    c.domain = Some(domain("r", "a\nb"));
    let e = c.validate().unwrap_err();
    assert!(e.to_string().starts_with("domain.zone:"), "{e}");
    c.domain = Some(domain("r", "z"));
    assert!(c.validate().is_ok());
    assert_eq!(c.flags().get("domain").map(String::as_str), Some("r/z"));
}
