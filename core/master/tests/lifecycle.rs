//! Master lifecycles under a paused clock: registration, offers, launch, status updates and
//! acknowledgements, invalid launches, agent loss and return, offer expiry, filters.

mod common;

use std::time::Duration;

use common::*;
use tessera_api::convert::{resources_to_pb, task_to_pb};
use tessera_api::pb;
use tessera_master::{Event, Operation};
use tessera_types::parse::parse_resources;
use tessera_types::{Capability, Filters, OfferId, Reason, TaskId, TaskState};

#[tokio::test(start_paused = true)]
async fn agent_registers_and_framework_is_offered_its_resources() {
    let (h, _stop) = start(config());
    let mut agent = FakeAgent::attach(&h, 1).await;
    let reply = agent
        .register(&h, "cpus:4;mem:4096;ports:[31000-31999]", None, vec![])
        .await;
    let pb::master_message::Msg::Registered(r) = reply else {
        panic!("expected Registered, got {reply:?}")
    };
    assert_eq!(r.heartbeat_interval_ms, 5000);

    let mut sub = h.subscribe(framework("fw", "eng", vec![])).await.unwrap();
    assert!(matches!(
        next_event(&mut sub).await,
        Event::Subscribed { .. }
    ));
    let offers = next_offers(&mut sub).await;
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].agent_id, *agent.id.as_ref().unwrap());
    assert_eq!(
        offers[0].resources,
        parse_resources("cpus:4;mem:4096;ports:[31000-31999]").unwrap()
    );
    assert_eq!(
        offers[0].attributes,
        vec![("rack".to_string(), "r1".to_string())]
    );
}

#[tokio::test(start_paused = true)]
async fn launch_update_and_ack_flow_through_the_master() {
    let (h, _stop) = start(config());
    let mut agent = FakeAgent::attach(&h, 1).await;
    agent.register(&h, "cpus:4;mem:4096", None, vec![]).await;
    let aid = agent.id.clone().unwrap();
    let mut sub = h.subscribe(framework("fw", "eng", vec![])).await.unwrap();
    let fw = sub.framework_id.clone();
    let offers = next_offers(&mut sub).await;
    let t = task("t1", &aid, "cpus:1;mem:128");
    h.accept(
        fw.clone(),
        vec![offers[0].id.clone()],
        vec![Operation::Launch(vec![t.clone()])],
        Filters {
            refuse_seconds: 0.0,
        },
    )
    .await
    .unwrap();
    let pb::master_message::Msg::RunTask(run) = agent.next().await else {
        panic!("expected RunTask")
    };
    assert_eq!(run.framework_id, fw.to_string());
    assert_eq!(run.task.unwrap(), task_to_pb(&t));

    agent
        .status(&h, &fw, &t.task_id, TaskState::TaskRunning, "u1")
        .await;
    let up = next_update(&mut sub).await;
    assert_eq!(up.state, TaskState::TaskRunning);
    assert_eq!(up.uuid.as_deref(), Some("u1"));
    // A resend (the agent retries until acknowledged) is forwarded again: at-least-once.
    agent
        .status(&h, &fw, &t.task_id, TaskState::TaskRunning, "u1")
        .await;
    assert_eq!(next_update(&mut sub).await.uuid.as_deref(), Some("u1"));

    h.acknowledge(fw.clone(), aid.clone(), t.task_id.clone(), "u1".into())
        .await
        .unwrap();
    let pb::master_message::Msg::Acknowledge(ack) = agent.next().await else {
        panic!("expected Acknowledge")
    };
    assert_eq!((ack.task_id.as_str(), ack.uuid.as_str()), ("t1", "u1"));

    // The running task's resources are not offered again; after it finishes they are.
    let offers = next_offers(&mut sub).await;
    assert_eq!(
        offers[0].resources,
        parse_resources("cpus:3;mem:3968").unwrap()
    );
    h.decline(
        fw.clone(),
        vec![offers[0].id.clone()],
        Filters {
            refuse_seconds: 0.0,
        },
    )
    .await
    .unwrap();
    agent
        .status(&h, &fw, &t.task_id, TaskState::TaskFinished, "u2")
        .await;
    assert_eq!(next_update(&mut sub).await.state, TaskState::TaskFinished);
    let offers = next_offers(&mut sub).await;
    assert_eq!(
        offers[0].resources,
        parse_resources("cpus:4;mem:4096").unwrap()
    );
    let state = h.state().await.unwrap();
    assert!(state.tasks.is_empty());
    assert_eq!(state.completed_tasks.len(), 1);
    assert_usage_consistent(&h).await;
}

