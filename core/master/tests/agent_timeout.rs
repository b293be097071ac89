//! The agent timeout under a paused clock: an agent that goes silent while a framework holds
//! an offer on it has that offer rescinded when it becomes unreachable; an agent that keeps
//! heartbeating stays active (and its offers valid) well past the timeout.

mod common;

use std::time::Duration;

use common::*;
use tessera_api::pb;
use tessera_master::{Event, Operation, Subscription};
use tessera_types::{Filters, Reason, TaskState};

/// Events already delivered, without waiting.
fn drain(sub: &mut Subscription) -> Vec<Event> {
    let mut out = Vec::new();
    while let Ok(e) = sub.events.try_recv() {
        out.push(e);
    }
    out
}

#[tokio::test(start_paused = true)]
async fn offer_on_an_agent_that_goes_silent_is_rescinded() {
    // config(): heartbeat every 5 s, unreachable after 30 s; offers never expire by age.
    let c = config();
    assert_eq!(c.offer_timeout, None);
    let (h, _stop) = start(c);
    let (_agent, aid) = agent_up(&h, 1, "cpus:2;mem:1024").await;
    let mut sub = h.subscribe(framework("fw", "eng", vec![])).await.unwrap();
    let offers = next_offers(&mut sub).await;
    assert_eq!(offers[0].agent_id, aid);
    let t0 = tokio::time::Instant::now();

    // The framework holds the offer; the agent sends nothing more.
    let rescinded = loop {
        match next_event(&mut sub).await {
            Event::Rescind(id) => break id,
            Event::Offers(o) => panic!("offered again while holding an offer: {o:?}"),
            _ => {}
        }
    };
    assert_eq!(rescinded, offers[0].id);
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_secs(30) && waited <= Duration::from_secs(32),
        "rescinded after {waited:?}, the agent timeout is 30 s"
    );
    let st = h.state().await.unwrap();
    assert_eq!(format!("{:?}", st.agents[0].state), "Unreachable");
    assert!(st.offers.is_empty(), "{:?}", st.offers);

    // Using the rescinded offer fails with a reason; the unreachable agent is not offered.
    h.accept(
        sub.framework_id.clone(),
        vec![offers[0].id.clone()],
        vec![Operation::Launch(vec![task("t", &aid, "cpus:1")])],
        Filters::default(),
    )
    .await
    .unwrap();
    let s = next_update(&mut sub).await;
    assert_eq!(
        (s.state, s.reason),
        (TaskState::TaskLost, Some(Reason::ReasonInvalidOffers))
    );
    let more = tokio::time::timeout(Duration::from_secs(60), next_offers(&mut sub)).await;
    assert!(more.is_err(), "offered an unreachable agent: {more:?}");
    assert_usage_consistent(&h).await;
}

#[tokio::test(start_paused = true)]
async fn an_agent_that_keeps_heartbeating_stays_active_past_the_timeout() {
    let (h, _stop) = start(config());
    let (mut agent, aid) = agent_up(&h, 1, "cpus:2;mem:1024").await;
    let mut sub = h.subscribe(framework("fw", "eng", vec![])).await.unwrap();
    let fw = sub.framework_id.clone();
    let offers = next_offers(&mut sub).await;
    // One task running, the rest held in an offer.
    h.accept(
        fw.clone(),
        vec![offers[0].id.clone()],
        vec![Operation::Launch(vec![task("t", &aid, "cpus:1;mem:128")])],
        Filters {
            refuse_seconds: 0.0,
        },
    )
    .await
    .unwrap();
    assert!(matches!(
        agent.next().await,
        pb::master_message::Msg::RunTask(_)
    ));
    let t = tessera_types::TaskId::new("t").unwrap();
    agent.status(&h, &fw, &t, TaskState::TaskRunning, "r").await;
    assert_eq!(next_update(&mut sub).await.state, TaskState::TaskRunning);
    let held = next_offers(&mut sub).await;

    // Four agent timeouts (30 s) of heartbeats every 5 s, as the master asked.
    let t0 = tokio::time::Instant::now();
    while t0.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_secs(5)).await;
        agent
            .send(&h, pb::agent_message::Msg::Heartbeat(pb::Heartbeat {}))
            .await;
    }
    let st = h.state().await.unwrap();
    assert_eq!(format!("{:?}", st.agents[0].state), "Active");
    assert_eq!(st.tasks[0].state, TaskState::TaskRunning);
    assert_eq!(st.offers.len(), 1, "the held offer is still outstanding");
    for e in drain(&mut sub) {
        assert!(
            !matches!(
                e,
                Event::Rescind(_) | Event::Update(_) | Event::Failure { .. }
            ),
            "nothing lost or rescinded while heartbeating: {e:?}"
        );
    }
    // The held offer is still good.
    h.accept(
        fw.clone(),
        vec![held[0].id.clone()],
        vec![Operation::Launch(vec![task("t2", &aid, "cpus:0.5")])],
        Filters::default(),
    )
    .await
    .unwrap();
    let pb::master_message::Msg::RunTask(run) = agent.next().await else {
        panic!("expected RunTask")
    };
    assert_eq!(run.task.unwrap().task_id, "t2");

    // Control: once the heartbeats stop, the same agent is unreachable after the timeout.
    let t1 = tokio::time::Instant::now();
    let lost = next_update(&mut sub).await;
    assert!(
        t1.elapsed() >= Duration::from_secs(30),
        "{:?}",
        t1.elapsed()
    );
    assert_eq!(
        (lost.state, lost.reason),
        (TaskState::TaskLost, Some(Reason::ReasonAgentRemoved))
    );
    let st = h.state().await.unwrap();
    assert_eq!(format!("{:?}", st.agents[0].state), "Unreachable");
}
