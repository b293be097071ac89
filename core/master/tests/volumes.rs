//! Persistent volumes (CREATE / DESTROY in ACCEPT, and the operator's CREATE_VOLUMES /
//! DESTROY_VOLUMES), under a paused clock: a volume made of disk reserved in the same
//! ACCEPT is offered to its role again, travels with the task that uses it, cannot be
//! destroyed while in use, and once destroyed the agent is told to delete its data. Bad
//! CREATEs are OPERATION_ERRORs naming the field and change nothing. Statically reserved
//! disk works as dynamically reserved disk does. Volumes survive a master restart (SQLite
//! registry) and the agent's re-registration.

mod common;

use std::time::Duration;

use common::*;
use tessera_api::convert::resources_from_pb;
use tessera_api::pb;
use tessera_master::registry::SqliteRegistry;
use tessera_master::{Event, MasterHandle, Offer, Operation, OperationState, OperationStatus};
use tessera_types::parse::parse_resources;
use tessera_types::{AgentId, Filters, FrameworkId, Resources, TaskState};

fn no_filter() -> Filters {
    Filters {
        refuse_seconds: 0.0,
    }
}

fn with_id(id: &str, op: Operation) -> Operation {
    Operation::WithId {
        id: id.into(),
        op: Box::new(op),
    }
}

/// The next operation status, skipping other events.
async fn next_op_status(sub: &mut tessera_master::Subscription) -> OperationStatus {
    loop {
        if let Event::UpdateOperationStatus(s) = next_event(sub).await {
            return s;
        }
    }
}

/// The next master message to the agent that is not an acknowledgement.
async fn next_to_agent(agent: &mut FakeAgent) -> pb::master_message::Msg {
    loop {
        match agent.next().await {
            pb::master_message::Msg::Acknowledge(_) => continue,
            m => return m,
        }
    }
}

/// Offers until one holds `volumes` (an offer made before the change may come first).
async fn offer_with(sub: &mut tessera_master::Subscription, volumes: &Resources) -> Offer {
    loop {
        let offers = next_offers(sub).await;
        if offers[0].resources.volumes() == *volumes {
            return offers[0].clone();
        }
    }
}

async fn agent_volumes(h: &MasterHandle) -> Resources {
    h.state().await.unwrap().agents[0].resources.volumes()
}

/// An agent with 1000 MB of disk and a framework of role `eng`, with its first offer.
async fn setup(h: &MasterHandle) -> (FakeAgent, AgentId, tessera_master::Subscription, Offer) {
    let (agent, aid) = agent_up(h, 1, "cpus:2;mem:1024;disk:1000").await;
    let mut sub = h.subscribe(framework("f", "eng", vec![])).await.unwrap();
    let offers = next_offers(&mut sub).await;
    (agent, aid, sub, offers[0].clone())
}

