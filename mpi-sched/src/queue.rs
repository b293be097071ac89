//! The gang queue: several gangs competing for the offers this framework holds, as a pure
//! state machine — events in (`submit`, `on_offers`, `on_rescind`, `on_tick`,
//! `gang_finished`, `cancel`) and SDK [`Action`]s out. Time is an input.
//!
//! Rules, applied on every event that can change the outcome:
//!
//! 1. **Order.** Waiting gangs are tried in a strict total order: priority (higher first),
//!    then submission order. The order never depends on offers, so two gangs cannot take
//!    turns blocking each other (no livelock).
//! 2. **All or nothing.** A gang launches only when [`place`] finds all its ranks in the
//!    offers held *now*; all its LAUNCHes (one per agent) are emitted in the same step.
//! 3. **The head accumulates.** The first gang in order that does not fit is the *head*.
//!    Held offers useful to some waiting gang are kept, the rest declined.
//! 4. **Backfill never sets the head back.** A gang behind the head may launch only if,
//!    without the offers it would use, the head could still place as many ranks as before
//!    ([`placeable`]). So a stream of small gangs cannot eat what a large head is
//!    accumulating; they may use what it cannot (a too-small remainder, another role's
//!    offers, resources it does not ask for). Only a higher *priority* overtakes it.
//! 5. **Bounded hold (no deadlock).** No offer is held longer than `hold`: when the oldest
//!    held offer reaches it and the head still does not fit, every held offer is declined
//!    with a short refusal, so other frameworks (or other gang queues) get the resources,
//!    and accumulation restarts with the next offers.
//! 6. When no gang waits, offers are declined at once and [`GangQueue::wants_offers`] is
//!    false (the driver SUPPRESSes).
//!
//! The queue only sees offers, so it cannot tell a head that will fit later from one that
//! never can: gangs larger than the cluster must be refused at submit
//! ([`can_ever_fit`](crate::can_ever_fit)), and re-checked when agents leave, or they block
//! every lower-or-equal-priority gang that would take their resources until cancelled.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use tessera_framework::{Action, Offer};
use tessera_types::{AgentId, OfferId, Resources, TaskId, TaskInfo, Time};

use crate::error::{Error, Result};
use crate::place::{Placement, Unplaceable, place, placeable, spare, useful};
use crate::spec::GangSpec;

/// Longest an offer is held while a gang accumulates.
pub const DEFAULT_HOLD: Duration = Duration::from_secs(10);
/// Refusal on offers released at the end of a hold window: short, so they come back.
pub const DEFAULT_RELEASE_REFUSE: Duration = Duration::from_secs(1);
/// Refusal on offers no waiting gang can use.
pub const DEFAULT_IDLE_REFUSE: Duration = Duration::from_secs(5);

/// A gang's id within one queue; task ids are `mpi.<gang>.<rank>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GangId(pub u64);

impl fmt::Display for GangId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl GangId {
    /// The task id of `rank`.
    pub fn task_id(self, rank: u32) -> TaskId {
        TaskId::new(format!("mpi.{}.{rank}", self.0)).expect("mpi.<n>.<n> is a valid task id")
    }

    /// The gang and rank of a task id made by [`GangId::task_id`].
    pub fn parse_task_id(id: &TaskId) -> Option<(GangId, u32)> {
        let rest = id.as_str().strip_prefix("mpi.")?;
        let (g, r) = rest.split_once('.')?;
        Some((GangId(g.parse().ok()?), r.parse().ok()?))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    pub hold: Duration,
    pub release_refuse: Duration,
    pub idle_refuse: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            hold: DEFAULT_HOLD,
            release_refuse: DEFAULT_RELEASE_REFUSE,
            idle_refuse: DEFAULT_IDLE_REFUSE,
        }
    }
}

/// Why a waiting gang has not launched, for `why`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waiting {
    /// Not tried against any offer yet.
    New,
    /// The held offers do not hold it.
    Unplaceable(Unplaceable),
    /// It would fit, but only by taking offers the head gang is accumulating.
    BehindHead(GangId),
}

