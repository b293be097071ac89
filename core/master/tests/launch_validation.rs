//! ACCEPT validation under a paused clock, beyond lifecycle.rs: an offer that belongs to
//! another framework, offers from two agents, the same offer listed twice, a task id that is
//! already running, an agent gone before the task reaches it. As in Mesos, a launch on bad
//! offers ends TASK_DROPPED for a PARTITION_AWARE framework and TASK_LOST otherwise (reason
//! REASON_INVALID_OFFERS), a bad task ends TASK_ERROR (REASON_TASK_INVALID); nothing leaks.

mod common;

use std::time::Duration;

use common::*;
use tessera_api::pb;
use tessera_master::{MasterConfig, MasterHandle, Offer, Operation, Subscription};
use tessera_types::parse::parse_resources;
use tessera_types::{Capability, Filters, Reason, TaskId, TaskState};

/// The fake agents never heartbeat: keep them reachable for the whole test.
fn cfg() -> MasterConfig {
    let mut c = config();
    c.agent_timeout = Duration::from_secs(3600);
    c
}

fn no_filter() -> Filters {
    Filters {
        refuse_seconds: 0.0,
    }
}

/// What the master has sent the agent so far, without waiting.
fn sent(agent: &mut FakeAgent) -> Vec<pb::master_message::Msg> {
    let mut out = Vec::new();
    while let Ok(m) = agent.rx.try_recv() {
        out.extend(m.msg);
    }
    out
}

/// Offers until there is one from each of `n` distinct agents.
async fn offers_from_agents(sub: &mut Subscription, n: usize) -> Vec<Offer> {
    let mut all: Vec<Offer> = Vec::new();
    while all
        .iter()
        .map(|o| &o.agent_id)
        .collect::<std::collections::BTreeSet<_>>()
        .len()
        < n
    {
        all.extend(next_offers(sub).await);
    }
    all
}

async fn launch(h: &MasterHandle, sub: &Subscription, offers: Vec<Offer>, t: &str, res: &str) {
    let agent = offers[0].agent_id.clone();
    h.accept(
        sub.framework_id.clone(),
        offers.into_iter().map(|o| o.id).collect(),
        vec![Operation::Launch(vec![task(t, &agent, res)])],
        no_filter(),
    )
    .await
    .unwrap();
}

#[tokio::test(start_paused = true)]
async fn another_frameworks_offer_cannot_be_used_and_stays_with_its_owner() {
    let (h, _stop) = start(cfg());
    let (mut agent, aid) = agent_up(&h, 1, "cpus:2;mem:1024").await;
    let mut owner = h.subscribe(framework("owner", "a", vec![])).await.unwrap();
    let offers = next_offers(&mut owner).await;
    let oid = offers[0].id.clone();
    let mut thief = h.subscribe(framework("thief", "b", vec![])).await.unwrap();

    h.accept(
        thief.framework_id.clone(),
        vec![oid.clone()],
        vec![Operation::Launch(vec![task("steal", &aid, "cpus:1")])],
        no_filter(),
    )
    .await
    .unwrap();
    let s = next_update(&mut thief).await;
    assert_eq!(s.task_id.as_str(), "steal");
    assert_eq!(
        (s.state, s.reason),
        (TaskState::TaskLost, Some(Reason::ReasonInvalidOffers))
    );
    let msg = s.message.unwrap_or_default();
    assert!(msg.contains("another framework"), "{msg}");
    assert!(sent(&mut agent).is_empty(), "nothing reached the agent");

    // The offer is untouched: still outstanding, still the owner's, and usable by it.
    let st = h.state().await.unwrap();
    assert!(st.tasks.is_empty());
    assert_eq!(st.offers.len(), 1);
    assert_eq!(
        (&st.offers[0].id, &st.offers[0].framework_id),
        (&oid, &owner.framework_id)
    );
    assert_usage_consistent(&h).await;
    launch(&h, &owner, offers, "mine", "cpus:1;mem:128").await;
    let pb::master_message::Msg::RunTask(run) = agent.next().await else {
        panic!("expected RunTask")
    };
    assert_eq!(run.framework_id, owner.framework_id.to_string());
    assert_eq!(run.task.unwrap().task_id, "mine");
    while let Ok(ev) = owner.events.try_recv() {
        assert!(
            !matches!(ev, tessera_master::Event::Update(_)),
            "no error for the owner's launch: {ev:?}"
        );
    }
    assert_usage_consistent(&h).await;
}