#[tokio::test(start_paused = true)]
async fn invalid_launches_end_as_task_error_and_leak_nothing() {
    let (h, _stop) = start(config());
    let mut agent = FakeAgent::attach(&h, 1).await;
    agent.register(&h, "cpus:2;mem:1024", None, vec![]).await;
    let aid = agent.id.clone().unwrap();
    let mut sub = h.subscribe(framework("fw", "eng", vec![])).await.unwrap();
    let fw = sub.framework_id.clone();
    let offers = next_offers(&mut sub).await;
    let oid = offers[0].id.clone();

    let too_big = task("big", &aid, "cpus:3;mem:128");
    let unknown_name = task("gpu", &aid, "cpus:0.1;gpus:1");
    let ok = task("ok", &aid, "cpus:1;mem:128");
    let dup = task("ok", &aid, "cpus:0.1;mem:16");
    let mut wrong_agent = task("wrong", &aid, "cpus:0.1");
    wrong_agent.agent_id = tessera_types::AgentId::new("someone-else").unwrap();
    h.accept(
        fw.clone(),
        vec![oid.clone()],
        vec![Operation::Launch(vec![
            too_big,
            unknown_name,
            ok,
            dup,
            wrong_agent,
        ])],
        Filters {
            refuse_seconds: 0.0,
        },
    )
    .await
    .unwrap();
    let mut errors = std::collections::BTreeMap::new();
    for _ in 0..4 {
        let s = next_update(&mut sub).await;
        assert_eq!(s.state, TaskState::TaskError, "{s:?}");
        assert_eq!(s.reason, Some(Reason::ReasonTaskInvalid));
        errors.insert(s.task_id.to_string(), s.message.unwrap_or_default());
    }
    assert!(
        errors["big"].contains("more than what is left"),
        "{errors:?}"
    );
    assert!(errors["gpu"].contains("'gpus'"), "{errors:?}");
    assert!(errors["ok"].contains("already in use"), "{errors:?}");
    assert!(errors["wrong"].contains("agent_id"), "{errors:?}");
    // Only the valid task reached the agent.
    let pb::master_message::Msg::RunTask(run) = agent.next().await else {
        panic!()
    };
    assert_eq!(run.task.unwrap().task_id, "ok");

    // Using the same offer again: it is gone, so the task is dropped/lost with a reason.
    h.accept(
        fw.clone(),
        vec![oid],
        vec![Operation::Launch(vec![task("again", &aid, "cpus:0.1")])],
        Filters::default(),
    )
    .await
    .unwrap();
    let s = next_update(&mut sub).await;
    assert_eq!(
        (s.state, s.reason),
        (TaskState::TaskLost, Some(Reason::ReasonInvalidOffers))
    );

    // Everything but the running task's resources is offered again: nothing leaked.
    let offers = next_offers(&mut sub).await;
    assert_eq!(
        offers[0].resources,
        parse_resources("cpus:1;mem:896").unwrap()
    );
    assert_usage_consistent(&h).await;
}

