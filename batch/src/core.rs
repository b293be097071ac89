//! The batch scheduler's decisions, pure: (jobs, event, `now`) → (new jobs, actions). No
//! I/O and no clock; the [`service`](crate::service) persists what changed (see
//! [`Core::take_changes`]) before any action leaves, so a crash loses nothing and a
//! restart runs nothing twice.
//!
//! Rules, following Slurm where it has one:
//! * tasks start in priority order (higher first), then job id, then array index; an array
//!   never has more than its `%cap` tasks active; held jobs and jobs whose dependencies are
//!   unmet wait;
//! * a failed task is retried after `backoff · 2^(failures-1)` (capped) until `retries` are
//!   used up; a task lost before it ever ran is relaunched without counting a failure;
//! * a task past its time limit is killed and ends TIMEOUT; a cancelled job's tasks are
//!   killed and end CANCELLED;
//! * a job whose dependency can no longer be satisfied is cancelled with the reason
//!   `DependencyNeverSatisfied`, and so, in turn, are the jobs that depend on it.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use tessera_framework::{Action, Offer, matching};
use tessera_types::{
    AgentId, CommandInfo, ContainerInfo, Resources, TaskId, TaskInfo, TaskStatus, Uri,
};

use crate::error::{Error, Result};
use crate::model::{
    Job, JobState, KillReason, MAX_LOST, Millis, TaskRec, TaskState, parse_task_id, task_id,
};
use crate::spec::{Command, DepKind, JobId, JobRequest, JobSpec, Limits};

/// A kill with no terminal update after this long is sent again.
const KILL_RESEND_MS: Millis = 10_000;
/// A launch with no update after this long is reconciled explicitly.
const LAUNCH_RECONCILE_MS: Millis = 30_000;
/// Most tasks of one job considered for one offer (an offer rarely fits more).
const MAX_SLOTS_PER_OFFER: usize = 4096;
/// How long the largest offer seen is remembered for `why`.
const OFFER_MEMORY_MS: Millis = 60_000;

/// What changed since the last [`Core::take_changes`]: the rows to write.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    pub jobs: BTreeSet<JobId>,
    pub tasks: BTreeSet<(JobId, usize)>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty() && self.tasks.is_empty()
    }
}

/// Where a job's dependencies stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DepStatus {
    Satisfied,
    Waiting(JobId),
    Never(JobId),
}

#[derive(Debug)]
pub struct Core {
    jobs: BTreeMap<JobId, Job>,
    /// Jobs that are not terminal (schedules included).
    live: BTreeSet<JobId>,
    next_id: u64,
    limits: Limits,
    changes: Changes,
    /// Largest offer seen recently: (when, cpus, mem, role).
    largest_offer: Option<(Millis, f64, f64)>,
    /// Tasks reconciled because a launch went unanswered: when.
    reconciled: BTreeMap<String, Millis>,
    /// Job → the live jobs that depend on it.
    dependents: BTreeMap<JobId, Vec<JobId>>,
    /// Per live job: bookkeeping that keeps big arrays from being scanned on every event.
    tally: HashMap<JobId, Tally>,
}

/// Per-job bookkeeping: every task before `cursor` is neither PENDING nor BACKOFF (so scans
/// for work start there), and `active` tasks hold resources (LAUNCHING, RUNNING, KILLING).
#[derive(Debug, Default)]
struct Tally {
    cursor: Cell<usize>,
    active: usize,
}

impl Tally {
    fn of(job: &Job) -> Tally {
        Tally {
            cursor: Cell::new(0),
            active: job.tasks.iter().filter(|t| t.state.is_active()).count(),
        }
    }
}

fn scalar(r: &Resources, name: &str) -> f64 {
    r.scalar(name).as_f64()
}

impl Core {
    pub fn new(limits: Limits) -> Self {
        Core {
            jobs: BTreeMap::new(),
            live: BTreeSet::new(),
            next_id: 1,
            limits,
            changes: Changes::default(),
            largest_offer: None,
            reconciled: BTreeMap::new(),
            dependents: BTreeMap::new(),
            tally: HashMap::new(),
        }
    }

