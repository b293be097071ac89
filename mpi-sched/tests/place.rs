//! Examples of `place` and `can_ever_fit`, one rule each.

mod common;

use common::{cluster, offer, r, spec};
use tessera_mpi::{Error, Layout, can_ever_fit, place};
use tessera_types::{AgentId, Role};

fn counts(p: &tessera_mpi::Placement) -> Vec<(String, usize)> {
    p.nodes
        .iter()
        .map(|n| (n.agent_id.to_string(), n.ranks.len()))
        .collect()
}

#[test]
fn ppn_uses_ceil_n_over_ppn_nodes_with_the_remainder_last() {
    let offers = cluster("", 4, "cpus:4;mem:4096");
    let p = place(&spec(7, "cpus:1;mem:100", Layout::Ppn(2)), &offers).unwrap();
    assert_eq!(
        counts(&p),
        vec![
            ("a0".into(), 2),
            ("a1".into(), 2),
            ("a2".into(), 2),
            ("a3".into(), 1)
        ]
    );
    assert_eq!(p.rank(6).unwrap().agent_id.as_str(), "a3");
    assert_eq!(p.rank(1).unwrap().agent_id.as_str(), "a0");
    assert!(p.rank(7).is_none());
    assert_eq!(
        p.host_file(),
        "a0.host:2\na1.host:2\na2.host:2\na3.host:1\n"
    );
    // 9 ranks at 2 per node need 5 nodes; there are 4.
    let e = place(&spec(9, "cpus:1", Layout::Ppn(2)), &offers).unwrap_err();
    assert_eq!(e.placeable, 8);
    assert_eq!(e.full_nodes, Some((5, 4)));
    assert!(e.to_string().contains("8 of 9 ranks"), "{e}");
}

#[test]
fn ppn_puts_the_remainder_on_an_agent_too_small_for_a_full_node() {
    let offers = vec![
        offer("o1", "a1", "cpus:4"),
        offer("o2", "a2", "cpus:1"),
        offer("o3", "a3", "cpus:4"),
    ];
    let p = place(&spec(5, "cpus:1", Layout::Ppn(4)), &offers).unwrap();
    assert_eq!(counts(&p), vec![("a1".into(), 4), ("a2".into(), 1)]);
}

#[test]
fn spread_uses_as_many_agents_as_possible_evenly() {
    let offers = vec![
        offer("o1", "a1", "cpus:8"),
        offer("o2", "a2", "cpus:1"),
        offer("o3", "a3", "cpus:8"),
        offer("o4", "a4", "mem:100"),
    ];
    let p = place(&spec(6, "cpus:1", Layout::Spread), &offers).unwrap();
    assert_eq!(
        counts(&p),
        vec![("a1".into(), 3), ("a2".into(), 1), ("a3".into(), 2)]
    );
    let p = place(&spec(2, "cpus:1", Layout::Spread), &offers).unwrap();
    assert_eq!(counts(&p), vec![("a1".into(), 1), ("a2".into(), 1)]);
}

#[test]
fn pack_fills_the_biggest_agents_first() {
    let offers = vec![
        offer("o1", "a1", "cpus:2"),
        offer("o2", "a2", "cpus:8"),
        offer("o3", "a3", "cpus:4"),
    ];
    let p = place(&spec(10, "cpus:1", Layout::Pack), &offers).unwrap();
    assert_eq!(counts(&p), vec![("a2".into(), 8), ("a3".into(), 2)]);
    assert_eq!(p.nodes[1].first_rank, 8);
}

#[test]
fn offers_of_one_agent_combine_and_only_the_needed_ones_are_used() {
    let offers = vec![
        offer("o2", "a1", "cpus:1.5;mem:100"),
        offer("o1", "a1", "cpus:1.5;mem:100"),
        offer("o3", "a1", "cpus:4;mem:100"),
    ];
    let p = place(&spec(3, "cpus:1;mem:50", Layout::Pack), &offers).unwrap();
    assert_eq!(p.nodes.len(), 1);
    let ids: Vec<&str> = p.nodes[0].offer_ids.iter().map(|o| o.as_str()).collect();
    assert_eq!(ids, vec!["o1", "o2"]);
    // A rank may straddle two offers of one agent: 3 cpus and 200 mem in o1+o2.
    let mut sum = tessera_types::Resources::new();
    for rk in &p.nodes[0].ranks {
        sum.add_assign(rk).unwrap();
    }
    assert_eq!(sum, r("cpus:3;mem:150"));
}

#[test]
fn reserved_resources_count_only_for_their_role() {
    let offers = vec![offer("o1", "a1", "cpus(eng):4;cpus:1")];
    let mut s = spec(3, "cpus:1", Layout::Pack);
    s.role = Role::new("ops").unwrap();
    let e = place(&s, &offers).unwrap_err();
    assert_eq!(e.placeable, 1);
    s.role = Role::new("eng").unwrap();
    let p = place(&s, &offers).unwrap();
    assert!(r("cpus(eng):4;cpus:1").contains(&p.nodes[0].ranks[0]));
}

#[test]
fn unplaceable_names_the_largest_agent_and_the_short_resource() {
    let offers = vec![
        offer("o1", "a1", "cpus:8;mem:1000"),
        offer("o2", "a2", "cpus:8;mem:3000"),
    ];
    assert!(place(&spec(8, "cpus:1;mem:500", Layout::Pack), &offers).is_ok());
    let e = place(&spec(9, "cpus:1;mem:500", Layout::Pack), &offers).unwrap_err();
    assert_eq!(e.placeable, 8);
    assert_eq!(e.largest, Some((AgentId::new("a2").unwrap(), 6)));
    assert_eq!(e.limited_by.as_deref(), Some("mem"));
    let e = place(&spec(1, "cpus:1", Layout::Pack), &[]).unwrap_err();
    assert_eq!((e.placeable, e.agents), (0, 0));
}

#[test]
fn can_ever_fit_refuses_a_gang_larger_than_the_cluster() {
    let totals: Vec<(AgentId, tessera_types::Resources)> = (0..2)
        .map(|i| (AgentId::new(format!("a{i}")).unwrap(), r("cpus:4;mem:4096")))
        .collect();
    assert!(can_ever_fit(&spec(8, "cpus:1", Layout::Pack), &totals).is_ok());
    match can_ever_fit(&spec(9, "cpus:1", Layout::Pack), &totals) {
        Err(Error::NeverFits(u)) => assert_eq!(u.placeable, 8),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        can_ever_fit(&spec(4, "cpus:1", Layout::Ppn(3)), &totals),
        Ok(())
    ));
    // At most 5 per node: 4 ranks fit on one agent, 6 need a 5-rank node.
    assert!(can_ever_fit(&spec(4, "cpus:1", Layout::Ppn(5)), &totals).is_ok());
    let e = can_ever_fit(&spec(6, "cpus:1", Layout::Ppn(5)), &totals).unwrap_err();
    assert!(
        e.to_string()
            .contains("1 agent(s) with room for a full node are needed, 0 have it"),
        "{e}"
    );
    let e = can_ever_fit(&spec(0, "cpus:1", Layout::Pack), &totals).unwrap_err();
    assert_eq!(e.field(), Some("ranks"));
}
