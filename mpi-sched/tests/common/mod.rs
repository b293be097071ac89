//! Offer builders shared by the integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;

use tessera_framework::{Action, Offer};
use tessera_mpi::{GangId, GangSpec, Layout};
use tessera_types::parse::parse_resources;
use tessera_types::{AgentId, OfferId, Resources};

pub fn r(s: &str) -> Resources {
    parse_resources(s).unwrap()
}

pub fn offer(id: &str, agent: &str, res: &str) -> Offer {
    offer_res(id, agent, r(res))
}

pub fn offer_res(id: &str, agent: &str, res: Resources) -> Offer {
    Offer {
        id: OfferId::new(id).unwrap(),
        agent_id: AgentId::new(agent).unwrap(),
        hostname: format!("{agent}.host"),
        role: None,
        resources: res,
        attributes: BTreeMap::new(),
    }
}

pub fn spec(ranks: u32, per_rank: &str, layout: Layout) -> GangSpec {
    GangSpec::simple(ranks, r(per_rank), layout)
}

/// `n` agents `a0..`, one offer each (`o<prefix><i>`), with `res`.
pub fn cluster(prefix: &str, n: usize, res: &str) -> Vec<Offer> {
    (0..n)
        .map(|i| offer(&format!("o{prefix}{i}"), &format!("a{i}"), res))
        .collect()
}

/// Launched tasks per gang in `actions`: (gang, rank, agent, launch index).
pub fn launched(actions: &[Action]) -> Vec<(GangId, u32, AgentId, usize)> {
    let mut out = Vec::new();
    for (i, a) in actions.iter().enumerate() {
        if let Action::Launch { tasks, .. } = a {
            for t in tasks {
                let (g, rank) = GangId::parse_task_id(&t.task_id).unwrap();
                out.push((g, rank, t.agent_id.clone(), i));
            }
        }
    }
    out
}
