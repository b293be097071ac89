//! Property tests, written as what must never happen.
mod common;
use common::*;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::time::Duration;
use tessera_allocator::{AllocationRun, Allocator, Quota, SplitMix64};
use tessera_types::{AgentId, FrameworkId, Resources, Role, Scalar, Time};

const SPECS: [&str; 4] = [
    "cpus:4;mem:4096;ports:[31000-31009]",
    "cpus:2;mem:1024;disk:100",
    "cpus:8;mem:8192;cpus(q):2;mem(q):512",
    "cpus:1;mem:64;cpus(eng):1;ports:[5-6]",
];
const ROLES: [&str; 5] = ["a", "b", "eng/ml", "q", "eng"];

#[derive(Debug, Clone)]
enum Op {
    AddAgent(usize),
    RemoveAgent(usize),
    ToggleAgent(usize),
    AddFramework(usize, usize, bool),
    RemoveFramework(usize),
    ToggleFramework(usize),
    Allocate,
    Recover {
        pick: usize,
        partial: bool,
        refuse: Option<u64>,
    },
    Suppress(usize),
    Revive(usize),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..SPECS.len()).prop_map(Op::AddAgent),
        1 => any::<usize>().prop_map(Op::RemoveAgent),
        1 => any::<usize>().prop_map(Op::ToggleAgent),
        2 => (0..6usize, 0..ROLES.len(), any::<bool>()).prop_map(|(f, r, m)| Op::AddFramework(f, r, m)),
        1 => (0..6usize).prop_map(Op::RemoveFramework),
        1 => (0..6usize).prop_map(Op::ToggleFramework),
        4 => Just(Op::Allocate),
        4 => (any::<usize>(), any::<bool>(), proptest::option::of(0..10u64))
            .prop_map(|(pick, partial, refuse)| Op::Recover { pick, partial, refuse }),
        1 => (0..6usize).prop_map(Op::Suppress),
        1 => (0..6usize).prop_map(Op::Revive),
        2 => (0..3000u64).prop_map(Op::Advance),
    ]
}

/// A filter the test expects the allocator to honour.
struct Expect {
    fw: FrameworkId,
    role: Role,
    agent: AgentId,
    res: Resources,
    until: Time,
}

struct Harness {
    a: Allocator,
    rng: SplitMix64,
    now: u64,
    agents: u32,
    active_agents: BTreeMap<AgentId, bool>,
    active_fws: BTreeMap<String, bool>,
    filters: Vec<Expect>,
    log: Vec<AllocationRun>,
}

fn fwid(i: usize) -> FrameworkId {
    fid(&format!("f{i}"))
}

