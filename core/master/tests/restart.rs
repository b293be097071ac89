//! The registry survives a master restart: admitted agents re-register as themselves,
//! frameworks fail over with their id, weights and quotas come back; unknown ids are refused.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use tessera_api::pb;
use tessera_master::registry::SqliteRegistry;
use tessera_types::{Role, Scalar};

#[tokio::test(start_paused = true)]
async fn registry_state_survives_a_master_restart() {
    let dir = std::env::temp_dir().join(format!("tessera-restart-{}", uuid::Uuid::new_v4()));
    let mut cfg = config();
    cfg.agent_timeout = Duration::from_secs(3600);

    // First life: one agent, one framework, a weight and a quota.
    let (h, stop) = start_with(cfg.clone(), Box::new(SqliteRegistry::open(&dir).unwrap()));
    let mut agent = FakeAgent::attach(&h, 1).await;
    agent.register(&h, "cpus:2;mem:1024", None, vec![]).await;
    let aid = agent.id.clone().unwrap();
    let mut info = framework("fw", "eng", vec![]);
    info.failover_timeout_secs = 3600.0;
    let sub = h.subscribe(info.clone()).await.unwrap();
    let fw = sub.framework_id.clone();
    h.set_weight(Role::new("eng").unwrap(), 3.0).await.unwrap();
    let quota = tessera_allocator::Quota {
        guarantees: BTreeMap::from([("cpus".to_string(), Scalar::from_units(1))]),
        limits: BTreeMap::from([("cpus".to_string(), Scalar::from_units(2))]),
    };
    h.set_quota(Role::new("eng").unwrap(), quota.clone())
        .await
        .unwrap();
    // Bad values are refused and change nothing.
    assert!(
        h.set_weight(Role::new("eng").unwrap(), f64::NAN)
            .await
            .is_err()
    );
    assert!(h.set_weight(Role::new("eng").unwrap(), -1.0).await.is_err());
    stop.cancel();
    drop(sub);
    tokio::time::sleep(Duration::from_millis(10)).await;

    // Second life, same work directory.
    let (h, _stop) = start_with(cfg, Box::new(SqliteRegistry::open(&dir).unwrap()));
    let st = h.state().await.unwrap();
    assert_eq!(st.agents.len(), 1);
    assert_eq!(format!("{:?}", st.agents[0].state), "Recovered");
    let eng = st
        .roles
        .iter()
        .find(|r| r.role.as_str() == "eng")
        .expect("role eng recovered");
    assert_eq!(eng.weight, 3.0);
    assert_eq!(eng.quota.as_ref(), Some(&quota));

    let mut back = FakeAgent::attach(&h, 7).await;
    let reply = back
        .register(&h, "cpus:2;mem:1024", Some(&aid), vec![])
        .await;
    let pb::master_message::Msg::Registered(r) = reply else {
        panic!("{reply:?}")
    };
    assert_eq!(r.agent_id, aid.to_string(), "same id after the restart");

    info.id = Some(fw.clone());
    let mut sub = h.subscribe(info).await.unwrap();
    assert_eq!(sub.framework_id, fw);
    let offers = next_offers(&mut sub).await;
    assert_eq!(offers[0].agent_id, aid);

    // New ids do not collide with ones handed out before the restart.
    let mut other = FakeAgent::attach(&h, 8).await;
    other.register(&h, "cpus:1;mem:512", None, vec![]).await;
    assert_ne!(other.id, Some(aid));
    let _ = std::fs::remove_dir_all(&dir);
}