    /// Rebuilds the state from stored jobs (after a restart).
    pub fn restore(limits: Limits, jobs: Vec<Job>) -> Self {
        let mut core = Core::new(limits);
        for j in jobs {
            core.next_id = core.next_id.max(j.id.0 + 1);
            if !j.state.is_terminal() {
                core.live.insert(j.id);
                core.tally.insert(j.id, Tally::of(&j));
                for d in &j.spec.dependencies {
                    core.dependents.entry(d.job).or_default().push(j.id);
                }
            }
            core.jobs.insert(j.id, j);
        }
        core
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn get(&self, id: JobId) -> Option<&Job> {
        self.jobs.get(&id)
    }

    pub fn jobs(&self) -> impl DoubleEndedIterator<Item = &Job> {
        self.jobs.values()
    }

    /// Jobs that are not finished (schedules included).
    pub fn live_jobs(&self) -> impl Iterator<Item = &Job> {
        self.live.iter().filter_map(|id| self.jobs.get(id))
    }

    /// The rows to persist since the last call.
    pub fn take_changes(&mut self) -> Changes {
        std::mem::take(&mut self.changes)
    }

    /// The id the next submitted job will get.
    pub fn next_id(&self) -> JobId {
        JobId(self.next_id)
    }

    fn touch(&mut self, id: JobId) {
        self.changes.jobs.insert(id);
    }

    fn touch_task(&mut self, id: JobId, slot: usize) {
        self.changes.tasks.insert((id, slot));
    }

    // ---- user commands -------------------------------------------------------------

    /// Validates and queues a job. Nothing changes on error.
    pub fn submit(&mut self, req: &JobRequest, now: Millis) -> Result<JobId> {
        let spec = req.validate(&self.limits)?;
        for (i, d) in spec.dependencies.iter().enumerate() {
            if !self.jobs.contains_key(&d.job) {
                return Err(Error::Invalid {
                    field: format!("dependency[{i}]"),
                    message: format!("job {} does not exist", d.job),
                });
            }
        }
        let id = JobId(self.next_id);
        self.next_id += 1;
        let job = self.new_job(id, spec, req.hold, now, None);
        self.insert_job(job, now);
        Ok(id)
    }

    fn new_job(
        &self,
        id: JobId,
        spec: JobSpec,
        held: bool,
        now: Millis,
        parent: Option<JobId>,
    ) -> Job {
        let scheduled = spec.schedule.is_some();
        let tasks = if scheduled {
            vec![]
        } else {
            match &spec.array {
                Some(a) => a.indices.iter().map(|i| TaskRec::new(*i)).collect(),
                None => vec![TaskRec::new(0)],
            }
        };
        Job {
            id,
            state: if scheduled {
                JobState::Scheduled
            } else {
                JobState::Pending
            },
            spec,
            held,
            cancel_requested: false,
            submitted_at: now,
            started_at: None,
            ended_at: None,
            reason: None,
            parent,
            last_fire: if scheduled { Some(now) } else { None },
            tasks,
        }
    }

    fn insert_job(&mut self, job: Job, now: Millis) {
        let id = job.id;
        self.live.insert(id);
        for slot in 0..job.tasks.len() {
            self.changes.tasks.insert((id, slot));
        }
        for d in &job.spec.dependencies {
            self.dependents.entry(d.job).or_default().push(id);
        }
        let has_deps = !job.spec.dependencies.is_empty();
        self.tally.insert(id, Tally::of(&job));
        self.jobs.insert(id, job);
        self.touch(id);
        // A dependency may already be unsatisfiable.
        if has_deps {
            self.doom_if_unsatisfiable(id, now);
        }
    }

    /// Cancels a job: waiting tasks end CANCELLED, active ones are marked for killing (the
    /// kills go out on the next tick). A schedule stops firing (the jobs it already started
    /// are left alone).
    pub fn cancel(&mut self, id: JobId, now: Millis) -> Result<()> {
        let job = self.jobs.get_mut(&id).ok_or(Error::UnknownJob(id))?;
        if job.state.is_terminal() {
            return Err(Error::Conflict {
                job: id,
                state: job.state.as_str().into(),
                message: "it has already ended; nothing to cancel".into(),
            });
        }
        if job.cancel_requested {
            return Ok(());
        }
        job.cancel_requested = true;
        job.reason = Some("cancelled by user".into());
        self.touch(id);
        self.kill_job_tasks(id, KillReason::Cancel, now);
        self.refresh(id, now);
        Ok(())
    }

    /// Waiting tasks end now; active ones become KILLING with no kill sent yet, which the
    /// next [`Core::on_tick`] sends.
    fn kill_job_tasks(&mut self, id: JobId, why: KillReason, now: Millis) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let mut touched = Vec::new();
        for (slot, t) in job.tasks.iter_mut().enumerate() {
            if t.state.is_waiting() {
                t.state = TaskState::Cancelled;
                t.ended_at = Some(now);
                touched.push(slot);
            } else if t.state.is_active() && t.kill.is_none() {
                t.kill = Some(why);
                t.state = TaskState::Killing;
                t.kill_sent_at = None;
                touched.push(slot);
            }
        }
        for slot in touched {
            self.touch_task(id, slot);
        }
    }