#[tokio::test(start_paused = true)]
async fn silent_agent_becomes_unreachable_and_its_return_is_reconciled() {
    let (h, _stop) = start(config());
    let mut agent = FakeAgent::attach(&h, 1).await;
    agent.register(&h, "cpus:2;mem:1024", None, vec![]).await;
    let aid = agent.id.clone().unwrap();
    let mut plain = h.subscribe(framework("plain", "a", vec![])).await.unwrap();
    let mut aware = h
        .subscribe(framework("aware", "b", vec![Capability::PartitionAware]))
        .await
        .unwrap();
    let (pf, af) = (plain.framework_id.clone(), aware.framework_id.clone());
    // Each framework launches one task on the agent.
    let mut launched = vec![];
    for (sub, name) in [(&mut plain, "p1"), (&mut aware, "a1")] {
        let offers = next_offers(sub).await;
        let t = task(name, &aid, "cpus:0.5;mem:128");
        h.accept(
            sub.framework_id.clone(),
            vec![offers[0].id.clone()],
            vec![Operation::Launch(vec![t.clone()])],
            Filters {
                refuse_seconds: 3600.0,
            },
        )
        .await
        .unwrap();
        launched.push(t);
    }
    for _ in 0..2 {
        assert!(matches!(
            agent.next().await,
            pb::master_message::Msg::RunTask(_)
        ));
    }
    agent
        .status(&h, &pf, &launched[0].task_id, TaskState::TaskRunning, "p")
        .await;
    agent
        .status(&h, &af, &launched[1].task_id, TaskState::TaskRunning, "a")
        .await;
    assert_eq!(next_update(&mut plain).await.state, TaskState::TaskRunning);
    assert_eq!(next_update(&mut aware).await.state, TaskState::TaskRunning);

    // The agent goes silent: after the 30 s timeout both frameworks hear of it.
    let before = tokio::time::Instant::now();
    let lost = next_update(&mut plain).await;
    assert!(before.elapsed() >= Duration::from_secs(30));
    assert_eq!(
        (lost.state, lost.reason),
        (TaskState::TaskLost, Some(Reason::ReasonAgentRemoved))
    );
    let unreachable = next_update(&mut aware).await;
    assert_eq!(unreachable.state, TaskState::TaskUnreachable);
    let st = h.state().await.unwrap();
    assert_eq!(format!("{:?}", st.agents[0].state), "Unreachable");

    // It comes back on a new connection with the same id and still runs the aware task.
    let mut back = FakeAgent::attach(&h, 2).await;
    let running = pb::RunningTask {
        framework_id: af.to_string(),
        task: Some(task_to_pb(&launched[1])),
        state: TaskState::TaskRunning.as_i32(),
        executor: None,
    };
    let reply = back
        .register(&h, "cpus:2;mem:1024", Some(&aid), vec![running])
        .await;
    assert!(
        matches!(reply, pb::master_message::Msg::Registered(_)),
        "{reply:?}"
    );
    let st = h.state().await.unwrap();
    assert_eq!(format!("{:?}", st.agents[0].state), "Active");
    let t = st
        .tasks
        .iter()
        .find(|t| t.info.task_id == launched[1].task_id)
        .expect("task reconciled");
    assert_eq!(t.state, TaskState::TaskRunning);
    // Its resources are in use again: the offer excludes them.
    aware.events.try_recv().ok();
    h.revive(pf.clone(), None).await.unwrap();
    let offers = next_offers(&mut plain).await;
    assert_eq!(
        offers[0].resources,
        parse_resources("cpus:1.5;mem:896").unwrap()
    );
    assert_usage_consistent(&h).await;
}

#[tokio::test(start_paused = true)]
async fn outstanding_offers_expire_and_are_rescinded() {
    let mut c = config();
    c.offer_timeout = Some(Duration::from_secs(10));
    let (h, _stop) = start(c);
    let mut agent = FakeAgent::attach(&h, 1).await;
    agent.register(&h, "cpus:1;mem:512", None, vec![]).await;
    let mut sub = h.subscribe(framework("fw", "eng", vec![])).await.unwrap();
    let offers = next_offers(&mut sub).await;
    let t0 = tokio::time::Instant::now();
    let rescinded = loop {
        if let Event::Rescind(id) = next_event(&mut sub).await {
            break id;
        }
    };
    assert_eq!(rescinded, offers[0].id);
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_secs(10) && waited <= Duration::from_secs(12),
        "{waited:?}"
    );
    // Rescinded without a filter: offered again.
    let again = next_offers(&mut sub).await;
    assert_eq!(again[0].resources, offers[0].resources);
    // Using the expired offer is refused with a reason.
    let aid = agent.id.clone().unwrap();
    h.accept(
        sub.framework_id.clone(),
        vec![offers[0].id.clone()],
        vec![Operation::Launch(vec![task("x", &aid, "cpus:0.1")])],
        Filters::default(),
    )
    .await
    .unwrap();
    let s = next_update(&mut sub).await;
    assert_eq!(s.reason, Some(Reason::ReasonInvalidOffers));
}

