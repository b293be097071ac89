//! Mesos maintenance primitives at the actor's interface, under a paused clock: bringing a
//! scheduled machine down removes its agent (TASK_GONE_BY_OPERATOR for PARTITION_AWARE
//! frameworks, TASK_LOST for others, FAILURE) and keeps it out until the machine is brought
//! up; frameworks with tasks there get inverse offers with the window's unavailability; the
//! schedule and modes survive a master restart.

mod common;

use std::time::Duration;

use common::FakeAgent;
use tessera_api::pb::master_message::Msg;
use tessera_master::maintenance::{MachineId, Schedule, Window};
use tessera_master::registry::SqliteRegistry;
use tessera_master::{Event, Operation, Unavailability};
use tessera_types::{Capability, Filters, Reason, TaskId, TaskState};

const START_NS: i64 = 1_893_456_000_123_456_789;
const HOUR_NS: i64 = 3_600_000_000_000;

fn host(h: &str) -> MachineId {
    MachineId::new("m", Some(h), None).unwrap()
}

fn schedule(hosts: &[&str]) -> Schedule {
    Schedule {
        windows: vec![Window {
            machines: hosts.iter().map(|h| host(h)).collect(),
            unavailability: Unavailability {
                start_ns: START_NS,
                duration: Some(Duration::from_nanos(HOUR_NS as u64)),
            },
        }],
    }
}

