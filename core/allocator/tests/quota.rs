//! Quota guarantees (headroom), limits (chopping), reservations.
mod common;
use common::*;
use std::collections::BTreeMap;
use tessera_allocator::{Quota, UnmetReason};
use tessera_types::Scalar;

fn quota(g: &[(&str, u64)], l: &[(&str, u64)]) -> Quota {
    let m = |v: &[(&str, u64)]| -> BTreeMap<String, Scalar> {
        v.iter()
            .map(|(n, x)| (n.to_string(), Scalar::from_units(*x)))
            .collect()
    };
    Quota {
        guarantees: m(g),
        limits: m(l),
    }
}

#[test]
fn guarantee_is_met_before_fair_sharing() {
    let mut a = alloc();
    add_agents(&mut a, 10, "cpus:1;mem:1024");
    a.set_quota(role("q"), quota(&[("cpus", 8), ("mem", 8192)], &[]))
        .unwrap();
    add_fw(&mut a, "other", "a");
    add_fw(&mut a, "quota", "q");
    let offers = run(&mut a, 1000).offers;
    assert!(scalar_to(&offers, "q", "cpus") >= 8.0);
    assert!(scalar_to(&offers, "a", "cpus") <= 2.0);
    assert_eq!(a.quota_consumed(&role("q"))["cpus"], Scalar::from_units(8));
}

#[test]
fn guarantee_headroom_is_held_back_without_demand() {
    let mut a = alloc();
    add_agents(&mut a, 10, "cpus:1;mem:1024");
    a.set_quota(role("q"), quota(&[("cpus", 8), ("mem", 8192)], &[]))
        .unwrap();
    add_fw(&mut a, "other", "a");
    let run1 = run(&mut a, 1000);
    assert_eq!(scalar_to(&run1.offers, "a", "cpus"), 2.0);
    let run2 = run(&mut a, 2000);
    assert!(run2.offers.is_empty());
    assert_eq!(run2.unmet.len(), 1);
    assert_eq!(run2.unmet[0].reason, UnmetReason::QuotaHeadroom);
    // Demand arrives: the held-back agents go to q.
    add_fw(&mut a, "quota", "q");
    let run3 = run(&mut a, 3000);
    assert_eq!(scalar_to(&run3.offers, "q", "cpus"), 8.0);
}

#[test]
fn limit_chops_offers_and_reports_quota_limit() {
    let mut a = alloc();
    add_agents(&mut a, 10, "cpus:1;mem:1024");
    a.set_quota(role("l"), quota(&[], &[("cpus", 3)])).unwrap();
    add_fw(&mut a, "f", "l");
    let run1 = run(&mut a, 1000);
    assert_eq!(scalar_to(&run1.offers, "l", "cpus"), 3.0);
    // Offers after the limit carry memory only.
    assert_eq!(run1.offers.len(), 10);
    let mut a = alloc();
    add_agents(&mut a, 10, "cpus:1;mem:1024");
    a.set_quota(role("l"), quota(&[], &[("cpus", 3), ("mem", 3072)]))
        .unwrap();
    add_fw(&mut a, "f", "l");
    let run1 = run(&mut a, 1000);
    assert_eq!(run1.offers.len(), 3);
    let run2 = run(&mut a, 2000);
    assert!(run2.offers.is_empty());
    assert_eq!(run2.unmet[0].reason, UnmetReason::QuotaLimit);
    let info = a.roles().into_iter().find(|r| r.role == role("l")).unwrap();
    assert_eq!(info.last_unmet, Some(UnmetReason::QuotaLimit));
    assert_eq!(info.consumed["cpus"], Scalar::from_units(3));
}

#[test]
fn quota_validation() {
    let mut a = alloc();
    let e = a
        .set_quota(role("eng/ml"), quota(&[("cpus", 1)], &[]))
        .unwrap_err();
    assert!(e.to_string().starts_with("quota.role"), "{e}");
    let e = a
        .set_quota(role("eng"), quota(&[("cpus", 4)], &[("cpus", 2)]))
        .unwrap_err();
    assert!(e.to_string().contains("guarantees.cpus"), "{e}");
    assert!(a.set_quota(role("eng"), quota(&[], &[])).is_ok());
}