#[tokio::test(start_paused = true)]
async fn declined_offer_is_filtered_for_its_window() {
    let (h, _stop) = start(config());
    let mut agent = FakeAgent::attach(&h, 1).await;
    agent.register(&h, "cpus:1;mem:512", None, vec![]).await;
    let mut sub = h.subscribe(framework("fw", "eng", vec![])).await.unwrap();
    let offers = next_offers(&mut sub).await;
    let t0 = tokio::time::Instant::now();
    h.decline(
        sub.framework_id.clone(),
        vec![offers[0].id.clone()],
        Filters {
            refuse_seconds: 20.0,
        },
    )
    .await
    .unwrap();
    next_offers(&mut sub).await;
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_secs(20),
        "re-offered after only {waited:?}"
    );
    assert!(
        waited <= Duration::from_secs(22),
        "re-offered late: {waited:?}"
    );
    // Declining an offer twice names the offer.
    let e = h
        .decline(
            sub.framework_id.clone(),
            vec![offers[0].id.clone()],
            Filters::default(),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().starts_with("offer_ids:"), "{e}");
    let e = h
        .decline(
            sub.framework_id.clone(),
            vec![OfferId::new("nope").unwrap()],
            Filters::default(),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
}

#[tokio::test(start_paused = true)]
async fn malformed_registrations_are_rejected_naming_the_field() {
    let (h, _stop) = start(config());
    let cases: Vec<(pb::Register, &str)> = vec![
        (
            pb::Register {
                info: None,
                agent_id: None,
                tasks: vec![],
            },
            "register.info",
        ),
        (
            pb::Register {
                info: Some(pb::AgentInfo {
                    hostname: "".into(),
                    resources: resources_to_pb(&parse_resources("cpus:1").unwrap()),
                    ..Default::default()
                }),
                agent_id: None,
                tasks: vec![],
            },
            "hostname",
        ),
        (
            pb::Register {
                info: Some(pb::AgentInfo {
                    hostname: "h".into(),
                    resources: vec![pb::Resource {
                        name: "cpus".into(),
                        value: Some(pb::resource::Value::ScalarMilli(u64::MAX)),
                        reservations: vec![],
                        volume: None,
                    }],
                    ..Default::default()
                }),
                agent_id: None,
                tasks: vec![],
            },
            "register.info.resources[0].scalar_milli",
        ),
        (
            pb::Register {
                info: Some(pb::AgentInfo {
                    hostname: "h".into(),
                    resources: resources_to_pb(&parse_resources("cpus:1").unwrap()),
                    ..Default::default()
                }),
                agent_id: Some("never-seen".into()),
                tasks: vec![],
            },
            "agent_id",
        ),
    ];
    for (i, (reg, field)) in cases.into_iter().enumerate() {
        let mut a = FakeAgent::attach(&h, 100 + i as u64).await;
        a.send(&h, pb::agent_message::Msg::Register(reg)).await;
        match a.next().await {
            pb::master_message::Msg::Rejected(r) => assert!(
                r.reason.contains(field),
                "case {i}: {} lacks {field}",
                r.reason
            ),
            other => panic!("case {i}: expected Rejected, got {other:?}"),
        }
    }
    // A heartbeat before registering is refused too.
    let mut a = FakeAgent::attach(&h, 200).await;
    a.send(&h, pb::agent_message::Msg::Heartbeat(pb::Heartbeat {}))
        .await;
    assert!(matches!(
        a.next().await,
        pb::master_message::Msg::Rejected(_)
    ));
    let st = h.state().await.unwrap();
    assert!(st.agents.is_empty(), "nothing admitted: {:?}", st.agents);
    assert!(st.metrics.invalid_agent_messages >= 5);
}