impl fmt::Display for Waiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Waiting::New => f.write_str("waiting for offers"),
            Waiting::Unplaceable(u) => write!(f, "does not fit the held offers: {u}"),
            Waiting::BehindHead(h) => write!(
                f,
                "fits, but would take offers gang {h} (ahead in the queue) is accumulating"
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GangState {
    Waiting(Waiting),
    /// Launched: every rank's task and agent.
    Running(Vec<(TaskId, AgentId)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct GangEntry {
    pub id: GangId,
    pub spec: GangSpec,
    pub state: GangState,
}

/// See the module doc.
#[derive(Debug, Clone, PartialEq)]
pub struct GangQueue {
    config: QueueConfig,
    next_id: u64,
    gangs: BTreeMap<GangId, GangEntry>,
    /// Held offers and when each arrived.
    held: BTreeMap<OfferId, (Offer, Time)>,
    /// Ranks per node, in node order, of every running gang.
    layouts: BTreeMap<GangId, Vec<u32>>,
}

impl GangQueue {
    pub fn new(config: QueueConfig) -> Self {
        GangQueue {
            config,
            next_id: 1,
            gangs: BTreeMap::new(),
            held: BTreeMap::new(),
            layouts: BTreeMap::new(),
        }
    }

    /// Queues a validated gang. Refusing gangs the cluster can never hold is the caller's
    /// job ([`can_ever_fit`](crate::can_ever_fit)): the queue only sees offers.
    pub fn submit(&mut self, spec: GangSpec) -> Result<GangId> {
        spec.validate()?;
        let id = GangId(self.next_id);
        self.next_id += 1;
        self.gangs.insert(
            id,
            GangEntry {
                id,
                spec,
                state: GangState::Waiting(Waiting::New),
            },
        );
        Ok(id)
    }

    /// New offers arrived at `now`.
    pub fn on_offers(&mut self, offers: Vec<Offer>, now: Time) -> Vec<Action> {
        for o in offers {
            self.held.entry(o.id.clone()).or_insert((o, now));
        }
        self.step(now)
    }

    /// The master withdrew an offer; it is forgotten (nothing to decline).
    pub fn on_rescind(&mut self, offer_id: &OfferId) {
        self.held.remove(offer_id);
    }

    /// Time passed: releases offers held too long.
    pub fn on_tick(&mut self, now: Time) -> Vec<Action> {
        self.step(now)
    }

    /// A running gang ended (all its tasks are terminal); forgets it.
    pub fn gang_finished(&mut self, id: GangId) -> Result<()> {
        self.layouts.remove(&id);
        self.gangs
            .remove(&id)
            .map(|_| ())
            .ok_or(Error::UnknownGang(id))
    }

    /// Removes a gang: a waiting one simply leaves the queue, a running one's ranks are
    /// killed (the caller reports [`GangQueue::gang_finished`] when they are gone).
    pub fn cancel(&mut self, id: GangId, now: Time) -> Result<Vec<Action>> {
        let entry = self.gangs.get(&id).ok_or(Error::UnknownGang(id))?;
        match &entry.state {
            GangState::Running(tasks) => Ok(tasks
                .iter()
                .map(|(t, a)| Action::Kill {
                    task_id: t.clone(),
                    agent_id: Some(a.clone()),
                })
                .collect()),
            GangState::Waiting(_) => {
                self.gangs.remove(&id);
                Ok(self.step(now))
            }
        }
    }

    /// Whether any gang waits for offers (the driver suppresses offers otherwise).
    pub fn wants_offers(&self) -> bool {
        self.gangs
            .values()
            .any(|g| matches!(g.state, GangState::Waiting(_)))
    }

    pub fn gang(&self, id: GangId) -> Option<&GangEntry> {
        self.gangs.get(&id)
    }

    /// Waiting gangs in the order they are tried (the first one is the head when it does
    /// not fit).
    pub fn waiting(&self) -> Vec<GangId> {
        let mut ids: Vec<(i32, GangId)> = self
            .gangs
            .values()
            .filter(|g| matches!(g.state, GangState::Waiting(_)))
            .map(|g| (g.spec.priority, g.id))
            .collect();
        ids.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        ids.into_iter().map(|(_, id)| id).collect()
    }

    /// The id the next [`GangQueue::submit`] will return.
    pub fn next_id(&self) -> GangId {
        GangId(self.next_id)
    }

    /// Running gangs and their ranks' tasks and agents, in rank order.
    pub fn running(&self) -> impl Iterator<Item = (GangId, &[(TaskId, AgentId)])> {
        self.gangs.values().filter_map(|g| match &g.state {
            GangState::Running(tasks) => Some((g.id, tasks.as_slice())),
            GangState::Waiting(_) => None,
        })
    }

    /// Ranks per node, in node order, of a running gang (ranks are numbered contiguously
    /// per node).
    pub fn layout(&self, id: GangId) -> Option<&[u32]> {
        self.layouts.get(&id).map(Vec::as_slice)
    }

    /// Whether the queue holds this offer (for a gang still accumulating).
    pub fn holds(&self, offer: &OfferId) -> bool {
        self.held.contains_key(offer)
    }

    /// Offers held now, in offer id order.
    pub fn held(&self) -> impl Iterator<Item = &Offer> {
        self.held.values().map(|(o, _)| o)
    }

    fn step(&mut self, now: Time) -> Vec<Action> {
        let mut actions = Vec::new();
        let mut avail: Vec<Offer> = self.held.values().map(|(o, _)| o.clone()).collect();
        let mut head: Option<(GangId, u32)> = None;
        for id in self.waiting() {
            let spec = &self.gangs[&id].spec;
            let outcome = match head {
                None => place(spec, &avail).map_err(Waiting::Unplaceable),
                Some((h, before)) => {
                    // Backfill: prefer what the head can spare; accept a placement only if
                    // the head could still place as many ranks without its offers.
                    let head_spec = &self.gangs[&h].spec;
                    let keeps_head =
                        |p: &Placement| placeable(head_spec, &without(&avail, p)) >= before;
                    match place(spec, &spare(head_spec, &avail)) {
                        Ok(p) if keeps_head(&p) => Ok(p),
                        _ => match place(spec, &avail) {
                            Ok(p) if keeps_head(&p) => Ok(p),
                            Ok(_) => Err(Waiting::BehindHead(h)),
                            Err(u) => Err(Waiting::Unplaceable(u)),
                        },
                    }
                }
            };
            match outcome {
                Ok(p) => {
                    avail = without(&avail, &p);
                    for oid in p.offer_ids() {
                        self.held.remove(oid);
                    }
                    let tasks = launch(id, spec, &p, &mut actions);
                    self.layouts
                        .insert(id, p.nodes.iter().map(|n| n.ranks.len() as u32).collect());
                    self.set_state(id, GangState::Running(tasks));
                }
                Err(why) => {
                    if head.is_none() {
                        head = Some((id, placeable(spec, &avail)));
                    }
                    self.set_state(id, GangState::Waiting(why));
                }
            }
        }
        let oldest = self.held.values().map(|(_, t)| *t).min();
        let expired = oldest.is_some_and(|t| now.since(t) >= self.config.hold);
        let (release, idle): (Vec<OfferId>, Vec<OfferId>) = if head.is_none() || expired {
            let all = self.held.keys().cloned().collect();
            if head.is_none() {
                (Vec::new(), all)
            } else {
                (all, Vec::new())
            }
        } else {
            let waiting: Vec<&GangSpec> = self
                .gangs
                .values()
                .filter(|g| matches!(g.state, GangState::Waiting(_)))
                .map(|g| &g.spec)
                .collect();
            let idle = self
                .held
                .values()
                .filter(|(o, _)| !waiting.iter().any(|s| useful(s, o)))
                .map(|(o, _)| o.id.clone())
                .collect();
            (Vec::new(), idle)
        };
        for (ids, refuse) in [
            (release, self.config.release_refuse),
            (idle, self.config.idle_refuse),
        ] {
            if ids.is_empty() {
                continue;
            }
            for id in &ids {
                self.held.remove(id);
            }
            actions.push(Action::Decline {
                offer_ids: ids,
                refuse,
            });
        }
        actions
    }

    fn set_state(&mut self, id: GangId, state: GangState) {
        if let Some(g) = self.gangs.get_mut(&id) {
            g.state = state;
        }
    }
}

/// `offers` without those `p` uses.
fn without(offers: &[Offer], p: &Placement) -> Vec<Offer> {
    let used: std::collections::BTreeSet<&OfferId> = p.offer_ids().collect();
    offers
        .iter()
        .filter(|o| !used.contains(&o.id))
        .cloned()
        .collect()
}

/// One LAUNCH per node; returns every task and its agent (one per rank, or one per node
/// with [`GangSpec::per_node`], named after the node's first rank).
fn launch(
    id: GangId,
    spec: &GangSpec,
    p: &Placement,
    actions: &mut Vec<Action>,
) -> Vec<(TaskId, AgentId)> {
    let mut tasks_out = Vec::with_capacity(p.size as usize);
    for (index, node) in p.nodes.iter().enumerate() {
        let mut tasks = Vec::with_capacity(node.ranks.len());
        let mut task = |rank: u32, resources: Resources, name: String, extra: &[(&str, String)]| {
            let mut command = spec.rank_command(rank);
            let env = &mut command.environment;
            env.insert("PMI_SIZE".into(), p.size.to_string());
            env.insert("TESSERA_MPI_GANG".into(), id.to_string());
            for (k, v) in extra {
                env.insert((*k).into(), v.clone());
            }
            let task_id = id.task_id(rank);
            tasks_out.push((task_id.clone(), node.agent_id.clone()));
            tasks.push(TaskInfo {
                name,
                task_id,
                agent_id: node.agent_id.clone(),
                resources,
                command,
                executor_id: None,
                kill_grace_ms: None,
                container: None,
                health_check: None,
                executor: None,
            });
        };
        if spec.per_node {
            let mut total = Resources::default();
            for r in &node.ranks {
                // Each rank's resources came out of this node's offers, so their sum fits.
                let _ = total.add_assign(r);
            }
            task(
                node.first_rank,
                total,
                format!("node-{index}"),
                &[
                    ("TESSERA_MPI_NODE", index.to_string()),
                    ("TESSERA_MPI_NODE_RANKS", node.ranks.len().to_string()),
                ],
            );
        } else {
            for (rank, resources) in node.rank_range().zip(&node.ranks) {
                task(
                    rank,
                    resources.clone(),
                    format!("rank-{rank}"),
                    &[("PMI_RANK", rank.to_string()), ("PMI_ID", rank.to_string())],
                );
            }
        }
        actions.push(Action::Launch {
            offer_ids: node.offer_ids.clone(),
            tasks,
        });
    }
    tasks_out
}