    /// Holds a pending job (`scontrol hold`): it will not start until released.
    pub fn hold(&mut self, id: JobId) -> Result<()> {
        let job = self.jobs.get_mut(&id).ok_or(Error::UnknownJob(id))?;
        match job.state {
            JobState::Pending | JobState::Scheduled => {
                job.held = true;
                self.touch(id);
                Ok(())
            }
            s => Err(Error::Conflict {
                job: id,
                state: s.as_str().into(),
                message: "only a pending job or a schedule can be held".into(),
            }),
        }
    }

    pub fn release(&mut self, id: JobId) -> Result<()> {
        let job = self.jobs.get_mut(&id).ok_or(Error::UnknownJob(id))?;
        if !job.held {
            return Err(Error::Conflict {
                job: id,
                state: job.state.as_str().into(),
                message: "it is not held".into(),
            });
        }
        job.held = false;
        self.touch(id);
        Ok(())
    }

    // ---- dependencies --------------------------------------------------------------

    pub fn dep_status(&self, job: &Job) -> DepStatus {
        for d in &job.spec.dependencies {
            let Some(dep) = self.jobs.get(&d.job) else {
                return DepStatus::Never(d.job);
            };
            if !dep.state.is_terminal() {
                return DepStatus::Waiting(d.job);
            }
            let ok = dep.state == JobState::Completed;
            let satisfied = match d.kind {
                DepKind::AfterOk => ok,
                DepKind::AfterNotOk => !ok,
                DepKind::AfterAny => true,
            };
            if !satisfied {
                return DepStatus::Never(d.job);
            }
        }
        DepStatus::Satisfied
    }

    /// Cancels a pending job whose dependencies can never be met; returns whether it ended.
    fn doom(&mut self, id: JobId, now: Millis) -> bool {
        let Some(j) = self.jobs.get(&id) else {
            return false;
        };
        if j.state != JobState::Pending {
            return false;
        }
        let DepStatus::Never(on) = self.dep_status(j) else {
            return false;
        };
        if let Some(j) = self.jobs.get_mut(&id) {
            j.cancel_requested = true;
            j.reason = Some(format!(
                "DependencyNeverSatisfied: job {on} ended in a state the dependency excludes"
            ));
        }
        self.kill_job_tasks(id, KillReason::Cancel, now);
        self.touch(id);
        self.refresh_state(id, now)
    }

    fn doom_if_unsatisfiable(&mut self, id: JobId, now: Millis) {
        if self.doom(id, now) {
            self.settle_dependents(id, now);
        }
    }

    /// A job ended: its dependents that can now never start are cancelled, and theirs in
    /// turn.
    fn settle_dependents(&mut self, ended: JobId, now: Millis) {
        let mut work = vec![ended];
        while let Some(id) = work.pop() {
            for d in self.dependents.remove(&id).unwrap_or_default() {
                if self.doom(d, now) {
                    work.push(d);
                }
            }
        }
    }

