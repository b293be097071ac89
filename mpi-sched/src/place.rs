//! Gang placement: a pure function from (spec, offers) to a whole placement or a reason.
//!
//! Steps: (1) keep the offers the gang's role may use and, in each, only the resource names
//! a rank needs; (2) group them by agent (agent id order, offers by offer id inside), and
//! compute how many ranks each agent can hold: `min over names ⌊total / per-rank⌋`;
//! (3) decide per-agent rank counts from the [`Layout`] over those capacities alone
//! (integers, no resource bags, so it is cheap and the same code answers
//! [`can_ever_fit`]); (4) carve each rank's resources out of the fewest of the agent's
//! offers (offer id order) that hold its ranks. Ranks are numbered contiguously per agent,
//! in node order, as MPI host files expect. Nothing depends on the order offers arrive in.

use std::fmt;
use std::ops::Range;

use tessera_framework::{Offer, matching};
use tessera_types::{AgentId, OfferId, Resources};

use crate::error::{Error, Result};
use crate::spec::{GangSpec, Layout};

/// Where every rank of a gang runs. Nodes are in rank order; node `i` holds ranks
/// `first_rank .. first_rank + ranks.len()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub size: u32,
    pub nodes: Vec<NodePlacement>,
}

/// The ranks placed on one agent and the offers (all from that agent) they come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePlacement {
    pub agent_id: AgentId,
    pub hostname: String,
    /// The offers to accept together for these ranks (one LAUNCH), in offer id order.
    pub offer_ids: Vec<OfferId>,
    pub first_rank: u32,
    /// Each rank's resources, carved from `offer_ids` (reservation keys kept).
    pub ranks: Vec<Resources>,
}

impl NodePlacement {
    pub fn rank_range(&self) -> Range<u32> {
        self.first_rank..self.first_rank + self.ranks.len() as u32
    }
}

/// One rank's slot, as [`Placement::rank`] returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RankSlot<'a> {
    pub rank: u32,
    pub agent_id: &'a AgentId,
    pub hostname: &'a str,
    pub offer_ids: &'a [OfferId],
    pub resources: &'a Resources,
}

impl Placement {
    /// Where rank `rank` runs.
    pub fn rank(&self, rank: u32) -> Option<RankSlot<'_>> {
        let i = self.nodes.partition_point(|n| n.first_rank <= rank);
        let node = self.nodes.get(i.checked_sub(1)?)?;
        let res = node.ranks.get((rank - node.first_rank) as usize)?;
        Some(node.slot(rank, res))
    }

    /// Every rank in order.
    pub fn ranks(&self) -> impl Iterator<Item = RankSlot<'_>> {
        self.nodes.iter().flat_map(|n| {
            n.ranks
                .iter()
                .enumerate()
                .map(move |(i, r)| n.slot(n.first_rank + i as u32, r))
        })
    }

    /// Every offer the placement uses.
    pub fn offer_ids(&self) -> impl Iterator<Item = &OfferId> {
        self.nodes.iter().flat_map(|n| n.offer_ids.iter())
    }

    /// An MPICH-style host file: `hostname:count` per node, in rank order.
    pub fn host_file(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("{}:{}\n", n.hostname, n.ranks.len()))
            .collect()
    }
}

impl NodePlacement {
    fn slot<'a>(&'a self, rank: u32, resources: &'a Resources) -> RankSlot<'a> {
        RankSlot {
            rank,
            agent_id: &self.agent_id,
            hostname: &self.hostname,
            offer_ids: &self.offer_ids,
            resources,
        }
    }
}

/// Why a gang does not fit, with what `why` needs to explain it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unplaceable {
    pub ranks: u32,
    pub layout: Layout,
    /// Ranks the layout could place (always `< ranks`).
    pub placeable: u32,
    /// Agents with any usable resources.
    pub agents: usize,
    /// Agents with room for at least one rank.
    pub agents_with_room: usize,
    /// The agent holding the most ranks, and how many (ties: lowest agent id).
    pub largest: Option<(AgentId, u32)>,
    /// The per-rank resource that runs out first over all agents together.
    pub limited_by: Option<String>,
    /// For `Ppn(n)`: agents needed with room for `n` ranks, and how many have it.
    pub full_nodes: Option<(u32, u32)>,
}

