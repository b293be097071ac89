//! Operator actions under a paused clock: dynamic reservations (operator and in ACCEPT),
//! deactivate/reactivate, drain, mark gone, quota updates, and the operator event stream.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use tessera_api::pb;
use tessera_master::actor::AgentAction;
use tessera_master::model::OperatorEvent;
use tessera_master::{Event, MasterError, Operation};
use tessera_types::parse::parse_resources;
use tessera_types::{Filters, Reason, Role, Scalar, TaskState};

#[tokio::test(start_paused = true)]
async fn operator_reservations_are_offered_only_to_their_role_and_survive_reregistration() {
    let mut c = config();
    c.agent_timeout = Duration::from_secs(3600);
    let (h, _stop) = start(c);
    let mut agent = FakeAgent::attach(&h, 1).await;
    agent.register(&h, "cpus:4;mem:1024", None, vec![]).await;
    let aid = agent.id.clone().unwrap();
    let eng2 = dynamic("cpus", 2.0, "eng");

    // Bad input is refused and changes nothing.
    let e = h
        .reservation(aid.clone(), parse_resources("cpus(eng):1").unwrap(), true)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("DYNAMIC"), "{e}");
    let e = h
        .reservation(aid.clone(), dynamic("cpus", 9.0, "eng"), true)
        .await
        .unwrap_err();
    assert!(matches!(e, MasterError::Conflict(_)), "{e}");
    let e = h
        .reservation(aid.clone(), eng2.clone(), false)
        .await
        .unwrap_err();
    assert!(
        matches!(e, MasterError::Conflict(_)),
        "unreserving what is not reserved: {e}"
    );

    h.reservation(aid.clone(), eng2.clone(), true)
        .await
        .unwrap();
    let mut ops = h.subscribe(framework("ops", "ops", vec![])).await.unwrap();
    let offers = next_offers(&mut ops).await;
    assert_eq!(
        offers[0].resources,
        parse_resources("cpus:2;mem:1024").unwrap(),
        "ops sees no eng reservation"
    );
    h.decline(
        ops.framework_id.clone(),
        vec![offers[0].id.clone()],
        Filters {
            refuse_seconds: 3600.0,
        },
    )
    .await
    .unwrap();
    let mut eng = h.subscribe(framework("eng", "eng", vec![])).await.unwrap();
    let offers = next_offers(&mut eng).await;
    assert!(
        offers[0].resources.contains(&eng2),
        "eng is offered its reservation: {}",
        offers[0].resources
    );
    h.decline(
        eng.framework_id.clone(),
        vec![offers[0].id.clone()],
        Filters {
            refuse_seconds: 0.0,
        },
    )
    .await
    .unwrap();

    // The agent reconnects: the reservation is still in force.
    let mut back = FakeAgent::attach(&h, 2).await;
    back.register(&h, "cpus:4;mem:1024", Some(&aid), vec![])
        .await;
    let st = h.state().await.unwrap();
    assert!(
        st.agents[0].resources.contains(&eng2),
        "{}",
        st.agents[0].resources
    );

    h.reservation(aid.clone(), eng2.clone(), false)
        .await
        .unwrap();
    let st = h.state().await.unwrap();
    assert_eq!(
        st.agents[0].resources,
        parse_resources("cpus:4;mem:1024").unwrap()
    );
}

#[tokio::test(start_paused = true)]
async fn accept_can_reserve_then_launch_on_the_reservation() {
    let (h, _stop) = start(config());
    let mut agent = FakeAgent::attach(&h, 1).await;
    agent.register(&h, "cpus:4;mem:1024", None, vec![]).await;
    let aid = agent.id.clone().unwrap();
    let mut sub = h.subscribe(framework("eng", "eng", vec![])).await.unwrap();
    let offers = next_offers(&mut sub).await;
    let reserved = dynamic("cpus", 1.0, "eng");
    let mut t = task("on-reserved", &aid, "cpus:1");
    t.resources = reserved.clone();
    h.accept(
        sub.framework_id.clone(),
        vec![offers[0].id.clone()],
        vec![
            Operation::Reserve(reserved.clone()),
            Operation::Launch(vec![t]),
        ],
        Filters {
            refuse_seconds: 0.0,
        },
    )
    .await
    .unwrap();
    let pb::master_message::Msg::RunTask(run) = agent.next().await else {
        panic!("RunTask")
    };
    assert_eq!(run.task.unwrap().task_id, "on-reserved");
    let st = h.state().await.unwrap();
    assert!(st.agents[0].resources.contains(&reserved));
    // Reserving to another role inside ACCEPT is refused (and nothing changes).
    let offers = next_offers(&mut sub).await;
    h.accept(
        sub.framework_id.clone(),
        vec![offers[0].id.clone()],
        vec![Operation::Reserve(dynamic("cpus", 1.0, "other"))],
        Filters {
            refuse_seconds: 0.0,
        },
    )
    .await
    .unwrap();
    let st = h.state().await.unwrap();
    assert_eq!(st.agents[0].resources.reserved(), reserved);
    assert_usage_consistent(&h).await;
}

