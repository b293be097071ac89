//! Decline filters, suppress/revive, batching of runs, unmet reasons, recover errors.
mod common;
use common::*;
use std::time::Duration;
use tessera_allocator::{AllocatorError, UnmetReason};

fn one_agent_one_fw() -> tessera_allocator::Allocator {
    let mut a = alloc();
    a.add_agent(aid("s1"), res("cpus:4;mem:4096"), &[], t(0));
    add_fw(&mut a, "f", "r");
    a
}

#[test]
fn declined_offer_is_filtered_for_the_refuse_window() {
    let mut a = one_agent_one_fw();
    let o = run(&mut a, 0).offers.remove(0);
    decline(&mut a, &o, secs(5), 0);
    assert_eq!(a.filter_count(&fid("f")), 1);
    for now in [1000, 3000, 4999] {
        let r = run(&mut a, now);
        assert!(r.offers.is_empty(), "offered at {now}");
        assert_eq!(r.unmet[0].reason, UnmetReason::Filtered);
    }
    let r = run(&mut a, 5000);
    assert_eq!(r.offers.len(), 1);
    assert_eq!(a.filter_count(&fid("f")), 0, "expired filters are dropped");
}

#[test]
fn filter_lasts_at_least_one_interval() {
    let mut a = one_agent_one_fw();
    let o = run(&mut a, 0).offers.remove(0);
    decline(&mut a, &o, Some(Duration::from_millis(100)), 0);
    assert!(run(&mut a, 500).offers.is_empty());
    assert_eq!(run(&mut a, 1000).offers.len(), 1);
}

#[test]
fn zero_or_no_refuse_installs_no_filter() {
    let mut a = one_agent_one_fw();
    let o = run(&mut a, 0).offers.remove(0);
    decline(&mut a, &o, Some(Duration::ZERO), 0);
    let o = run(&mut a, 10).offers.remove(0);
    decline(&mut a, &o, None, 10);
    assert_eq!(run(&mut a, 20).offers.len(), 1);
}

#[test]
fn filter_is_per_framework_and_agent() {
    let mut a = alloc();
    a.add_agent(aid("s1"), res("cpus:4;mem:4096"), &[], t(0));
    add_fw(&mut a, "f1", "r");
    add_fw(&mut a, "f2", "r");
    let o = run(&mut a, 0).offers.remove(0);
    assert_eq!(o.framework, fid("f1"));
    decline(&mut a, &o, secs(3600), 0);
    let o2 = run(&mut a, 1000).offers.remove(0);
    assert_eq!(o2.framework, fid("f2"), "the filtered framework is skipped");
    decline(&mut a, &o2, None, 1000);
    a.add_agent(aid("s2"), res("cpus:4;mem:4096"), &[], t(1000));
    let offers = run(&mut a, 2000).offers;
    assert!(
        offers
            .iter()
            .all(|o| !(o.framework == fid("f1") && o.agent == aid("s1")))
    );
    assert!(
        offers
            .iter()
            .any(|o| o.framework == fid("f1") && o.agent == aid("s2"))
    );
}

#[test]
fn revive_clears_filters() {
    let mut a = one_agent_one_fw();
    let o = run(&mut a, 0).offers.remove(0);
    decline(&mut a, &o, secs(3600), 0);
    assert!(run(&mut a, 1000).offers.is_empty());
    a.revive(&fid("f"), None, t(1500));
    assert_eq!(a.next_run(), Some(t(1520)));
    assert_eq!(run(&mut a, 1520).offers.len(), 1);
}

#[test]
fn suppress_stops_offers_until_revive() {
    let mut a = one_agent_one_fw();
    a.suppress(&fid("f"), Some(&[role("r")]));
    let r = run(&mut a, 0);
    assert!(r.offers.is_empty());
    assert_eq!(r.unmet.len(), 1);
    assert_eq!(r.unmet[0].reason, UnmetReason::Suppressed);
    a.revive(&fid("f"), Some(&[role("r")]), t(10));
    assert_eq!(run(&mut a, 30).offers.len(), 1);
}

