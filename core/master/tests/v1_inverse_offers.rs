//! Inverse offers for drained agents: DRAIN_AGENT sends INVERSE_OFFERS to frameworks with
//! tasks on the agent (and to no one else); ACCEPT/DECLINE_INVERSE_OFFERS are honoured with
//! their filters; RESCIND_INVERSE_OFFER follows reactivation, the end of draining and
//! expiry; bad input changes nothing. Wire shapes over real HTTP; timing under a paused
//! clock at the actor's interface.

mod common;
#[path = "support/sched.rs"]
mod sched;

use std::time::Duration;

use common::FakeAgent;
use sched::{Sched, framework_info, master, operator};
use serde_json::{Value, json};
use tessera_master::actor::AgentAction;
use tessera_master::{Event, Operation};
use tessera_types::{Filters, TaskId, TaskState};

/// The inverse offers GET_FRAMEWORKS lists for framework `fw`.
async fn listed(addr: &str, fw: &str) -> Vec<String> {
    let (st, body) = operator(addr, json!({"type": "GET_FRAMEWORKS"})).await;
    assert_eq!(st, 200);
    body["get_frameworks"]["frameworks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["framework_info"]["id"]["value"] == fw)
        .flat_map(|f| f["inverse_offers"].as_array().cloned().unwrap_or_default())
        .map(|o| o["id"]["value"].as_str().unwrap().to_string())
        .collect()
}

fn answer(kind: &str, ids: &[&str], refuse: f64) -> Value {
    let field = kind.to_ascii_lowercase();
    let mut c = json!({"type": kind});
    c[field.as_str()] = json!({
        "inverse_offer_ids": ids.iter().map(|i| json!({"value": i})).collect::<Vec<_>>(),
        "filters": {"refuse_seconds": refuse}});
    c
}

/// Fails if an event of type `ty` arrives within `d` (others are skipped).
async fn none_of(s: &mut Sched, ty: &str, d: Duration) {
    let deadline = tokio::time::Instant::now() + d;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match s.quiet_for(left).await {
            None => return,
            Some(ev) => assert_ne!(ev["type"], ty, "unexpected {ev}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_sends_inverse_offers_and_honours_the_answers() {
    let (m, _stop) = master(|_| {}).await;
    let addr = m.addr.to_string();
    let mut agent = FakeAgent::attach(&m.handle, 1).await;
    agent
        .register(&m.handle, "cpus:2;mem:1024", None, vec![])
        .await;
    let aid = agent.id.clone().unwrap().to_string();
    let mut f1 = Sched::subscribe(&addr, framework_info("f1", "eng", &[])).await;
    let mut f2 = Sched::subscribe(&addr, framework_info("f2", "other", &[])).await;

    // f1 runs a task on the agent; f2 has none there.
    let o = f1.event_of("OFFERS").await["offers"]["offers"][0].clone();
    let launch = json!({"type": "ACCEPT", "accept": {"offer_ids": [o["id"].clone()],
        "operations": [{"type": "LAUNCH", "launch": {"task_infos": [{"name": "t",
            "task_id": {"value": "t1"}, "agent_id": {"value": aid},
            "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.5},
                           "allocation_info": {"role": "eng"}}],
            "command": {"value": "sleep 60"}}]}}]}});
    assert_eq!(f1.call(launch).await.0, 202);
    let msg = agent.next().await;
    assert!(
        matches!(msg, tessera_api::pb::master_message::Msg::RunTask(_)),
        "{msg:?}"
    );
    let fw1 = tessera_types::FrameworkId::new(f1.fw.clone()).unwrap();
    let t1 = TaskId::new("t1").unwrap();
    agent
        .status(&m.handle, &fw1, &t1, TaskState::TaskRunning, "u-1")
        .await;
    assert_eq!(
        f1.event_of("UPDATE").await["update"]["status"]["state"],
        "TASK_RUNNING"
    );

    let (st, _) = operator(
        &addr,
        json!({"type": "DRAIN_AGENT", "drain_agent": {"agent_id": {"value": aid}}}),
    )
    .await;
    assert_eq!(st, 200);
    let ev = f1.event_of("INVERSE_OFFERS").await;
    let offers = ev["inverse_offers"]["inverse_offers"].as_array().unwrap();
    assert_eq!(offers.len(), 1, "{ev}");
    let io = &offers[0];
    assert_eq!(io["agent_id"]["value"], aid.as_str());
    assert_eq!(io["framework_id"]["value"], f1.fw.as_str());
    assert!(
        io["unavailability"]["start"]["nanoseconds"]
            .as_i64()
            .unwrap()
            > 0
    );
    assert!(io["unavailability"].get("duration").is_none(), "open-ended");
    assert!(io["url"]["address"]["port"].as_i64().is_some());
    assert!(
        io.get("resources").is_none(),
        "the whole agent: no resources"
    );
    let io1 = io["id"]["value"].as_str().unwrap().to_string();
    assert_eq!(listed(&addr, &f1.fw).await, vec![io1.clone()]);

    // Bad input changes nothing.
    let (st, _) = f1
        .call(answer("ACCEPT_INVERSE_OFFERS", &["nope"], 60.0))
        .await;
    assert_eq!(st, 202, "unknown ids are not HTTP errors in Mesos");
    let (st, _) = f1
        .call(answer("ACCEPT_INVERSE_OFFERS", &[&io1, "nope"], 60.0))
        .await;
    assert_eq!(st, 202);
    let (st, _) = f1.call(answer("ACCEPT_INVERSE_OFFERS", &[], 60.0)).await;
    assert_eq!(st, 202);
    let (st, _) = f2
        .call(answer("ACCEPT_INVERSE_OFFERS", &[&io1], 60.0))
        .await;
    assert_eq!(st, 202, "another framework's inverse offer");
    let (st, body) = f1.call(answer("ACCEPT_INVERSE_OFFERS", &[""], 60.0)).await;
    assert_eq!(st, 400);
    assert!(
        body.contains("accept_inverse_offers.inverse_offer_ids[0].value"),
        "{body}"
    );
    let (st, body) = f1.call(json!({"type": "DECLINE_INVERSE_OFFERS"})).await;
    assert_eq!(st, 400);
    assert!(body.contains("Expecting 'decline_inverse_offers' to be present"));
    assert_eq!(listed(&addr, &f1.fw).await, vec![io1.clone()], "unchanged");
    none_of(&mut f2, "INVERSE_OFFERS", Duration::from_millis(300)).await;

    // A decline with a short filter: asked again once it passes (the task still runs).
    let (st, _) = f1
        .call(answer("DECLINE_INVERSE_OFFERS", &[&io1], 0.3))
        .await;
    assert_eq!(st, 202);
    assert!(listed(&addr, &f1.fw).await.is_empty());
    let ev = f1.event_of("INVERSE_OFFERS").await;
    let io2 = ev["inverse_offers"]["inverse_offers"][0]["id"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(io2, io1);

    // Reactivation withdraws it.
    let (st, _) = operator(
        &addr,
        json!({"type": "REACTIVATE_AGENT", "reactivate_agent": {"agent_id": {"value": aid}}}),
    )
    .await;
    assert_eq!(st, 200);
    let ev = f1.event_of("RESCIND_INVERSE_OFFER").await;
    assert_eq!(
        ev["rescind_inverse_offer"]["inverse_offer_id"]["value"],
        io2.as_str()
    );
    assert!(listed(&addr, &f1.fw).await.is_empty());

    // Drained again and accepted with a long filter: not asked again.
    let (st, _) = operator(
        &addr,
        json!({"type": "DRAIN_AGENT", "drain_agent": {"agent_id": {"value": aid}}}),
    )
    .await;
    assert_eq!(st, 200);
    let ev = f1.event_of("INVERSE_OFFERS").await;
    let io3 = ev["inverse_offers"]["inverse_offers"][0]["id"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, _) = f1
        .call(answer("ACCEPT_INVERSE_OFFERS", &[&io3], 60.0))
        .await;
    assert_eq!(st, 202);
    assert!(listed(&addr, &f1.fw).await.is_empty());
    none_of(&mut f1, "INVERSE_OFFERS", Duration::from_millis(1500)).await;
    none_of(&mut f2, "INVERSE_OFFERS", Duration::from_millis(100)).await;
}

#[tokio::test(start_paused = true)]
async fn inverse_offers_expire_and_are_rescinded_once_the_agent_is_drained() {
    let mut c = common::config();
    c.offer_timeout = Some(Duration::from_secs(30));
    // The fake agent sends no heartbeats: keep it from being lost meanwhile.
    c.agent_timeout = Duration::from_secs(3600);
    let (h, _stop) = common::start(c);
    let mut agent = FakeAgent::attach(&h, 1).await;
    agent.register(&h, "cpus:2;mem:1024", None, vec![]).await;
    let aid = agent.id.clone().unwrap();
    let mut sub = h
        .subscribe(common::framework("f", "eng", vec![]))
        .await
        .unwrap();
    let fw = sub.framework_id.clone();
    let offers = common::next_offers(&mut sub).await;
    h.accept(
        fw.clone(),
        vec![offers[0].id.clone()],
        vec![Operation::Launch(vec![common::task(
            "t1", &aid, "cpus:0.5",
        )])],
        Filters::default(),
    )
    .await
    .unwrap();
    let _run = agent.next().await;
    let t1 = TaskId::new("t1").unwrap();
    agent
        .status(&h, &fw, &t1, TaskState::TaskRunning, "u-1")
        .await;

    h.agent_action(
        aid.clone(),
        AgentAction::Drain {
            grace: None,
            mark_gone: false,
        },
    )
    .await
    .unwrap();
    let io1 = loop {
        match common::next_event(&mut sub).await {
            Event::InverseOffers(v) => break v,
            Event::Rescind(_) | Event::Update(_) | Event::Offers(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(io1.len(), 1);
    assert_eq!(io1[0].agent_id, aid);
    let started = tokio::time::Instant::now();

    // Unanswered, it expires after offer_timeout and is asked again.
    let rescinded = loop {
        match common::next_event(&mut sub).await {
            Event::RescindInverseOffer(id) => break id,
            Event::InverseOffers(v) => panic!("a second inverse offer while one stands: {v:?}"),
            _ => {}
        }
    };
    assert_eq!(rescinded, io1[0].id);
    assert!(started.elapsed() >= Duration::from_secs(30));
    let io2 = loop {
        if let Event::InverseOffers(v) = common::next_event(&mut sub).await {
            break v;
        }
    };
    assert_ne!(io2[0].id, io1[0].id);

    // The task ends: the agent is drained and the inverse offer withdrawn.
    agent
        .status(&h, &fw, &t1, TaskState::TaskKilled, "u-2")
        .await;
    let rescinded = loop {
        match common::next_event(&mut sub).await {
            Event::RescindInverseOffer(id) => break id,
            Event::InverseOffers(v) => panic!("asked again after draining: {v:?}"),
            _ => {}
        }
    };
    assert_eq!(rescinded, io2[0].id);
    assert!(h.state().await.unwrap().inverse_offers.is_empty());
    // Nothing more, however long we wait.
    let quiet = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            if let Event::InverseOffers(v) = common::next_event(&mut sub).await {
                return v;
            }
        }
    })
    .await;
    assert!(quiet.is_err(), "no inverse offer for a drained agent");
}

#[tokio::test(start_paused = true)]
async fn a_disconnected_framework_loses_its_inverse_offers_and_is_asked_again() {
    let mut c = common::config();
    c.agent_timeout = Duration::from_secs(3600);
    let (h, _stop) = common::start(c);
    let mut agent = FakeAgent::attach(&h, 1).await;
    agent.register(&h, "cpus:2;mem:1024", None, vec![]).await;
    let aid = agent.id.clone().unwrap();
    let mut info = common::framework("f", "eng", vec![]);
    info.failover_timeout_secs = 3600.0;
    let mut sub = h.subscribe(info.clone()).await.unwrap();
    let fw = sub.framework_id.clone();
    let offers = common::next_offers(&mut sub).await;
    h.accept(
        fw.clone(),
        vec![offers[0].id.clone()],
        vec![Operation::Launch(vec![common::task(
            "t1", &aid, "cpus:0.5",
        )])],
        Filters::default(),
    )
    .await
    .unwrap();
    let _run = agent.next().await;
    h.agent_action(
        aid.clone(),
        AgentAction::Drain {
            grace: None,
            mark_gone: false,
        },
    )
    .await
    .unwrap();
    loop {
        if let Event::InverseOffers(_) = common::next_event(&mut sub).await {
            break;
        }
    }
    // The stream closes: the inverse offer goes with it, without a rescind to no one.
    drop(sub);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(h.state().await.unwrap().inverse_offers.is_empty());
    // Failover: asked again on the new stream.
    info.id = Some(fw.clone());
    let mut sub = h.subscribe(info).await.unwrap();
    let v = loop {
        if let Event::InverseOffers(v) = common::next_event(&mut sub).await {
            break v;
        }
    };
    assert_eq!(v[0].framework_id, fw);
    assert_eq!(h.state().await.unwrap().inverse_offers.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_lost_agent_takes_its_inverse_offers_with_it() {
    // Agents silent for 30 s are unreachable; the fake agent sends no heartbeats.
    let (h, _stop) = common::start(common::config());
    let mut agent = FakeAgent::attach(&h, 1).await;
    agent.register(&h, "cpus:2;mem:1024", None, vec![]).await;
    let aid = agent.id.clone().unwrap();
    let mut sub = h
        .subscribe(common::framework("f", "eng", vec![]))
        .await
        .unwrap();
    let offers = common::next_offers(&mut sub).await;
    h.accept(
        sub.framework_id.clone(),
        vec![offers[0].id.clone()],
        vec![Operation::Launch(vec![common::task(
            "t1", &aid, "cpus:0.5",
        )])],
        Filters::default(),
    )
    .await
    .unwrap();
    let _run = agent.next().await;
    h.agent_action(
        aid.clone(),
        AgentAction::Drain {
            grace: None,
            mark_gone: false,
        },
    )
    .await
    .unwrap();
    let io = loop {
        if let Event::InverseOffers(v) = common::next_event(&mut sub).await {
            break v;
        }
    };
    let rescinded = loop {
        match common::next_event(&mut sub).await {
            Event::RescindInverseOffer(id) => break id,
            Event::InverseOffers(v) => panic!("asked again for a lost agent: {v:?}"),
            _ => {}
        }
    };
    assert_eq!(rescinded, io[0].id);
    let st = h.state().await.unwrap();
    assert!(st.inverse_offers.is_empty());
    assert_eq!(format!("{:?}", st.agents[0].state), "Unreachable");
}
