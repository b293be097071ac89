//! Dynamic reservations are part of the registry: made by an operator (RESERVE) or by a
//! framework inside ACCEPT, they survive a master restart on the same work directory and,
//! once the agent re-registers, are again offered only to their roles.

mod common;

use std::time::Duration;

use common::*;
use tessera_api::pb;
use tessera_master::Operation;
use tessera_master::registry::SqliteRegistry;
use tessera_types::Filters;
use tessera_types::parse::parse_resources;

#[tokio::test(start_paused = true)]
async fn dynamic_reservations_survive_a_master_restart() {
    let dir = std::env::temp_dir().join(format!("tessera-resv-{}", uuid::Uuid::new_v4()));
    let mut cfg = config();
    cfg.agent_timeout = Duration::from_secs(3600);

    // First life: an operator reserves a cpu to `ops`, the `eng` framework reserves memory
    // to itself through an offer operation.
    let (h, stop) = start_with(cfg.clone(), Box::new(SqliteRegistry::open(&dir).unwrap()));
    let (_agent, aid) = agent_up(&h, 1, "cpus:4;mem:1024").await;
    let ops_cpu = dynamic("cpus", 1.0, "ops");
    h.reservation(aid.clone(), ops_cpu.clone(), true)
        .await
        .unwrap();
    let mut info = framework("eng", "eng", vec![]);
    info.failover_timeout_secs = 3600.0;
    let mut eng = h.subscribe(info.clone()).await.unwrap();
    let fw = eng.framework_id.clone();
    let offers = next_offers(&mut eng).await;
    let eng_mem = dynamic("mem", 256.0, "eng");
    h.accept(
        fw.clone(),
        vec![offers[0].id.clone()],
        vec![Operation::Reserve(eng_mem.clone())],
        Filters {
            refuse_seconds: 0.0,
        },
    )
    .await
    .unwrap();
    let both = ops_cpu.checked_add(&eng_mem).unwrap();
    let st = h.state().await.unwrap();
    assert_eq!(
        st.agents[0].resources.reserved(),
        both,
        "both reservations made"
    );
    stop.cancel();
    drop(eng);
    tokio::time::sleep(Duration::from_millis(10)).await;

    // Second life on the same work directory: the recovered agent still carries them.
    let (h, _stop) = start_with(cfg, Box::new(SqliteRegistry::open(&dir).unwrap()));
    let st = h.state().await.unwrap();
    assert_eq!(format!("{:?}", st.agents[0].state), "Recovered");
    assert_eq!(st.agents[0].resources.reserved(), both);

    // The agent re-registers reporting only its plain resources; the reservations apply.
    let mut back = FakeAgent::attach(&h, 7).await;
    let reply = back
        .register(&h, "cpus:4;mem:1024", Some(&aid), vec![])
        .await;
    assert!(
        matches!(reply, pb::master_message::Msg::Registered(_)),
        "{reply:?}"
    );
    let st = h.state().await.unwrap();
    assert_eq!(format!("{:?}", st.agents[0].state), "Active");
    assert_eq!(st.agents[0].resources.reserved(), both);

    // A framework of another role is offered the unreserved rest and nothing more.
    let mut other = h
        .subscribe(framework("other", "other", vec![]))
        .await
        .unwrap();
    let offers = next_offers(&mut other).await;
    assert_eq!(offers.len(), 1);
    assert_eq!(
        offers[0].resources,
        parse_resources("cpus:3;mem:768").unwrap(),
        "reserved resources are not offered to another role"
    );
    // While `other` holds that offer, `eng` (failing over with its id) and `ops` are each
    // offered exactly their own reservation.
    info.id = Some(fw.clone());
    let mut eng = h.subscribe(info).await.unwrap();
    assert_eq!(eng.framework_id, fw);
    let offers = next_offers(&mut eng).await;
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].resources, eng_mem);
    let mut ops = h.subscribe(framework("ops", "ops", vec![])).await.unwrap();
    let offers = next_offers(&mut ops).await;
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].resources, ops_cpu);
    assert_usage_consistent(&h).await;

    // An operator can still undo the recovered reservation.
    h.decline(
        ops.framework_id.clone(),
        vec![offers[0].id.clone()],
        Filters::default(),
    )
    .await
    .unwrap();
    h.reservation(aid.clone(), ops_cpu, false).await.unwrap();
    let st = h.state().await.unwrap();
    assert_eq!(st.agents[0].resources.reserved(), eng_mem);
    let _ = std::fs::remove_dir_all(&dir);
}