#[test]
fn suppressed_at_subscribe_and_per_framework_reason() {
    let mut a = alloc();
    a.add_agent(aid("s1"), res("cpus:4;mem:4096"), &[], t(0));
    a.add_framework(fid("busy"), &[role("r")], &[], t(0));
    a.add_framework(fid("quiet"), &[role("r")], &[role("r")], t(0));
    let o = run(&mut a, 0).offers.remove(0);
    assert_eq!(o.framework, fid("busy"));
    let r = run(&mut a, 1000);
    assert!(r.offers.is_empty());
    assert_eq!(r.unmet.len(), 2);
    assert_eq!(r.unmet[0].framework, None);
    assert_eq!(r.unmet[0].reason, UnmetReason::NoResources);
    assert_eq!(r.unmet[1].framework, Some(fid("quiet")));
    assert_eq!(r.unmet[1].reason, UnmetReason::Suppressed);
    let json = serde_json::to_string(&r.unmet[1].reason).unwrap();
    assert_eq!(json, "\"SUPPRESSED\"");
}

#[test]
fn bigger_offer_after_task_ends_is_not_filtered() {
    let mut a = one_agent_one_fw();
    let o = run(&mut a, 0).offers.remove(0);
    let task = res("cpus:1;mem:1024");
    let rest = o.resources.checked_sub(&task).unwrap();
    a.recover(&o.framework, &o.role, &o.agent, &rest, secs(3600), t(0))
        .unwrap();
    assert!(run(&mut a, 1000).offers.is_empty());
    // The task finishes: its resources come back without a filter.
    a.recover(&o.framework, &o.role, &o.agent, &task, None, t(1500))
        .unwrap();
    let offers = run(&mut a, 2000).offers;
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].resources, res("cpus:4;mem:4096"));
}

#[test]
fn next_run_coalesces_events_and_ticks() {
    let mut a = alloc();
    assert_eq!(a.next_run(), None);
    a.add_agent(aid("s1"), res("cpus:4;mem:4096"), &[], t(100));
    a.add_framework(fid("f"), &[role("r")], &[], t(105));
    a.revive(&fid("f"), None, t(110));
    assert_eq!(a.next_run(), Some(t(120)));
    let o = run(&mut a, 120).offers.remove(0);
    assert_eq!(a.next_run(), Some(t(1120)));
    decline(&mut a, &o, None, 500);
    assert_eq!(a.next_run(), Some(t(520)));
    run(&mut a, 520);
    assert_eq!(a.next_run(), Some(t(1520)));
}

#[test]
fn no_agent_fits_below_min_allocatable() {
    let mut a = alloc();
    a.add_agent(aid("tiny"), res("cpus:0.005;mem:16"), &[], t(0));
    add_fw(&mut a, "f", "r");
    let r = run(&mut a, 0);
    assert!(r.offers.is_empty());
    assert_eq!(r.unmet[0].reason, UnmetReason::NoAgentFits);
    assert!(r.unmet[0].detail.contains("minimum"));
}

#[test]
fn deactivated_agents_and_frameworks_get_nothing() {
    let mut a = one_agent_one_fw();
    a.deactivate_agent(&aid("s1"));
    assert!(run(&mut a, 0).offers.is_empty());
    a.activate_agent(&aid("s1"), t(0));
    a.deactivate_framework(&fid("f"));
    let r = run(&mut a, 10);
    assert!(r.offers.is_empty());
    assert!(r.unmet.is_empty(), "no active framework means no demand");
    a.activate_framework(&fid("f"), t(10));
    assert_eq!(run(&mut a, 30).offers.len(), 1);
}

#[test]
fn recover_errors_change_nothing() {
    let mut a = one_agent_one_fw();
    let o = run(&mut a, 0).offers.remove(0);
    let before = a.available(&aid("s1"));
    let too_much = res("cpus:5");
    let e = a
        .recover(&o.framework, &o.role, &o.agent, &too_much, None, t(1))
        .unwrap_err();
    assert!(matches!(e, AllocatorError::NotAllocated { .. }));
    assert!(e.to_string().starts_with("resources:"), "{e}");
    assert!(matches!(
        a.recover(&fid("nope"), &o.role, &o.agent, &o.resources, None, t(1)),
        Err(AllocatorError::UnknownFramework(_))
    ));
    assert!(matches!(
        a.recover(
            &o.framework,
            &o.role,
            &aid("nope"),
            &o.resources,
            None,
            t(1)
        ),
        Err(AllocatorError::UnknownAgent(_))
    ));
    assert!(
        a.recover(
            &o.framework,
            &role("other"),
            &o.agent,
            &o.resources,
            None,
            t(1)
        )
        .is_err()
    );
    assert_eq!(a.available(&aid("s1")), before);
    assert_eq!(a.allocated(&aid("s1")).len(), 1);
}