async fn accept(h: &MasterHandle, fw: &FrameworkId, offer: &Offer, ops: Vec<Operation>) {
    h.accept(fw.clone(), vec![offer.id.clone()], ops, no_filter())
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_volume_is_created_offered_used_and_destroyed() {
    let (h, _stop) = start(config());
    let (mut agent, aid, mut sub, offer) = setup(&h).await;
    let fw = sub.framework_id.clone();
    let vol = volume("vol-1", "data", 64.0, "eng");

    // RESERVE then CREATE in one ACCEPT: the volume is made of the disk just reserved.
    accept(
        &h,
        &fw,
        &offer,
        vec![
            with_id("r1", Operation::Reserve(dynamic("disk", 100.0, "eng"))),
            with_id("c1", Operation::Create(vol.clone())),
        ],
    )
    .await;
    let reserved = next_op_status(&mut sub).await;
    assert_eq!(
        (reserved.operation_id.as_str(), reserved.state),
        ("r1", OperationState::Finished)
    );
    let created = next_op_status(&mut sub).await;
    assert_eq!(created.operation_id, "c1");
    assert_eq!(created.state, OperationState::Finished, "{created:?}");
    assert!(created.uuid.is_some(), "to be acknowledged");
    assert_eq!(created.converted_resources, vol);
    assert_eq!(agent_volumes(&h).await, vol);

    // The next offer to the role holds the volume, apart from the rest of the reserved disk.
    let offer = offer_with(&mut sub, &vol).await;
    assert_eq!(
        offer.resources.reserved().without_volumes().unwrap(),
        dynamic("disk", 100.0, "eng")
    );

    // A task using it launches, and its RunTask carries the volume.
    let mut t = task("t1", &aid, "cpus:0.5;mem:64");
    t.resources = t.resources.checked_add(&vol).unwrap();
    accept(&h, &fw, &offer, vec![Operation::Launch(vec![t.clone()])]).await;
    let pb::master_message::Msg::RunTask(run) = next_to_agent(&mut agent).await else {
        panic!("expected RunTask")
    };
    let sent = resources_from_pb("task.resources", &run.task.unwrap().resources).unwrap();
    assert_eq!(
        sent.volumes(),
        vol,
        "the agent is told which volume the task uses"
    );

    // DESTROY while the task runs is refused, naming the task; nothing changes.
    agent
        .status(&h, &fw, &t.task_id, TaskState::TaskRunning, "u1")
        .await;
    let offer = next_offers(&mut sub).await.remove(0);
    assert!(offer.resources.volumes().is_empty(), "the task holds it");
    accept(
        &h,
        &fw,
        &offer,
        vec![with_id("d1", Operation::Destroy(vol.clone()))],
    )
    .await;
    let refused = next_op_status(&mut sub).await;
    assert_eq!(refused.state, OperationState::Error, "{refused:?}");
    let msg = refused.message.unwrap_or_default();
    assert!(msg.contains("destroy.volumes[0]"), "{msg}");
    assert!(msg.contains("in use by task 't1'"), "{msg}");
    assert_eq!(agent_volumes(&h).await, vol);

    // Once the task has ended, the volume is offered again and DESTROY succeeds.
    agent
        .status(&h, &fw, &t.task_id, TaskState::TaskFinished, "u2")
        .await;
    let offer = offer_with(&mut sub, &vol).await;
    accept(
        &h,
        &fw,
        &offer,
        vec![with_id("d2", Operation::Destroy(vol.clone()))],
    )
    .await;
    let destroyed = next_op_status(&mut sub).await;
    assert_eq!(destroyed.state, OperationState::Finished, "{destroyed:?}");
    assert_eq!(
        destroyed.converted_resources,
        dynamic("disk", 64.0, "eng"),
        "back to plain reserved disk"
    );
    let pb::master_message::Msg::DestroyVolume(d) = next_to_agent(&mut agent).await else {
        panic!("expected DestroyVolume")
    };
    assert_eq!(
        (d.role.as_str(), d.persistence_id.as_str()),
        ("eng", "vol-1")
    );
    assert!(agent_volumes(&h).await.is_empty());
    let offer = offer_with(&mut sub, &Resources::new()).await;
    assert_eq!(offer.resources.reserved(), dynamic("disk", 100.0, "eng"));
    assert_usage_consistent(&h).await;
}

#[tokio::test(start_paused = true)]
async fn bad_creates_are_errors_naming_the_field_and_change_nothing() {
    let (h, _stop) = start(config());
    let (_agent, _aid, mut sub, offer) = setup(&h).await;
    let fw = sub.framework_id.clone();
    let unreserved = volume("vol-1", "data", 64.0, "eng")
        .pop_reservation()
        .unwrap();
    let cases: Vec<(Operation, &str)> = vec![
        // Plain unreserved disk cannot become a volume.
        (
            Operation::Create(unreserved),
            "create.volumes[0].reservations",
        ),
        // Disk reserved in the same ACCEPT, but the volume asks for more than was reserved.
        (
            Operation::Create(volume("vol-1", "data", 500.0, "eng")),
            "create.volumes",
        ),
        // Not a volume at all.
        (
            Operation::Create(dynamic("disk", 10.0, "eng")),
            "create.volumes[0].disk.persistence",
        ),
    ];
    let mut ops = vec![Operation::Reserve(dynamic("disk", 100.0, "eng"))];
    for (i, (op, _)) in cases.iter().enumerate() {
        ops.push(with_id(&format!("bad-{i}"), op.clone()));
    }
    accept(&h, &fw, &offer, ops).await;
    for (i, (_, field)) in cases.iter().enumerate() {
        let s = next_op_status(&mut sub).await;
        assert_eq!(s.operation_id, format!("bad-{i}"));
        assert_eq!(s.state, OperationState::Error, "{s:?}");
        assert!(s.uuid.is_none(), "errors are not kept");
        let msg = s.message.unwrap_or_default();
        assert!(msg.starts_with(field), "case {i}: {msg}");
    }
    assert!(agent_volumes(&h).await.is_empty(), "nothing was created");

    // A duplicate persistence id on the agent, for the same role.
    let offer = offer_with(&mut sub, &Resources::new()).await;
    accept(
        &h,
        &fw,
        &offer,
        vec![with_id(
            "ok",
            Operation::Create(volume("vol-1", "a", 30.0, "eng")),
        )],
    )
    .await;
    assert_eq!(
        next_op_status(&mut sub).await.state,
        OperationState::Finished
    );
    let first = volume("vol-1", "a", 30.0, "eng");
    let offer = offer_with(&mut sub, &first).await;
    accept(
        &h,
        &fw,
        &offer,
        vec![with_id(
            "dup",
            Operation::Create(volume("vol-1", "b", 30.0, "eng")),
        )],
    )
    .await;
    let s = next_op_status(&mut sub).await;
    assert_eq!(s.state, OperationState::Error);
    let msg = s.message.unwrap_or_default();
    assert!(
        msg.starts_with("create.volumes[0].disk.persistence.id"),
        "{msg}"
    );
    assert!(msg.contains("already used"), "{msg}");
    assert_eq!(agent_volumes(&h).await, first, "only the first one exists");

    // A volume cannot be unreserved, only destroyed.
    let offer = offer_with(&mut sub, &first).await;
    accept(
        &h,
        &fw,
        &offer,
        vec![with_id("un", Operation::Unreserve(first.clone()))],
    )
    .await;
    let s = next_op_status(&mut sub).await;
    assert_eq!(s.state, OperationState::Error);
    assert!(
        s.message
            .unwrap_or_default()
            .starts_with("unreserve.resources[0].disk"),
    );
    assert_eq!(agent_volumes(&h).await, first);
    assert_usage_consistent(&h).await;
}

#[tokio::test(start_paused = true)]
async fn operators_create_and_destroy_volumes_on_free_disk() {
    let (h, _stop) = start(config());
    let (mut agent, aid) = agent_up(&h, 1, "cpus:2;mem:1024;disk:1000").await;
    h.reservation(aid.clone(), dynamic("disk", 100.0, "eng"), true)
        .await
        .unwrap();
    let vol = volume("vol-op", "data", 100.0, "eng");
    h.volumes(aid.clone(), vol.clone(), true).await.unwrap();
    assert_eq!(agent_volumes(&h).await, vol);
    let e = h.volumes(aid.clone(), vol.clone(), true).await.unwrap_err();
    assert!(
        e.to_string().contains("volumes[0].disk.persistence.id"),
        "{e}"
    );

    // The role's framework is offered it.
    let mut sub = h.subscribe(framework("f", "eng", vec![])).await.unwrap();
    let offer = offer_with(&mut sub, &vol).await;
    h.decline(sub.framework_id.clone(), vec![offer.id], Filters::default())
        .await
        .unwrap();
    h.volumes(aid.clone(), vol.clone(), false).await.unwrap();
    let pb::master_message::Msg::DestroyVolume(d) = next_to_agent(&mut agent).await else {
        panic!("expected DestroyVolume")
    };
    assert_eq!(d.persistence_id, "vol-op");
    assert!(agent_volumes(&h).await.is_empty());
    let e = h.volumes(aid, vol, false).await.unwrap_err();
    assert!(e.to_string().contains("is not a persistent volume"), "{e}");
    assert_usage_consistent(&h).await;
}

#[tokio::test(start_paused = true)]
async fn volumes_survive_a_master_restart_and_the_agents_return() {
    let dir = std::env::temp_dir().join(format!("tessera-vol-{}", uuid::Uuid::new_v4()));
    let mut cfg = config();
    cfg.agent_timeout = Duration::from_secs(3600);

    let (h, stop) = start_with(cfg.clone(), Box::new(SqliteRegistry::open(&dir).unwrap()));
    let (_agent, aid) = agent_up(&h, 1, "cpus:4;mem:1024;disk:1000").await;
    let mut info = framework("eng", "eng", vec![]);
    info.failover_timeout_secs = 3600.0;
    let mut eng = h.subscribe(info.clone()).await.unwrap();
    let fw = eng.framework_id.clone();
    let offers = next_offers(&mut eng).await;
    let vol = volume("vol-1", "data", 64.0, "eng");
    accept(
        &h,
        &fw,
        &offers[0],
        vec![
            Operation::Reserve(dynamic("disk", 64.0, "eng")),
            Operation::Create(vol.clone()),
            // Disk alone is not offered (below the minimum allocatable resources).
            Operation::Reserve(dynamic("mem", 64.0, "eng")),
        ],
    )
    .await;
    assert_eq!(agent_volumes(&h).await, vol);
    stop.cancel();
    drop(eng);
    tokio::time::sleep(Duration::from_millis(10)).await;

    // Second life: the recovered agent still has it, and keeps it when it re-registers
    // reporting only its plain resources.
    let (h, _stop) = start_with(cfg, Box::new(SqliteRegistry::open(&dir).unwrap()));
    assert_eq!(agent_volumes(&h).await, vol);
    let mut back = FakeAgent::attach(&h, 7).await;
    let reply = back
        .register(&h, "cpus:4;mem:1024;disk:1000", Some(&aid), vec![])
        .await;
    assert!(
        matches!(reply, pb::master_message::Msg::Registered(_)),
        "{reply:?}"
    );
    let st = h.state().await.unwrap();
    assert_eq!(st.agents[0].resources.volumes(), vol);
    assert_eq!(
        st.agents[0].resources.unreserved(),
        parse_resources("cpus:4;mem:960;disk:936").unwrap()
    );

    // Another role is not offered it; `eng`, failing over, is.
    let mut other = h.subscribe(framework("o", "other", vec![])).await.unwrap();
    let offers = next_offers(&mut other).await;
    assert!(offers[0].resources.volumes().is_empty());
    assert!(offers[0].resources.reserved().is_empty());
    info.id = Some(fw.clone());
    let mut eng = h.subscribe(info).await.unwrap();
    let offer = offer_with(&mut eng, &vol).await;
    assert_eq!(
        offer.resources,
        vol.checked_add(&dynamic("mem", 64.0, "eng")).unwrap()
    );
    assert_usage_consistent(&h).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(start_paused = true)]
async fn statically_reserved_disk_can_hold_a_volume() {
    let (h, _stop) = start(config());
    let (_agent, _aid) = agent_up(&h, 1, "cpus:2;mem:1024;disk(eng):100").await;
    let mut sub = h.subscribe(framework("f", "eng", vec![])).await.unwrap();
    let fw = sub.framework_id.clone();
    let offer = next_offers(&mut sub).await.remove(0);
    let vol = tessera_types::parse::parse_json_resources(
        "volumes",
        &serde_json::json!([{"name": "disk", "type": "SCALAR", "scalar": {"value": 100},
            "reservations": [{"type": "STATIC", "role": "eng"}],
            "disk": {"persistence": {"id": "static-1"},
                     "volume": {"container_path": "data", "mode": "RO"}}}]),
    )
    .unwrap();
    accept(
        &h,
        &fw,
        &offer,
        vec![with_id("c", Operation::Create(vol.clone()))],
    )
    .await;
    let s = next_op_status(&mut sub).await;
    assert_eq!(s.state, OperationState::Finished, "{s:?}");
    assert_eq!(agent_volumes(&h).await, vol);
    let offer = offer_with(&mut sub, &vol).await;
    assert_eq!(
        offer.resources.reserved(),
        vol,
        "all the static disk is the volume"
    );
    assert_usage_consistent(&h).await;
}