    /// Recomputes a job's state from its tasks; when it ends, settles its dependents.
    fn refresh(&mut self, id: JobId, now: Millis) {
        if self.refresh_state(id, now) {
            self.settle_dependents(id, now);
        }
    }

    /// Returns whether the job just ended.
    fn refresh_state(&mut self, id: JobId, now: Millis) -> bool {
        let Some(job) = self.jobs.get_mut(&id) else {
            return false;
        };
        let before = job.state;
        if before == JobState::Scheduled {
            if job.cancel_requested {
                job.state = JobState::Cancelled;
                job.ended_at = Some(now);
                self.live.remove(&id);
                self.changes.jobs.insert(id);
                return true;
            }
            return false;
        }
        let active = self.tally.get(&id).map_or(0, |t| t.active);
        let all_done = active == 0 && Self::first_waiting(self.tally.get(&id), job).is_none();
        let after = if all_done {
            if job.tasks.iter().any(|t| t.state == TaskState::Timeout) {
                JobState::Timeout
            } else if job.cancel_requested
                || job.tasks.iter().any(|t| t.state == TaskState::Cancelled)
            {
                JobState::Cancelled
            } else if job.tasks.iter().any(|t| t.state == TaskState::Failed) {
                JobState::Failed
            } else {
                JobState::Completed
            }
        } else if active > 0 || job.started_at.is_some() {
            JobState::Running
        } else {
            JobState::Pending
        };
        if after == before {
            return false;
        }
        job.state = after;
        if after == JobState::Running && job.started_at.is_none() {
            job.started_at = Some(now);
        }
        self.changes.jobs.insert(id);
        if after.is_terminal() {
            job.ended_at = Some(now);
            self.live.remove(&id);
            self.tally.remove(&id);
            return true;
        }
        false
    }

    /// The first task at or after the job's cursor that is PENDING or BACKOFF, moving the
    /// cursor up to it.
    fn first_waiting(tally: Option<&Tally>, job: &Job) -> Option<usize> {
        let start = tally.map_or(0, |t| t.cursor.get());
        let at = job.tasks[start.min(job.tasks.len())..]
            .iter()
            .position(|t| t.state.is_waiting())
            .map(|p| start + p);
        if let Some(t) = tally {
            t.cursor.set(at.unwrap_or(job.tasks.len()));
        }
        at
    }

