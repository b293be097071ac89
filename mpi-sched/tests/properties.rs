//! Property tests, stated as what must never happen, over a small simulated master: agents
//! offer their free resources every cycle (sometimes split in two offers), some offers are
//! rescinded, launched gangs run a few cycles and finish.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{offer_res, r};
use proptest::prelude::*;
use tessera_framework::{Action, Offer};
use tessera_mpi::{GangId, GangQueue, GangSpec, Layout, QueueConfig, can_ever_fit, place};
use tessera_types::{AgentId, OfferId, Resources, Time};

const STEP_MS: u64 = 400;
const HOLD_MS: u64 = 1000;

#[derive(Debug, Clone)]
struct GangIn {
    spec: GangSpec,
    submit_at: usize,
    runs_for: usize,
}

#[derive(Debug, Clone)]
struct Scenario {
    agents: Vec<Resources>,
    gangs: Vec<GangIn>,
    /// Per cycle: rescind the outstanding offer at this index (mod count), if any.
    rescinds: Vec<Option<usize>>,
}

fn layout() -> impl Strategy<Value = Layout> {
    prop_oneof![
        (1u32..4).prop_map(Layout::Ppn),
        Just(Layout::Spread),
        Just(Layout::Pack)
    ]
}

fn gang() -> impl Strategy<Value = GangIn> {
    (
        1u32..10,
        prop::sample::select(vec!["cpus:0.5", "cpus:1", "cpus:2", "cpus:1;mem:512"]),
        layout(),
        0i32..3,
        0usize..8,
        1usize..5,
    )
        .prop_map(|(ranks, res, layout, priority, submit_at, runs_for)| {
            let mut spec = GangSpec::simple(ranks, r(res), layout);
            spec.priority = priority;
            GangIn {
                spec,
                submit_at,
                runs_for,
            }
        })
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        prop::collection::vec((1u32..9, 1u32..5), 1..6),
        prop::collection::vec(gang(), 1..6),
        prop::collection::vec(prop::option::weighted(0.2, 0usize..16), 40),
    )
        .prop_map(|(agents, gangs, rescinds)| Scenario {
            agents: agents
                .into_iter()
                .map(|(c, m)| r(&format!("cpus:{c};mem:{}", m * 512)))
                .collect(),
            gangs,
            rescinds,
        })
}

/// What one run produced: every step's actions, and when each gang launched.
#[derive(Debug, PartialEq)]
struct Run {
    steps: Vec<Vec<Action>>,
    launched_at: BTreeMap<GangId, usize>,
}

/// Runs the scenario, asserting the "never" properties at every step.
fn run(s: &Scenario, cycles: usize) -> Run {
    let mut q = GangQueue::new(QueueConfig {
        hold: Duration::from_millis(HOLD_MS),
        ..QueueConfig::default()
    });
    let agent_ids: Vec<AgentId> = (0..s.agents.len())
        .map(|i| AgentId::new(format!("a{i}")).unwrap())
        .collect();
    let totals: Vec<(AgentId, Resources)> = agent_ids
        .iter()
        .cloned()
        .zip(s.agents.iter().cloned())
        .collect();
    let mut free: Vec<Resources> = s.agents.clone();
    let mut outstanding: BTreeMap<OfferId, Offer> = BTreeMap::new();
    let mut specs: BTreeMap<GangId, GangSpec> = BTreeMap::new();
    let mut gang_in: BTreeMap<GangId, usize> = BTreeMap::new();
    let mut running: BTreeMap<GangId, (usize, Vec<(usize, Resources)>)> = BTreeMap::new();
    let mut out = Run {
        steps: Vec::new(),
        launched_at: BTreeMap::new(),
    };
    let mut seen: BTreeSet<OfferId> = BTreeSet::new();
    for cycle in 0..cycles {
        let now = Time::from_millis(cycle as u64 * STEP_MS);
        for (i, g) in s.gangs.iter().enumerate() {
            // Like the CLI, refuse at submit what the cluster can never hold.
            if g.submit_at == cycle && can_ever_fit(&g.spec, &totals).is_ok() {
                let id = q.submit(g.spec.clone()).unwrap();
                specs.insert(id, g.spec.clone());
                gang_in.insert(id, i);
            }
        }
        // Finish gangs that ran long enough.
        let done: Vec<GangId> = running
            .iter()
            .filter(|(id, (at, _))| cycle >= at + s.gangs[gang_in[*id]].runs_for)
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            for (a, res) in running.remove(&id).unwrap().1 {
                free[a].add_assign(&res).unwrap();
            }
            q.gang_finished(id).unwrap();
        }
        // The master withdraws an outstanding offer now and then.
        if let Some(Some(i)) = s.rescinds.get(cycle)
            && !outstanding.is_empty()
        {
            let id = outstanding
                .keys()
                .nth(i % outstanding.len())
                .unwrap()
                .clone();
            outstanding.remove(&id);
            q.on_rescind(&id);
        }
        // Offer what is free and not already offered, split in two on some cycles.
        let mut new = Vec::new();
        for (a, id) in agent_ids.iter().enumerate() {
            let mut avail = free[a].clone();
            for o in outstanding.values().filter(|o| &o.agent_id == id) {
                avail.sub_assign(&o.resources).unwrap();
            }
            if avail.is_empty() {
                continue;
            }
            let parts = if (cycle + a) % 3 == 0 {
                let half = r("cpus:0.5");
                match avail.checked_sub(&half) {
                    Ok(rest) if !rest.is_empty() => vec![half, rest],
                    _ => vec![avail],
                }
            } else {
                vec![avail]
            };
            for (k, p) in parts.into_iter().enumerate() {
                let o = offer_res(&format!("c{cycle}-{a}-{k}"), id.as_str(), p);
                outstanding.insert(o.id.clone(), o.clone());
                new.push(o);
            }
        }
        let mut actions = q.on_offers(new, now);
        actions.extend(q.on_tick(now));
        check_step(&actions, &mut outstanding, &mut seen, &specs);
        for (g, tasks) in per_gang(&actions) {
            out.launched_at.insert(g, cycle);
            let placed = tasks
                .into_iter()
                .map(|(agent, res)| (agent_ids.iter().position(|x| *x == agent).unwrap(), res))
                .collect::<Vec<_>>();
            for (a, res) in &placed {
                free[*a].sub_assign(res).unwrap();
            }
            running.insert(g, (cycle, placed));
        }
        out.steps.push(actions);
    }
    out
}