#[tokio::test(start_paused = true)]
async fn kill_reaches_the_agent_and_unknown_kill_is_answered() {
    let (h, _stop) = start(config());
    let mut agent = FakeAgent::attach(&h, 1).await;
    agent.register(&h, "cpus:1;mem:512", None, vec![]).await;
    let aid = agent.id.clone().unwrap();
    let mut sub = h.subscribe(framework("fw", "eng", vec![])).await.unwrap();
    let fw = sub.framework_id.clone();
    let offers = next_offers(&mut sub).await;
    let mut t = task("k", &aid, "cpus:0.5");
    t.kill_grace_ms = Some(250);
    h.accept(
        fw.clone(),
        vec![offers[0].id.clone()],
        vec![Operation::Launch(vec![t])],
        Filters::default(),
    )
    .await
    .unwrap();
    assert!(matches!(
        agent.next().await,
        pb::master_message::Msg::RunTask(_)
    ));
    h.kill(fw.clone(), TaskId::new("k").unwrap()).await.unwrap();
    let pb::master_message::Msg::KillTask(k) = agent.next().await else {
        panic!()
    };
    assert_eq!((k.task_id.as_str(), k.grace_ms), ("k", Some(250)));
    h.kill(fw.clone(), TaskId::new("ghost").unwrap())
        .await
        .unwrap();
    let s = next_update(&mut sub).await;
    assert_eq!(
        (s.task_id.as_str(), s.state),
        ("ghost", TaskState::TaskLost)
    );
}

#[tokio::test(start_paused = true)]
async fn framework_failover_keeps_tasks_and_timeout_removes_them() {
    // The fake agent does not heartbeat; keep it reachable for the whole test.
    let mut c = config();
    c.agent_timeout = Duration::from_secs(3600);
    let (h, _stop) = start(c);
    let mut agent = FakeAgent::attach(&h, 1).await;
    agent.register(&h, "cpus:1;mem:512", None, vec![]).await;
    let aid = agent.id.clone().unwrap();
    let mut info = framework("fw", "eng", vec![]);
    info.failover_timeout_secs = 60.0;
    let mut sub = h.subscribe(info.clone()).await.unwrap();
    let fw = sub.framework_id.clone();
    let offers = next_offers(&mut sub).await;
    h.accept(
        fw.clone(),
        vec![offers[0].id.clone()],
        vec![Operation::Launch(vec![task("t", &aid, "cpus:0.5")])],
        Filters::default(),
    )
    .await
    .unwrap();
    assert!(matches!(
        agent.next().await,
        pb::master_message::Msg::RunTask(_)
    ));
    drop(sub);
    // Re-subscribing with the id inside the window fails over: the task is still there.
    tokio::time::sleep(Duration::from_secs(10)).await;
    info.id = Some(fw.clone());
    let sub2 = h.subscribe(info.clone()).await.unwrap();
    assert_eq!(sub2.framework_id, fw);
    assert_eq!(h.state().await.unwrap().tasks.len(), 1);
    drop(sub2);
    // Past the failover timeout the framework is removed and its tasks are shut down.
    let msg = agent.next().await;
    assert!(
        matches!(msg, pb::master_message::Msg::ShutdownFramework(_)),
        "{msg:?}"
    );
    let st = h.state().await.unwrap();
    assert!(st.frameworks.is_empty() && st.tasks.is_empty());
    let e = h
        .subscribe(info)
        .await
        .err()
        .expect("removed framework cannot fail over");
    assert!(e.to_string().starts_with("framework_info.id"), "{e}");
}