    /// Slots of the tasks that could start now, in order.
    fn ready_slots(&self, job: &Job, now: Millis) -> impl Iterator<Item = usize> + '_ {
        let from = Self::first_waiting(self.tally.get(&job.id), job).unwrap_or(job.tasks.len());
        let tasks: &[TaskRec] = &self.jobs[&job.id].tasks;
        (from..tasks.len()).filter(move |s| Self::ready(&tasks[*s], now))
    }

    /// A task of `job` became PENDING or BACKOFF again.
    fn note_waiting(&mut self, id: JobId, slot: usize) {
        if let Some(t) = self.tally.get(&id) {
            t.cursor.set(t.cursor.get().min(slot));
        }
    }

    // ---- offers --------------------------------------------------------------------

    fn eligible(&self, job: &Job) -> bool {
        matches!(job.state, JobState::Pending | JobState::Running)
            && !job.held
            && !job.cancel_requested
            && self.dep_status(job) == DepStatus::Satisfied
    }

    fn cap_room(&self, job: &Job) -> usize {
        match job.spec.array.as_ref().and_then(|a| a.cap) {
            Some(cap) => {
                let active = self.tally.get(&job.id).map_or(0, |t| t.active);
                (cap as usize).saturating_sub(active)
            }
            None => usize::MAX,
        }
    }

    fn ready(t: &TaskRec, now: Millis) -> bool {
        match t.state {
            TaskState::Pending => true,
            TaskState::Backoff => t.not_before.is_none_or(|nb| nb <= now),
            _ => false,
        }
    }

    /// Whether any task could start now if an offer fit it.
    pub fn wants_offers(&self, now: Millis) -> bool {
        self.live
            .iter()
            .filter_map(|id| self.jobs.get(id))
            .any(|j| {
                self.eligible(j)
                    && self.cap_room(j) > 0
                    && self.ready_slots(j, now).next().is_some()
            })
    }

    /// Jobs with a task that could start, best first.
    fn candidates(&self, now: Millis) -> Vec<JobId> {
        let mut c: Vec<(i32, JobId)> = self
            .live
            .iter()
            .filter_map(|id| self.jobs.get(id))
            .filter(|j| self.eligible(j) && self.cap_room(j) > 0)
            .filter(|j| self.ready_slots(j, now).next().is_some())
            .map(|j| (j.spec.priority, j.id))
            .collect();
        c.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        c.into_iter().map(|(_, id)| id).collect()
    }

    /// Packs ready tasks into the offers. Offers left unused are declined by the driver.
    pub fn on_offers(&mut self, offers: &[Offer], now: Millis) -> Vec<Action> {
        for o in offers {
            let (cpus, mem) = (scalar(&o.resources, "cpus"), scalar(&o.resources, "mem"));
            let stale = self
                .largest_offer
                .is_none_or(|(at, c, m)| now - at > OFFER_MEMORY_MS || (cpus >= c && mem >= m));
            if stale {
                self.largest_offer = Some((now, cpus, mem));
            }
        }
        let candidates = self.candidates(now);
        let mut actions = Vec::new();
        for o in offers {
            let mut left = o.resources.clone();
            let mut tasks = Vec::new();
            for &id in &candidates {
                let Some(job) = self.jobs.get(&id) else {
                    continue;
                };
                if o.role.as_deref().is_some_and(|r| r != job.spec.queue) {
                    continue;
                }
                let Ok(need) = task_resources(&job.spec) else {
                    continue;
                };
                let mut room = self.cap_room(job);
                let mut slots: Vec<usize> = Vec::new();
                for s in self.ready_slots(job, now) {
                    if slots.len() >= room.min(MAX_SLOTS_PER_OFFER) {
                        break;
                    }
                    slots.push(s);
                }
                for slot in slots {
                    if room == 0 {
                        break;
                    }
                    let Some((taken, rest)) = matching::take(&need, &left) else {
                        break;
                    };
                    let Some(info) = self.start_task(id, slot, &o.agent_id, taken, now) else {
                        continue;
                    };
                    left = rest;
                    room -= 1;
                    tasks.push(info);
                }
            }
            if !tasks.is_empty() {
                actions.push(Action::Launch {
                    offer_ids: vec![o.id.clone()],
                    tasks,
                });
            }
        }
        actions
    }

    /// Marks a task launching (new attempt) and builds its TaskInfo.
    fn start_task(
        &mut self,
        id: JobId,
        slot: usize,
        agent: &AgentId,
        resources: Resources,
        now: Millis,
    ) -> Option<TaskInfo> {
        let job = self.jobs.get_mut(&id)?;
        let t = job.tasks.get_mut(slot)?;
        t.attempt += 1;
        t.state = TaskState::Launching;
        t.agent_id = Some(agent.to_string());
        t.started_at = Some(now);
        t.not_before = None;
        t.exit_code = None;
        t.kill = None;
        t.kill_sent_at = None;
        t.ran = false;
        t.message = None;
        let (index, attempt) = (t.index, t.attempt);
        let info = build_task_info(job, index, attempt, agent, resources);
        if let Some(t) = self.tally.get_mut(&id) {
            t.active += 1;
        }
        self.touch_task(id, slot);
        self.refresh_state(id, now);
        info
    }

    // ---- status updates ------------------------------------------------------------

    pub fn on_update(&mut self, s: &TaskStatus, now: Millis) -> Vec<Action> {
        use tessera_types::TaskState as M;
        let Some((id, index, attempt)) = parse_task_id(s.task_id.as_str()) else {
            return vec![];
        };
        let Some(job) = self.jobs.get_mut(&id) else {
            return vec![];
        };
        let Some(slot) = job.slot(index) else {
            return vec![];
        };
        let spec_retries = job.spec.retries;
        let (backoff, backoff_max) = (job.spec.backoff_ms, job.spec.backoff_max_ms);
        let t = &mut job.tasks[slot];
        if t.attempt != attempt || t.state.is_terminal() || t.state.is_waiting() {
            // An older attempt, or one already settled: nothing to do but kill a
            // straggler that still runs.
            let straggler = t.attempt != attempt
                && matches!(s.state, M::TaskRunning | M::TaskStarting | M::TaskStaging);
            return if straggler {
                vec![Action::Kill {
                    task_id: s.task_id.clone(),
                    agent_id: s.agent_id.clone(),
                }]
            } else {
                vec![]
            };
        }
        self.reconciled.remove(s.task_id.as_str());
        let was_active = t.state.is_active();
        if let Some(a) = &s.agent_id {
            t.agent_id = Some(a.to_string());
        }
        if let Some(m) = status_message(s) {
            t.message = Some(m);
        }
        let failed_end = |t: &mut TaskRec| {
            if let Some(k) = t.kill {
                t.state = match k {
                    KillReason::Timeout => TaskState::Timeout,
                    KillReason::Cancel | KillReason::Replace => TaskState::Cancelled,
                };
                t.ended_at = Some(now);
                return;
            }
            t.failures += 1;
            if t.failures <= spec_retries {
                t.state = TaskState::Backoff;
                t.not_before = Some(now + retry_delay(backoff, backoff_max, t.failures));
            } else {
                t.state = TaskState::Failed;
                t.ended_at = Some(now);
            }
        };
        match s.state {
            M::TaskStaging | M::TaskStarting => {}
            M::TaskRunning => {
                if t.state == TaskState::Launching {
                    t.state = TaskState::Running;
                    t.started_at = Some(now);
                }
                t.ran = true;
            }
            M::TaskKilling | M::TaskUnreachable => {}
            M::TaskFinished => {
                t.exit_code = Some(s.exit_code.unwrap_or(0));
                if t.kill == Some(KillReason::Timeout) {
                    t.state = TaskState::Timeout;
                } else {
                    t.state = TaskState::Completed;
                }
                t.ended_at = Some(now);
            }
            M::TaskFailed | M::TaskKilled => {
                t.exit_code = s.exit_code;
                failed_end(t);
            }
            M::TaskError => {
                t.exit_code = s.exit_code;
                t.state = if t.kill.is_some() {
                    TaskState::Cancelled
                } else {
                    TaskState::Failed
                };
                t.ended_at = Some(now);
            }
            M::TaskLost | M::TaskDropped | M::TaskGone | M::TaskGoneByOperator | M::TaskUnknown => {
                if t.kill.is_some() || t.lost >= MAX_LOST {
                    failed_end(t);
                } else {
                    // Lost to the infrastructure (agent gone, or unknown after a restart),
                    // not the job's fault: run it again without costing a retry, as Slurm
                    // requeues jobs of a failed node.
                    t.lost += 1;
                    t.state = TaskState::Pending;
                }
            }
        }
        let (is_active, is_waiting) = (t.state.is_active(), t.state.is_waiting());
        if let Some(tally) = self.tally.get_mut(&id)
            && was_active
            && !is_active
        {
            tally.active = tally.active.saturating_sub(1);
        }
        if is_waiting {
            self.note_waiting(id, slot);
        }
        self.touch_task(id, slot);
        self.refresh(id, now);
        vec![]
    }

    // ---- time ----------------------------------------------------------------------

    /// Enforces time limits, resends unanswered kills, reconciles silent launches and fires
    /// schedules.
    pub fn on_tick(&mut self, now: Millis) -> Vec<Action> {
        self.fire_schedules(now);
        let mut actions = Vec::new();
        let live: Vec<JobId> = self.live.iter().copied().collect();
        for id in live {
            let Some(job) = self.jobs.get_mut(&id) else {
                continue;
            };
            if job.state == JobState::Scheduled {
                continue;
            }
            let limit = job.spec.time_limit_ms;
            let mut touched = Vec::new();
            let mut reconcile = Vec::new();
            for (slot, t) in job.tasks.iter_mut().enumerate() {
                if !t.state.is_active() {
                    continue;
                }
                if let (Some(limit), Some(start), None) = (limit, t.started_at, t.kill)
                    && t.state == TaskState::Running
                    && now - start >= limit as Millis
                {
                    t.kill = Some(KillReason::Timeout);
                    t.state = TaskState::Killing;
                    t.kill_sent_at = Some(now);
                    t.message = Some(format!("time limit of {} s reached", limit / 1000));
                    actions.push(kill_action(id, t));
                    touched.push(slot);
                } else if t.state == TaskState::Killing
                    && t.kill_sent_at.is_none_or(|at| now - at >= KILL_RESEND_MS)
                {
                    t.kill_sent_at = Some(now);
                    actions.push(kill_action(id, t));
                    touched.push(slot);
                } else if t.state == TaskState::Launching
                    && t.started_at
                        .is_some_and(|at| now - at >= LAUNCH_RECONCILE_MS)
                {
                    reconcile.push((id, t.index, t.attempt, t.agent_id.clone()));
                }
            }
            for slot in touched {
                self.touch_task(id, slot);
            }
            let mut ids = Vec::new();
            for (id, index, attempt, agent) in reconcile {
                let tid = task_id(id, index, attempt);
                let due = self
                    .reconciled
                    .get(&tid)
                    .is_none_or(|at| now - at >= LAUNCH_RECONCILE_MS);
                if due && let Ok(t) = TaskId::new(tid.clone()) {
                    self.reconciled.insert(tid, now);
                    ids.push((t, agent.and_then(|a| AgentId::new(a).ok())));
                }
            }
            if !ids.is_empty() {
                actions.push(Action::Reconcile(ids));
            }
        }
        actions
    }

    /// After (re)subscribing: ask the master about every task this scheduler thinks is
    /// launching or running, so tasks it never saw (or that ended while we were away) are
    /// settled.
    pub fn on_subscribed(&mut self) -> Vec<Action> {
        let mut ids = Vec::new();
        for j in self.live.iter().filter_map(|id| self.jobs.get(id)) {
            for t in j.tasks.iter().filter(|t| t.state.is_active()) {
                if let Ok(tid) = TaskId::new(task_id(j.id, t.index, t.attempt)) {
                    let agent = t.agent_id.clone().and_then(|a| AgentId::new(a).ok());
                    ids.push((tid, agent));
                }
            }
        }
        if ids.is_empty() {
            vec![]
        } else {
            vec![Action::Reconcile(ids)]
        }
    }

    /// The largest offer seen in the last minute: (cpus, mem).
    pub fn largest_recent_offer(&self, now: Millis) -> Option<(f64, f64)> {
        self.largest_offer
            .filter(|(at, _, _)| now - at <= OFFER_MEMORY_MS)
            .map(|(_, c, m)| (c, m))
    }

    pub(crate) fn jobs_mut(&mut self) -> &mut BTreeMap<JobId, Job> {
        &mut self.jobs
    }

    pub(crate) fn add_child(&mut self, parent: JobId, spec: JobSpec, now: Millis) -> JobId {
        let id = JobId(self.next_id);
        self.next_id += 1;
        let job = self.new_job(id, spec, false, now, Some(parent));
        self.insert_job(job, now);
        id
    }

    pub(crate) fn kill_for_replace(&mut self, id: JobId, now: Millis) {
        if let Some(j) = self.jobs.get_mut(&id) {
            j.cancel_requested = true;
            j.reason = Some("replaced by a newer scheduled run".into());
        }
        self.touch(id);
        self.kill_job_tasks(id, KillReason::Replace, now);
        self.refresh(id, now);
    }

    pub(crate) fn mark_job(&mut self, id: JobId) {
        self.touch(id);
    }
}