type Tasks = Vec<(AgentId, Resources)>;

fn per_gang(actions: &[Action]) -> BTreeMap<GangId, Tasks> {
    let mut m: BTreeMap<GangId, Tasks> = BTreeMap::new();
    for a in actions {
        if let Action::Launch { tasks, .. } = a {
            for t in tasks {
                let (g, _) = GangId::parse_task_id(&t.task_id).unwrap();
                m.entry(g)
                    .or_default()
                    .push((t.agent_id.clone(), t.resources.clone()));
            }
        }
    }
    m
}

/// The "never" properties of one step.
fn check_step(
    actions: &[Action],
    outstanding: &mut BTreeMap<OfferId, Offer>,
    seen: &mut BTreeSet<OfferId>,
    specs: &BTreeMap<GangId, GangSpec>,
) {
    let mut ranks: BTreeMap<GangId, Vec<(u32, AgentId)>> = BTreeMap::new();
    for a in actions {
        let ids = match a {
            Action::Launch { offer_ids, .. } | Action::Decline { offer_ids, .. } => offer_ids,
            other => panic!("unexpected action {other:?}"),
        };
        let mut offered = Resources::new();
        for id in ids {
            // Never: an offer used twice, or one that was rescinded or never made.
            assert!(seen.insert(id.clone()), "offer {id} used twice");
            let o = outstanding
                .remove(id)
                .unwrap_or_else(|| panic!("{id} not outstanding"));
            offered.add_assign(&o.resources).unwrap();
            if let Action::Launch { tasks, .. } = a {
                assert!(tasks.iter().all(|t| t.agent_id == o.agent_id));
            }
        }
        if let Action::Launch { tasks, .. } = a {
            // Never: an offer set over-committed.
            let mut used = Resources::new();
            for t in tasks {
                used.add_assign(&t.resources).unwrap();
                let (g, rank) = GangId::parse_task_id(&t.task_id).unwrap();
                ranks.entry(g).or_default().push((rank, t.agent_id.clone()));
            }
            assert!(offered.contains(&used), "{used} over {offered}");
        }
    }
    for (g, mut rs) in ranks {
        let spec = &specs[&g];
        rs.sort();
        // Never: a partial gang (all ranks 0..N, each once, in this one step).
        let got: Vec<u32> = rs.iter().map(|(r, _)| *r).collect();
        assert_eq!(got, (0..spec.ranks).collect::<Vec<_>>(), "gang {g}");
        if let Layout::Ppn(n) = spec.layout {
            let mut per: BTreeMap<&AgentId, u32> = BTreeMap::new();
            for (_, a) in &rs {
                *per.entry(a).or_default() += 1;
            }
            assert!(per.values().all(|c| *c <= n), "ppn {n}: {per:?}");
            assert_eq!(per.len() as u32, spec.ranks.div_ceil(n));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn never_partial_never_twice_never_overcommitted(s in scenario()) {
        let a = run(&s, 40);
        // Each gang launches at most once (a second launch would show as a second entry
        // of the same gang in another step).
        let mut launches: BTreeMap<GangId, usize> = BTreeMap::new();
        for step in &a.steps {
            for g in per_gang(step).keys() {
                *launches.entry(*g).or_default() += 1;
            }
        }
        prop_assert!(launches.values().all(|n| *n == 1));
        // Equal inputs, equal outputs.
        let b = run(&s, 40);
        prop_assert_eq!(&a, &b);
        // And nobody starves: every gang the cluster can hold eventually runs.
        let totals: Vec<(AgentId, Resources)> = s.agents.iter().enumerate()
            .map(|(i, r)| (AgentId::new(format!("a{i}")).unwrap(), r.clone()))
            .collect();
        let long = run(&s, 80);
        let fitting = s.gangs.iter().filter(|g| can_ever_fit(&g.spec, &totals).is_ok()).count();
        prop_assert_eq!(long.launched_at.len(), fitting, "{:?}", long.launched_at);
    }

    #[test]
    fn two_gangs_that_fit_alone_but_not_together_both_run(
        agents in 1usize..5,
        cpus in 2u32..9,
        la in layout(),
        lb in layout(),
        pa in 0i32..2,
        pb in 0i32..2,
        runs_for in 1usize..4,
    ) {
        let total = agents as u32 * cpus;
        // Each needs more than half the cluster, so they never fit together.
        let size = total / 2 + 1;
        // Ppn(n) needs ceil(size/n) agents with n cpus; fall back to a full node per agent.
        let fit = |l: Layout| match l {
            Layout::Ppn(n) if n <= cpus && (size.div_ceil(n) as usize) <= agents => l,
            Layout::Ppn(_) => Layout::Ppn(cpus),
            l => l,
        };
        let (la, lb) = (fit(la), fit(lb));
        let mk = |layout, priority| {
            let mut spec = GangSpec::simple(size, r("cpus:1"), layout);
            spec.priority = priority;
            GangIn { spec, submit_at: 0, runs_for }
        };
        let s = Scenario {
            agents: vec![r(&format!("cpus:{cpus};mem:1024")); agents],
            gangs: vec![mk(la, pa), mk(lb, pb)],
            rescinds: vec![],
        };
        let a = run(&s, 30);
        prop_assert_eq!(a.launched_at.len(), 2, "both launch within 30 cycles: {:?}", a.launched_at);
        let at: Vec<usize> = a.launched_at.values().copied().collect();
        prop_assert!(at[0] != at[1], "one after the other");
    }

    #[test]
    fn placement_ignores_offer_order_and_respects_offers(
        s in scenario(),
        rot in 0usize..8,
    ) {
        let offers: Vec<Offer> = s.agents.iter().enumerate().flat_map(|(i, res)| {
            let half = r("cpus:0.5");
            let a = format!("a{i}");
            match res.checked_sub(&half) {
                Ok(rest) => vec![offer_res(&format!("o{i}x"), &a, half), offer_res(&format!("o{i}y"), &a, rest)],
                Err(_) => vec![offer_res(&format!("o{i}x"), &a, res.clone())],
            }
        }).collect();
        let mut shuffled = offers.clone();
        let len = shuffled.len();
        shuffled.rotate_left(rot % len);
        shuffled.reverse();
        for g in &s.gangs {
            let p = place(&g.spec, &offers);
            prop_assert_eq!(&p, &place(&g.spec, &shuffled));
            if let Ok(p) = p {
                prop_assert_eq!(p.ranks().count() as u32, g.spec.ranks);
                for (i, slot) in p.ranks().enumerate() {
                    prop_assert_eq!(slot.rank, i as u32);
                }
                for n in &p.nodes {
                    let mut have = Resources::new();
                    for o in offers.iter().filter(|o| n.offer_ids.contains(&o.id)) {
                        prop_assert_eq!(&o.agent_id, &n.agent_id);
                        have.add_assign(&o.resources).unwrap();
                    }
                    let mut used = Resources::new();
                    for rk in &n.ranks {
                        used.add_assign(rk).unwrap();
                    }
                    prop_assert!(have.contains(&used));
                }
            }
        }
    }
}