impl Harness {
    fn new(seed: u64) -> Self {
        let mut a = alloc();
        let q = Quota {
            guarantees: BTreeMap::from([("cpus".to_string(), Scalar::from_units(3))]),
            limits: BTreeMap::from([("cpus".to_string(), Scalar::from_units(12))]),
        };
        a.set_quota(role("q"), q).unwrap();
        Harness {
            a,
            rng: SplitMix64::new(seed),
            now: 0,
            agents: 0,
            active_agents: BTreeMap::new(),
            active_fws: BTreeMap::new(),
            filters: Vec::new(),
            log: Vec::new(),
        }
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let now = t(self.now);
        match op {
            Op::AddAgent(s) => {
                let id = aid(&format!("ag{}", self.agents));
                self.agents += 1;
                self.a.add_agent(id.clone(), res(SPECS[*s]), &[], now);
                self.active_agents.insert(id, true);
            }
            Op::RemoveAgent(i) => {
                if let Some(id) = self
                    .active_agents
                    .keys()
                    .nth(i % self.active_agents.len().max(1))
                    .cloned()
                {
                    self.a.remove_agent(&id);
                    self.active_agents.remove(&id);
                    self.filters.retain(|f| f.agent != id);
                }
            }
            Op::ToggleAgent(i) => {
                if let Some((id, on)) = self.active_agents.iter_mut().nth(i % 7) {
                    if *on {
                        self.a.deactivate_agent(id);
                    } else {
                        self.a.activate_agent(id, now);
                    }
                    *on = !*on;
                }
            }
            Op::AddFramework(f, r, multi) => {
                let mut roles = vec![role(ROLES[*r])];
                if *multi {
                    roles.push(role(ROLES[(r + 1) % ROLES.len()]));
                }
                self.a.add_framework(fwid(*f), &roles, &[], now);
                self.active_fws.insert(format!("f{f}"), true);
            }
            Op::RemoveFramework(f) => {
                self.a.remove_framework(&fwid(*f));
                self.active_fws.remove(&format!("f{f}"));
                self.filters.retain(|x| x.fw != fwid(*f));
            }
            Op::ToggleFramework(f) => {
                if let Some(on) = self.active_fws.get_mut(&format!("f{f}")) {
                    if *on {
                        self.a.deactivate_framework(&fwid(*f));
                    } else {
                        self.a.activate_framework(&fwid(*f), now);
                    }
                    *on = !*on;
                }
            }
            Op::Allocate => {
                let run = self.a.allocate(now, &mut self.rng);
                for o in &run.offers {
                    for f in &self.filters {
                        let hit = f.fw == o.framework
                            && f.role == o.role
                            && f.agent == o.agent
                            && f.until > now
                            && f.res.contains(&o.resources);
                        prop_assert!(!hit, "re-offered {} inside its filter", o.resources);
                    }
                    prop_assert!(self.active_agents.get(&o.agent) == Some(&true));
                    prop_assert!(self.active_fws.get(o.framework.as_str()) == Some(&true));
                    for (k, _) in o.resources.iter() {
                        prop_assert!(
                            k.role().is_allocatable_to(&o.role),
                            "{} to {}",
                            k.name,
                            o.role
                        );
                    }
                }
                self.log.push(run);
            }
            Op::Recover {
                pick,
                partial,
                refuse,
            } => {
                let held: Vec<_> = self
                    .a
                    .agent_ids()
                    .iter()
                    .flat_map(|id| self.a.allocated(id))
                    .collect();
                if !held.is_empty() {
                    let h = &held[pick % held.len()];
                    let mut r = h.resources.clone();
                    if *partial {
                        let rest = r.filter(|k, _| &*k.name != "cpus");
                        if !rest.is_empty() {
                            r = rest;
                        }
                    }
                    let refuse = refuse.map(Duration::from_secs);
                    self.a
                        .recover(&h.framework, &h.role, &h.agent, &r, refuse, now)
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    if let Some(d) = refuse.filter(|d| !d.is_zero()) {
                        self.filters.push(Expect {
                            fw: h.framework.clone(),
                            role: h.role.clone(),
                            agent: h.agent.clone(),
                            res: r,
                            until: now.plus(d.max(Duration::from_secs(1))),
                        });
                    }
                }
            }
            Op::Suppress(f) => self.a.suppress(&fwid(*f), None),
            Op::Revive(f) => {
                self.a.revive(&fwid(*f), None, now);
                self.filters.retain(|x| x.fw != fwid(*f));
            }
            Op::Advance(ms) => self.now += ms,
        }
        self.check()
    }

    /// No agent over-committed; no resource in two allocations.
    fn check(&self) -> Result<(), TestCaseError> {
        for id in self.a.agent_ids() {
            let total = self.a.total(&id);
            let mut sum = self.a.available(&id);
            let mut ports = sum.ranges("ports").count();
            for al in self.a.allocated(&id) {
                prop_assert!(!al.resources.is_empty());
                ports += al.resources.ranges("ports").count();
                sum = sum
                    .checked_add(&al.resources)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
            prop_assert_eq!(&sum, &total, "allocations + available != total on {}", id);
            prop_assert_eq!(
                ports,
                total.ranges("ports").count(),
                "a port in two allocations on {}",
                id
            );
        }
        Ok(())
    }
}

fn play(seed: u64, ops: &[Op]) -> Result<Vec<AllocationRun>, TestCaseError> {
    let mut h = Harness::new(seed);
    for o in ops {
        h.apply(o)?;
    }
    Ok(h.log)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn never_overcommit_never_reoffer_inside_filter_and_deterministic(
        seed in any::<u64>(),
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        let first = play(seed, &ops)?;
        let second = play(seed, &ops)?;
        prop_assert_eq!(first, second);
    }

    #[test]
    fn quota_guarantee_met_when_demand_and_resources(
        agents in 4usize..24,
        g in 1u64..24,
        others in 1usize..4,
        seed in any::<u64>(),
    ) {
        let g = g.min(agents as u64);
        let mut a = alloc();
        add_agents(&mut a, agents, "cpus:1;mem:1024");
        let q = Quota {
            guarantees: BTreeMap::from([
                ("cpus".to_string(), Scalar::from_units(g)),
                ("mem".to_string(), Scalar::from_units(g * 1024)),
            ]),
            limits: BTreeMap::new(),
        };
        a.set_quota(role("q"), q).unwrap();
        for i in 0..others {
            add_fw(&mut a, &format!("o{i}"), &format!("a{i}"));
        }
        add_fw(&mut a, "quota", "q");
        let run = a.allocate(Time::from_millis(1000), &mut SplitMix64::new(seed));
        prop_assert!(scalar_to(&run.offers, "q", "cpus") >= g as f64);
        prop_assert!(a.quota_consumed(&role("q"))["cpus"] >= Scalar::from_units(g));
    }
}