/// Retry delay after the `failures`-th failure: `backoff · 2^(failures-1)`, capped.
pub fn retry_delay(backoff_ms: u64, max_ms: u64, failures: u32) -> Millis {
    let exp = failures.saturating_sub(1).min(30);
    let d = backoff_ms.saturating_mul(1u64 << exp).min(max_ms);
    d.min(i64::MAX as u64) as Millis
}

fn kill_action(id: JobId, t: &TaskRec) -> Action {
    Action::Kill {
        task_id: TaskId::new(task_id(id, t.index, t.attempt))
            .unwrap_or_else(|_| unreachable_task_id()),
        agent_id: t.agent_id.clone().and_then(|a| AgentId::new(a).ok()),
    }
}

/// Task ids built by [`task_id`] are always valid; this is the typed fallback.
fn unreachable_task_id() -> TaskId {
    TaskId::new("batch.invalid").expect("a constant valid task id")
}

fn status_message(s: &TaskStatus) -> Option<String> {
    match (&s.reason, &s.message) {
        (Some(r), Some(m)) if !m.is_empty() => Some(format!("{}: {m}", reason_name(*r))),
        (Some(r), _) => Some(reason_name(*r)),
        (None, Some(m)) if !m.is_empty() => Some(m.clone()),
        _ => None,
    }
}