#[tokio::test(start_paused = true)]
async fn offers_from_two_agents_cannot_be_combined() {
    let (h, _stop) = start(cfg());
    let (mut a1, _) = agent_up(&h, 1, "cpus:2;mem:1024").await;
    let (mut a2, _) = agent_up(&h, 2, "cpus:1;mem:512").await;
    let mut sub = h
        .subscribe(framework("fw", "eng", vec![Capability::PartitionAware]))
        .await
        .unwrap();
    let offers = offers_from_agents(&mut sub, 2).await;
    assert_eq!(offers.len(), 2);
    let old: Vec<_> = offers.iter().map(|o| o.id.clone()).collect();
    launch(&h, &sub, offers, "t", "cpus:2.5").await;
    let s = next_update(&mut sub).await;
    assert_eq!(s.task_id.as_str(), "t");
    assert_eq!(
        (s.state, s.reason),
        (TaskState::TaskDropped, Some(Reason::ReasonInvalidOffers))
    );
    let msg = s.message.unwrap_or_default();
    assert!(msg.contains("several agents"), "{msg}");
    assert!(sent(&mut a1).is_empty() && sent(&mut a2).is_empty());

    // Both offers went back without a filter: offered again, whole, under new ids.
    let again = offers_from_agents(&mut sub, 2).await;
    let mut got: Vec<_> = again.iter().map(|o| o.resources.to_string()).collect();
    got.sort();
    let mut want = vec![
        parse_resources("cpus:2;mem:1024").unwrap().to_string(),
        parse_resources("cpus:1;mem:512").unwrap().to_string(),
    ];
    want.sort();
    assert_eq!(got, want);
    assert!(again.iter().all(|o| !old.contains(&o.id)));
    let st = h.state().await.unwrap();
    assert!(st.tasks.is_empty() && st.completed_tasks.is_empty());
    assert_usage_consistent(&h).await;
}

#[tokio::test(start_paused = true)]
async fn an_offer_listed_twice_drops_the_launch_and_is_returned_once() {
    let (h, _stop) = start(cfg());
    let (mut agent, _) = agent_up(&h, 1, "cpus:2;mem:1024").await;
    let mut sub = h.subscribe(framework("fw", "eng", vec![])).await.unwrap();
    let offers = next_offers(&mut sub).await;
    let twice = vec![offers[0].clone(), offers[0].clone()];
    launch(&h, &sub, twice, "t", "cpus:1").await;
    let s = next_update(&mut sub).await;
    assert_eq!(
        (s.state, s.reason),
        (TaskState::TaskLost, Some(Reason::ReasonInvalidOffers))
    );
    let msg = s.message.unwrap_or_default();
    assert!(msg.contains("listed twice"), "{msg}");
    assert!(sent(&mut agent).is_empty());

    // Re-offered exactly once and whole: not doubled, not lost.
    let again = next_offers(&mut sub).await;
    assert_eq!(again.len(), 1);
    assert_eq!(
        again[0].resources,
        parse_resources("cpus:2;mem:1024").unwrap()
    );
    let st = h.state().await.unwrap();
    assert_eq!(st.offers.len(), 1);
    assert_eq!(st.agents[0].offered, again[0].resources);
    assert!(st.tasks.is_empty());
    assert_usage_consistent(&h).await;
}

#[tokio::test(start_paused = true)]
async fn a_task_id_already_running_is_a_task_error_and_the_running_task_is_untouched() {
    let (h, _stop) = start(cfg());
    let (mut agent, aid) = agent_up(&h, 1, "cpus:2;mem:1024").await;
    let mut sub = h.subscribe(framework("fw", "eng", vec![])).await.unwrap();
    let fw = sub.framework_id.clone();
    let offers = next_offers(&mut sub).await;
    launch(&h, &sub, offers, "t1", "cpus:1;mem:256").await;
    assert!(matches!(
        agent.next().await,
        pb::master_message::Msg::RunTask(_)
    ));
    let t1 = TaskId::new("t1").unwrap();
    agent
        .status(&h, &fw, &t1, TaskState::TaskRunning, "r1")
        .await;
    assert_eq!(next_update(&mut sub).await.state, TaskState::TaskRunning);

    // A second launch reusing "t1", next to a valid "t2".
    let offers = next_offers(&mut sub).await;
    assert_eq!(
        offers[0].resources,
        parse_resources("cpus:1;mem:768").unwrap()
    );
    h.accept(
        fw.clone(),
        vec![offers[0].id.clone()],
        vec![Operation::Launch(vec![
            task("t1", &aid, "cpus:0.5;mem:64"),
            task("t2", &aid, "cpus:0.25;mem:64"),
        ])],
        no_filter(),
    )
    .await
    .unwrap();
    let s = next_update(&mut sub).await;
    assert_eq!(s.task_id, t1);
    assert_eq!(
        (s.state, s.reason),
        (TaskState::TaskError, Some(Reason::ReasonTaskInvalid))
    );
    let msg = s.message.unwrap_or_default();
    assert!(msg.contains("already in use"), "{msg}");
    let msgs = sent(&mut agent);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    let pb::master_message::Msg::RunTask(run) = &msgs[0] else {
        panic!("expected only RunTask t2, got {msgs:?}")
    };
    assert_eq!(run.task.as_ref().unwrap().task_id, "t2");

    // The running t1 keeps its state and its resources; the rejected copy took nothing.
    let st = h.state().await.unwrap();
    let running = st
        .tasks
        .iter()
        .find(|t| t.info.task_id == t1)
        .expect("t1 still there");
    assert_eq!(running.state, TaskState::TaskRunning);
    assert_eq!(
        running.info.resources,
        parse_resources("cpus:1;mem:256").unwrap()
    );
    assert_eq!(
        st.agents[0].used,
        parse_resources("cpus:1.25;mem:320").unwrap()
    );
    let offers = next_offers(&mut sub).await;
    assert_eq!(
        offers[0].resources,
        parse_resources("cpus:0.75;mem:704").unwrap()
    );
    assert_usage_consistent(&h).await;
}

