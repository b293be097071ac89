//! The allocator's "why nothing was offered" reasons as operators see them over HTTP: roles
//! with demand that got nothing are listed with their role name and a machine-readable
//! reason in `/master/state` (`tessera_unmet`), `/master/roles` (`tessera_last_unmet`),
//! `/tessera/state` (`unmet`, `roles[].last_unmet`) and `/metrics`, and follow the cluster
//! as it changes.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::http::request;
use common::*;
use serde_json::Value;
use tessera_types::parse::parse_resources;
use tessera_types::{Filters, Role, Scalar};

const WAIT: Duration = Duration::from_secs(10);

async fn get_body(addr: &str, path: &str) -> String {
    let r = request(addr, "GET", path, &[("Accept", "application/json")], b"").await;
    assert_eq!(r.status, 200, "GET {path}");
    r.body().await
}

async fn get_json(addr: &str, path: &str) -> Value {
    serde_json::from_str(&get_body(addr, path).await).unwrap()
}

/// Role-level reasons (`framework` absent) of `tessera_unmet` in `/master/state`.
fn role_reasons(state: &Value) -> BTreeMap<String, String> {
    state["tessera_unmet"]
        .as_array()
        .expect("tessera_unmet is an array")
        .iter()
        .filter(|u| u.get("framework").is_none())
        .map(|u| {
            let detail = u["detail"].as_str().unwrap_or("");
            assert!(!detail.is_empty(), "every reason has a detail: {u}");
            (
                u["role"].as_str().unwrap().to_string(),
                u["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Polls `/master/state` until `done` holds for its role reasons.
async fn wait_for_reasons(
    addr: &str,
    done: impl Fn(&BTreeMap<String, String>) -> bool,
) -> BTreeMap<String, String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let reasons = role_reasons(&get_json(addr, "/master/state").await);
        if done(&reasons) {
            return reasons;
        }
        assert!(
            Instant::now() < deadline,
            "reasons not as expected within {WAIT:?}: {reasons:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_that_get_nothing_are_listed_with_their_reason() {
    let (m, _stop) = master_up().await;
    let (h, addr) = (m.handle.clone(), m.addr.to_string());
    let limit = |cpus: u64, mem: u64| tessera_allocator::Quota {
        guarantees: BTreeMap::new(),
        limits: BTreeMap::from([
            ("cpus".to_string(), Scalar::from_units(cpus)),
            ("mem".to_string(), Scalar::from_units(mem)),
        ]),
    };
    h.set_quota(Role::new("capped").unwrap(), limit(1, 512))
        .await
        .unwrap();
    let (_agent, _) = agent_up(&h, 1, "cpus:2;mem:1024").await;

    // `capped` is offered up to its limit and keeps that offer: the free rest would exceed it.
    let _capped = tokio::time::timeout(WAIT, async {
        let mut s = h
            .subscribe(framework("capped", "capped", vec![]))
            .await
            .unwrap();
        let o = next_offers(&mut s).await;
        assert_eq!(o[0].resources, parse_resources("cpus:1;mem:512").unwrap());
        s
    })
    .await
    .unwrap();
    // `picky` declines the rest for an hour: every candidate is filtered.
    let mut picky = h
        .subscribe(framework("picky", "picky", vec![]))
        .await
        .unwrap();
    let o = tokio::time::timeout(WAIT, next_offers(&mut picky))
        .await
        .unwrap();
    h.decline(
        picky.framework_id.clone(),
        vec![o[0].id.clone()],
        Filters {
            refuse_seconds: 3600.0,
        },
    )
    .await
    .unwrap();
    // `idle` subscribes suppressed.
    let _idle = h
        .subscribe_suppressed(
            framework("idle", "idle", vec![]),
            vec![Role::new("idle").unwrap()],
        )
        .await
        .unwrap();

    let want = BTreeMap::from([
        ("capped".to_string(), "QUOTA_LIMIT".to_string()),
        ("idle".to_string(), "SUPPRESSED".to_string()),
        ("picky".to_string(), "FILTERED".to_string()),
    ]);
    wait_for_reasons(&addr, |r| r == &want).await;

    // The same reasons, per role, in /master/roles and /tessera/state.
    let roles = get_json(&addr, "/master/roles").await;
    let last: BTreeMap<String, Value> = roles["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["tessera_last_unmet"].clone(),
            )
        })
        .collect();
    for (role, reason) in &want {
        assert_eq!(last[role], reason.as_str(), "/master/roles {role}: {roles}");
    }
    let st = get_json(&addr, "/tessera/state").await;
    let unmet: BTreeMap<String, String> = st["unmet"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u.get("framework").is_none())
        .map(|u| {
            (
                u["role"].as_str().unwrap().to_string(),
                u["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(unmet, want, "/tessera/state unmet");
    for r in st["roles"].as_array().unwrap() {
        if let Some(reason) = want.get(r["role"].as_str().unwrap()) {
            assert_eq!(r["last_unmet"], reason.as_str(), "{r}");
        }
    }
    let metrics = get_body(&addr, "/metrics").await;
    for (role, reason) in &want {
        let line = format!("tessera_allocator_role_unmet{{role=\"{role}\",reason=\"{reason}\"}} 1");
        assert!(metrics.contains(&line), "/metrics lacks {line}");
    }

    // Once `picky` revives it is offered the rest and holds it: nothing is free any more,
    // which is now the reason for both `picky` and `capped`.
    h.revive(picky.framework_id.clone(), None).await.unwrap();
    tokio::time::timeout(WAIT, next_offers(&mut picky))
        .await
        .unwrap();
    let want = BTreeMap::from([
        ("capped".to_string(), "NO_RESOURCES".to_string()),
        ("idle".to_string(), "SUPPRESSED".to_string()),
        ("picky".to_string(), "NO_RESOURCES".to_string()),
    ]);
    wait_for_reasons(&addr, |r| r == &want).await;
}