/// `REASON_CONTAINER_LIMITATION_MEMORY`, as Mesos prints reasons.
fn reason_name(r: tessera_types::Reason) -> String {
    serde_json::to_value(r)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("reason {}", r.as_i32()))
}

/// The resources one task of this job needs.
pub fn task_resources(spec: &JobSpec) -> std::result::Result<Resources, String> {
    let mut text = format!("cpus:{};mem:{}", spec.cpus, spec.mem_mb);
    if spec.disk_mb > 0.0 {
        text.push_str(&format!(";disk:{}", spec.disk_mb));
    }
    if spec.gpus > 0.0 {
        text.push_str(&format!(";gpus:{}", spec.gpus));
    }
    tessera_types::parse::parse_resources(&text).map_err(|e| e.to_string())
}

fn build_task_info(
    job: &Job,
    index: u32,
    attempt: u32,
    agent: &AgentId,
    resources: Resources,
) -> Option<TaskInfo> {
    let spec = &job.spec;
    let mut command = match &spec.command {
        Command::Shell(s) => CommandInfo::shell(s.clone()),
        Command::Exec(argv) => CommandInfo {
            value: argv.first()?.clone(),
            shell: false,
            arguments: argv.clone(),
            ..Default::default()
        },
    };
    command.environment = spec.env.clone();
    let env = &mut command.environment;
    env.insert("TESSERA_JOB_ID".into(), job.id.to_string());
    env.insert("TESSERA_JOB_NAME".into(), spec.name.clone());
    env.insert("TESSERA_ATTEMPT".into(), attempt.to_string());
    env.insert("SLURM_JOB_ID".into(), job.id.to_string());
    env.insert("SLURM_JOB_NAME".into(), spec.name.clone());
    if job.is_array() {
        env.insert("TESSERA_ARRAY_INDEX".into(), index.to_string());
        env.insert("TESSERA_ARRAY_JOB_ID".into(), job.id.to_string());
        env.insert("SLURM_ARRAY_TASK_ID".into(), index.to_string());
        env.insert("SLURM_ARRAY_JOB_ID".into(), job.id.to_string());
    }
    command.uris = spec.uris.iter().map(|u| Uri::new(u.clone())).collect();
    // As under Slurm, the job runs as the user who submitted it (an agent that switches
    // users does; see the agent's `--switch-user`).
    command.user = Some(spec.user.clone());
    let name = if job.is_array() {
        format!("{}[{index}]", spec.name)
    } else {
        spec.name.clone()
    };
    Some(TaskInfo {
        name,
        task_id: TaskId::new(task_id(job.id, index, attempt)).ok()?,
        agent_id: agent.clone(),
        resources,
        command,
        executor_id: None,
        kill_grace_ms: None,
        container: spec
            .image
            .as_ref()
            .map(|i| ContainerInfo::docker(i.clone())),
        health_check: None,
        executor: None,
    })
}