impl fmt::Display for Unplaceable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} ranks fit ({}) on {} agent(s) with room",
            self.placeable, self.ranks, self.layout, self.agents_with_room
        )?;
        if let Some((a, n)) = &self.largest {
            write!(f, "; the largest, {a}, holds {n}")?;
        }
        if let Some((need, have)) = self.full_nodes {
            write!(
                f,
                "; {need} agent(s) with room for a full node are needed, {have} have it"
            )?;
        }
        if let Some(name) = &self.limited_by {
            write!(f, "; short of {name}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Unplaceable {}

/// Places all `spec.ranks` ranks in `offers`, or none. Deterministic and independent of
/// the order of `offers`. The spec is assumed valid ([`GangSpec::validate`]).
pub fn place(spec: &GangSpec, offers: &[Offer]) -> Result<Placement, Unplaceable> {
    let need = Need::of(spec);
    let nodes = group(spec, &need, offers);
    let caps: Vec<u32> = nodes.iter().map(|n| n.cap).collect();
    let counts = decide(spec, &caps).map_err(|s| explain(spec, &need, &nodes, s))?;
    let mut out = Vec::with_capacity(counts.len());
    let mut next = 0u32;
    for (i, k) in counts {
        out.push(carve(spec, &need, &nodes[i], k, next));
        next += k;
    }
    Ok(Placement {
        size: spec.ranks,
        nodes: out,
    })
}

/// How many ranks [`place`] could put on these offers under the spec's layout (`ranks`
/// when it places them all). The queue uses it to tell whether a backfill would set the
/// head gang back.
pub fn placeable(spec: &GangSpec, offers: &[Offer]) -> u32 {
    let need = Need::of(spec);
    let caps: Vec<u32> = group(spec, &need, offers).iter().map(|n| n.cap).collect();
    match decide(spec, &caps) {
        Ok(_) => spec.ranks,
        Err(s) => s.placeable,
    }
}

/// Whether the gang could ever run on a cluster with these agent totals (whole agents, all
/// free); refuses at submit a gang larger than the cluster, with the reason.
pub fn can_ever_fit(spec: &GangSpec, cluster_totals: &[(AgentId, Resources)]) -> Result<()> {
    spec.validate()?;
    let need = Need::of(spec);
    let mut nodes: Vec<Node<'_>> = cluster_totals
        .iter()
        .map(|(a, r)| {
            let totals = need.totals(&usable(spec, r));
            Node {
                agent_id: a,
                hostname: a.as_str(),
                cap: need.cap(&totals, spec.ranks),
                totals,
                offers: Vec::new(),
            }
        })
        .collect();
    nodes.sort_by(|a, b| a.agent_id.cmp(b.agent_id));
    let caps: Vec<u32> = nodes.iter().map(|n| n.cap).collect();
    decide(spec, &caps)
        .map(|_| ())
        .map_err(|s| Error::NeverFits(explain(spec, &need, &nodes, s)))
}

/// Per-rank demand as (name, milli-units), in name order.
struct Need(Vec<(String, u64)>);

impl Need {
    fn of(spec: &GangSpec) -> Need {
        Need(
            spec.per_rank
                .quantities()
                .into_iter()
                .filter(|(_, s)| !s.is_zero())
                .map(|(n, s)| (n, s.milli()))
                .collect(),
        )
    }

    fn totals(&self, r: &Resources) -> Vec<u64> {
        self.0.iter().map(|(n, _)| r.scalar(n).milli()).collect()
    }

    fn cap(&self, totals: &[u64], max: u32) -> u32 {
        self.0
            .iter()
            .zip(totals)
            .map(|((_, per), have)| (have / per).min(u64::from(max)) as u32)
            .min()
            .unwrap_or(0)
    }
}

/// The resources of `r` a rank of `spec` may use: those its role may use, with the names
/// it needs.
fn usable(spec: &GangSpec, r: &Resources) -> Resources {
    let any = spec.role.is_any();
    r.filter(|k, _| {
        (any || k.role().is_allocatable_to(&spec.role)) && !spec.per_rank.scalar(&k.name).is_zero()
    })
}

struct Node<'a> {
    agent_id: &'a AgentId,
    hostname: &'a str,
    /// Usable offers, by offer id, with their usable resources and per-name totals.
    offers: Vec<(&'a Offer, Resources, Vec<u64>)>,
    totals: Vec<u64>,
    cap: u32,
}

fn group<'a>(spec: &GangSpec, need: &Need, offers: &'a [Offer]) -> Vec<Node<'a>> {
    let mut usable_offers: Vec<&Offer> = offers
        .iter()
        .filter(|o| spec.role.is_any() || o.role.as_deref().is_none_or(|r| r == spec.role.as_str()))
        .collect();
    usable_offers.sort_by(|a, b| (&a.agent_id, &a.id).cmp(&(&b.agent_id, &b.id)));
    usable_offers.dedup_by(|a, b| a.id == b.id);
    let mut nodes: Vec<Node<'a>> = Vec::new();
    for o in usable_offers {
        let res = usable(spec, &o.resources);
        let totals = need.totals(&res);
        if totals.iter().all(|t| *t == 0) {
            continue;
        }
        match nodes.last_mut() {
            Some(n) if n.agent_id == &o.agent_id => {
                for (t, x) in n.totals.iter_mut().zip(&totals) {
                    *t = t.saturating_add(*x);
                }
                n.offers.push((o, res, totals));
            }
            _ => nodes.push(Node {
                agent_id: &o.agent_id,
                hostname: &o.hostname,
                totals: totals.clone(),
                offers: vec![(o, res, totals)],
                cap: 0,
            }),
        }
    }
    for n in &mut nodes {
        n.cap = need.cap(&n.totals, spec.ranks);
    }
    nodes
}

