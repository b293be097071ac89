//! The MPI framework's scheduling logic: the [`GangQueue`] (placement, holds, order) and a
//! [`GangRun`] per launched gang (failure and time-limit supervision), behind the SDK's
//! pure [`Scheduler`] trait. Calls from outside the event stream (PMI events, cancel)
//! queue their actions in an outbox that the next event — the edge wakes the driver with a
//! Tick — returns.

use std::collections::BTreeMap;
use std::time::Duration;

use tessera_framework::{Action, Scheduler, SchedulerEvent};
use tessera_types::{AgentId, OfferId, Time};

use crate::error::{Error, Result};
use crate::pmi::PmiEvent;
use crate::queue::{GangId, GangQueue, GangState, QueueConfig, Waiting};
use crate::spec::GangSpec;
use crate::supervise::{GangRun, Outcome};

/// Where a gang stands, for the edge and for `why`.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase<'a> {
    Waiting(&'a Waiting),
    Running(&'a GangRun),
    /// Ended: the outcome, kept until [`MpiFramework::forget`].
    Ended(&'a Outcome),
}

/// See the module doc.
#[derive(Debug, Clone)]
pub struct MpiFramework {
    queue: GangQueue,
    limits: BTreeMap<GangId, Option<Duration>>,
    runs: BTreeMap<GangId, GangRun>,
    ended: BTreeMap<GangId, Outcome>,
    /// Gangs launched since the last [`MpiFramework::take_launched`], with their ranks
    /// per node in node order.
    launched: Vec<(GangId, Vec<u32>)>,
    outbox: Vec<Action>,
}

impl MpiFramework {
    pub fn new(config: QueueConfig) -> MpiFramework {
        MpiFramework {
            queue: GangQueue::new(config),
            limits: BTreeMap::new(),
            runs: BTreeMap::new(),
            ended: BTreeMap::new(),
            launched: Vec::new(),
            outbox: Vec::new(),
        }
    }

    /// Queues a gang; `time_limit` counts from its launch.
    pub fn submit(&mut self, spec: GangSpec, time_limit: Option<Duration>) -> Result<GangId> {
        let id = self.queue.submit(spec)?;
        self.limits.insert(id, time_limit);
        Ok(id)
    }

    /// The id the next [`MpiFramework::submit`] will return.
    pub fn next_id(&self) -> GangId {
        self.queue.next_id()
    }

    pub fn phase(&self, id: GangId) -> Option<Phase<'_>> {
        if let Some(o) = self.ended.get(&id) {
            return Some(Phase::Ended(o));
        }
        if let Some(r) = self.runs.get(&id) {
            return Some(Phase::Running(r));
        }
        match &self.queue.gang(id)?.state {
            GangState::Waiting(w) => Some(Phase::Waiting(w)),
            GangState::Running(_) => None,
        }
    }

    /// Gangs launched since the last call, with their ranks per node (node order).
    pub fn take_launched(&mut self) -> Vec<(GangId, Vec<u32>)> {
        std::mem::take(&mut self.launched)
    }

    /// Gang `id`'s launcher process (mpiexec) exited with `code`.
    pub fn on_launcher_exit(&mut self, id: GangId, code: i32, now: Time) {
        if let Some(run) = self.runs.get_mut(&id) {
            let kills = run.on_launcher_exit(code, now);
            self.outbox.extend(kills);
            self.retire(id);
        }
    }

    /// A rank of gang `id` exited with `code` (reported by its wrapper under a launcher).
    pub fn on_rank_exit(&mut self, id: GangId, rank: u32, code: i32, now: Time) {
        if let Some(run) = self.runs.get_mut(&id) {
            let kills = run.on_rank_exit(rank, code, now);
            self.outbox.extend(kills);
            self.retire(id);
        }
    }

    /// A PMI event of gang `id`'s job.
    pub fn on_pmi(&mut self, id: GangId, ev: &PmiEvent, now: Time) {
        if let Some(run) = self.runs.get_mut(&id) {
            let kills = run.on_pmi(ev, now);
            self.outbox.extend(kills);
            self.retire(id);
        }
    }

    /// Cancels a waiting or running gang.
    pub fn cancel(&mut self, id: GangId, now: Time) -> Result<()> {
        if let Some(run) = self.runs.get_mut(&id) {
            let kills = run.cancel(now);
            self.outbox.extend(kills);
            self.retire(id);
            return Ok(());
        }
        if self.ended.contains_key(&id) {
            return Ok(());
        }
        let actions = self.queue.cancel(id, now)?;
        self.outbox.extend(actions);
        self.limits.remove(&id);
        self.ended.insert(id, Outcome::Cancelled);
        Ok(())
    }

    /// Tears the framework down with the next event (every task is killed, the driver
    /// stops).
    pub fn teardown(&mut self) {
        self.outbox.push(Action::Teardown);
    }

    /// Drops an ended gang's outcome.
    pub fn forget(&mut self, id: GangId) -> Result<Outcome> {
        self.ended.remove(&id).ok_or(Error::UnknownGang(id))
    }

    /// Moves a finished run out of the queue once nothing of it runs.
    fn retire(&mut self, id: GangId) {
        let done = self.runs.get(&id).is_some_and(GangRun::is_done);
        if !done {
            return;
        }
        if let Some(run) = self.runs.remove(&id)
            && let Some(o) = run.outcome()
        {
            self.ended.insert(id, o.clone());
        }
        // The queue forgets the gang; an unknown id here only means it already did.
        let _ = self.queue.gang_finished(id);
        self.limits.remove(&id);
    }

    /// Turns gangs the queue just launched into supervised runs.
    fn adopt_launches(&mut self, now: Time) {
        let started: Vec<(GangId, Vec<(tessera_types::TaskId, AgentId)>)> = self
            .queue
            .running()
            .filter(|(id, _)| !self.runs.contains_key(id) && !self.ended.contains_key(id))
            .map(|(id, tasks)| (id, tasks.to_vec()))
            .collect();
        for (id, tasks) in started {
            let limit = self.limits.get(&id).copied().flatten();
            let layout = self
                .queue
                .layout(id)
                .map(<[u32]>::to_vec)
                .unwrap_or_default();
            let per_node = self.queue.gang(id).is_some_and(|g| g.spec.per_node);
            self.launched.push((id, layout));
            let run = GangRun::new(id, &tasks, now, limit);
            let run = if per_node { run.with_launcher() } else { run };
            self.runs.insert(id, run);
        }
    }
}

impl Scheduler for MpiFramework {
    fn on_event(&mut self, ev: &SchedulerEvent, now: Time) -> Vec<Action> {
        let mut actions = std::mem::take(&mut self.outbox);
        match ev {
            SchedulerEvent::Offers(offers) => {
                actions.extend(self.queue.on_offers(offers.clone(), now));
                self.adopt_launches(now);
            }
            SchedulerEvent::Rescind(id) => self.queue.on_rescind(id),
            SchedulerEvent::Update(status) => {
                if let Some((id, rank)) = GangId::parse_task_id(&status.task_id)
                    && let Some(run) = self.runs.get_mut(&id)
                {
                    actions.extend(run.on_update(rank, status, now));
                    self.retire(id);
                }
            }
            SchedulerEvent::Tick => {
                actions.extend(self.queue.on_tick(now));
                self.adopt_launches(now);
                let ids: Vec<GangId> = self.runs.keys().copied().collect();
                for id in ids {
                    if let Some(run) = self.runs.get_mut(&id) {
                        actions.extend(run.on_tick(now));
                    }
                    self.retire(id);
                }
            }
            SchedulerEvent::Subscribed { .. }
            | SchedulerEvent::Failure { .. }
            | SchedulerEvent::Error(_)
            | SchedulerEvent::Disconnected => {}
        }
        actions
    }

    fn wants_offers(&self) -> bool {
        self.queue.wants_offers()
    }

    fn holds(&self, offer: &OfferId) -> bool {
        self.queue.holds(offer)
    }
}
