//! DRF, weighted DRF and hierarchical DRF.
mod common;
use common::*;

#[test]
fn drf_paper_example() {
    // One agent <9 cpus, 18 GB>; A's tasks <1 cpu, 4 GB>, B's tasks <3 cpus, 1 GB>.
    let mut a = alloc();
    a.add_agent(aid("s1"), res("cpus:9;mem:18432"), &[], t(0));
    add_fw(&mut a, "A", "a");
    add_fw(&mut a, "B", "b");
    let task = |fw: &str| match fw {
        "A" => res("cpus:1;mem:4096"),
        _ => res("cpus:3;mem:1024"),
    };
    let mut launched = std::collections::BTreeMap::<String, u32>::new();
    let mut idle_cycles = 0;
    for cycle in 1..50u64 {
        let now = cycle * 1000;
        let offers = run(&mut a, now).offers;
        assert!(offers.len() <= 1, "one agent, one coarse-grained offer");
        let mut any = false;
        for o in offers {
            let want = task(o.framework.as_str());
            let rest = if o.resources.contains(&want) {
                any = true;
                *launched.entry(o.framework.to_string()).or_default() += 1;
                o.resources.checked_sub(&want).unwrap()
            } else {
                o.resources.clone()
            };
            a.recover(&o.framework, &o.role, &o.agent, &rest, None, t(now))
                .unwrap();
        }
        idle_cycles = if any { 0 } else { idle_cycles + 1 };
        if idle_cycles == 4 {
            break;
        }
    }
    assert_eq!(launched.get("A"), Some(&3));
    assert_eq!(launched.get("B"), Some(&2));
    let sa = a.role_share(&role("a")).unwrap();
    let sb = a.role_share(&role("b")).unwrap();
    assert!((sa - 2.0 / 3.0).abs() < 1e-9, "{sa}");
    assert!((sb - 2.0 / 3.0).abs() < 1e-9, "{sb}");
    let fa = a.framework_share(&fid("A"), &role("a")).unwrap();
    assert!((fa - 2.0 / 3.0).abs() < 1e-9);
}

#[test]
fn weights_split_saturated_cluster_one_to_two() {
    let mut a = alloc();
    add_agents(&mut a, 30, "cpus:1;mem:1024");
    a.set_weight(role("w2"), 2.0).unwrap();
    add_fw(&mut a, "f1", "w1");
    add_fw(&mut a, "f2", "w2");
    let offers = run(&mut a, 1000).offers;
    assert_eq!(offers.len(), 30);
    let c1 = scalar_to(&offers, "w1", "cpus");
    let c2 = scalar_to(&offers, "w2", "cpus");
    assert!((9.0..=11.0).contains(&c1), "w1 got {c1}");
    assert!((19.0..=21.0).contains(&c2), "w2 got {c2}");
    assert!(a.set_weight(role("w1"), 0.0).is_err());
    assert!(a.set_weight(role("w1"), f64::NAN).is_err());
    let e = a.set_weight(role("w1"), -1.0).unwrap_err();
    assert!(e.to_string().starts_with("weight:"), "{e}");
}

#[test]
fn hierarchical_subtree_competes_as_a_whole() {
    let mut a = alloc();
    add_agents(&mut a, 30, "cpus:1;mem:1024");
    add_fw(&mut a, "ml", "eng/ml");
    add_fw(&mut a, "web", "eng/web");
    add_fw(&mut a, "ops", "ops");
    let offers = run(&mut a, 1000).offers;
    assert_eq!(offers.len(), 30);
    let eng = scalar_to(&offers, "eng/ml", "cpus") + scalar_to(&offers, "eng/web", "cpus");
    let ops = scalar_to(&offers, "ops", "cpus");
    assert!((14.0..=16.0).contains(&eng), "eng got {eng}");
    assert!((14.0..=16.0).contains(&ops), "ops got {ops}");
    let ml = scalar_to(&offers, "eng/ml", "cpus");
    assert!((6.0..=9.0).contains(&ml), "ml got {ml}");
    let se = a.role_share(&role("eng")).unwrap();
    assert!((se - eng / 30.0).abs() < 1e-9);
}

#[test]
fn frameworks_within_a_role_share_by_drf() {
    let mut a = alloc();
    add_agents(&mut a, 12, "cpus:1;mem:1024");
    for f in ["f1", "f2", "f3"] {
        add_fw(&mut a, f, "r");
    }
    let offers = run(&mut a, 1000).offers;
    for f in ["f1", "f2", "f3"] {
        let n = offers.iter().filter(|o| o.framework.as_str() == f).count();
        assert_eq!(n, 4, "{f}");
    }
}

#[test]
fn excluded_names_do_not_count_in_shares() {
    for (excluded, want) in [(vec!["gpus".to_string()], 0.5), (vec![], 1.0)] {
        let cfg = tessera_allocator::AllocatorConfig {
            fair_sharing_excluded: excluded,
            ..Default::default()
        };
        let mut a = tessera_allocator::Allocator::new(cfg);
        a.add_agent(aid("g"), res("cpus:10;mem:10240;gpus:1"), &[], t(0));
        add_fw(&mut a, "x", "x");
        // A GPU agent is only offered to frameworks with GPU_RESOURCES.
        a.set_gpu_aware(&tessera_types::FrameworkId::new("x").unwrap(), true);
        assert_eq!(run(&mut a, 1000).offers.len(), 1);
        a.add_agent(aid("c"), res("cpus:10;mem:10240"), &[], t(0));
        let s = a.role_share(&role("x")).unwrap();
        assert!((s - want).abs() < 1e-9, "{s} vs {want}");
    }
}

#[test]
fn random_sorters_allocate_everything_deterministically() {
    let cfg = || tessera_allocator::AllocatorConfig {
        role_sorter: tessera_allocator::SorterKind::Random,
        framework_sorter: tessera_allocator::SorterKind::Random,
        ..Default::default()
    };
    let build = || {
        let mut a = tessera_allocator::Allocator::new(cfg());
        add_agents(&mut a, 20, "cpus:1;mem:1024");
        add_fw(&mut a, "f1", "x");
        add_fw(&mut a, "f2", "x");
        add_fw(&mut a, "g", "y");
        a
    };
    let (mut a, mut b) = (build(), build());
    let ra = run(&mut a, 1000);
    assert_eq!(ra.offers.len(), 20);
    assert_eq!(ra, run(&mut b, 1000));
}

#[test]
fn leaving_a_role_keeps_its_allocation_counted_until_recovered() {
    let mut a = alloc();
    a.add_agent(aid("s"), res("cpus:2;mem:2048"), &[], t(0));
    add_fw(&mut a, "f", "old");
    let o = run(&mut a, 0).offers.remove(0);
    a.update_framework_roles(&fid("f"), &[role("new")], &[], t(1));
    assert_eq!(a.role_share(&role("old")), Some(1.0));
    decline(&mut a, &o, None, 2);
    assert_eq!(a.role_share(&role("old")), None);
    let o = run(&mut a, 30).offers.remove(0);
    assert_eq!(o.role, role("new"));
}