/// A layout that does not fit: how many ranks it could place, and for `Ppn` the full nodes
/// needed and available.
struct Shortfall {
    placeable: u32,
    full_nodes: Option<(u32, u32)>,
}

/// Per-node rank counts `(node index, count)` in rank order, from capacities alone.
fn decide(spec: &GangSpec, caps: &[u32]) -> Result<Vec<(usize, u32)>, Shortfall> {
    let n_ranks = spec.ranks;
    let total: u64 = caps.iter().map(|c| u64::from(*c)).sum();
    let short = |placeable: u64| Shortfall {
        placeable: placeable.min(u64::from(n_ranks)) as u32,
        full_nodes: None,
    };
    match spec.layout {
        Layout::Ppn(ppn) => {
            let full = n_ranks / ppn;
            let rem = n_ranks % ppn;
            let fulls: Vec<usize> = (0..caps.len()).filter(|i| caps[*i] >= ppn).collect();
            let have = fulls.len() as u32;
            let mut chosen: Vec<(usize, u32)> = fulls
                .iter()
                .take(full as usize)
                .map(|i| (*i, ppn))
                .collect();
            // The remainder goes on the first agent too small for a full node but big
            // enough for it, else on the next agent with room for a full node.
            let partial = (rem > 0)
                .then(|| {
                    (0..caps.len())
                        .find(|i| caps[*i] >= rem && caps[*i] < ppn)
                        .or_else(|| fulls.get(full as usize).copied())
                })
                .flatten();
            if have >= full && (rem == 0 || partial.is_some()) {
                chosen.extend(partial.map(|i| (i, rem)));
                return Ok(chosen);
            }
            let spare_partial = rem > 0 && (0..caps.len()).any(|i| caps[i] >= rem && caps[i] < ppn);
            let mut placeable = u64::from(have.min(full)) * u64::from(ppn);
            if have > full || spare_partial {
                placeable += u64::from(rem);
            }
            Err(Shortfall {
                placeable: placeable.min(u64::from(n_ranks)) as u32,
                full_nodes: Some((full + u32::from(rem > 0 && !spare_partial), have)),
            })
        }
        _ if total < u64::from(n_ranks) => Err(short(total)),
        Layout::Spread => {
            // Water-filling: the smallest level L with Σ min(cap, L) ≥ N; every agent gets
            // min(cap, L-1), then agents with room get one more, in order, until N.
            let (mut lo, mut hi) = (1u32, n_ranks);
            let filled = |l: u32| -> u64 { caps.iter().map(|c| u64::from((*c).min(l))).sum() };
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if filled(mid) >= u64::from(n_ranks) {
                    hi = mid;
                } else {
                    lo = mid + 1;
                }
            }
            let level = lo;
            let mut counts: Vec<u32> = caps.iter().map(|c| (*c).min(level - 1)).collect();
            let mut extra = n_ranks - counts.iter().sum::<u32>();
            for (i, c) in caps.iter().enumerate() {
                if extra == 0 {
                    break;
                }
                if *c >= level {
                    counts[i] += 1;
                    extra -= 1;
                }
            }
            Ok(counts
                .into_iter()
                .enumerate()
                .filter(|(_, k)| *k > 0)
                .collect())
        }
        Layout::Pack => {
            let mut order: Vec<usize> = (0..caps.len()).filter(|i| caps[*i] > 0).collect();
            order.sort_by(|a, b| caps[*b].cmp(&caps[*a]).then(a.cmp(b)));
            let mut left = n_ranks;
            let mut out = Vec::new();
            for i in order {
                if left == 0 {
                    break;
                }
                let k = caps[i].min(left);
                out.push((i, k));
                left -= k;
            }
            Ok(out)
        }
    }
}