#[test]
fn remove_framework_frees_everything_and_agent_reregistration_counts_used() {
    let mut a = alloc();
    a.add_agent(
        aid("s1"),
        res("cpus:4;mem:4096"),
        &[(fid("old"), role("r"), res("cpus:3;mem:1024"))],
        t(0),
    );
    assert_eq!(a.available(&aid("s1")), res("cpus:1;mem:3072"));
    let s = a.role_share(&role("r")).unwrap();
    assert!((s - 0.75).abs() < 1e-9);
    a.add_framework(fid("old"), &[role("r")], &[], t(0));
    a.remove_framework(&fid("old"));
    assert_eq!(a.available(&aid("s1")), res("cpus:4;mem:4096"));
    assert!(a.allocated(&aid("s1")).is_empty());
    add_fw(&mut a, "new", "r");
    let o = run(&mut a, 0).offers.remove(0);
    assert_eq!(o.resources, res("cpus:4;mem:4096"));
    a.remove_agent(&aid("s1"));
    assert_eq!(a.role_share(&role("r")), Some(0.0));
    assert!(
        a.recover(&o.framework, &o.role, &o.agent, &o.resources, None, t(1))
            .is_err()
    );
}

#[test]
fn gpu_agents_are_kept_for_gpu_aware_frameworks() {
    use tessera_allocator::{Allocator, AllocatorConfig, SplitMix64};
    use tessera_types::{AgentId, FrameworkId, Role, Time};
    let mut a = Allocator::new(AllocatorConfig::default());
    let gpu = AgentId::new("gpu-box").unwrap();
    a.add_agent(
        gpu.clone(),
        tessera_types::parse::parse_resources("cpus:4;mem:1024;gpus:1").unwrap(),
        &[],
        Time::ZERO,
    );
    let cpu_only = FrameworkId::new("cpu-only").unwrap();
    a.add_framework(
        cpu_only.clone(),
        &[Role::new("a").unwrap()],
        &[],
        Time::ZERO,
    );
    let mut rng = SplitMix64::new(3);
    let run = a.allocate(Time::from_millis(1000), &mut rng);
    assert!(
        run.offers.is_empty(),
        "a framework without GPU_RESOURCES gets nothing from a GPU agent"
    );
    let ml = FrameworkId::new("ml").unwrap();
    a.add_framework(ml.clone(), &[Role::new("b").unwrap()], &[], Time::ZERO);
    a.set_gpu_aware(&ml, true);
    let run = a.allocate(Time::from_millis(2000), &mut rng);
    assert_eq!(run.offers.len(), 1);
    assert_eq!(run.offers[0].framework, ml);
}

#[test]
fn remote_agents_are_offered_only_to_region_aware_frameworks() {
    let mut a = alloc();
    a.add_agent(aid("far"), res("cpus:4;mem:4096"), &[], t(0));
    a.set_agent_remote(&aid("far"), true);
    add_fw(&mut a, "local-only", "r");
    let r = run(&mut a, 0);
    assert!(
        r.offers.is_empty(),
        "a framework without REGION_AWARE gets nothing from another region"
    );
    add_fw(&mut a, "aware", "r");
    a.set_region_aware(&fid("aware"), true);
    let r = run(&mut a, 1000);
    assert_eq!(r.offers.len(), 1);
    assert_eq!(r.offers[0].framework, fid("aware"));
    // Back in the master's region, everyone may have it again.
    let mut a = alloc();
    a.add_agent(aid("near"), res("cpus:4;mem:4096"), &[], t(0));
    a.set_agent_remote(&aid("near"), true);
    a.set_agent_remote(&aid("near"), false);
    add_fw(&mut a, "local-only", "r");
    assert_eq!(run(&mut a, 0).offers.len(), 1);
}