#[tokio::test(start_paused = true)]
async fn tasks_on_a_machine_brought_down_end_as_mesos_ends_them() {
    let mut c = common::config();
    c.agent_timeout = Duration::from_secs(3600);
    let (h, _stop) = common::start(c);
    let mut agent = FakeAgent::attach(&h, 1).await;
    agent.register(&h, "cpus:2;mem:1024", None, vec![]).await;
    let aid = agent.id.clone().unwrap();
    // One PARTITION_AWARE framework and one that is not, each with a task on host1.
    let mut subs = Vec::new();
    for (name, caps) in [
        ("aware", vec![Capability::PartitionAware]),
        ("plain", vec![]),
    ] {
        let mut sub = h
            .subscribe(common::framework(name, name, caps))
            .await
            .unwrap();
        let offers = common::next_offers(&mut sub).await;
        h.accept(
            sub.framework_id.clone(),
            vec![offers[0].id.clone()],
            vec![Operation::Launch(vec![common::task(
                name, &aid, "cpus:0.5",
            )])],
            Filters::default(),
        )
        .await
        .unwrap();
        assert!(matches!(agent.next().await, Msg::RunTask(_)));
        let task = TaskId::new(name).unwrap();
        agent
            .status(&h, &sub.framework_id, &task, TaskState::TaskRunning, name)
            .await;
        assert_eq!(
            common::next_update(&mut sub).await.state,
            TaskState::TaskRunning
        );
        subs.push(sub);
    }

    h.update_maintenance_schedule("", schedule(&["host1"]))
        .await
        .unwrap();
    for sub in &mut subs {
        let io = loop {
            if let Event::InverseOffers(v) = common::next_event(sub).await {
                break v;
            }
        };
        assert_eq!(
            io[0].unavailability,
            schedule(&["host1"]).windows[0].unavailability
        );
    }
    h.start_maintenance("", vec![host("host1")]).await.unwrap();
    for _ in 0..2 {
        assert!(matches!(agent.next().await, Msg::ShutdownFramework(_)));
    }
    assert!(
        agent.rx.recv().await.is_none(),
        "the agent's link is dropped"
    );
    for (sub, want) in subs
        .iter_mut()
        .zip([TaskState::TaskGoneByOperator, TaskState::TaskLost])
    {
        let st = common::next_update(sub).await;
        assert_eq!(st.state, want);
        assert_eq!(st.reason, Some(Reason::ReasonAgentRemovedByOperator));
        loop {
            if let Event::Failure { agent_id } = common::next_event(sub).await {
                assert_eq!(agent_id, aid);
                break;
            }
        }
    }
    let st = h.state().await.unwrap();
    assert!(st.agents.is_empty() && st.tasks.is_empty());
    assert!(st.inverse_offers.is_empty());
    assert_eq!(st.completed_tasks.len(), 2);
    let status = h.maintenance_status().await.unwrap();
    assert_eq!(status.down, vec![host("host1")]);
    assert!(status.draining.is_empty());

    // Refused while down (its machine is named), welcome once up.
    let mut again = FakeAgent::attach(&h, 1).await;
    let reply = again
        .register(&h, "cpus:2;mem:1024", Some(&aid), vec![])
        .await;
    assert!(
        matches!(&reply, Msg::Rejected(r) if r.reason.contains(r#"{"hostname":"host1"}"#)),
        "{reply:?}"
    );
    let err = h
        .start_maintenance("", vec![host("host1")])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("DOWN already"), "{err}");
    h.stop_maintenance("", vec![host("host1")]).await.unwrap();
    assert_eq!(h.maintenance_schedule().await.unwrap(), Schedule::default());
    let mut back = FakeAgent::attach(&h, 1).await;
    let reply = back.register(&h, "cpus:2;mem:1024", None, vec![]).await;
    assert!(matches!(reply, Msg::Registered(_)), "{reply:?}");
    // Its resources are offered again (to either framework), with no unavailability.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let st = h.state().await.unwrap();
    assert_eq!(st.offers.len(), 1, "{:?}", st.offers);
    assert_eq!(Some(&st.offers[0].agent_id), back.id.as_ref());
    assert_eq!(st.offers[0].unavailability, None);
    common::assert_usage_consistent(&h).await;
}

#[tokio::test(start_paused = true)]
async fn the_schedule_and_down_machines_survive_a_master_restart() {
    let dir = std::env::temp_dir().join(format!("tessera-maint-{}", uuid::Uuid::new_v4()));
    let mut cfg = common::config();
    cfg.agent_timeout = Duration::from_secs(3600);

    // First life: host1 has an agent and is draining, host2 is down.
    let (h, stop) = common::start_with(cfg.clone(), Box::new(SqliteRegistry::open(&dir).unwrap()));
    let mut agent = FakeAgent::attach(&h, 1).await;
    agent.register(&h, "cpus:2;mem:1024", None, vec![]).await;
    let aid = agent.id.clone().unwrap();
    let sched = schedule(&["host1", "host2"]);
    h.update_maintenance_schedule("", sched.clone())
        .await
        .unwrap();
    h.start_maintenance("", vec![host("host2")]).await.unwrap();
    // A refused change is not recorded either.
    assert!(
        h.update_maintenance_schedule("", schedule(&["host1"]))
            .await
            .is_err()
    );
    stop.cancel();
    tokio::time::sleep(Duration::from_millis(10)).await;

    // Second life, same work directory.
    let (h, _stop) = common::start_with(cfg, Box::new(SqliteRegistry::open(&dir).unwrap()));
    assert_eq!(h.maintenance_schedule().await.unwrap(), sched);
    let status = h.maintenance_status().await.unwrap();
    assert_eq!(status.down, vec![host("host2")]);
    assert_eq!(status.draining.len(), 1);
    assert_eq!(status.draining[0].id, host("host1"));
    let st = h.state().await.unwrap();
    assert_eq!(st.agents.len(), 1);
    assert_eq!(
        st.agents[0].unavailability,
        Some(sched.windows[0].unavailability)
    );

    // host2 is still down; host1's agent comes back as itself, still draining.
    let mut refused = FakeAgent::attach(&h, 2).await;
    let reply = refused.register(&h, "cpus:1;mem:512", None, vec![]).await;
    assert!(
        matches!(&reply, Msg::Rejected(r) if r.reason.contains("DOWN")),
        "{reply:?}"
    );
    let mut back = FakeAgent::attach(&h, 1).await;
    let reply = back
        .register(&h, "cpus:2;mem:1024", Some(&aid), vec![])
        .await;
    assert!(matches!(reply, Msg::Registered(_)), "{reply:?}");
    let mut sub = h
        .subscribe(common::framework("f", "eng", vec![]))
        .await
        .unwrap();
    let offers = common::next_offers(&mut sub).await;
    assert_eq!(offers[0].agent_id, aid);
    assert_eq!(
        offers[0].unavailability,
        Some(sched.windows[0].unavailability)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