#[tokio::test(start_paused = true)]
async fn bad_offers_end_task_dropped_when_partition_aware_and_task_lost_otherwise() {
    let (h, _stop) = start(cfg());
    let (_agent, _) = agent_up(&h, 1, "cpus:2;mem:1024").await;
    for (caps, want) in [
        (vec![], TaskState::TaskLost),
        (vec![Capability::PartitionAware], TaskState::TaskDropped),
    ] {
        let aware = !caps.is_empty();
        let mut sub = h.subscribe(framework("fw", "eng", caps)).await.unwrap();
        let offers = next_offers(&mut sub).await;
        // A declined offer is gone: launching on it is a launch on a bad offer.
        h.decline(
            sub.framework_id.clone(),
            vec![offers[0].id.clone()],
            no_filter(),
        )
        .await
        .unwrap();
        launch(&h, &sub, offers, "t", "cpus:1").await;
        let s = next_update(&mut sub).await;
        assert_eq!(
            (s.state, s.reason),
            (want, Some(Reason::ReasonInvalidOffers)),
            "partition aware: {aware}"
        );
        assert!(
            s.message
                .as_deref()
                .unwrap_or("")
                .contains("no longer valid"),
            "{s:?}"
        );
        assert!(s.uuid.is_none(), "master-generated: nothing to acknowledge");
        h.teardown(sub.framework_id.clone()).await.unwrap();
    }
    let st = h.state().await.unwrap();
    assert!(st.tasks.is_empty());
    assert_usage_consistent(&h).await;
}

#[tokio::test(start_paused = true)]
async fn agent_gone_before_the_task_reaches_it_drops_the_task_and_returns_its_resources() {
    let (h, _stop) = start(cfg());
    for (conn, caps, want) in [
        (1, vec![], TaskState::TaskLost),
        (2, vec![Capability::PartitionAware], TaskState::TaskDropped),
    ] {
        let (agent, aid) = agent_up(&h, conn, "cpus:2;mem:1024").await;
        let mut sub = h.subscribe(framework("fw", "eng", caps)).await.unwrap();
        let offers = next_offers(&mut sub).await;
        // The agent's connection is gone, but the master has not noticed yet.
        drop(agent);
        launch(&h, &sub, offers, "t", "cpus:1").await;
        let s = next_update(&mut sub).await;
        assert_eq!(
            (s.state, s.reason),
            (want, Some(Reason::ReasonAgentDisconnected))
        );
        let st = h.state().await.unwrap();
        let a = st.agents.iter().find(|a| a.id == aid).unwrap();
        assert_eq!(format!("{:?}", a.state), "Disconnected");
        assert!(a.used.is_empty() && a.offered.is_empty(), "{a:?}");
        assert!(st.tasks.is_empty());
        assert_usage_consistent(&h).await;

        // It comes back: all of it is offered again.
        let mut back = FakeAgent::attach(&h, 100 + conn).await;
        back.register(&h, "cpus:2;mem:1024", Some(&aid), vec![])
            .await;
        let again = next_offers(&mut sub).await;
        assert_eq!(
            again[0].resources,
            parse_resources("cpus:2;mem:1024").unwrap()
        );
        h.teardown(sub.framework_id.clone()).await.unwrap();
        h.agent_detached(100 + conn).await.unwrap();
    }
}