fn explain(spec: &GangSpec, need: &Need, nodes: &[Node<'_>], s: Shortfall) -> Unplaceable {
    let largest = nodes
        .iter()
        .filter(|n| n.cap > 0)
        .max_by(|a, b| a.cap.cmp(&b.cap).then(b.agent_id.cmp(a.agent_id)))
        .map(|n| (n.agent_id.clone(), n.cap));
    let mut sums = vec![0u64; need.0.len()];
    for n in nodes {
        for (s, t) in sums.iter_mut().zip(&n.totals) {
            *s = s.saturating_add(*t);
        }
    }
    let limited_by = need
        .0
        .iter()
        .zip(&sums)
        .min_by_key(|((_, per), have)| **have / *per)
        .filter(|((_, per), have)| **have / *per < u64::from(spec.ranks))
        .map(|((name, _), _)| name.clone());
    Unplaceable {
        ranks: spec.ranks,
        layout: spec.layout,
        placeable: s.placeable,
        agents: nodes.len(),
        agents_with_room: nodes.iter().filter(|n| n.cap > 0).count(),
        largest,
        limited_by,
        full_nodes: s.full_nodes,
    }
}

/// Carves `k` ranks from the fewest of the node's offers (in offer id order) that hold them.
fn carve(spec: &GangSpec, need: &Need, node: &Node<'_>, k: u32, first_rank: u32) -> NodePlacement {
    let mut sums = vec![0u64; need.0.len()];
    let mut used = 0;
    for (_, _, totals) in &node.offers {
        for (s, t) in sums.iter_mut().zip(totals) {
            *s = s.saturating_add(*t);
        }
        used += 1;
        if need.cap(&sums, k) >= k {
            break;
        }
    }
    let offers = &node.offers[..used];
    let mut rest = Resources::new();
    for (_, r, _) in offers {
        // Usable resources of one agent's offers never overflow when summed (fixed-point
        // u64 milli-units); an error here would mean a corrupt offer, which then fits less.
        let _ = rest.add_assign(r);
    }
    let mut ranks = Vec::with_capacity(k as usize);
    for _ in 0..k {
        let (taken, left) = matching::take(&spec.per_rank, &rest)
            .expect("capacity was computed from these totals, so every rank fits");
        ranks.push(taken);
        rest = left;
    }
    NodePlacement {
        agent_id: node.agent_id.clone(),
        hostname: node.hostname.to_string(),
        offer_ids: offers.iter().map(|(o, _, _)| o.id.clone()).collect(),
        first_rank,
        ranks,
    }
}

/// Whether any rank of `spec` could use part of `offer` (its role and resource names fit):
/// the queue holds such offers while a gang accumulates.
pub fn useful(spec: &GangSpec, offer: &Offer) -> bool {
    (spec.role.is_any()
        || offer
            .role
            .as_deref()
            .is_none_or(|r| r == spec.role.as_str()))
        && !usable(spec, &offer.resources).is_empty()
}

/// The offers `spec` could do without one at a time: those on which it cannot place a rank,
/// and those whose agent would hold as many of its ranks without them. Backfill tries
/// these first so it does not take what a waiting head gang is counting on.
pub fn spare(spec: &GangSpec, offers: &[Offer]) -> Vec<Offer> {
    let need = Need::of(spec);
    let nodes = group(spec, &need, offers);
    let mut counted: Vec<&OfferId> = Vec::new();
    for n in &nodes {
        for (o, _, t) in &n.offers {
            let without: Vec<u64> = n
                .totals
                .iter()
                .zip(t)
                .map(|(a, b)| a.saturating_sub(*b))
                .collect();
            if need.cap(&without, spec.ranks) < n.cap {
                counted.push(&o.id);
            }
        }
    }
    counted.sort();
    offers
        .iter()
        .filter(|o| counted.binary_search(&&o.id).is_err())
        .cloned()
        .collect()
}