#[test]
fn reservations_go_only_to_their_role_and_subroles() {
    let mut a = alloc();
    a.add_agent(aid("r"), res("cpus(eng):2;mem(eng):512"), &[], t(0));
    add_fw(&mut a, "ops", "ops");
    add_fw(&mut a, "engine", "engine");
    let run1 = run(&mut a, 1000);
    assert!(run1.offers.is_empty());
    assert!(
        run1.unmet
            .iter()
            .all(|u| u.reason == UnmetReason::NoResources)
    );
    // Reservations count as the role's quota consumption even unallocated.
    assert_eq!(
        a.quota_consumed(&role("eng"))["cpus"],
        Scalar::from_units(2)
    );
    add_fw(&mut a, "ml", "eng/ml");
    let run2 = run(&mut a, 2000);
    assert_eq!(run2.offers.len(), 1);
    assert_eq!(run2.offers[0].role, role("eng/ml"));
    assert_eq!(run2.offers[0].resources, res("cpus(eng):2;mem(eng):512"));
}

#[test]
fn mixed_agent_splits_reserved_and_unreserved() {
    let mut a = alloc();
    a.add_agent(
        aid("m"),
        res("cpus(eng):2;mem(eng):512;cpus:1;mem:256"),
        &[],
        t(0),
    );
    add_fw(&mut a, "aaa", "aaa");
    add_fw(&mut a, "eng", "eng");
    // aaa goes first (name order at equal share) and can take only the unreserved part.
    let offers = run(&mut a, 1000).offers;
    assert_eq!(offers.len(), 2);
    assert_eq!(offers[0].role, role("aaa"));
    assert_eq!(offers[0].resources, res("cpus:1;mem:256"));
    assert_eq!(offers[1].resources, res("cpus(eng):2;mem(eng):512"));
}

#[test]
fn converting_free_resources_reserves_them_for_the_role_only() {
    use tessera_types::{AgentId, FrameworkId, Reservation, ResourceKey, Role, Time};
    let mut a = tessera_allocator::Allocator::new(tessera_allocator::AllocatorConfig::default());
    let agent = AgentId::new("a").unwrap();
    a.add_agent(
        agent.clone(),
        tessera_types::parse::parse_resources("cpus:4;mem:1024").unwrap(),
        &[],
        Time::ZERO,
    );
    let eng = Role::new("eng").unwrap();
    let from = tessera_types::parse::parse_resources("cpus:2").unwrap();
    let to = tessera_types::Resources::from_resources(
        "to",
        from.to_vec().into_iter().map(|mut r| {
            r.key =
                ResourceKey::reserved(r.key.name, vec![Reservation::dynamic_to(eng.clone(), None)]);
            r
        }),
    )
    .unwrap();
    a.convert_resources(&agent, None, &from, &to, Time::ZERO)
        .unwrap();
    assert!(a.total(&agent).contains(&to));
    assert_eq!(
        a.total(&agent).unreserved().scalar("cpus"),
        tessera_types::Scalar::from_units(2)
    );
    // Converting what is not free fails and changes nothing.
    let too_much = tessera_types::parse::parse_resources("cpus:3").unwrap();
    let before = a.total(&agent);
    assert!(
        a.convert_resources(&agent, None, &too_much, &too_much, Time::ZERO)
            .is_err()
    );
    assert_eq!(a.total(&agent), before);
    // Only eng (and subroles) are offered the reserved cpus.
    let ops = FrameworkId::new("ops").unwrap();
    a.add_framework(ops.clone(), &[Role::new("ops").unwrap()], &[], Time::ZERO);
    let mut rng = tessera_allocator::SplitMix64::new(1);
    let run = a.allocate(Time::from_millis(2000), &mut rng);
    let offered: Vec<_> = run.offers.iter().filter(|o| o.framework == ops).collect();
    assert_eq!(offered.len(), 1);
    assert!(
        offered[0].resources.reserved().is_empty(),
        "ops must not see eng's reservation"
    );
}