#[tokio::test(start_paused = true)]
async fn deactivate_drain_and_mark_gone() {
    let mut c = config();
    c.agent_timeout = Duration::from_secs(3600);
    let (h, _stop) = start(c);
    let mut agent = FakeAgent::attach(&h, 1).await;
    agent.register(&h, "cpus:2;mem:1024", None, vec![]).await;
    let aid = agent.id.clone().unwrap();
    let mut sub = h.subscribe(framework("fw", "eng", vec![])).await.unwrap();
    let fw = sub.framework_id.clone();
    let offers = next_offers(&mut sub).await;

    h.agent_action(aid.clone(), AgentAction::Deactivate)
        .await
        .unwrap();
    let rescinded = loop {
        if let Event::Rescind(id) = next_event(&mut sub).await {
            break id;
        }
    };
    assert_eq!(rescinded, offers[0].id);
    // No offers while deactivated.
    assert!(
        tokio::time::timeout(Duration::from_secs(5), next_offers(&mut sub))
            .await
            .is_err()
    );
    h.agent_action(aid.clone(), AgentAction::Reactivate)
        .await
        .unwrap();
    let offers = next_offers(&mut sub).await;
    h.accept(
        fw.clone(),
        vec![offers[0].id.clone()],
        vec![Operation::Launch(vec![task("t", &aid, "cpus:1")])],
        Filters::default(),
    )
    .await
    .unwrap();
    assert!(matches!(
        agent.next().await,
        pb::master_message::Msg::RunTask(_)
    ));

    h.agent_action(
        aid.clone(),
        AgentAction::Drain {
            grace: Some(Duration::from_secs(1)),
            mark_gone: false,
        },
    )
    .await
    .unwrap();
    let pb::master_message::Msg::KillTask(k) = agent.next().await else {
        panic!("KillTask")
    };
    assert_eq!((k.task_id.as_str(), k.grace_ms), ("t", Some(1000)));

    h.agent_action(aid.clone(), AgentAction::MarkGone)
        .await
        .unwrap();
    let s = next_update(&mut sub).await;
    assert_eq!(
        (s.state, s.reason),
        (
            TaskState::TaskGoneByOperator,
            Some(Reason::ReasonAgentRemovedByOperator)
        )
    );
    // A gone agent may not come back.
    let mut back = FakeAgent::attach(&h, 2).await;
    let reply = back
        .register(&h, "cpus:2;mem:1024", Some(&aid), vec![])
        .await;
    assert!(
        matches!(reply, pb::master_message::Msg::Rejected(ref r) if r.reason.contains("gone")),
        "{reply:?}"
    );
    let e = h
        .agent_action(aid.clone(), AgentAction::Deactivate)
        .await
        .unwrap_err();
    assert!(matches!(e, MasterError::UnknownAgent(_)));
}

#[tokio::test(start_paused = true)]
async fn quota_below_consumption_needs_force() {
    let (h, _stop) = start(config());
    let mut agent = FakeAgent::attach(&h, 1).await;
    agent.register(&h, "cpus:4;mem:1024", None, vec![]).await;
    let mut sub = h.subscribe(framework("fw", "eng", vec![])).await.unwrap();
    next_offers(&mut sub).await; // eng now holds the whole agent in an offer
    let eng = Role::new("eng").unwrap();
    let q = tessera_allocator::Quota {
        guarantees: BTreeMap::new(),
        limits: BTreeMap::from([("cpus".to_string(), Scalar::from_units(1))]),
    };
    let e = h
        .update_quota(eng.clone(), q.clone(), false)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("quota.limits.cpus"), "{e}");
    assert!(
        h.state()
            .await
            .unwrap()
            .roles
            .iter()
            .all(|r| r.quota.is_none()),
        "nothing changed"
    );
    h.update_quota(eng.clone(), q.clone(), true).await.unwrap();
    let st = h.state().await.unwrap();
    assert_eq!(
        st.roles
            .iter()
            .find(|r| r.role == eng)
            .and_then(|r| r.quota.clone()),
        Some(q)
    );
}

#[tokio::test(start_paused = true)]
async fn operator_stream_sees_agents_frameworks_and_tasks() {
    let (h, _stop) = start(config());
    let (snapshot, mut events) = h.subscribe_operator().await.unwrap();
    assert!(snapshot.agents.is_empty());
    let mut agent = FakeAgent::attach(&h, 1).await;
    agent.register(&h, "cpus:1;mem:512", None, vec![]).await;
    let aid = agent.id.clone().unwrap();
    let mut sub = h.subscribe(framework("fw", "eng", vec![])).await.unwrap();
    let offers = next_offers(&mut sub).await;
    h.accept(
        sub.framework_id.clone(),
        vec![offers[0].id.clone()],
        vec![Operation::Launch(vec![task("t", &aid, "cpus:0.5")])],
        Filters::default(),
    )
    .await
    .unwrap();
    agent
        .status(
            &h,
            &sub.framework_id,
            &tessera_types::TaskId::new("t").unwrap(),
            TaskState::TaskRunning,
            "u",
        )
        .await;
    next_update(&mut sub).await;
    let mut kinds = Vec::new();
    while let Ok(ev) = events.try_recv() {
        kinds.push(match ev {
            OperatorEvent::AgentAdded(a) => format!("agent_added:{}", a.id),
            OperatorEvent::FrameworkAdded(f) => format!("framework_added:{}", f.name),
            OperatorEvent::TaskAdded(t) => format!("task_added:{}", t.info.task_id),
            OperatorEvent::TaskUpdated { state, .. } => format!("task_updated:{}", state.name()),
            other => format!("{other:?}"),
        });
    }
    assert_eq!(
        kinds,
        vec![
            format!("agent_added:{aid}"),
            "framework_added:fw".to_string(),
            "task_added:t".to_string(),
            "task_updated:TASK_RUNNING".to_string(),
        ]
    );
}
